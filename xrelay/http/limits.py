"""Bounded HTTP requests: deadlines, sizes, and connections per client address.

:class:`LimitedSite` is a :class:`twisted.web.server.Site` whose channels
(:class:`LimitedChannel`, an :class:`~twisted.web.http.HTTPChannel`)
enforce :class:`Limits` before any resource sees a request:

* the request line and headers must arrive within ``header_timeout``
  seconds (from the connection, or from the first byte of a kept-alive
  connection's next request), the body within ``body_timeout`` seconds of
  the headers: else 408 and the connection closes, however slowly the
  client trickles bytes.  A kept-alive connection without a request closes
  after ``idle_timeout``;
* a request line longer than ``max_request_line`` gets 414; a header line
  longer than ``max_header_line``, more than ``max_headers`` header lines
  or a head of more than ``max_header_size`` bytes gets 431; two ``Host``
  headers get 400;
* a body larger than ``max_body`` gets 413: at once for a Content-Length
  (nothing of the body is read, and no ``100 Continue`` is sent), as soon
  as it passes the limit for a chunked body.  The body is kept in memory
  (:attr:`Request.content` is a bounded :class:`~io.BytesIO`), never in a
  temporary file;
* a client address holds at most ``max_per_address`` connections; more
  are closed as soon as they are accepted (loopback counts too unless
  ``cap_loopback`` is off);
* a *body gate* (``LimitedSite(body_gate=...)``) sees each request that
  has a body once its headers are in, and may answer it (an unauthenticated
  request, say) without its body being read.

A refused request is answered by the channel itself and the connection
closes: the answer is written, the sending side is shut, and what the
client still sends is read and dropped for at most ``linger`` seconds and
``max_linger_bytes`` bytes (so that the client sees the answer rather than
a reset), then the connection is cut.  Refusals are counted in
:attr:`LimitedSite.stats` (for ``/metrics``) and logged, at most
``LOG_BURST`` lines a minute.  Every timer runs on the reactor given to the
site, so tests drive it with :class:`~twisted.internet.task.Clock`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING, Any, Callable, Iterable

from twisted.internet.interfaces import IAddress, IConsumer, IDelayedCall, IReactorTime, ITCPTransport
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Site

from xrelay.http.throttle import client_key

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from twisted.python.failure import Failure

__all__ = ["Limits", "RequestHead", "EarlyAnswer", "BodyGate", "LimitedSite", "LimitedChannel",
           "REFUSAL_REASONS"]

log = Logger()

#: Refusal log lines written per minute at most (the rest are counted).
LOG_BURST = 20

#: Every reason counted in :attr:`LimitedSite.stats`.
REFUSAL_REASONS = ("body_too_large", "uri_too_long", "headers_too_large", "duplicate_host",
                   "header_timeout", "body_timeout", "early_answer", "connections_per_address")

_REASON_PHRASES = {400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
                   408: b"Request Timeout", 413: b"Content Too Large", 414: b"URI Too Long",
                   429: b"Too Many Requests", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class Limits:
    """What one request and one client address may cost (seconds, bytes)."""

    #: Request line and headers, from the connection or the request's first byte.
    header_timeout: float = 10.0
    #: The body, from the end of the headers.
    body_timeout: float = 20.0
    #: A kept-alive connection waiting for its next request.
    idle_timeout: float = 30.0
    #: Largest request body (the API and admin forms need a few KB).
    max_body: int = 64 * 1024
    #: Longest request line (method, URI, version).
    max_request_line: int = 16 * 1024
    #: Longest header line.
    max_header_line: int = 8 * 1024
    #: Request line and header lines together.
    max_header_size: int = 32 * 1024
    #: Most header lines.
    max_headers: int = 100
    #: Most open connections per client address (0: no cap).
    max_per_address: int = 64
    #: Whether loopback clients (a reverse proxy on the same machine) are capped too.
    cap_loopback: bool = True
    #: After a refusal: how long the rest of the request is read and dropped...
    linger: float = 2.0
    #: ...and how many bytes of it at most.
    max_linger_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "linger"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("max_body", "max_request_line", "max_header_line", "max_header_size",
                     "max_headers", "max_linger_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.idle_timeout < 0 or self.max_per_address < 0:
            raise ValueError("idle_timeout and max_per_address must be >= 0")


@dataclass(frozen=True)
class RequestHead:
    """A request whose headers are in and whose body is not (for a body gate)."""

    method: bytes
    #: The request target as sent (path and query).
    uri: bytes
    headers: Headers
    client: IAddress
    #: The Content-Length, or None for a chunked body.
    length: int | None

    @property
    def path(self) -> bytes:
        return self.uri.split(b"?", 1)[0]


@dataclass(frozen=True)
class EarlyAnswer:
    """A body gate's answer, sent instead of reading the body."""

    code: int
    body: bytes
    #: Extra headers, e.g. ``((b"content-type", b"application/json"),)``.
    headers: tuple[tuple[bytes, bytes], ...] = ()


#: Sees a request with a body before the body is read: an answer, or None
#: to read the body and route the request as usual.
BodyGate = Callable[[RequestHead], "EarlyAnswer | None"]


class _BoundedBody(BytesIO):
    """A request body in memory that keeps no byte past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.overrun = False

    def write(self, data: ReadableBuffer, /) -> int:
        size = memoryview(data).nbytes
        if self.overrun or self.tell() + size > self.limit:
            self.overrun = True
            return 0
        return super().write(data)


def _response(code: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection."""
    extra = list(headers)
    names = {name.lower() for name, _ in extra}
    if b"content-type" not in names:
        extra.append((b"Content-Type", b"text/plain; charset=utf-8"))
    lines = [b"HTTP/1.1 %d %s" % (code, _REASON_PHRASES.get(code, b"Error"))]
    lines += [name + b": " + value for name, value in extra]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"Cache-Control: no-store"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _text(message: str) -> bytes:
    return (message + "\n").encode()


# What a channel is doing, for its deadlines and refusals.
_AWAIT, _HEAD, _BODY, _HANDLING, _CLOSING = "await", "head", "body", "handling", "closing"


class _IConnection(ITCPTransport, IConsumer):
    """An HTTP channel's transport: a TCP (or TLS) connection, which also
    takes producers (``Protocol.transport`` only says ``ITransport``)."""


class LimitedChannel(HTTPChannel):
    """An HTTP/1.1 channel that enforces its site's :class:`Limits`."""

    site: LimitedSite
    transport: _IConnection | None
    #: Set by the site (``HTTPFactory.buildProtocol``) to its reactor's
    #: ``callLater``, which passes on extra arguments.
    callLater: Callable[..., IDelayedCall]
    #: The client address as counted by the site (None: not counted).
    client_key: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self._phase = _AWAIT
        self._timer: IDelayedCall | None = None
        self._await_bytes = 0
        self._head_line = b""
        self._head_size = 0
        self._header_lines = 0
        self._dropped = 0
        self._released = False

    @property
    def limits(self) -> Limits:
        return self.site.limits

    # -- connection ---------------------------------------------------------------

    def connectionMade(self) -> None:
        limits = self.limits
        # Longer lines are refused (414/431) before Twisted's own checks (400).
        self.MAX_LENGTH = max(limits.max_request_line, limits.max_header_line)
        self.totalHeadersSize = limits.max_header_size + 1
        self.maxHeaders = limits.max_headers + 1
        super().connectionMade()
        self._arm(limits.header_timeout, self._head_expired)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._disarm()
        super().connectionLost(reason)
        if not self._released:
            self._released = True
            self.site.connection_closed(self)

    def dataReceived(self, data: bytes) -> None:
        if self._phase == _CLOSING:
            self._dropped += len(data)
            if self._dropped > self.limits.max_linger_bytes and self.transport is not None:
                self.transport.abortConnection()
            return
        if self._phase == _AWAIT and data:
            self._await_bytes += len(data)
            if self._timer is None:  # a kept-alive connection's next request
                self._arm(self.limits.header_timeout, self._head_expired)
        super().dataReceived(data)

    # -- the head ---------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if self._phase == _CLOSING:
            return
        limits = self.limits
        if self._phase == _AWAIT:
            if line:
                if len(line) > limits.max_request_line:
                    self._refuse(414, _text("request line too long"), "uri_too_long")
                    return
                self._phase = _HEAD
                self._head_line = line
                self._head_size = len(line)
                self._header_lines = 0
        elif self._phase == _HEAD and line:
            self._head_size += len(line)
            self._header_lines += 1
            if (len(line) > limits.max_header_line or self._head_size > limits.max_header_size
                    or self._header_lines > limits.max_headers):
                self._refuse(431, _text("request headers too large"), "headers_too_large")
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._phase == _AWAIT:
            self._refuse(414, _text("request line too long"), "uri_too_long")
        elif self._phase == _HEAD:
            self._refuse(431, _text("request headers too large"), "headers_too_large")

    def allHeadersReceived(self) -> None:
        self._disarm()
        limits = self.limits
        request = self.requests[-1]
        if len(request.requestHeaders.getRawHeaders(b"host") or ()) > 1:
            self._refuse(400, _text("more than one Host header"), "duplicate_host")
            return
        length: int | None = self.length
        if length is not None and length > limits.max_body:
            self._refuse(413, _text(f"request body too large (at most {limits.max_body} bytes)"),
                         "body_too_large")
            return
        gate = self.site.body_gate
        if length != 0 and gate is not None:
            answer = gate(self._request_head(request.requestHeaders, length))
            if answer is not None:
                self._refuse(answer.code, answer.body, "early_answer", answer.headers)
                return
        # The request's body buffer: a length of 0 makes Twisted choose an
        # in-memory one (never a temporary file), replaced by a bounded one.
        self.length = 0
        try:
            super().allHeadersReceived()
        finally:
            self.length = length
        request.content = _BoundedBody(limits.max_body)
        if length != 0:
            self._phase = _BODY
            self._arm(limits.body_timeout, self._body_expired)

    def _request_head(self, headers: Headers, length: int | None) -> RequestHead:
        parts = self._head_line.split(b" ")
        method, uri = (parts[0], parts[1]) if len(parts) == 3 else (b"", b"")
        assert self.transport is not None
        return RequestHead(method, uri, headers, self.transport.getPeer(), length)

    # -- the body -------------------------------------------------------------------------

    def rawDataReceived(self, data: bytes) -> None:
        if self._phase == _CLOSING:
            return
        super().rawDataReceived(data)
        if self._phase == _BODY and self._overrun():
            self._refuse_body()

    def allContentReceived(self) -> None:
        if self._phase == _CLOSING:
            return
        if self._overrun():
            self._refuse_body()
            return
        self._disarm()
        self._phase = _HANDLING
        super().allContentReceived()

    def _overrun(self) -> bool:
        content = getattr(self.requests[-1], "content", None) if self.requests else None
        return isinstance(content, _BoundedBody) and content.overrun

    def _refuse_body(self) -> None:
        self._refuse(413, _text(f"request body too large (at most {self.limits.max_body} bytes)"),
                     "body_too_large")

    # -- between requests ----------------------------------------------------------------

    def requestDone(self, request: Any) -> None:
        # Before Twisted replays the next pipelined request (in this call).
        self._phase = _AWAIT
        self._await_bytes = 0
        self._head_line = b""
        super().requestDone(request)

    # -- deadlines --------------------------------------------------------------------------

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.callLater(seconds, self._expired, expired)

    def _expired(self, expired: Callable[[], None]) -> None:
        self._timer = None
        expired()

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _head_expired(self) -> None:
        if self._phase == _HEAD or (self._phase == _AWAIT and self._await_bytes):
            self._refuse(408, _text("request headers not received in time"), "header_timeout")
        elif self._phase == _AWAIT:  # a connection that sent nothing
            self._refuse(0, b"", "header_timeout")

    def _body_expired(self) -> None:
        if self._phase == _BODY:
            self._refuse(408, _text("request body not received in time"), "body_timeout")

    # -- refusing ------------------------------------------------------------------------------

    def _refuse(self, code: int, body: bytes, reason: str,
                headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Answer *code* (0: nothing), then close without reading on."""
        if self._phase == _CLOSING or self.transport is None:
            return
        self._phase = _CLOSING
        self._disarm()
        self.setTimeout(None)
        unread = self.clearLineBuffer()
        self.site.refused(reason, code, self.transport.getPeer())
        transport = self.transport
        if code:
            transport.write(_response(code, body, headers))
        # Our reads go on (and are dropped) so that the client, still
        # sending, reads the answer instead of a reset.
        transport.unregisterProducer()
        resume = getattr(transport, "resumeProducing", None)
        if callable(resume):
            resume()
        half_close = getattr(transport, "loseWriteConnection", None)
        if callable(half_close):
            half_close()
            self._timer = self.callLater(self.limits.linger, transport.abortConnection)
            self.dataReceived(unread)  # counted as dropped
        else:
            transport.loseConnection()


class _RefusalLog:
    """Logs refusals, at most :data:`LOG_BURST` a minute; counts the rest."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.window = float("-inf")
        self.written = 0
        self.skipped = 0

    def __call__(self, reason: str, code: int, address: str) -> None:
        now = self.clock.seconds()
        if now >= self.window + 60:
            if self.skipped:
                log.info("{skipped} more requests refused in the last minute (not logged)",
                         skipped=self.skipped)
            self.window, self.written, self.skipped = now, 0, 0
        if self.written >= LOG_BURST:
            self.skipped += 1
            return
        self.written += 1
        log.info("refused a request from {address}: {reason} ({code})", address=address,
                 reason=reason.replace("_", " "), code=code or "closed", event="http_refused")


class LimitedSite(Site):
    """A :class:`~twisted.web.server.Site` with :class:`Limits`.

    ``LimitedSite(resource, limits, reactor=reactor, body_gate=gate)``;
    other keyword arguments (``logFormatter``...) go to ``Site``.  The
    idle timeout is ``limits.idle_timeout`` (Site's ``timeout``).
    """

    protocol = LimitedChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, limits: Limits | None = None, *,
                 reactor: IReactorTime, body_gate: BodyGate | None = None, **kwargs: Any) -> None:
        self.limits = limits or Limits()
        super().__init__(resource, reactor=reactor,
                         timeout=self.limits.idle_timeout or None, **kwargs)
        self.body_gate = body_gate
        #: Refusals by reason (:data:`REFUSAL_REASONS`) since start.
        self.stats: Counter[str] = Counter({reason: 0 for reason in REFUSAL_REASONS})
        self._open: dict[str, int] = {}
        self._capped: set[str] = set()
        self._log = _RefusalLog(reactor)

    def _counted_key(self, addr: IAddress | None) -> str | None:
        host = getattr(addr, "host", None)
        if not isinstance(host, str) or not self.limits.max_per_address:
            return None
        key = client_key(host)
        if not self.limits.cap_loopback:
            try:
                if ipaddress.ip_address(key).is_loopback:
                    return None
            except ValueError:
                return None
        return key

    def buildProtocol(self, addr: IAddress | None) -> Any:
        key = self._counted_key(addr)
        if key is not None and self._open.get(key, 0) >= self.limits.max_per_address:
            self.stats["connections_per_address"] += 1
            if key not in self._capped:  # logged once until the address is below its cap
                self._capped.add(key)
                log.warn("{address} has {count} connections open: refusing more",
                         address=key, count=self._open[key], event="connections_capped")
            return None
        channel = super().buildProtocol(addr)
        if key is not None and channel is not None:
            self._open[key] = self._open.get(key, 0) + 1
            channel.client_key = key
        return channel

    def connection_closed(self, channel: LimitedChannel) -> None:
        """Called once by each channel when its connection is gone."""
        key = channel.client_key
        if key is None or key not in self._open:
            return
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
        if self._open.get(key, 0) < self.limits.max_per_address:
            self._capped.discard(key)

    def refused(self, reason: str, code: int, peer: IAddress) -> None:
        """Count (and maybe log) one refused request."""
        self.stats[reason] += 1
        self._log(reason, code, str(getattr(peer, "host", "-")))

    def open_connections(self) -> dict[str, int]:
        """Open connections per counted client address."""
        return dict(self._open)
