"""Tests for xrelay.http.sockwrite: zero-copy writes, short writes, framing."""

from __future__ import annotations

import os
import random
import socket

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.web.http import _ChunkedTransferDecoder
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from xrelay.http.sockwrite import DirectWriter, direct_writer


class Pieces(Resource):
    """Streams the given pieces with a DirectWriter, like a viewer does."""

    isLeaf = True

    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__()
        self.pieces = pieces
        self.used_direct: list[bool] = []
        self.pauses = 0
        self.max_buffered = 0

    def render_GET(self, request):
        request.write(b"")
        write = direct_writer(request)
        self.used_direct.append(write is not None)
        resource = self
        state = {"index": 0, "pos": 0, "paused": False}

        class Producer:
            def pauseProducing(self):
                resource.pauses += 1
                state["paused"] = True

            def resumeProducing(self):
                state["paused"] = False
                reactor.callLater(0, pump)

            def stopProducing(self):
                pass

        def pump():
            while not state["paused"] and state["index"] < len(self.pieces):
                piece = self.pieces[state["index"]]
                view = memoryview(piece)[state["pos"]:]
                taken = write(view)
                t = request.transport
                self.max_buffered = max(self.max_buffered, len(t.dataBuffer) + t._tempDataLen)
                if taken < len(view):
                    state["pos"] += taken
                    assert state["paused"], "a short write must pause the producer"
                    return
                state["index"] += 1
                state["pos"] = 0
            if state["index"] == len(self.pieces) and not request.finished:
                request.unregisterProducer()
                request.finish()

        request.registerProducer(Producer(), True)
        pump()
        return NOT_DONE_YET


async def fetch(pieces: list[bytes]) -> tuple[bytes, Pieces]:
    resource = Pieces(pieces)
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    try:
        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}/", persistent=False)
        body = await treq.content(response)
    finally:
        await port.stopListening()
    return body, resource


@pytest_twisted.ensureDeferred
async def test_small_pieces_go_straight_to_the_socket_in_order() -> None:
    pieces = [bytes([i]) * (1000 + i) for i in range(50)]
    body, resource = await fetch(pieces)
    assert resource.used_direct == [True]
    assert body == b"".join(pieces)
    assert resource.pauses == 0


@pytest_twisted.ensureDeferred
async def test_short_writes_pause_then_resume_and_nothing_is_buffered() -> None:
    # Far more than a socket buffer holds: the kernel takes part, the writer
    # pauses the producer, the transport resumes it once writable.
    pieces = [os.urandom(8 * 1024 * 1024), b"tail-1", os.urandom(100_000), b"tail-2"]
    body, resource = await fetch(pieces)
    assert body == b"".join(pieces)
    assert resource.pauses >= 1
    assert resource.max_buffered == 0  # never copied into the transport's buffer


@pytest_twisted.ensureDeferred
async def test_http10_body_is_not_chunked() -> None:
    class Raw(Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.done: Deferred[None] = Deferred()

        def connectionMade(self) -> None:
            self.transport.write(b"GET / HTTP/1.0\r\n\r\n")

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason=None) -> None:
            self.done.callback(None)

    pieces = [b"a" * 5000, os.urandom(3 * 1024 * 1024), b"c"]
    resource = Pieces(pieces)
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    try:
        raw = Raw()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), raw)
        await raw.done
    finally:
        await port.stopListening()
    head, _, body = raw.data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == b"".join(pieces)
    assert resource.used_direct == [True]


def test_no_direct_writer_for_test_transports_or_unstarted_responses() -> None:
    assert direct_writer(DummyRequest([b""])) is None

    class Fake:
        transport = StringTransport()
        startedWriting = True

    assert direct_writer(Fake()) is None


def test_a_tcp_transport_without_the_expected_internals_is_reported_once(monkeypatch) -> None:
    """A Twisted whose transport changed: the slow way, and a warning saying so."""
    from twisted.internet import tcp

    from media_helpers import LogCapture
    from xrelay.http import sockwrite

    monkeypatch.setattr(sockwrite, "_warned", [])
    transport = tcp.Connection.__new__(tcp.Connection)  # no __init__: no _tempDataBuffer
    transport.socket = socket.socket()

    class Request:
        startedWriting = True

    Request.transport = transport
    try:
        with LogCapture() as logs:
            assert direct_writer(Request()) is None
            assert direct_writer(Request()) is None
    finally:
        transport.socket.close()
    warnings = [line for line in logs.lines if "viewers are written the slow way" in line]
    assert len(warnings) == 1 and "_tempDataBuffer, _tempDataLen" in warnings[0], logs.lines


# -- framing under arbitrary short writes, with a scripted socket -------------


class ScriptedSocket:
    """sendmsg takes a random number of bytes each call."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.out = bytearray()

    def sendmsg(self, pieces) -> int:
        total = sum(len(p) for p in pieces)
        n = self.rng.choice([0, 1, 2, 3, 5, self.rng.randrange(total + 1), total, total])
        n = min(n, total)
        if n == 0:
            raise BlockingIOError()
        self.out += b"".join(bytes(p) for p in pieces)[:n]
        return n


class FakeTransport:
    def __init__(self, sock: ScriptedSocket) -> None:
        self.socket = sock
        self.connected = True
        self.disconnecting = False
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataBuffer: list[bytes] = [b"HTTP/1.1 200 OK\r\n\r\n"]
        self._tempDataLen = len(self._tempDataBuffer[0])
        self.producer = None
        self.producerPaused = False
        self.writing = 0

    def startWriting(self) -> None:
        self.writing += 1

    def flush_buffer(self) -> None:
        """What Twisted's doWrite would do with bytes given back to it."""
        pending = self.dataBuffer[self.offset:] + b"".join(self._tempDataBuffer)
        self.socket.out += pending
        self.dataBuffer, self.offset, self._tempDataBuffer, self._tempDataLen = b"", 0, [], 0


class FakeRequest:
    sentLength = 0


def run_script(seed: int, chunked: bool) -> None:
    rng = random.Random(seed)
    sock = ScriptedSocket(rng)
    transport = FakeTransport(sock)
    writer = DirectWriter(FakeRequest(), transport, chunked)  # type: ignore[arg-type]
    pieces = [os.urandom(rng.randrange(1, 3000)) for _ in range(30)]
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            taken = writer(view)
            view = view[taken:]
            if len(view) or writer.mid_frame:
                transport.producerPaused = False  # "writable again"
            if rng.random() < 0.1:
                transport.flush_buffer()
    transport.flush_buffer()
    # Whatever framing is still owed would lead the next write.
    assert writer.mid_frame == bool(writer._tail)
    out = bytes(sock.out) + writer._tail
    head, _, body = out.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK"
    if chunked:
        decoded: list[bytes] = []
        decoder = _ChunkedTransferDecoder(decoded.append, lambda rest: None)
        decoder.dataReceived(body)
        assert b"".join(decoded) == b"".join(pieces)
    else:
        assert body == b"".join(pieces)


def test_framing_survives_arbitrary_short_writes() -> None:
    for seed in range(200):
        run_script(seed, chunked=False)


def test_chunked_framing_survives_arbitrary_short_writes() -> None:
    for seed in range(200):
        run_script(seed, chunked=True)


def test_several_buffers_in_one_call_survive_arbitrary_short_writes() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        sock = ScriptedSocket(rng)
        transport = FakeTransport(sock)
        request = FakeRequest()
        writer = DirectWriter(request, transport, False)  # type: ignore[arg-type]
        pieces = [os.urandom(rng.randrange(1, 3000)) for _ in range(30)]
        index, pos = 0, 0
        while index < len(pieces):
            batch = [memoryview(pieces[index])[pos:], *pieces[index + 1:index + 1 + rng.randrange(5)]]
            left = pos + writer.send_many(batch)
            while index < len(pieces) and left >= len(pieces[index]):
                left -= len(pieces[index])
                index += 1
            pos = left
            transport.producerPaused = False
        transport.flush_buffer()
        head, _, body = bytes(sock.out).partition(b"\r\n\r\n")
        assert head == b"HTTP/1.1 200 OK" and body == b"".join(pieces)
        assert request.sentLength == len(body)


def test_a_chunked_body_sends_one_buffer_per_call() -> None:
    sock = ScriptedSocket(random.Random(1))
    sock.sendmsg = lambda pieces: sum(len(p) for p in pieces)  # type: ignore[method-assign]
    writer = DirectWriter(FakeRequest(), FakeTransport(sock), True)  # type: ignore[arg-type]
    assert writer.send_many([b"abc", b"defg"]) == 3


def test_bound_send_buffer_fixes_the_socket_buffer() -> None:
    import socket as socketlib

    from xrelay.http.sockwrite import bound_send_buffer

    sock = socketlib.socket()

    class Transport:
        socket = sock

    class Request:
        transport = Transport()

    try:
        bound_send_buffer(Request(), 100_000)
        # Linux doubles the value for its bookkeeping.
        size = sock.getsockopt(socketlib.SOL_SOCKET, socketlib.SO_SNDBUF)
        assert size in (100_000, 200_000)
    finally:
        sock.close()
    bound_send_buffer(DummyRequest([b""]))  # no socket: nothing to do
