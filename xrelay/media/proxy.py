"""Streaming one upstream response body into one client request.

:class:`StreamProxy` is the body protocol of a treq response (read with
``response.deliverBody``) and, at the same time, the push producer
registered on the client's request.  The client's socket therefore paces
the provider's: when the client's send buffer fills, twisted.web pauses
the proxy, which pauses the upstream transport (the provider connection
stops being read), so a slow client slows only its own upstream read and
memory stays bounded by the socket buffers.

Ending is idempotent and may be triggered from any side, in any order:
the upstream body ends (the request is finished), the upstream drops (the
client connection is aborted, so the player sees a short body), the client
leaves (the upstream connection is closed), the owner calls :meth:`close`
(a slot handover), or the upstream is silent for ``silence_timeout``
seconds while the client is not paused.

:func:`pass_headers` copies the provider's response headers a player needs
(and only those) onto the client's response, dropping any value that would
reveal the provider.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IRequest, IResponse
from twisted.web.server import Request
from zope.interface import implementer

__all__ = ["StreamProxy", "pass_headers", "PASSED_HEADERS", "abort_request"]

log = Logger()

#: Provider response headers passed back to players (seeking needs them).
PASSED_HEADERS: tuple[bytes, ...] = (
    b"content-type",
    b"content-length",
    b"content-range",
    b"accept-ranges",
    b"last-modified",
    b"etag",
)


def pass_headers(response: IResponse, request: IRequest,
                 leaks: Callable[[str], list[str]] | None = None,
                 names: Iterable[bytes] = PASSED_HEADERS) -> None:
    """Copy the allowed headers of ``response`` onto ``request``.

    A value in which ``leaks`` finds a secret (the provider's host, user
    name or password) is dropped, whatever the header.
    """
    for name in names:
        if name == b"content-length":
            # twisted's HTTP client keeps Content-Length out of the headers.
            if response.length != UNKNOWN_LENGTH:
                request.setHeader(name, b"%d" % response.length)
            continue
        values = response.headers.getRawHeaders(name)
        if not values:
            continue
        value = values[0]
        if leaks is not None and leaks(value.decode("latin-1")):
            log.warn("dropped the provider's {header} header: it names the provider",
                     header=name.decode())
            continue
        request.setHeader(name, value)


def abort_request(request: IRequest) -> None:
    """Cut the client's connection at once (idempotent)."""
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.abortConnection()


def finish_request(request: Request) -> None:
    """Finish a response if the client is still there."""
    if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
        return
    if getattr(request, "producer", None) is not None:
        request.unregisterProducer()
    request.finish()




@implementer(IPushProducer)
class StreamProxy(Protocol):
    """Copies one upstream body into one client request; see the module docs.

    ``done`` fires (never fails) with the reason once both sides are
    detached; ``upstream_closed`` fires once the provider connection is
    gone (what a slot handover waits for).
    """

    #: A response body's protocol is connected to a producer (IResponse.deliverBody).
    transport: IPushProducer | None  # type: ignore[assignment]

    def __init__(self, clock: IReactorTime, request: Request, *,
                 silence_timeout: float = 30.0, name: str = "stream") -> None:
        self.clock = clock
        self.request = request
        self.silence_timeout = silence_timeout
        self.name = name
        self.bytes = 0
        self.paused = False
        self.reason = ""
        self.detached = False
        self.upstream_done = False
        self.done: Deferred[str] = Deferred()
        self._upstream_closed: Deferred[None] = Deferred()
        self._watchdog: IDelayedCall | None = None

    # -- starting ---------------------------------------------------------

    def start(self, response: IResponse) -> None:
        """Register on the request and start reading ``response``'s body."""
        request = self.request
        if getattr(request, "_disconnected", False) or getattr(request, "channel", None) is None:
            self._detach("client gone before the body", stop_upstream=True)
            response.deliverBody(self)
            return
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._client_finished)
        response.deliverBody(self)

    def connectionMade(self) -> None:
        if self.detached:
            self._stop_upstream()
            return
        if self.paused:
            assert self.transport is not None  # connected
            self.transport.pauseProducing()
        else:
            self._arm_watchdog()

    # -- upstream side (Protocol) -------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.detached:
            return
        self.bytes += len(data)
        if not self.paused:
            self._arm_watchdog()
        self.request.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.upstream_done = True
        self._disarm_watchdog()
        if not self.detached:
            if reason is None or reason.check(ResponseDone, PotentialDataLoss):
                self._detach("finished", finish=True)
            else:
                log.info("{name}: the provider connection dropped after {bytes} bytes",
                         name=self.name, bytes=self.bytes)
                self._detach("the provider connection dropped", abort=True)
        if not self._upstream_closed.called:
            self._upstream_closed.callback(None)

    # -- client side (IPushProducer) ------------------------------------------

    def pauseProducing(self) -> None:
        if self.paused:
            return
        self.paused = True
        self._disarm_watchdog()
        if self.transport is not None and not self.upstream_done:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self.detached or self.upstream_done:
            return
        if self.transport is not None:
            self.transport.resumeProducing()
            self._arm_watchdog()

    def stopProducing(self) -> None:
        self._detach("client gone", stop_upstream=True)

    def _client_finished(self, result: object) -> None:
        if isinstance(result, Failure):
            self._detach("client gone", stop_upstream=True)
        return None

    # -- ending ---------------------------------------------------------------

    def close(self, reason: str) -> Deferred[None]:
        """Cut both sides now; fires once the provider connection is closed."""
        self._detach(reason, abort=True, stop_upstream=True)
        return self.upstream_closed()

    def upstream_closed(self) -> Deferred[None]:
        """A fresh Deferred firing once the provider connection is gone."""
        if self._upstream_closed.called:
            return succeed(None)
        out: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            if not out.called:
                out.callback(None)
            return result

        self._upstream_closed.addBoth(fire)
        return out

    def _detach(self, reason: str, *, finish: bool = False, abort: bool = False,
                stop_upstream: bool = False) -> None:
        if self.detached:
            return
        self.detached = True
        self.reason = reason
        self._disarm_watchdog()
        if stop_upstream:
            self._stop_upstream()
        if finish:
            try:
                finish_request(self.request)
            except RuntimeError:  # the client left while we finished
                pass
        elif abort:
            abort_request(self.request)
        self.done.callback(reason)

    def _stop_upstream(self) -> None:
        if self.upstream_done or self.transport is None:
            return
        try:
            self.transport.stopProducing()
        except Exception:  # the connection is already going away
            log.debug("{name}: stopProducing on a closed upstream", name=self.name)

    # -- silence watchdog -------------------------------------------------------

    def _arm_watchdog(self) -> None:
        if not self.silence_timeout or self.detached or self.upstream_done:
            return
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self.silence_timeout)
        else:
            self._watchdog = self.clock.callLater(self.silence_timeout, self._silent)

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _silent(self) -> None:
        self._watchdog = None
        log.info("{name}: no data from the provider for {seconds} s, closing",
                 name=self.name, seconds=self.silence_timeout)
        self._detach("the provider went silent", abort=True, stop_upstream=True)

