"""The demo provider's panel endpoints: player_api.php, get.php, xmltv.php.

Wrong credentials: player_api answers 200 ``{"user_info":{"auth":0}}`` (XC
2.x), get.php 404, xmltv.php 401.  List answers are serialised once and
cached as bytes (per list, category filter and Host); big bodies go out in
64 KiB chunks through a ``BodyWriter`` so a slow reader applies
back-pressure.  The guide is generated while it is sent.  Faults from
``provider.faults`` apply here (see :mod:`xrelay.demo.faults`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

from twisted.web.server import NOT_DONE_YET, Request

from . import api
from .playlists import m3u_chunks, xmltv_chunk_count, xmltv_chunks
from .streaming import BodyWriter

if TYPE_CHECKING:
    from .provider import DemoProvider

_CHUNK = 64 * 1024


def _chunked(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for n in range(0, len(data), _CHUNK):
        yield bytes(view[n : n + _CHUNK])


def _take(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    """The first ``n`` chunks, the last one cut in the middle of an element."""
    for k in range(n):
        chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk if k < n - 1 else chunk[: max(1, len(chunk) // 2)]


class PanelHandlers:
    def __init__(self, provider: DemoProvider) -> None:
        self.p = provider
        self._json_cache: dict[tuple[Any, ...], bytes] = {}
        self._m3u_cache: dict[tuple[Any, ...], bytes] = {}

    def send_chunks(self, request: Request, chunks: Iterator[bytes]) -> object:
        BodyWriter(self.p.reactor, request, chunks=chunks).start()
        return NOT_DONE_YET

    # ----- player_api.php -------------------------------------------------
    def player_api(self, request: Request, args: dict[str, str]) -> object:
        action = api.ACTION_ALIASES.get(args.get("action", ""), args.get("action", ""))
        self.p.stats.request("player_api")
        self.p.stats.request(f"player_api:{action or 'account'}")
        request.setHeader(b"content-type", b"application/json")
        if not self.p.check(args.get("username"), args.get("password")):
            self.p.stats.request("unauthorized")
            return json.dumps(api.AUTH_FAILED).encode()
        fault = self.p.faults.api_fault(action)
        if fault == "hang":  # never answer; the client or provider.stop() ends it
            return NOT_DONE_YET
        if fault == "http500":
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/html")
            return b"<html><body><h1>500 Internal Server Error</h1></body></html>"
        if fault == "html":
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return b"<!DOCTYPE html><html><head><title>Suspended</title></head>" \
                   b"<body>This account is suspended.</body></html>"
        if fault == "auth0":
            return json.dumps(api.AUTH_FAILED).encode()
        ctx, host, port, scheme = self.p.context(request)
        req = api.ApiRequest(ctx, host, port, scheme, self.p.reactor.seconds(),
                             self.p.stats.open_count(), self.p.stats.max_connections,
                             self.p.tz, self.p.settings.timezone)
        if fault == "expired":  # XC 2.x: every action gets the account info
            info = api.account_info(self.p.catalog, req)
            info["user_info"]["status"] = "Expired"
            return json.dumps(info).encode()
        keep = 5 if fault == "shrink" else 1
        cacheable = action in api.LIST_ACTIONS or action in api.CATEGORY_ACTIONS \
            or action in ("get_vod_info", "get_series_info")
        key = (action, args.get("category_id"), args.get("vod_id"), args.get("series_id"),
               ctx.base, keep)
        body = self._json_cache.get(key) if cacheable else None
        if body is None:
            value = api.answer(self.p.catalog, req, action, args, keep)
            body = json.dumps(value, separators=(",", ":")).encode()
            if cacheable:
                if len(self._json_cache) > 64:
                    self._json_cache.clear()
                self._json_cache[key] = body
        if fault == "bad_json":
            body = body[: max(1, len(body) // 2)]
        request.setHeader(b"content-length", b"%d" % len(body))
        if len(body) <= _CHUNK:
            return body
        return self.send_chunks(request, _chunked(body))

    # ----- get.php --------------------------------------------------------
    def get_php(self, request: Request, args: dict[str, str]) -> object:
        self.p.stats.request("get.php")
        if self.p.faults.get_php == "reset":
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if not self.p.check(args.get("username"), args.get("password")):
            self.p.stats.request("unauthorized")
            request.setResponseCode(404)
            return b""
        if self.p.faults.get_php == "refuse":
            request.setResponseCode(404)
            return b""
        kind = args.get("type") or "m3u_plus"
        output = args.get("output") or "ts"
        if kind not in ("m3u", "m3u_plus"):
            request.setResponseCode(404)
            return b""
        ctx, *_ = self.p.context(request)
        key = (kind, output, ctx.base)
        body = self._m3u_cache.get(key)
        if body is None:
            body = b"".join(m3u_chunks(self.p.catalog, ctx, output, kind == "m3u_plus"))
            self._m3u_cache = {key: body}
        suffix = "_plus" if kind == "m3u_plus" else ""
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(
            b"content-disposition",
            f'attachment; filename="tv_channels_{self.p.settings.username}{suffix}.m3u"'.encode(),
        )
        request.setHeader(b"cache-control", b"must-revalidate")
        request.setHeader(b"content-length", b"%d" % len(body))
        return self.send_chunks(request, _chunked(body))

    # ----- xmltv.php ------------------------------------------------------
    def xmltv(self, request: Request, args: dict[str, str]) -> object:
        self.p.stats.request("xmltv")
        if not self.p.check(args.get("username"), args.get("password")):
            self.p.stats.request("unauthorized")
            request.setResponseCode(401)
            return b""
        fault = self.p.faults.xmltv
        if fault == "http500":
            request.setResponseCode(500)
            return b"<html><body>500</body></html>"
        ctx, *_ = self.p.context(request)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        request.setHeader(b"content-disposition", b'attachment; filename="epg.xml"')
        chunks = xmltv_chunks(self.p.catalog, ctx, self.p.reactor.seconds(), self.p.tz)
        if fault in ("truncated", "hang_midway"):
            half = max(1, xmltv_chunk_count(self.p.catalog) // 2)
            transport = request.channel.transport

            def at_end() -> None:
                if fault == "truncated":  # flush what was sent, then drop
                    request.unregisterProducer()
                    transport.loseConnection()
                else:
                    self.p.stats.request("xmltv_hung")

            BodyWriter(self.p.reactor, request, chunks=_take(chunks, half), at_end=at_end).start()
            return NOT_DONE_YET
        return self.send_chunks(request, chunks)
