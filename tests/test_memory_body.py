"""Tests for xrelay.http.body.MemoryBody: a prepared answer written from memory."""

from __future__ import annotations

import os
from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from xrelay.http.body import MemoryBody


class Recorded(MemoryBody):
    """A MemoryBody that says when it was first paused."""

    def __init__(self, request: Any, body: bytes) -> None:
        super().__init__(request, body)
        self.pauses = 0
        self.first_pause: Deferred[None] = Deferred()

    def pauseProducing(self) -> None:
        super().pauseProducing()
        self.pauses += 1
        if not self.first_pause.called:
            self.first_pause.callback(None)


class Answer(Resource):
    """Answers every GET with the same bytes, as the API does a prepared list."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.bodies: list[Recorded] = []
        self.ended: list[Deferred[None]] = []
        #: fires with the first request's body, once it has begun
        self.began: Deferred[Recorded] = Deferred()

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"content-length", b"%d" % len(self.body))
        body = Recorded(request, self.body)
        self.bodies.append(body)
        done = body.start()
        ended: Deferred[None] = Deferred()
        self.ended.append(ended)

        def finish(_: None) -> None:
            if not request.finished and not request._disconnected:
                request.finish()
            ended.callback(None)

        done.addCallback(finish)
        if not self.began.called:
            self.began.callback(body)
        return NOT_DONE_YET


class SlowReader(Protocol):
    """Asks once, stops reading until told, then reads to the end."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed.callback(None)


def serve(body: bytes) -> tuple[Answer, Any]:
    answer = Answer(body)
    return answer, reactor.listenTCP(0, Site(answer), interface="127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_many_clients_get_the_same_bytes_whole() -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    answer, port = serve(body)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/"
        responses = [await treq.get(url, persistent=False) for _ in range(3)]
        contents = [await treq.content(r) for r in responses]
    finally:
        await port.stopListening()
    assert all(content == body for content in contents)
    assert all(b.offset == len(body) and b.stopped for b in answer.bodies)


@pytest_twisted.ensureDeferred
async def test_a_slow_client_pauses_the_body_and_gets_the_rest_when_it_reads() -> None:
    body = os.urandom(16 * 1024 * 1024)  # far more than the sockets' buffers
    answer, port = serve(body)
    try:
        reader = SlowReader()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reader)
        began = await answer.began
        await began.first_pause
        sent_when_paused = began.offset
        reader.transport.resumeProducing()
        await reader.closed
    finally:
        await port.stopListening()
    assert 0 < sent_when_paused < len(body)  # the kernel took what it could, then we waited
    head, _, received = bytes(reader.data).partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0] and received == body


@pytest_twisted.ensureDeferred
async def test_a_client_that_leaves_mid_body_stops_it() -> None:
    body = os.urandom(16 * 1024 * 1024)
    answer, port = serve(body)
    try:
        reader = SlowReader()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reader)
        await (await answer.began).first_pause
        reader.transport.abortConnection()
        await reader.closed
        await answer.ended[0]
    finally:
        await port.stopListening()
    assert answer.bodies[0].stopped and answer.bodies[0].offset < len(body)


def test_without_a_tcp_socket_the_body_is_written_the_ordinary_way() -> None:
    request = DummyRequest([b""])
    done = MemoryBody(request, b"x" * 100_000).start()
    assert done.called and b"".join(request.written) == b"x" * 100_000
