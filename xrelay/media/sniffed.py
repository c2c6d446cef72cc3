"""A provider body whose first bytes are read before it is passed on.

:func:`sniff_body` starts reading a response's body, feeds it to a
:class:`~xrelay.media.sniff.Sniffer` until the verdict (media, or an error
page), then pauses the provider connection and fires with a
:class:`SniffedBody`.  That object stands for the response to whoever
streams it on (:class:`~xrelay.media.proxy.StreamProxy` calls its
``deliverBody``): the bytes already read come first, then the rest of the
body, with the provider connection's transport for back-pressure.  So the
client's status and headers are decided from the bytes, and nothing of an
error page ever reaches it.

Cancelling the Deferred (the playback was closed meanwhile), or the
provider staying silent for *timeout* seconds before the verdict, closes the
provider connection.
"""

from __future__ import annotations

from typing import Callable, cast

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import IResponse

from xrelay.media.sniff import Sniffer, Verdict

__all__ = ["SniffedBody", "sniff_body"]


class SniffedBody(Protocol):
    """The body protocol reading the first bytes; after the verdict, the
    response-like object to ``deliverBody`` from."""

    def __init__(self, response: IResponse, sniffer: Sniffer) -> None:
        self.response = response
        self.sniffer = sniffer
        self.code = response.code
        self.headers = response.headers
        self.length = response.length
        self.decided: Deferred[SniffedBody] = Deferred(self._cancel)
        #: bytes read after the verdict, before the hand-over
        self._more: list[bytes] = []
        self._ended: Failure | None = None
        self._consumer: Protocol | None = None
        self._timer: IDelayedCall | None = None

    @property
    def verdict(self) -> Verdict:
        assert self.sniffer.verdict is not None
        return self.sniffer.verdict

    # -- reading the first bytes (a Protocol) ---------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._consumer is not None:
            self._consumer.dataReceived(data)
        elif self.sniffer.verdict is not None:
            self._more.append(data)
        elif self.sniffer.feed(data) is not None:
            self._decide()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._consumer is not None:
            self._consumer.connectionLost(reason)
            return
        self._ended = reason if reason is not None else Failure(ResponseDone())
        if self.sniffer.verdict is None:
            self.sniffer.finish()
            self._decide()

    @property
    def _producer(self) -> IPushProducer | None:
        """The provider connection, as the body's producer (None once ended)."""
        if self._ended is not None or self.transport is None:
            return None
        return cast(IPushProducer, self.transport)

    def _decide(self) -> None:
        self._disarm()
        producer = self._producer
        if producer is not None:
            producer.pauseProducing()  # until the hand-over
        if not self.decided.called:
            self.decided.callback(self)

    # -- the hand-over (a response) -------------------------------------------------------

    @property
    def head(self) -> bytes:
        """Every byte read so far."""
        return self.sniffer.head + b"".join(self._more)

    def deliverBody(self, protocol: Protocol) -> None:
        """Give *protocol* the body: the bytes read, then the rest."""
        head = self.head
        self._more = []
        self._consumer = protocol
        producer = self._producer
        if producer is not None:
            producer.resumeProducing()
        protocol.makeConnection(self.transport)
        if head:
            protocol.dataReceived(head)
        if self._ended is not None:
            protocol.connectionLost(self._ended)

    def discard(self) -> None:
        """The body is not wanted: close the provider connection."""
        producer = self._producer
        if producer is not None:
            producer.stopProducing()

    # -- ending early -------------------------------------------------------------------------

    def _cancel(self, _: Deferred[SniffedBody]) -> None:
        self._disarm()
        self.discard()

    def arm(self, clock: IReactorTime, timeout: float) -> None:
        self._timer = clock.callLater(timeout, self._silent, timeout)

    def _silent(self, timeout: float) -> None:
        self._timer = None
        if not self.decided.called:
            self.discard()
            self.decided.errback(TimeoutError(f"no body within {timeout:g} s"))

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def sniff_body(response: IResponse, clock: IReactorTime, timeout: float,
               leaks: Callable[[str], list[str]] | None = None) -> Deferred[SniffedBody]:
    """Start reading *response*'s body; fires once its first bytes (or its
    end) decide what it is (:attr:`SniffedBody.verdict`)."""
    types = response.headers.getRawHeaders(b"content-type")
    ctype = types[0] if types else None
    body = SniffedBody(response, Sniffer(response.code, ctype, leaks))
    body.arm(clock, timeout)
    response.deliverBody(body)
    return body.decided
