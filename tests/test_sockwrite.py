"""Tests for xrelay.sockwrite: zero-copy writes that keep byte order."""

from __future__ import annotations

import os

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from xrelay.sockwrite import _rest, direct_writer


class Pieces(Resource):
    """Writes the given pieces through direct_writer, then finishes."""

    isLeaf = True

    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__()
        self.pieces = pieces
        self.used_direct: list[bool] = []
        self.paused = 0

    def render_GET(self, request):
        request.write(b"")
        write = direct_writer(request)
        self.used_direct.append(write is not None)

        resource = self

        class Producer:
            def pauseProducing(self):
                resource.paused += 1

            def resumeProducing(self):
                pass

            def stopProducing(self):
                pass

        request.registerProducer(Producer(), True)
        for piece in self.pieces:
            write(piece)
        request.unregisterProducer()
        request.finish()
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
    assert resource.paused == 0


@pytest_twisted.ensureDeferred
async def test_a_full_socket_hands_the_rest_to_the_transport_in_order() -> None:
    # Far more than a socket buffer holds: the kernel takes part of the
    # first piece, the transport buffers the rest and pauses the producer.
    pieces = [os.urandom(8 * 1024 * 1024), b"tail-1", os.urandom(100_000), b"tail-2"]
    body, resource = await fetch(pieces)
    assert body == b"".join(pieces)
    assert resource.paused >= 1


def test_no_direct_writer_for_test_transports_or_unstarted_responses() -> None:
    assert direct_writer(DummyRequest([b""])) is None

    class Fake:
        transport = StringTransport()
        startedWriting = True

    assert direct_writer(Fake()) is None


def test_rest_after_partial_send() -> None:
    pieces = [b"5\r\n", b"hello", b"\r\n"]
    assert _rest(pieces, 0) == pieces
    assert _rest(pieces, 2) == [b"\n", b"hello", b"\r\n"]
    assert _rest(pieces, 3) == [b"hello", b"\r\n"]
    assert _rest(pieces, 6) == [b"lo", b"\r\n"]
    assert _rest(pieces, 9) == [b"\n"]


@pytest_twisted.ensureDeferred
async def test_http10_body_is_not_chunked() -> None:
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

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

    pieces = [b"a" * 5000, b"b" * 70000, b"c"]
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
