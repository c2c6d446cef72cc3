"""The demo provider's stream endpoints: live TS, HLS, files, catch-up.

Live TS loops the sample clip forever, paced at the sample's bitrate (or
``settings.bitrate_bps``) by a ``BodyWriter``: writes are whole multiples of
7 TS packets and every one starts with the sync byte.  A new connection
joins the loop where the provider's clock says the channel is, so its first
bytes are usually mid-GOP, like a real live channel.

Movies, episodes and catch-up answers are one fixed file (the sample
repeated to ``settings.vod_size`` bytes; catch-up: the sample twice) with
Range support.  Catch-up needs a channel with ``tv_archive``; every request
is recorded in ``stats.timeshift`` with START read in the provider's
timezone.  Live, file and catch-up bodies count against max_connections.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from typing import Callable

from twisted.web.server import NOT_DONE_YET, Request

from . import hls
from .faults import DemoFaults
from .sample import TS_CHUNK, repeated, sample_clip
from .stats import StreamConnection, TimeshiftRequest
from .streaming import BodyWriter
from .vod import Unsatisfiable, content_type, if_range_matches, parse_range

from .state import ProviderState

_FILE_CHUNK = 64 * 1024
_START_FORMATS = ("%Y-%m-%d:%H-%M", "%Y-%m-%d:%H-%M-%S", "%Y-%m-%d_%H-%M",
                  "%Y-%m-%d %H:%M:%S", "%Y-%m-%d:%H:%M", "%Y%m%d-%H")
_LAST_MODIFIED = b"Tue, 14 Nov 2023 22:13:20 GMT"  # CATALOG_EPOCH


def _split_id(name: str) -> tuple[int | None, str]:
    """``"123.ts"`` -> (123, "ts"); ``"123"`` -> (123, "")."""
    m = re.fullmatch(r"(\d+)(?:\.([A-Za-z0-9]+))?", name)
    if not m:
        return None, ""
    return int(m.group(1)), (m.group(2) or "").lower()


class StreamHandlers:
    def __init__(self, provider: ProviderState) -> None:
        self.p = provider

    # ----- shared -------------------------------------------------------
    def _status(self, request: Request, code: int, kind: str = "unauthorized") -> bytes:
        self.p.stats.request(kind)
        request.setResponseCode(code)
        return b""

    def _redirect(self, request: Request, path: str) -> bytes:
        ctx, *_ = self.p.context(request)
        self.p.stats.request("redirect")
        request.setResponseCode(302)
        request.setHeader(b"location", f"{ctx.base}{path}".encode())
        request.setHeader(b"content-type", b"text/html")
        return b""

    def _open(self, request: Request, kind: str, stream_id: int,
              make: Callable[[Callable[[str], None]], BodyWriter]) -> object:
        """Start a stream body that counts against max_connections."""
        stats = self.p.stats
        peer = request.getClientAddress()
        conn = StreamConnection(kind, stream_id, f"{getattr(peer, 'host', '?')}:"
                                f"{getattr(peer, 'port', '?')}", self.p.reactor.seconds(),
                                abort=lambda: None)

        def closed(reason: str) -> None:
            if reason == "too slow":
                stats.dropped_slow += 1
            conn.bytes_sent = writer.sent
            stats.close_stream(conn)

        writer = make(closed)
        conn.abort = lambda: writer.abort("kicked")
        stats.open_stream(conn)
        if not conn.closed:
            writer.start()
        return NOT_DONE_YET

    # ----- live ---------------------------------------------------------
    def live_entry(self, request: Request, user: str, password: str, name: str) -> object:
        """``/live/U/P/ID[.ts|.m3u8]`` and ``/U/P/ID``."""
        stream_id, ext = _split_id(name)
        kind = "hls_playlist" if ext in ("m3u8", "m3u") else "live"
        self.p.stats.request(kind if kind == "live" else "hls_entry")
        if not self.p.check(user, password):
            return self._status(request, 401)
        if stream_id is None or not self.p.catalog.is_live(stream_id) or ext not in (
                "", "ts", "m3u8", "m3u"):
            return self._status(request, 404, "not_found")
        if kind == "hls_playlist":
            token = self.p.token("hls", stream_id)
            return self._redirect(request, f"/hls/{token}/{stream_id}/{hls.entry_name(stream_id)}")
        if self.p.faults.live == "refuse":
            return self._status(request, 404, "not_found")
        if self.p.settings.redirect_streams:
            token = self.p.token("live", stream_id)
            return self._redirect(request, f"/stream/live/{token}/{stream_id}.ts")
        return self._serve_live(request, stream_id)

    def _serve_live(self, request: Request, stream_id: int) -> object:
        p = self.p
        request.setHeader(b"content-type", b"video/mp2t")
        request.setHeader(b"cache-control", b"no-store, no-cache, must-revalidate")
        if request.method == b"HEAD":
            return b""
        fault = p.faults.live
        clip = sample_clip()
        rate = p.settings.bitrate_bps or clip.bitrate_bps
        # Join the loop where the channel "is" now, on a packet boundary.
        start = int(p.reactor.seconds() * rate / 8) // 188 * 188

        def make(closed: Callable[[str], None]) -> BodyWriter:
            if fault == "silent":  # a zombie connection: headers, then nothing ever
                return _SilentWriter(p.reactor, request, closed)
            return BodyWriter(
                p.reactor, request, source=lambda off, n: clip.cyclic(start + off, n),
                rate_bps=rate, align=TS_CHUNK, tick=p.settings.live_tick,
                max_lag=p.settings.live_max_lag, limit=DemoFaults.drop_after(fault),
                hold=lambda: p.faults.live == "silent", on_close=closed,
            )

        return self._open(request, "live", stream_id, make)

    # ----- redirected targets -------------------------------------------
    def redirected(self, request: Request, kind: str, token: str, name: str) -> object:
        """``/stream/KIND/TOKEN/ID.EXT``: where stream URLs redirect to."""
        stream_id, ext = _split_id(name)
        if stream_id is None or token != self.p.token(kind, stream_id):
            return self._status(request, 403, "forbidden")
        if kind == "live":
            self.p.stats.request("live_body")
            if self.p.faults.live == "refuse":
                return self._status(request, 404, "not_found")
            return self._serve_live(request, stream_id)
        if kind in ("movie", "series"):
            self.p.stats.request(f"{kind}_body")
            return self._serve_file(request, "vod", stream_id, ext, self.file_body())
        return self._status(request, 404, "not_found")

    # ----- movies and episodes ------------------------------------------
    @cached_property
    def _file(self) -> bytes:
        return repeated(sample_clip().data, self.p.settings.vod_size)

    def file_body(self) -> bytes:
        return self._file

    @cached_property
    def _catchup(self) -> bytes:
        return sample_clip().data * 2

    def file_entry(self, request: Request, kind: str, user: str, password: str,
                   name: str) -> object:
        """``/movie/U/P/ID.EXT`` and ``/series/U/P/ID.EXT``."""
        self.p.stats.request(kind)
        if not self.p.check(user, password):
            return self._status(request, 401)
        stream_id, ext = _split_id(name)
        known = self.p.catalog.is_vod if kind == "movie" else self.p.catalog.is_episode
        if stream_id is None or not known(stream_id):
            return self._status(request, 404, "not_found")
        if self.p.settings.redirect_streams:
            token = self.p.token(kind, stream_id)
            return self._redirect(request, f"/stream/{kind}/{token}/{stream_id}.{ext or 'mp4'}")
        return self._serve_file(request, "vod", stream_id, ext, self.file_body())

    def _serve_file(self, request: Request, kind: str, stream_id: int, ext: str,
                    body: bytes) -> object:
        size = len(body)
        etag = b'"demo-%d"' % size
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"content-type", content_type(ext or "ts"))
        request.setHeader(b"last-modified", _LAST_MODIFIED)
        request.setHeader(b"etag", etag)
        rng = None
        if if_range_matches(request.getHeader(b"if-range"), _LAST_MODIFIED, etag):
            try:
                rng = parse_range(request.getHeader(b"range"), size)
            except Unsatisfiable:
                request.setResponseCode(416)
                request.setHeader(b"content-range", b"bytes */%d" % size)
                return b""
        start, length = 0, size
        if rng is not None:
            request.setResponseCode(206)
            request.setHeader(b"content-range", rng.header(size))
            start, length = rng.start, rng.length
        request.setHeader(b"content-length", b"%d" % length)
        if request.method == b"HEAD":
            return b""
        view = memoryview(body)[start : start + length]
        p = self.p
        limit = DemoFaults.drop_after(p.faults.vod) if kind == "vod" else None

        def make(closed: Callable[[str], None]) -> BodyWriter:
            if p.settings.vod_bitrate_bps:
                return BodyWriter(p.reactor, request, rate_bps=p.settings.vod_bitrate_bps,
                                  source=lambda off, n: bytes(view[off : off + n]),
                                  total=length, limit=limit, on_close=closed)
            chunks = (bytes(view[n : n + _FILE_CHUNK]) for n in range(0, length, _FILE_CHUNK))
            return BodyWriter(p.reactor, request, chunks=chunks, limit=limit, on_close=closed)

        return self._open(request, kind, stream_id, make)

    # ----- catch-up -----------------------------------------------------
    def _parse_start(self, start: str) -> int | None:
        for fmt in _START_FORMATS:
            try:
                local = datetime.strptime(start, fmt).replace(tzinfo=self.p.tz)
            except ValueError:
                continue
            return int(local.timestamp())
        return None

    def _timeshift(self, request: Request, user: str | None, password: str | None,
                   duration: str, start: str, name: str, form: str) -> object:
        self.p.stats.request("timeshift")
        if not self.p.check(user, password):
            return self._status(request, 401)
        stream_id, ext = _split_id(name)
        try:
            minutes = int(duration)
        except ValueError:
            minutes = -1
        if stream_id is not None:
            self.p.stats.record_timeshift(TimeshiftRequest(
                stream_id, start, minutes, self._parse_start(start), form))
        catalog = self.p.catalog
        if stream_id is None or not catalog.is_live(stream_id) or \
                not catalog.has_archive(stream_id - 1) or minutes <= 0 or \
                self._parse_start(start) is None:
            return self._status(request, 404, "not_found")
        return self._serve_file(request, "timeshift", stream_id, "ts", self._catchup)

    def timeshift_path(self, request: Request, parts: list[str]) -> object:
        """``/timeshift/U/P/DURATION/START/ID.ts``."""
        user, password, duration, start, name = parts
        return self._timeshift(request, user, password, duration, start, name, "path")

    def timeshift_query(self, request: Request, args: dict[str, str]) -> object:
        """``/streaming/timeshift.php?username&password&stream&start&duration``."""
        return self._timeshift(request, args.get("username"), args.get("password"),
                               args.get("duration", ""), args.get("start", ""),
                               args.get("stream", ""), "query")

    # ----- HLS ----------------------------------------------------------
    def hls(self, request: Request, token: str, sid: str, rest: list[str]) -> object:
        """``/hls/TOKEN/ID/{index,master}.m3u8``, ``vK/index.m3u8``, ``seg_N.ts``,
        ``vK/seg_N.ts`` and ``key.bin``."""
        p = self.p
        stream_id = int(sid) if sid.isdigit() else None
        if stream_id is None or token != p.token("hls", stream_id) or \
                not p.catalog.is_live(stream_id):
            return self._status(request, 403, "forbidden")
        now = p.reactor.seconds()
        style = hls.style(stream_id)
        variant = rest[0] if len(rest) == 2 and rest[0] in ("v0", "v1") else None
        if variant and style != "master":
            return self._status(request, 404, "not_found")
        leaf = rest[-1] if len(rest) <= 2 else ""
        prefix = f"/hls/{token}/{stream_id}"
        ctx, *_ = p.context(request)
        if leaf in ("index.m3u8", "master.m3u8"):
            if (leaf == "master.m3u8") != (style == "master" and variant is None):
                return self._status(request, 404, "not_found")
            p.stats.request("hls_playlist")
            p.stats.fetched("hls_playlist", stream_id)
            text = hls.master_playlist(prefix) if leaf == "master.m3u8" else \
                hls.media_playlist(ctx.base, prefix, stream_id, now, variant)
            request.setHeader(b"content-type", hls.CONTENT_TYPE)
            request.setHeader(b"cache-control", b"no-store, no-cache, must-revalidate")
            return text.encode()
        if leaf == "key.bin" and style == "key" and len(rest) == 1:
            p.stats.request("hls_key")
            request.setHeader(b"content-type", b"application/octet-stream")
            return hls.key_for(token, stream_id)
        m = re.fullmatch(r"seg_(\d+)\.ts", leaf)
        if not m or not hls.segment_exists(int(m.group(1)), now):
            return self._status(request, 404, "not_found")
        n = int(m.group(1))
        p.stats.request("hls_segment")
        p.stats.fetched("hls_segment", stream_id)
        p.stats.segment(request.path.decode("latin-1"))
        key = hls.key_for(token, stream_id) if style == "key" else None
        request.setHeader(b"content-type", b"video/mp2t")
        return hls.segment_bytes(n, key)


class _SilentWriter(BodyWriter):
    """Headers, then nothing: the ``live="silent"`` fault."""

    def __init__(self, reactor: object, request: Request,
                 closed: Callable[[str], None]) -> None:
        super().__init__(reactor, request, chunks=iter(()), on_close=closed)  # type: ignore[arg-type]

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(self._request_gone)
        self.request.write(b"")

    def resumeProducing(self) -> None:
        self.paused = False  # and still nothing to say
