"""Per-client proxied files: movies, episodes and catch-up.

:class:`FileRelay` opens a provider URL for one client and streams it
through a :class:`~xrelay.media.proxy.StreamProxy` (back-pressure: a slow
client slows only its own upstream read).  ``Range`` and ``If-Range`` go to
the provider; the status (200, 206, 416) and the headers a player needs to
seek come back.

Before the client gets a status, the first bytes of a 200 or 206 body are
read (:mod:`xrelay.media.sniffed`) and decide (:mod:`xrelay.media.sniff`):
a container's signature or other binary data is media, whatever type the
provider claims (third-party servers label ``.ts`` and ``.mkv`` movies
``text/vnd.trolltech.linguist``); HTML, JSON, playlists, plain text and
anything naming the provider are an error page and answered 502.  The
client gets the provider's type when it is a media type that fits the
container, else the one of the extension or of the container
(:func:`~xrelay.media.sniff.media_type`).

Every playback holds a provider slot and one of its user's streams
(:mod:`xrelay.relay.slots`, shared with the live relay).  Players open the new
request of a seek before closing the old one; at the account's limit the
old request of the same user, address and item is closed first and its slot
handed over, so the overlap never exceeds the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError, succeed
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
from xrelay.media.sniff import media_type
from xrelay.media.sniffed import SniffedBody, sniff_body
from xrelay.provider.client import ProviderClient, ProviderError, discard_body
from xrelay.relay.slots import Lease, ProviderSlots, SlotsExhausted, UserStreams, Yield

__all__ = ["FileRelay", "Playback", "NoAnswer"]

log = Logger()

#: Seconds to wait for the provider's response headers.
HEADERS_TIMEOUT = 30.0

class NoAnswer(BadGateway):
    """502: the provider could not be reached, or sent nothing (it did not
    refuse the stream)."""


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
    #: The container extension asked for (``mkv``, ``ts``...).
    ext: str = ""
    slot: Lease | None = None
    user_lease: Lease | None = None
    pending: Deferred[IResponse] | None = None
    #: Reading the body's first bytes (before the client gets a status).
    sniffing: Deferred[SniffedBody] | None = None
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
        if self.sniffing is not None and not self.sniffing.called:
            self.sniffing.cancel()
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


class _ProxyResource(Resource):
    """Renders the provider's answer into the client's response (NOT_DONE_YET)."""

    isLeaf = True

    def __init__(self, playback: Playback, body: SniffedBody) -> None:
        super().__init__()
        self.playback = playback
        self.body = body

    def render_GET(self, request: Request) -> Any:
        pb, body = self.playback, self.body
        if pb.closed:
            body.discard()
            pb.release()
            return text_error(request, 503, f"the stream was closed: {pb.close_reason}")
        relay = pb.relay
        request.setResponseCode(body.code)
        pass_headers(body.response, request, relay.scrubber.leaks)
        provided = (body.headers.getRawHeaders(b"content-type") or [None])[0]
        request.setHeader(b"content-type", media_type(pb.ext, provided, body.verdict.container))
        request.setHeader(b"cache-control", b"no-store")
        if request.method == b"HEAD":
            body.discard()
            pb.release()
            return b""
        proxy = StreamProxy(relay.clock, request, name=pb.what,
                            silence_timeout=relay.silence_timeout)
        pb.proxy = proxy
        proxy.done.addCallback(lambda reason: _ended(pb, reason))
        proxy.start(body)  # type: ignore[arg-type]
        return NOT_DONE_YET

    render_HEAD = render_GET


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
                      started=self.clock.seconds(), ext=ext)
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
                raise NoAnswer(f"the provider did not deliver: {e}")
            pb.pending = None
            pb.status = response.code
            if response.code in (200, 206):
                return await self._sniffed(pb, response)
            return self._answer(request, pb, response)
        except BaseException:
            pb.release()
            raise

    async def _sniffed(self, pb: Playback, response: IResponse) -> Any:
        """The proxy of a 200/206 whose first bytes are media; else 502."""
        pb.sniffing = sniff_body(response, self.clock, self.silence_timeout, self.scrubber.leaks)
        try:
            body = await pb.sniffing
        except CancelledError:
            raise Unavailable(f"the stream was closed: {pb.close_reason}")
        except TimeoutError:
            log.info("{what}: the provider sent no body", what=pb.what)
            raise NoAnswer("the provider sent nothing")
        finally:
            pb.sniffing = None
        verdict = body.verdict
        if verdict.media:
            return _ProxyResource(pb, body)
        # Panels answer some failures with 200 and a page that echoes the
        # request (the provider's credentials and host): never pass it on.
        body.discard()
        log.info("{what}: the provider answered with {reason}, not media", what=pb.what,
                 reason=verdict.reason)
        raise BadGateway("the provider answered with an error page, not a stream")

    def _answer(self, request: IRequest, pb: Playback, response: IResponse) -> Any:
        code = response.code
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
