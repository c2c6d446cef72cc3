"""get.php playlists, rendered once per catalog and streamed per request.

With each ingest, one template file per (style, kind) is written to
``GENERATION/api/`` (:mod:`xrelay.catalog.prepare`) (``plus-live.m3u``, ``plain-movie.m3u``...)
with placeholders for the base URL, the user's URL-encoded credentials and
the live extension.  A request streams the wanted files through
:class:`~xrelay.http.body.MarkerStream`, which fills the placeholders in;
the Content-Length is known in advance from the placeholder counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from twisted.web.iweb import IRequest

from xrelay.http.body import MarkerStream, ThreadedBody
from xrelay.http.request import accepts_gzip
from xrelay.catalog.m3u import render_m3u
from xrelay.core.scrub import BASE_MARKER, PASS_MARKER, USER_MARKER

__all__ = ["PlaylistTemplates", "write_templates", "serve_playlist", "LIVE_EXT_MARKER", "KINDS"]

LIVE_EXT_MARKER = "@XRELAY_LIVEEXT@"
MARKERS = (BASE_MARKER, USER_MARKER, PASS_MARKER, LIVE_EXT_MARKER)
KINDS = ("live", "movie", "series")
STYLES = ("plus", "plain")


@dataclass
class TemplateFile:
    path: str
    size: int
    #: marker -> occurrences
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class PlaylistTemplates:
    files: dict[tuple[str, str], TemplateFile] = field(default_factory=dict)

    def parts(self, style: str, kinds: tuple[str, ...]) -> list[TemplateFile]:
        return [self.files[(style, kind)] for kind in KINDS if kind in kinds and (style, kind) in self.files]

    def manifest(self) -> list[dict[str, Any]]:
        return [{"style": style, "kind": kind, "file": Path(t.path).name, "size": t.size, "counts": t.counts}
                for (style, kind), t in self.files.items()]

    @classmethod
    def load(cls, directory: Path, entries: list[dict[str, Any]]) -> "PlaylistTemplates":
        """The templates a manifest describes (blocking: checks their sizes)."""
        out = cls()
        for e in entries:
            path = directory / e["file"]
            if path.stat().st_size != int(e["size"]):
                raise ValueError(f"{path}: not the size the manifest says")
            out.files[(e["style"], e["kind"])] = TemplateFile(str(path), int(e["size"]),
                                                              {str(k): int(v) for k, v in e["counts"].items()})
        return out


def _lines(bundle: dict[str, Any], style: str, kind: str) -> Iterator[str]:
    """One template's lines: xrelay's playlist renderer with placeholders."""
    return render_m3u(bundle, base=BASE_MARKER, username=USER_MARKER, password=PASS_MARKER,
                      plus=style == "plus", kinds=(kind,), quoted=True, header=False,
                      live_ext=LIVE_EXT_MARKER)


def write_templates(bundle: dict[str, Any], directory: Path,
                    kinds: tuple[str, ...] = KINDS) -> PlaylistTemplates:
    """Write the template files of *kinds* (blocking: run in a thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = PlaylistTemplates()
    for style in STYLES:
        for kind in kinds:
            path = directory / f"{style}-{kind}.m3u"
            tmp = path.with_name(path.name + ".tmp")
            counts = dict.fromkeys(MARKERS, 0)
            size = 0
            with open(tmp, "wb") as f:
                batch: list[str] = []
                for line in _lines(bundle, style, kind):
                    batch.append(line)
                    if len(batch) >= 2000:
                        size += _flush(f, batch, counts)
                size += _flush(f, batch, counts)
            os.replace(tmp, path)
            out.files[(style, kind)] = TemplateFile(str(path), size, counts)
    return out


def _flush(f: Any, batch: list[str], counts: dict[str, int]) -> int:
    if not batch:
        return 0
    text = "".join(batch)
    batch.clear()
    for marker in MARKERS:
        counts[marker] += text.count(marker)
    data = text.encode("utf-8")
    f.write(data)
    return len(data)


async def serve_playlist(request: IRequest, templates: PlaylistTemplates, args: dict[str, str],
                         base: str) -> bytes | None:
    """Answer one get.php request (already authenticated) from *templates*."""
    kind = (args.get("type") or "m3u_plus").strip().lower()
    style = "plain" if kind in ("m3u", "simple") else "plus"
    output = (args.get("output") or "ts").strip().lower()
    live_ext = "m3u8" if output in ("m3u8", "hls") else "ts"
    kinds = KINDS
    if args.get("key"):  # XUI: key=live,movie,series
        wanted = {k.strip().lower() for k in args["key"].split(",")}
        wanted |= {"movie"} if "vod" in wanted else set()
        wanted |= {"live"} if "radio_streams" in wanted else set()
        kinds = tuple(k for k in KINDS if k in wanted)
    user_q = quote(args.get("username", ""), safe="")
    pass_q = quote(args.get("password", ""), safe="")
    replacements = [(BASE_MARKER.encode(), base.encode()), (USER_MARKER.encode(), user_q.encode()),
                    (PASS_MARKER.encode(), pass_q.encode()), (LIVE_EXT_MARKER.encode(), live_ext.encode())]
    guide = f"{base}/xmltv.php?username={user_q}&password={pass_q}"
    head = f'#EXTM3U url-tvg="{guide}" x-tvg-url="{guide}"\r\n'.encode()
    parts = templates.parts(style, kinds)
    length = len(head)
    for part in parts:
        length += part.size + sum(part.counts.get(k.decode(), 0) * (len(v) - len(k)) for k, v in replacements)
    name = "".join(c for c in args.get("username", "") if (c.isascii() and c.isalnum()) or c in "-_.")[:64]
    suffix = "_plus" if style == "plus" else ""
    request.setHeader(b"content-type", b"audio/x-mpegurl; charset=utf-8")
    request.setHeader(b"content-disposition", f'attachment; filename="tv_channels_{name}{suffix}.m3u"'.encode())
    request.setHeader(b"cache-control", b"must-revalidate")
    request.setHeader(b"pragma", b"public")
    request.setHeader(b"expires", b"0")
    gz = accepts_gzip(request)
    if gz:  # compressed on the fly (level 1, in the thread pool): ~7x fewer bytes on Wi-Fi
        request.setHeader(b"content-encoding", b"gzip")
        request.setHeader(b"vary", b"Accept-Encoding")
    else:
        request.setHeader(b"content-length", str(length).encode())
    if request.method == b"HEAD":
        return b""
    source = MarkerStream([p.path for p in parts], replacements, head=head, gzip=gz)
    await ThreadedBody(request, source, source.close).start()
    return None
