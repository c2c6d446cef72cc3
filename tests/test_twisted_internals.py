"""The Twisted internals xrelay relies on, checked on real loopback transports.

setup.cfg pins Twisted to the releases these were checked against. Two
hot-path modules go below Twisted's public API, and fall back quietly (so
correct but slower) when what they expect is missing, so these tests check
the internals themselves and fail loudly:

* ``xrelay.http.sockwrite`` (zero-copy writes to viewers) takes over and
  gives back the TCP transport's write buffer (``dataBuffer``, ``offset``,
  ``_tempDataBuffer``, ``_tempDataLen``) and uses its producer machinery
  (``producerPaused`` and ``startWriting()``: a drained transport resumes a
  paused producer).  Without them ``direct_writer`` returns None and every
  viewer is written through ``request.write``: a copy per viewer.  Its
  ``send_now`` (an HLS playlist sent as soon as it is finished) calls the
  transport's own ``doWrite`` and reads ``disconnecting`` and
  ``_writeDisconnecting``; without them the answer waits for the reactor's
  next pass.
* ``xrelay.relay.upstream`` widens the provider connection's reads through
  the body transport's ``_producer`` (the TCP transport), whose
  ``bufferSize`` is what ``doRead`` asks the socket for.  Without it the
  relay reads 64 KiB per reactor turn, too little with thousands of viewers.

and two smaller ones:

* ``Request._disconnected`` (``xrelay.media.proxy``, ``xrelay.relay.channels``):
  ``finish()`` raises once the connection is lost, so they read it first.
* ``HTTPConnectionPool._factory`` (``xrelay.provider.client``): the client
  factory that does not log every provider connection.

A failure here means a Twisted release changed them: adapt those modules,
then widen the pin in setup.cfg.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyChannel

from demo_helpers import within
from xrelay.core.config import UpstreamConfig
from xrelay.media.proxy import finish_request
from xrelay.provider.client import ProviderClient
from xrelay.http.sockwrite import DirectWriter, direct_writer, send_now
from xrelay.relay.upstream import UPSTREAM_READ_SIZE, _Body

CHANGED = "Twisted changed an internal xrelay relies on (see tests/test_twisted_internals.py)"


# -- a connected pair of TCP transports on loopback ----------------------------


class Collector(Protocol):
    """The client end: keeps what arrives, fires waiters on a byte count."""

    def __init__(self) -> None:
        self.data = b""
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for waiter in [w for w in self._waiters if len(self.data) >= w[0]]:
            self._waiters.remove(waiter)
            waiter[1].callback(None)

    def received(self, n: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.data) >= n:
            d.callback(None)
        else:
            self._waiters.append((n, d))
        return within(d, 10, what=f"{n} bytes on the client end")


class ServerEnd(Protocol):
    def __init__(self, made: Deferred[tcp.Connection]) -> None:
        self.made = made

    def connectionMade(self) -> None:
        self.made.callback(self.transport)


async def connected_pair() -> tuple[Any, Collector, Any]:
    """(server transport, client protocol, listening port)."""
    made: Deferred[tcp.Connection] = Deferred()
    port = reactor.listenTCP(0, Factory.forProtocol(lambda: ServerEnd(made)), interface="127.0.0.1")
    client = Collector()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
    server = await within(made, 10, what="the server end of the connection")
    return server, client, port


async def close_pair(server: Any, client: Collector, port: Any) -> None:
    client.transport.loseConnection()
    server.loseConnection()
    await port.stopListening()


# -- sockwrite -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_write_buffer_sockwrite_takes_over_and_gives_back() -> None:
    server, client, port = await connected_pair()
    try:
        assert isinstance(server, tcp.Connection), CHANGED
        assert callable(getattr(server.socket, "sendmsg", None)), CHANGED
        for name, kind in (("dataBuffer", bytes), ("offset", int), ("_tempDataBuffer", list),
                           ("_tempDataLen", int), ("producerPaused", bool)):
            assert type(getattr(server, name, None)) is kind, f"{CHANGED}: transport.{name}"
        # write() only queues: the bytes wait in _tempDataBuffer for doWrite.
        server.write(b"headers")
        assert server._tempDataBuffer == [b"headers"] and server._tempDataLen == 7, CHANGED
        assert server.dataBuffer[server.offset:] == b"", CHANGED
        # Taken over (sockwrite sends them itself)...
        server._tempDataBuffer, server._tempDataLen = [], 0
        # ...and what the kernel did not take is given back through dataBuffer.
        server.dataBuffer, server.offset = b"rest of the headers", 0
        server.startWriting()
        await client.received(len(b"rest of the headers"))
        assert client.data == b"rest of the headers", CHANGED
        assert (server.dataBuffer, server._tempDataLen) == (b"", 0), CHANGED
    finally:
        await close_pair(server, client, port)


@pytest_twisted.ensureDeferred
async def test_a_drained_transport_resumes_the_producer_sockwrite_paused() -> None:
    server, client, port = await connected_pair()
    resumed: Deferred[None] = Deferred()

    class Producer:
        def pauseProducing(self) -> None:
            pass

        def resumeProducing(self) -> None:
            if not resumed.called:
                resumed.callback(None)

        def stopProducing(self) -> None:
            pass

    try:
        server.registerProducer(Producer(), True)
        assert server.producer is not None and server.producerPaused is False, CHANGED
        # What DirectWriter._wait_writable does after a short write.
        server.producerPaused = True
        server.startWriting()
        await within(resumed, 10, what=f"{CHANGED}: the transport resuming its producer")
        assert server.producerPaused is False, CHANGED
        server.unregisterProducer()
    finally:
        await close_pair(server, client, port)


@pytest_twisted.ensureDeferred
async def test_send_now_sends_what_the_transport_holds_at_once() -> None:
    server, client, port = await connected_pair()
    try:
        for name in ("doWrite", "disconnecting", "_writeDisconnecting"):
            assert hasattr(server, name), f"{CHANGED}: transport.{name}"

        class Answer:
            transport = server

        server.write(b"a small answer")
        assert server._tempDataLen == 14, CHANGED
        send_now(Answer())
        # sent in this call, not on the reactor's next pass: nothing left, not writing
        assert (server.dataBuffer[server.offset:], server._tempDataLen) == (b"", 0), CHANGED
        assert server not in reactor.getWriters(), CHANGED
        await client.received(14)
        assert client.data == b"a small answer"
        # a closing connection is left to the reactor (its close follows the last byte)
        server.write(b" and a last one")
        server.loseConnection()
        send_now(Answer())
        assert server._tempDataLen + len(server.dataBuffer) - server.offset == 15
        await client.received(29)
    finally:
        client.transport.loseConnection()
        await port.stopListening()


class _Probe(Resource):
    """Records what direct_writer makes of a real response."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[DirectWriter | None] = []

    def render_GET(self, request: Any) -> Any:
        request.write(b"")
        writer = direct_writer(request)
        self.writers.append(writer)
        if writer is not None:
            writer(b"zero-copy")
        else:
            request.write(b"zero-copy")
        request.finish()
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_direct_writer_is_used_on_a_real_response() -> None:
    probe = _Probe()
    port = reactor.listenTCP(0, Site(probe), interface="127.0.0.1")
    try:
        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}/", persistent=False)
        assert await treq.content(response) == b"zero-copy"
    finally:
        await port.stopListening()
    assert len(probe.writers) == 1
    assert isinstance(probe.writers[0], DirectWriter), f"{CHANGED}: viewers would get request.write"


# -- upstream --------------------------------------------------------------------


class _RecordingSocket:
    """A socket that records how much each recv asks for."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Owner:
    """What _Body reports to, in place of an Upstream."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[None] = Deferred()

    def _data(self, data: bytes) -> None:
        self.data += data

    def _lost(self, body: Any, reason: Failure) -> None:
        self.lost.callback(None)


class _Slow(Resource):
    """A body in two parts; the second is sent when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render_GET(self, request: Any) -> Any:
        request.write(b"a" * 1000)
        self.requests.append(request)
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_the_upstream_body_widens_the_reads_of_its_tcp_connection() -> None:
    slow = _Slow()
    port = reactor.listenTCP(0, Site(slow), interface="127.0.0.1")
    origin = f"http://127.0.0.1:{port.getHost().port}"
    client = ProviderClient(reactor, UpstreamConfig(url=origin, username="u", password="p"),
                            persistent=False)
    try:
        response = await within(client.request(f"{origin}/live.ts"), 10, what="the response")
        owner = _Owner()
        body = _Body(owner)  # type: ignore[arg-type]
        response.deliverBody(body)
        connection = getattr(body.transport, "_producer", None)
        assert isinstance(connection, tcp.Connection), f"{CHANGED}: the body transport's _producer"
        assert connection.bufferSize == UPSTREAM_READ_SIZE, CHANGED
        # doRead asks the socket for bufferSize bytes.
        recording = _RecordingSocket(connection.socket)
        connection.socket = recording
        try:
            slow.requests[0].write(b"b" * 300_000)
            slow.requests[0].finish()
            await within(owner.lost, 10, what="the end of the body")
        finally:
            connection.socket = recording._sock
        assert recording.asked and set(recording.asked) == {UPSTREAM_READ_SIZE}, (CHANGED, recording.asked)
        assert owner.data == b"a" * 1000 + b"b" * 300_000
    finally:
        await client.close()
        await port.stopListening()


# -- the smaller ones -------------------------------------------------------------


def test_a_request_remembers_its_lost_connection() -> None:
    request = http.Request(DummyChannel(), False)
    assert request._disconnected is False, CHANGED
    request.connectionLost(Failure(ConnectionDone()))
    assert request._disconnected is True, CHANGED
    try:
        request.finish()
    except RuntimeError:
        pass
    else:
        raise AssertionError(f"{CHANGED}: finish() after a lost connection no longer raises")
    finish_request(request)  # what the proxies call: reads the flag, does not raise


@pytest_twisted.ensureDeferred
async def test_the_connection_pool_builds_its_connections_with_its_factory() -> None:
    assert HTTPConnectionPool._factory is _HTTP11ClientFactory, CHANGED
    built: list[Any] = []

    class Recording(_HTTP11ClientFactory):
        noisy = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    probe = _Probe()
    port = reactor.listenTCP(0, Site(probe), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = Recording
    try:
        response = await Agent(reactor, pool=pool).request(
            b"GET", f"http://127.0.0.1:{port.getHost().port}/".encode())
        assert await treq.content(response) == b"zero-copy"
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
    assert len(built) == 1, f"{CHANGED}: HTTPConnectionPool._factory is not used"
    quiet = ProviderClient(reactor, UpstreamConfig(url="http://127.0.0.1:1", username="u", password="p"))
    assert issubclass(quiet.pool._factory, _HTTP11ClientFactory) and not quiet.pool._factory.noisy
