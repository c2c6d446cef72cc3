"""The HTTP client for the one upstream provider account.

All requests to the provider go through :class:`ProviderClient`: it knows
the provider's address and credentials, builds its URLs, and turns every
failure into a :class:`ProviderError` whose message is safe to log and to
show (it never contains a URL, the host or the credentials).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Protocol as TypingProtocol
from urllib.parse import urlencode, quote

import treq
from treq.client import HTTPClient
from twisted.internet import defer, error as ierror, threads
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorThreads, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import _HTTP11ClientFactory, Agent, HTTPConnectionPool, ResponseDone, BrowserLikeRedirectAgent
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from xrelay.core import jsonparse
from xrelay.core.config import UpstreamConfig
from xrelay.core.reactor import IReactor
from xrelay.core.scrub import Scrubber

__all__ = ["ProviderClient", "ProviderError", "Download", "JsonText", "collect_body", "discard_body",
           "final_url"]

log = Logger()


class ProviderError(Exception):
    """A provider request failed; the message names no secret."""


@dataclass
class Download:
    path: str
    size: int
    content_type: str


class _FileSink:
    """Writes a download to a file from the thread pool, in order, so the
    reactor thread never blocks on the disk (writeback throttling while
    another thread fsyncs can stall a write() for a second)."""

    FLUSH_AT = 1 << 20
    HIGH_WATER = 8 << 20
    LOW_WATER = 2 << 20

    def __init__(self, reactor: IReactorThreads, out: BinaryIO) -> None:
        self.reactor = reactor
        self.out = out
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._inflight = 0
        self._closing: defer.Deferred[None] | None = None
        self.error: OSError | None = None
        self.on_drained: Callable[[], None] | None = None

    @property
    def backlog(self) -> int:
        return self._pending_bytes + self._inflight

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.FLUSH_AT:
            self._flush()

    def finish(self) -> defer.Deferred[None]:
        """Fires once everything written so far is in the file."""
        self._closing = defer.Deferred()
        closing = self._closing
        self._flush()
        if not self._inflight:
            self._settle()
        return closing

    def _flush(self) -> None:
        if self._inflight or not self._pending or self.error is not None:
            return
        data = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._inflight = len(data)
        pool = self.reactor.getThreadPool()
        d = threads.deferToThreadPool(self.reactor, pool, self.out.write, data)
        d.addCallbacks(self._written, self._failed)

    def _written(self, _: Any) -> None:
        self._inflight = 0
        if self.on_drained is not None and self.backlog < self.LOW_WATER:
            self.on_drained()
        if self._pending and (self._pending_bytes >= self.FLUSH_AT or self._closing is not None):
            self._flush()
        elif self._closing is not None:
            self._settle()

    def _failed(self, failure: Failure) -> None:
        self._inflight = 0
        self.error = failure.value if isinstance(failure.value, OSError) else OSError(str(failure.value))
        if self._closing is not None:
            self._settle()

    def _settle(self) -> None:
        closing, self._closing = self._closing, None
        if closing is None:
            return
        if self.error is not None:
            closing.errback(self.error)
        else:
            closing.callback(None)


class _MemorySink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.error: OSError | None = None
        self.backlog = 0
        self.on_drained: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def finish(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class _Sink(TypingProtocol):
    """Where :class:`_BodyToSink` puts a body: :class:`_FileSink` or :class:`_MemorySink`."""

    error: OSError | None
    on_drained: Callable[[], None] | None

    @property
    def backlog(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> defer.Deferred[None]: ...


class _BodyToSink(Protocol):
    """Reads a response body into a sink as it arrives, with a size cap, an
    idle watchdog (treq's timeout only covers the headers) and back-pressure
    from the sink."""

    #: A response body's protocol is connected to a producer (IResponse.deliverBody).
    transport: IPushProducer | None  # type: ignore[assignment]

    def __init__(self, clock: IReactorTime, sink: _Sink, max_bytes: int,
                 idle_timeout: float, what: str) -> None:
        self.clock = clock
        self.sink = sink
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.what = what
        self.size = 0
        self.done: defer.Deferred[int] = defer.Deferred(self._cancel)
        self._idle: IDelayedCall | None = None
        self._paused = False
        sink.on_drained = self._drained

    def connectionMade(self) -> None:
        self._idle = self.clock.callLater(self.idle_timeout, self._silent)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            self._fail(f"{self.what}: larger than {self.max_bytes} bytes")
            return
        if self.sink.error is not None:
            self._disk_error(self.sink.error)
            return
        self.sink.write(data)
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.idle_timeout)
        if not self._paused and self.sink.backlog > getattr(self.sink, "HIGH_WATER", 1 << 62):
            self._paused = True
            if self._idle is not None and self._idle.active():
                self._idle.cancel()  # the disk, not the provider, is slow now
            assert self.transport is not None  # connected: data arrived
            self.transport.pauseProducing()

    def _drained(self) -> None:
        if self._paused and not self.done.called:
            self._paused = False
            assert self.transport is not None  # connected: paused on data
            self.transport.resumeProducing()
            self._idle = self.clock.callLater(self.idle_timeout, self._silent)

    def _disk_error(self, error: OSError) -> None:
        self._fail(f"{self.what}: cannot write the download to disk: {error.strerror or error}")

    def _cancel(self, d: defer.Deferred[int]) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if self.transport is not None:
            self.transport.stopProducing()

    def _silent(self) -> None:
        self._fail(f"{self.what}: no data for {self.idle_timeout:g} s")

    def _fail(self, message: str) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if not self.done.called:
            self.done.errback(ProviderError(message))
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            # (PotentialDataLoss: no Content-Length and no chunking, so the
            # body ends when the connection closes; the content checks decide
            # if it is whole.)
            self.sink.finish().addCallbacks(
                lambda _: None if self.done.called else self.done.callback(self.size),
                lambda f: None if self.done.called else self._disk_error(f.value))
        else:
            self.done.errback(ProviderError(f"{self.what}: connection lost after {self.size} bytes"))


class _QuietClientFactory(_HTTP11ClientFactory):
    """No "Starting factory" log line for every provider connection."""

    noisy = False


class ProviderClient:
    """Talks to the provider with its credentials."""

    def __init__(self, reactor: IReactor, upstream: UpstreamConfig, scrubber: Scrubber | None = None,
                 *, persistent: bool = True) -> None:
        self.reactor = reactor
        self.upstream = upstream
        self.origin = upstream.origin
        self.scrubber = scrubber or Scrubber(upstream)
        self.pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.pool._factory = _QuietClientFactory
        self.pool.maxPersistentPerHost = 4
        agent = BrowserLikeRedirectAgent(Agent(reactor, pool=self.pool), redirectLimit=5)
        self.http = HTTPClient(agent)
        self.headers = {b"User-Agent": [upstream.user_agent.encode()]}

    def set_origin(self, url: str) -> None:
        """Point at another provider address (the demo provider, once it listens)."""
        self.origin = url.rstrip("/")
        self.scrubber.set_origin(self.origin)

    def close(self) -> defer.Deferred[None]:
        return self.pool.closeCachedConnections()

    # -- URLs (these contain secrets: never log them) ---------------------------

    def _creds(self) -> dict[str, str]:
        return {"username": self.upstream.username, "password": self.upstream.password}

    def api_url(self, action: str | None = None, **params: Any) -> str:
        query = self._creds()
        if action:
            query["action"] = action
        query.update({k: str(v) for k, v in params.items()})
        return f"{self.origin}/player_api.php?{urlencode(query)}"

    def playlist_url(self) -> str:
        return f"{self.origin}/get.php?{urlencode({**self._creds(), 'type': 'm3u_plus', 'output': 'ts'})}"

    def xmltv_url(self) -> str:
        return f"{self.origin}/xmltv.php?{urlencode(self._creds())}"

    def _path_creds(self) -> str:
        return f"{quote(self.upstream.username, safe='')}/{quote(self.upstream.password, safe='')}"

    def stream_url(self, kind: str, stream_id: int, ext: str) -> str:
        """``kind`` is ``live``, ``movie`` or ``series``."""
        return f"{self.origin}/{kind}/{self._path_creds()}/{int(stream_id)}.{ext}"

    def timeshift_url(self, duration: int, start: str, stream_id: int, ext: str = "ts") -> str:
        return f"{self.origin}/timeshift/{self._path_creds()}/{int(duration)}/{quote(start, safe=':-')}/{int(stream_id)}.{ext}"

    def asset_url(self, path_and_query: str) -> str:
        return f"{self.origin}/{path_and_query.lstrip('/')}"

    # -- requests -----------------------------------------------------------

    def _describe(self, failure: Failure, what: str, timeout: float) -> ProviderError:
        if isinstance(failure.value, ProviderError):
            return failure.value
        if failure.check(defer.CancelledError, ierror.TimeoutError):
            return ProviderError(f"{what}: no answer within {timeout:g} s")
        if failure.check(ierror.ConnectionRefusedError):
            return ProviderError(f"{what}: connection refused")
        if failure.check(ierror.DNSLookupError):
            return ProviderError(f"{what}: the provider's host name does not resolve")
        if failure.check(ierror.ConnectError):
            return ProviderError(f"{what}: cannot connect")
        name = type(failure.value).__name__
        return ProviderError(self.scrubber.text(f"{what}: {name}"))

    def request(self, url: str, *, method: str = "GET", headers: dict[bytes, list[bytes]] | None = None,
                timeout: float = 30.0, what: str = "request") -> defer.Deferred[IResponse]:
        """An unbuffered request (for streams and downloads); redirects are followed.

        *timeout* covers the time to the response headers.  A timeout fails
        with a ProviderError; cancelling the returned Deferred fails it with
        CancelledError, so callers can tell the two apart.
        """
        all_headers = dict(self.headers)
        all_headers.update(headers or {})
        d = self.http.request(method, url, headers=Headers(all_headers), unbuffered=True)
        timed_out = []

        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        timer = self.reactor.callLater(timeout, expire)

        def settle(result: IResponse | Failure) -> IResponse | Failure:
            if timer.active():
                timer.cancel()
            if not isinstance(result, Failure):
                return result
            if timed_out:
                return Failure(ProviderError(f"{what}: no answer within {timeout:g} s"))
            if _is_cancellation(result):
                return Failure(defer.CancelledError())
            return Failure(self._describe(result, what, timeout))

        return d.addBoth(settle)

    async def download(self, url: str, path: str, *, what: str, timeout: float = 300.0,
                       idle_timeout: float = 60.0, max_bytes: int = 2 * 1024**3) -> Download:
        """Stream a response body into *path* (created or truncated)."""
        response = await self.request(url, timeout=timeout, what=what)
        if response.code != 200:
            await discard_body(response)
            raise ProviderError(f"{what}: HTTP {response.code}")
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode("latin-1")
        with open(path, "wb") as out:
            body = _BodyToSink(self.reactor, _FileSink(self.reactor, out), max_bytes, idle_timeout, what)
            response.deliverBody(body)
            size = await body.done
            await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), out.flush)
        return Download(path=path, size=size, content_type=ctype)

    async def get_json_text(self, action: str, *, scratch_dir: str, timeout: float = 300.0,
                            idle_timeout: float = 60.0, max_bytes: int = 1024**3) -> JsonText:
        """Fetch a big player_api.php list through a scratch file and return
        its text, checked to look like JSON, for parsing row by row."""
        fd, path = _scratch(scratch_dir, action)
        try:
            await self.download(self.api_url(action), path, what=action, timeout=timeout,
                                idle_timeout=idle_timeout, max_bytes=max_bytes)
            return await threads.deferToThread(_read_json_text, path, action)
        finally:
            os.close(fd)
            _unlink(path)

    async def get_json(self, action: str | None = None, *, timeout: float = 120.0,
                       idle_timeout: float = 60.0, max_bytes: int = 1024**3, **params: Any) -> Any:
        """Fetch one small player_api.php answer (the account, an item's
        details) and parse it off the reactor thread.  Big lists go through
        :meth:`get_json_text` and a scratch file instead."""
        what = action or "account info"
        response = await self.request(self.api_url(action, **params), timeout=timeout, what=what)
        if response.code != 200:
            await discard_body(response)
            raise ProviderError(f"{what}: HTTP {response.code}")
        body = await collect_body(self.reactor, response, max_bytes, idle_timeout, what)
        return await threads.deferToThread(parse_json_answer, body, what)


@dataclass
class JsonText:
    """A downloaded JSON answer, decoded but not parsed (for parsing row by
    row: :func:`xrelay.core.jsonparse.iter_rows`)."""

    text: str
    head: bytes
    size: int
    what: str

    def malformed(self) -> "ProviderError":
        """The error for a document found malformed while parsing it."""
        return _not_json(self.head, self.size, self.what)


def _read_json_text(path: str, what: str) -> JsonText:
    with open(path, "rb") as f:
        head = f.read(512)
        size = os.fstat(f.fileno()).st_size
    _check_head(head, what)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except ValueError:
        raise _not_json(head, size, what) from None
    return JsonText(text, head, size, what)


def _is_cancellation(failure: Failure) -> bool:
    if failure.check(defer.CancelledError):
        return True
    reasons = getattr(failure.value, "reasons", None) or []
    return any(isinstance(r, Failure) and r.check(defer.CancelledError) for r in reasons)


def _scratch(directory: str, what: str) -> tuple[int, str]:
    import tempfile

    safe = "".join(c if c.isalnum() else "_" for c in what)
    return tempfile.mkstemp(prefix=f".{safe}-", suffix=".part", dir=directory)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def parse_json_answer(body: bytes, what: str) -> Any:
    """Parse a JSON answer, naming what is wrong in one line."""
    _check_head(body[:512], what)
    try:
        return jsonparse.loads(body)
    except ValueError:
        raise _not_json(body[:512], len(body), what) from None


def _check_head(head: bytes, what: str) -> None:
    head = head.lstrip()
    if not head:
        raise ProviderError(f"{what}: empty answer")
    if head[:1] == b"<":
        raise ProviderError(f"{what}: the provider answered with HTML, not JSON")


def _not_json(head: bytes, size: int, what: str) -> ProviderError:
    head = head.lstrip()
    if head[:1] in (b"{", b"["):
        return ProviderError(f"{what}: malformed or truncated JSON ({size} bytes)")
    word = head[:20].decode("utf-8", "replace").split()[0] if head.split() else ""
    return ProviderError(f"{what}: not JSON (starts with {word!r})")


async def collect_body(clock: IReactorTime, response: IResponse, max_bytes: int, idle: float, what: str) -> bytes:
    sink = _MemorySink()
    body = _BodyToSink(clock, sink, max_bytes, idle, what)
    response.deliverBody(body)
    await body.done
    return b"".join(sink.chunks)


class _Discard(Protocol):
    #: A response body's protocol is connected to a producer (IResponse.deliverBody).
    transport: IPushProducer | None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionMade(self) -> None:
        # A body we will not read: close that connection instead of
        # draining a possibly endless stream.
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.closed.called:
            self.closed.callback(None)


def discard_body(response: IResponse) -> defer.Deferred[None]:
    """Drop a provider response body we do not want, closing its connection;
    fires once that connection is done with."""
    body = _Discard()
    try:
        response.deliverBody(body)
    except Exception:  # already delivered / the connection is gone
        return defer.succeed(None)
    return body.closed


def final_url(response: IResponse, fallback: str) -> str:
    """The URL the provider finally answered from (after redirects): an HLS
    playlist's relative URIs resolve against it."""
    request = getattr(response, "request", None)
    uri = getattr(request, "absoluteURI", None)
    if isinstance(uri, bytes):
        return uri.decode("latin-1")
    return uri or fallback
