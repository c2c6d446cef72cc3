"""xmltv.php: the cached guide, streamed from disk.

The guide file is never loaded whole: it is read in chunks in a thread,
with ``@XRELAY_BASE@`` replaced by the client's base URL on the way.
Clients that accept gzip get ``Content-Encoding: gzip``: from a file
compressed once per catalog and base URL (in a thread, started by the
first such request) or, until that file exists, compressed on the fly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.http.body import MarkerStream, ThreadedBody
from xrelay.http.errors import Unavailable
from xrelay.http.request import accepts_gzip
from xrelay.catalog.epg import EpgIndex
from xrelay.core.scrub import BASE_MARKER

__all__ = ["GuideServer", "compress_guide"]

log = Logger()

_MARKER = BASE_MARKER.encode()
#: gzip level of the cached .gz (built once) and of on-the-fly compression.
FILE_LEVEL = 6
LIVE_LEVEL = 1
#: Cached .gz variants per catalog generation (one per base URL).
MAX_VARIANTS = 4


def compress_guide(source: str, dest: str, base: bytes) -> str:
    """Write the guide for *base*, gzip-compressed, to *dest* (blocking)."""
    tmp = f"{dest}.tmp-{os.getpid()}"
    stream = MarkerStream([source], [(_MARKER, base)], gzip=True, level=FILE_LEVEL)
    try:
        with open(tmp, "wb") as out:
            while (chunk := stream()) is not None:
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        stream.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


class GuideServer:
    """One guide file served: the generation's ``guide.xml``, or a lineup's own."""

    def __init__(self) -> None:
        self.generation: Path | None = None
        self.index = EpgIndex()
        #: the file served, its size and ``@XRELAY_BASE@`` count (0: unknown size)
        self.source: Path | None = None
        self.size = 0
        self.markers = 0
        #: where the compressed variants are written
        self.gz_dir: Path | None = None
        #: base (b"" when the guide has no markers) -> path of the finished .gz
        self.gz_ready: dict[bytes, str] = {}
        self.gz_building: set[bytes] = set()
        self._gz_waiters: list[Deferred[None]] = []

    async def reloaded(self, generation: Path, index: EpgIndex) -> None:
        self.generation, self.index = generation, index
        self.adopt_file(generation / "guide.xml", index.size, index.markers, generation / "api")

    def adopt_file(self, source: Path, size: int, markers: int, gz_dir: Path) -> None:
        """Serve *source* (*size* bytes, *markers* base markers) from now on."""
        self.source, self.size, self.markers, self.gz_dir = source, size, markers, gz_dir
        self.gz_ready, self.gz_building = {}, set()
        if size and not markers:
            self._build_gz(b"")  # one compressed file fits every client
        self._gz_settled()

    def gz_idle(self) -> Deferred[None]:
        """Fires once no compressed guide is being built (at once if none is)."""
        d: Deferred[None] = Deferred()
        if self.gz_building:
            self._gz_waiters.append(d)
        else:
            d.callback(None)
        return d

    def _gz_settled(self) -> None:
        if not self.gz_building:
            waiters, self._gz_waiters = self._gz_waiters, []
            for d in waiters:
                d.callback(None)

    @property
    def path(self) -> Path | None:
        return self.source

    def _gz_key(self, base: bytes) -> bytes:
        return base if self.markers or not self.size else b""

    def _build_gz(self, key: bytes) -> None:
        if key in self.gz_building or key in self.gz_ready or len(self.gz_building) + len(self.gz_ready) >= MAX_VARIANTS:
            return
        source, gz_dir = self.source, self.gz_dir
        if source is None or gz_dir is None:
            return
        digest = hashlib.sha1(key).hexdigest()[:12]
        dest = gz_dir / f"guide-{digest}.xml.gz"
        self.gz_building.add(key)

        def make() -> str:
            dest.parent.mkdir(parents=True, exist_ok=True)
            return compress_guide(str(source), str(dest), key)

        def done(path: str) -> None:
            if self.source == source:
                self.gz_building.discard(key)
                self.gz_ready[key] = path
            self._gz_settled()

        def failed(f: Any) -> None:
            if self.source == source:
                self.gz_building.discard(key)
            log.warn("cannot compress the guide: {error}", error=str(f.value))
            self._gz_settled()

        threads.deferToThread(make).addCallbacks(done, failed)

    def serve(self, request: IRequest, base: str, as_file: bool = False) -> Any:
        """The guide; gzip-encoded for clients that accept it, or with
        *as_file* (``gzip=1``, ``/epg/U/P/gz``) as an ``epg.xml.gz`` file."""
        path = self.path
        if path is None or not path.is_file():
            raise Unavailable("the guide is not downloaded yet, try again soon", retry_after=30)
        base_b = base.encode()
        request.setHeader(b"cache-control", b"no-cache")
        if as_file:
            request.setHeader(b"content-type", b"application/gzip")
            request.setHeader(b"content-disposition", b'attachment; filename="epg.xml.gz"')
        else:
            request.setHeader(b"content-type", b"application/xml; charset=utf-8")
            request.setHeader(b"content-disposition", b'inline; filename="epg.xml"')
            request.setHeader(b"vary", b"Accept-Encoding")
        if as_file or accepts_gzip(request):
            if not as_file:
                request.setHeader(b"content-encoding", b"gzip")
            key = self._gz_key(base_b)
            ready = self.gz_ready.get(key)
            if ready is not None and os.path.exists(ready):
                request.setHeader(b"content-length", str(os.path.getsize(ready)).encode())
                if request.method == b"HEAD":
                    return b""
                source = MarkerStream([ready], [])
            else:
                self._build_gz(key)
                if request.method == b"HEAD":
                    return b""
                source = MarkerStream([str(path)], [(_MARKER, base_b)], gzip=True, level=LIVE_LEVEL)
        else:
            if self.size:
                length = self.size + self.markers * (len(base_b) - len(_MARKER))
                request.setHeader(b"content-length", str(length).encode())
            if request.method == b"HEAD":
                return b""
            source = MarkerStream([str(path)], [(_MARKER, base_b)])
        return ThreadedBody(request, source, source.close).start()
