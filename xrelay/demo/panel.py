"""The demo provider's panel endpoints: player_api.php, get.php, xmltv.php.

Wrong credentials: player_api answers 200 ``{"user_info":{"auth":0}}`` (XC
2.x), get.php 404, xmltv.php 401.  List answers are serialised once and
cached as bytes (per list, category filter and Host), in a thread for big
catalogs so the reactor keeps pacing streams; big bodies go out in
64 KiB chunks through a ``BodyWriter`` so a slow reader applies
back-pressure.  The guide is generated while it is sent.  Faults from
``provider.faults`` apply here (see :mod:`xrelay.demo.faults`).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, cast

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from . import api
from .playlists import m3u_chunks, xmltv_chunk_count, xmltv_chunks
from .streaming import BodyWriter

from .state import ProviderState

log = Logger()
_CHUNK = 64 * 1024
#: Lists longer than this are built and serialised in a thread.
BIG_LIST = 2000


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
    def __init__(self, provider: ProviderState) -> None:
        self.p = provider
        self._json_cache: dict[tuple[Any, ...], bytes] = {}
        self._m3u_cache: dict[tuple[Any, ...], bytes] = {}

    def forget(self) -> None:
        """Drop the cached answers (the catalog changed)."""
        self._json_cache.clear()
        self._m3u_cache.clear()

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
                             self.p.tz, self.p.settings.timezone, tuple(self.p.output_formats()))
        if fault == "expired":  # XC 2.x: every action gets the account info
            info = api.account_info(self.p.catalog, req)
            info["user_info"]["status"] = "Expired"
            return json.dumps(info).encode()
        keep = 5 if fault == "shrink" else 1
        cacheable = action in api.LIST_ACTIONS or action in api.CATEGORY_ACTIONS \
            or action in ("get_vod_info", "get_series_info")
        key = (action, args.get("category_id"), args.get("vod_id"), args.get("series_id"),
               ctx.base, keep)

        def build() -> bytes:
            value = api.answer(self.p.catalog, req, action, args, keep)
            return json.dumps(value, separators=(",", ":")).encode()

        kind = api.LIST_ACTIONS.get(action)
        big = kind is not None and self._size(kind) > BIG_LIST
        body = self._body(self._json_cache if cacheable else None, key, build, big)
        if fault == "bad_json":
            body.addCallback(lambda data: data[: max(1, len(data) // 2)])
        return self._answer(request, body)

    def _size(self, kind: str) -> int:
        c = self.p.catalog
        return {"live": c.live, "vod": c.vod, "series": c.series}[kind]

    def _body(self, cache: dict[tuple[Any, ...], bytes] | None, key: tuple[Any, ...],
              build: Callable[[], bytes], big: bool) -> Deferred[bytes]:
        """The cached body, or ``build()`` (in a thread when ``big``)."""
        if cache is not None and key in cache:
            return succeed(cache[key])
        pool = getattr(self.p.reactor, "getThreadPool", None)
        # (a reactor with a thread pool runs calls from threads too)
        d = deferToThreadPool(cast(IReactorFromThreads, self.p.reactor), pool(), build) if big and pool else \
            maybeDeferred(build)

        def store(body: bytes) -> bytes:
            if cache is not None:
                if len(cache) > 64:
                    cache.clear()
                cache[key] = body
            return body

        return d.addCallback(store)

    def _answer(self, request: Request, body: Deferred[bytes]) -> object:
        """Send the body once it is ready, with Content-Length, in chunks."""

        def send(data: bytes) -> None:
            if request.channel is None:  # the client left meanwhile
                return
            request.setHeader(b"content-length", b"%d" % len(data))
            if len(data) <= _CHUNK:
                request.write(data)
                request.finish()
            else:
                self.send_chunks(request, _chunked(data))

        def failed(failure: Failure) -> None:
            log.failure("demo provider: building an answer failed", failure)
            if request.channel is not None:
                request.setResponseCode(500)
                request.finish()

        body.addCallback(send).addErrback(failed)
        return NOT_DONE_YET

    # ----- get.php --------------------------------------------------------
    def get_php(self, request: Request, args: dict[str, str]) -> object:
        self.p.stats.request("get.php")
        if self.p.faults.get_php == "reset":
            request.channel.transport.abortConnection()  # type: ignore[union-attr]  # HTTP is on TCP
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
        c = self.p.catalog
        big = c.live + c.vod + c.series * c.seasons * c.episodes > BIG_LIST

        def build() -> bytes:
            return b"".join(m3u_chunks(c, ctx, output, kind == "m3u_plus"))

        if key not in self._m3u_cache:
            self._m3u_cache.clear()  # keep one playlist
        suffix = "_plus" if kind == "m3u_plus" else ""
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(
            b"content-disposition",
            f'attachment; filename="tv_channels_{self.p.settings.username}{suffix}.m3u"'.encode(),
        )
        request.setHeader(b"cache-control", b"must-revalidate")
        return self._answer(request, self._body(self._m3u_cache, key, build, big))

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
                    assert transport is not None  # the request's connection
                    transport.loseConnection()
                else:
                    self.p.stats.request("xmltv_hung")

            BodyWriter(self.p.reactor, request, chunks=_take(chunks, half), at_end=at_end).start()
            return NOT_DONE_YET
        return self.send_chunks(request, chunks)
