"""Per-client proxied files: movies, episodes and catch-up.

:class:`FileRelay` opens a provider URL for one client and streams it
through a :class:`~xrelay.media.proxy.StreamProxy` (back-pressure: a slow
client slows only its own upstream read).  ``Range`` and ``If-Range`` go to
the provider; the status (200, 206, 416) and the headers a player needs to
seek come back.

Every playback holds a provider slot and one of its user's streams
(:mod:`xrelay.relay.slots`, shared with the live relay).  Players open the new
request of a seek before closing the old one; at the account's limit the
old request of the same user, address and item is closed first and its slot
handed over, so the overlap never exceeds the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from xrelay.core.config import UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.http.errors import BadGateway, HTTPError, NotFound, Unavailable, text_error
from xrelay.http.request import client_address
from xrelay.media.proxy import StreamProxy, pass_headers
from xrelay.provider.client import ProviderClient, ProviderError, discard_body
from xrelay.relay.slots import Lease, ProviderSlots, SlotsExhausted, UserStreams, Yield

__all__ = ["FileRelay", "Playback", "CONTENT_TYPES"]

log = Logger()

#: Seconds to wait for the provider's response headers.
HEADERS_TIMEOUT = 30.0

#: Content-Type by container extension, when the provider sends none.
CONTENT_TYPES = {"mp4": b"video/mp4", "m4v": b"video/mp4", "mkv": b"video/x-matroska",
                 "ts": b"video/mp2t", "avi": b"video/x-msvideo", "mov": b"video/quicktime",
                 "flv": b"video/x-flv", "webm": b"video/webm"}
#: Client request headers passed to the provider (seeking).
_FORWARDED = (b"range", b"if-range")


@dataclass(eq=False)
class Playback:
    """One client's proxied file: its slot, its user stream, its proxy."""

    relay: FileRelay
    item: Hashable
    user: str
    address: str
    what: str
    started: float = 0.0
    #: Content-Type to send when the provider names none.
    content_type: bytes = b"application/octet-stream"
    slot: Lease | None = None
    user_lease: Lease | None = None
    pending: Deferred[IResponse] | None = None
    proxy: StreamProxy | None = None
    status: int = 0
    closed: bool = False
    close_reason: str = ""
    released: bool = field(default=False, repr=False)

    def yields_to(self, user: str, address: str) -> Yield:
        """The same client (user and address) asking again takes this
        playback's slot: a seek of this item, or a zap to another movie or to
        a live channel, as players open the new stream before closing the old."""
        if user == self.user and address == self.address and not self.closed:
            return Yield.SAME_CLIENT
        return Yield.NO

    def revoke(self) -> Deferred[None]:
        """Give the provider slot up (a seek's handover)."""
        return self.close("its provider connection was handed over")

    def close(self, reason: str) -> Deferred[None]:
        """Close the client and the provider connection; fires once the
        provider connection is gone.  Idempotent."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            log.info("{what} for {user}@{address}: closing: {reason}", what=self.what,
                     user=self.user, address=self.address, reason=reason)
        if self.proxy is not None:
            d = self.proxy.close(reason)
            d.addBoth(lambda _: self.release())
            return d
        if self.pending is not None and not self.pending.called:
            self.pending.cancel()
        self.release()
        return succeed(None)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for lease in (self.slot, self.user_lease):
            if lease is not None:
                lease.release()
        self.relay.playbacks.discard(self)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "what": self.what,
            "user": self.user,
            "address": self.address,
            "status": self.status,
            "bytes": self.proxy.bytes if self.proxy is not None else 0,
            "paused": self.proxy.paused if self.proxy is not None else False,
            "started": self.started,
            "seconds": round(now - self.started, 1),
        }


_PAGE_TYPES = (b"text/", b"json", b"mpegurl", b"xml", b"javascript")


def _is_error_page(response: IResponse) -> bool:
    """A 200 whose Content-Type says it is a page, not media."""
    ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0].lower()
    return any(kind in ctype for kind in _PAGE_TYPES)


class _ProxyResource(Resource):
    """Renders the provider's answer into the client's response (NOT_DONE_YET)."""

    isLeaf = True

    def __init__(self, playback: Playback, response: IResponse) -> None:
        super().__init__()
        self.playback = playback
        self.response = response

    def render_GET(self, request: Request) -> Any:
        pb, response = self.playback, self.response
        if pb.closed:
            discard_body(response).addBoth(lambda _: pb.release())
            return text_error(request, 503, f"the stream was closed: {pb.close_reason}")
        relay = pb.relay
        request.setResponseCode(response.code)
        pass_headers(response, request, relay.scrubber.leaks)
        if not request.responseHeaders.hasHeader(b"content-type"):
            request.setHeader(b"content-type", pb.content_type)
        request.setHeader(b"cache-control", b"no-store")
        if request.method == b"HEAD":
            discard_body(response).addBoth(lambda _: pb.release())
            return b""
        proxy = StreamProxy(relay.clock, request, name=pb.what,
                            silence_timeout=relay.silence_timeout,
                            first_chunk_ok=_media_like(relay.scrubber))
        pb.proxy = proxy
        proxy.done.addCallback(lambda reason: _ended(pb, reason))
        proxy.start(response)
        return NOT_DONE_YET

    render_HEAD = render_GET


def _media_like(scrubber: Any) -> Any:
    """A check of a body's first bytes: media, not a page naming the provider."""
    def check(head: bytes) -> bool:
        start = head[:64].lstrip()
        if start[:1] in (b"<", b"{", b"[") or start.startswith(b"#EXTM3U"):
            return False
        return not scrubber.leaks(head[:4096].decode("latin-1"))
    return check


def _ended(pb: Playback, reason: str) -> None:
    if pb.user_lease is not None:
        pb.user_lease.release()
    assert pb.proxy is not None
    pb.proxy.upstream_closed().addCallback(lambda _: pb.release())


class FileRelay:
    """Per-client proxied files: movies, episodes and catch-up."""

    def __init__(self, clock: IReactorTime, client: ProviderClient, scrubber: Scrubber, slots: ProviderSlots,
                 user_streams: UserStreams, silence_timeout: float,
                 refresh_capacity: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        self.client = client
        self.scrubber = scrubber
        self.slots = slots
        self.user_streams = user_streams
        self.refresh_capacity = refresh_capacity
        self.playbacks: set[Playback] = set()
        #: Seconds without data from the provider (while the client reads)
        #: before a proxied file is closed.
        self.silence_timeout = max(silence_timeout, 15.0)

    def acquire(self, item: Hashable, user: str, address: str, revoke: Any,
                yields_to: Any) -> Deferred[Lease]:
        """A provider slot for ``item`` (the same client's previous stream
        may hand its slot over: a seek or a zap)."""
        self.refresh_capacity()
        return self.slots.acquire(item, user=user, address=address, revoke=revoke,
                                  yields_to=yields_to)

    # -- playing ------------------------------------------------------------------

    def play(self, request: IRequest, user: UserConfig, item: Hashable, url: str, what: str,
             ext: str = "ts") -> Deferred[Any]:
        """Proxy ``url`` (a provider URL: never shown) to this client."""
        pb = Playback(self, item, user.username, client_address(request), what,
                      started=self.clock.seconds(),
                      content_type=CONTENT_TYPES.get(ext, b"application/octet-stream"))
        return Deferred.fromCoroutine(self._play(request, user, pb, url))

    async def _play(self, request: IRequest, user: UserConfig, pb: Playback, url: str) -> Any:
        self.playbacks.add(pb)
        try:
            try:
                pb.slot = await self.acquire(pb.item, pb.user, pb.address, pb.revoke, pb.yields_to)
            except SlotsExhausted as e:
                log.info("refused {what} to {user}@{address}: {reason}", what=pb.what,
                         user=pb.user, address=pb.address, reason=str(e))
                pb.release()
                raise Unavailable(f"busy: {e}")
            if pb.closed:
                pb.release()
                raise Unavailable(f"the stream was closed: {pb.close_reason}")
            pb.user_lease = self.user_streams.open(
                pb.user, user.max_connections, key=pb.item, address=pb.address,
                revoke=lambda: pb.close("the user opened more streams than allowed"))
            headers = {}
            for name in _FORWARDED:
                value = request.getHeader(name)
                if value:
                    headers[name] = [value.encode("latin-1") if isinstance(value, str) else value]
            # HEAD asks the provider with GET too (twisted hides a HEAD
            # answer's Content-Length); the body is then not read.
            pb.pending = self.client.request(url, headers=headers,
                                                timeout=HEADERS_TIMEOUT, what=pb.what)
            try:
                response = await pb.pending
            except CancelledError:
                if pb.closed:
                    raise Unavailable(f"the stream was closed: {pb.close_reason}")
                raise
            except ProviderError as e:
                pb.release()
                log.info("{what}: the provider failed: {error}", what=pb.what, error=str(e))
                raise BadGateway(f"the provider did not deliver: {e}")
            pb.pending = None
            pb.status = response.code
            return self._answer(request, pb, response)
        except BaseException:
            pb.release()
            raise

    def _answer(self, request: IRequest, pb: Playback, response: IResponse) -> Any:
        code = response.code
        if code in (200, 206) and not _is_error_page(response):
            return _ProxyResource(pb, response)
        if code in (200, 206):
            # Panels answer some failures with 200 and a page that echoes the
            # request (the provider's credentials and host): never pass it on.
            discard_body(response).addBoth(lambda _: pb.release())
            log.info("{what}: the provider answered with a page, not a stream", what=pb.what)
            raise BadGateway("the provider answered with an error page, not a stream")
        discard_body(response).addBoth(lambda _: pb.release())
        if code == 416:
            request.setResponseCode(416)
            pass_headers(response, request, self.scrubber.leaks,
                         names=(b"content-range", b"accept-ranges", b"last-modified", b"etag"))
            request.setHeader(b"content-length", b"0")
            return b""
        log.info("{what}: the provider answered HTTP {code}", what=pb.what, code=code)
        if code == 404:
            raise NotFound("not available at the provider")
        if code in (401, 403):
            raise BadGateway("the provider refused this stream")
        raise BadGateway(f"the provider answered HTTP {code}")

    def close_all(self, reason: str = "xrelay is stopping") -> Deferred[Any]:
        return DeferredList([pb.close(reason) for pb in list(self.playbacks)])

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock.seconds()
        return [pb.snapshot(now) for pb in sorted(self.playbacks, key=lambda p: p.started)]
