"""StreamProxy orderings, in memory (StringTransport + Clock)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from xrelay.media.proxy import StreamProxy, pass_headers
from xrelay.provider.client import discard_body


class FakeChannel:
    def __init__(self) -> None:
        self.transport = StringTransport()
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class FakeRequest:
    """The parts of twisted.web's Request the proxy uses."""

    def __init__(self) -> None:
        self.channel: Any = FakeChannel()
        self.written: list[bytes] = []
        self.finished = False
        self._disconnected = False
        self.producer: Any = None
        self.headers: dict[bytes, bytes] = {}
        self._finish_waiters: list[Deferred[None]] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None and streaming
        self.producer = producer
        self.channel.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.channel.unregisterProducer()

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.written.append(data)

    def finish(self) -> None:
        if self._disconnected:
            raise RuntimeError("finish after the connection was lost")
        assert not self.finished, "finished twice"
        self.finished = True
        for d in self._finish_waiters:
            d.callback(None)

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._finish_waiters.append(d)
        return d

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def client_leaves(self) -> None:
        """What twisted.web does when the client disconnects."""
        self._disconnected = True
        channel, self.channel = self.channel, None
        if channel.producer is not None:
            channel.producer.stopProducing()
        for d in self._finish_waiters:
            d.errback(Failure(ConnectionLost()))


class FakeResponse:
    def __init__(self, headers: dict[bytes, list[bytes]] | None = None,
                 length: int | object = UNKNOWN_LENGTH) -> None:
        self.headers = Headers(headers or {})
        self.length = length
        self.transport = StringTransport()
        self.protocol: Any = None

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)


def started(clock: Clock | None = None, silence: float = 10.0) -> tuple[StreamProxy, FakeRequest, FakeResponse]:
    request, response = FakeRequest(), FakeResponse()
    proxy = StreamProxy(clock or Clock(), request, silence_timeout=silence)
    proxy.start(response)
    return proxy, request, response


def test_data_flows_and_a_clean_end_finishes_the_request() -> None:
    proxy, request, response = started()
    assert request.producer is proxy
    proxy.dataReceived(b"abc")
    proxy.dataReceived(b"def")
    proxy.connectionLost(Failure(ResponseDone()))
    assert b"".join(request.written) == b"abcdef"
    assert request.finished and request.producer is None
    assert proxy.done.called and proxy.reason == "finished"


def test_client_pause_pauses_the_upstream_and_resume_resumes_it() -> None:
    proxy, request, response = started()
    proxy.pauseProducing()
    assert response.transport.producerState == "paused"
    proxy.pauseProducing()  # twice is harmless
    proxy.resumeProducing()
    assert response.transport.producerState == "producing"


def test_pause_reentered_from_write_keeps_the_upstream_paused() -> None:
    proxy, request, response = started()
    original = request.write

    def write_and_fill(data: bytes) -> None:
        original(data)
        proxy.pauseProducing()  # the transport's buffer filled during write()

    request.write = write_and_fill  # type: ignore[method-assign]
    proxy.dataReceived(b"x" * 100)
    assert response.transport.producerState == "paused"
    assert proxy.paused


def test_client_leaving_stops_the_upstream_once() -> None:
    proxy, request, response = started()
    proxy.dataReceived(b"abc")
    request.client_leaves()  # stopProducing and the notifyFinish errback
    assert response.transport.producerState == "stopped"
    assert proxy.done.called and proxy.reason == "client gone"
    # the upstream connection then reports its loss: nothing more happens
    proxy.connectionLost(Failure(ConnectionLost()))
    proxy.stopProducing()
    assert not request.finished
    closed = proxy.upstream_closed()
    assert closed.called


def test_stop_producing_before_connection_lost_and_double_close() -> None:
    proxy, request, response = started()
    proxy.stopProducing()
    d1 = proxy.close("again")
    d2 = proxy.close("and again")
    assert proxy.reason == "client gone"
    assert not d1.called and not d2.called  # the upstream is still closing
    proxy.connectionLost(Failure(ConnectionLost()))
    assert d1.called and d2.called


def test_upstream_drop_aborts_the_client() -> None:
    proxy, request, response = started()
    proxy.dataReceived(b"abc")
    proxy.connectionLost(Failure(ConnectionLost()))
    assert request.channel.transport.disconnecting or request.channel.transport.disconnected
    assert not request.finished
    assert proxy.reason == "the provider connection dropped"


def test_close_aborts_both_sides() -> None:
    proxy, request, response = started()
    d = proxy.close("handed over")
    assert response.transport.producerState == "stopped"
    assert request.channel.transport.disconnecting or request.channel.transport.disconnected
    proxy.connectionLost(Failure(ConnectionLost()))
    assert d.called


def test_client_gone_before_the_body_stops_the_upstream_at_once() -> None:
    request, response = FakeRequest(), FakeResponse()
    request._disconnected = True
    request.channel = None
    proxy = StreamProxy(Clock(), request)
    proxy.start(response)
    assert response.transport.producerState == "stopped"
    assert proxy.done.called


def test_silence_watchdog_closes_a_silent_upstream_but_not_a_paused_one() -> None:
    clock = Clock()
    proxy, request, response = started(clock, silence=5.0)
    clock.advance(4)
    proxy.dataReceived(b"a")
    clock.advance(4)  # data 4 s ago: still fine
    assert not proxy.detached
    proxy.pauseProducing()
    clock.advance(60)  # a paused client is not a silent provider
    assert not proxy.detached
    proxy.resumeProducing()
    clock.advance(5)
    assert proxy.detached and proxy.reason == "the provider went silent"
    assert response.transport.producerState == "stopped"


def test_pass_headers_copies_only_the_seek_headers_and_drops_leaks() -> None:
    response = FakeResponse({
        b"content-type": [b"video/mp4"],
        b"content-range": [b"bytes 0-9/100"],
        b"accept-ranges": [b"bytes"],
        b"last-modified": [b"Tue, 14 Nov 2023 22:13:20 GMT"],
        b"etag": [b'"http://provider.example/x"'],
        b"location": [b"http://provider.example/secret"],
        b"server": [b"nginx"],
        b"set-cookie": [b"a=b"],
    }, length=10)
    request = FakeRequest()
    pass_headers(response, request, leaks=lambda v: ["host"] if "provider.example" in v else [])
    assert request.headers == {
        b"content-type": b"video/mp4",
        b"content-range": b"bytes 0-9/100",
        b"accept-ranges": b"bytes",
        b"last-modified": b"Tue, 14 Nov 2023 22:13:20 GMT",
        b"content-length": b"10",
    }


def test_discard_body_closes_the_connection() -> None:
    response = FakeResponse()
    closed = discard_body(response)
    assert response.transport.producerState == "stopped"
    assert not closed.called
    response.protocol.connectionLost(Failure(ConnectionLost()))
    assert closed.called
