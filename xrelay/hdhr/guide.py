"""``guide.xml``: each device's XMLTV guide, its channel ids the GuideNumbers.

Plex and Jellyfin then map guide and channels without manual work.  The
file is written from xrelay's guide (``GENERATION/guide.xml``) once per
catalog generation and device lineup, in a thread
(:func:`~xrelay.hdhr.answers.write_device_guide`), beside the generation's
other prepared files (so it goes when the generation goes), and streamed
from disk like ``xmltv.php``, xrelay's base URL put in on the way (gzip-encoded
for clients that accept it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.generation import Generation
from xrelay.core.deferreds import Shared
from xrelay.core.scrub import BASE_MARKER
from xrelay.hdhr.answers import GuideEntry, write_device_guide
from xrelay.hdhr.channels import Lineup, TunerChannel
from xrelay.http.body import MarkerStream, ThreadedBody
from xrelay.http.errors import Unavailable
from xrelay.http.request import accepts_gzip

__all__ = ["DeviceGuides", "build_guide"]

log = Logger()

_MARKER = BASE_MARKER.encode()


def build_guide(source: Path, dest: Path, channels: Lineup, generation: Generation) -> int:
    """Write the device guide for *channels* to *dest* (blocking); returns
    the number of programmes written.  A channel without an icon of its own
    gets its catalog row's."""
    entries = [GuideEntry(c.number, c.name, c.epg_id, c.icon if c.icon is not None else _icon(generation, c))
               for c in channels]
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            written = write_device_guide(str(source), out, entries)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return written


def _icon(generation: Generation, channel: TunerChannel) -> str | None:
    row = generation.row("live", channel.stream_id) or {}
    icon = row.get("stream_icon")
    return icon if isinstance(icon, str) and icon else None


class _Built:
    """One device guide of one generation: the channels it was made for."""

    def __init__(self, channels: Lineup, making: Shared[Path]) -> None:
        self.channels = channels
        self.making = making


class DeviceGuides:
    """The device guides of the current generation."""

    def __init__(self, cache: CatalogCache) -> None:
        self.cache = cache
        self._generation: Path | None = None
        self._built: dict[str, _Built] = {}

    def file(self, device_id: str, channels: Lineup) -> Deferred[Path]:
        """The guide file of the device with *device_id* showing *channels*
        (made on first use, in a thread)."""
        current = self.cache.current
        generation = current.path if current is not None else None
        source = generation / "guide.xml" if generation is not None else None
        if current is None or generation is None or source is None or not source.is_file():
            raise Unavailable("the guide is not downloaded yet, try again soon", retry_after=30)
        if generation != self._generation:
            self._generation, self._built = generation, {}
        built = self._built.get(device_id)
        if built is None or built.channels is not channels:
            dest = generation / "api" / f"hdhr-{device_id}.xml"
            making = Deferred.fromCoroutine(self._make(device_id, source, dest, channels, current))
            built = _Built(channels, Shared(making))
            self._built[device_id] = built
        return built.making.wait()

    async def _make(self, device_id: str, source: Path, dest: Path, channels: Lineup,
                    generation: Generation) -> Path:
        try:
            count = await threads.deferToThread(build_guide, source, dest, channels, generation)
        except BaseException:
            built = self._built.get(device_id)
            if built is not None and built.channels is channels:
                del self._built[device_id]  # the next request tries again
            raise
        log.info("HDHomeRun guide for {device}: {count} programmes", device=device_id, count=count)
        return dest

    async def serve(self, request: IRequest, device_id: str, channels: Lineup, base: str) -> Any:
        """Answer *request* with the guide; *base* replaces xrelay's marker
        (channel icons served by xrelay's ``/asset/``)."""
        making = self.file(device_id, channels)
        try:
            path = await making
        except Exception as e:  # a disk error, a damaged source guide
            log.warn("cannot write the HDHomeRun guide: {error}", error=str(e))
            raise Unavailable("the guide could not be prepared, try again later", retry_after=60)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"vary", b"Accept-Encoding")
        gz = accepts_gzip(request)
        if gz:  # a 50 000-channel guide is about 100 MB of XML, a tenth of it compressed
            request.setHeader(b"content-encoding", b"gzip")
        if request.method == b"HEAD":
            return b""
        source = MarkerStream([str(path)], [(_MARKER, base.encode())], gzip=gz, level=1)
        return await ThreadedBody(request, source, source.close).start()
