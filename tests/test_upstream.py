"""Tests for xrelay.relay.upstream with a fake provider on a Clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from xrelay.relay.fanout import Fanout
from xrelay.relay.upstream import State, Upstream, UpstreamError

from tsgen import gop

ORIGINAL = "http://provider.invalid/live/u/p/1.ts"
REDIRECTED = "http://edge.invalid/stream/token/1.ts"


class BodyTransport:
    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class FakeRequest:
    def __init__(self, uri: str) -> None:
        self.absoluteURI = uri.encode()


class FakeResponse:
    def __init__(self, code: int = 200, final: str = REDIRECTED) -> None:
        self.code = code
        self.request = FakeRequest(final)
        self.protocol = None
        self.transport = BodyTransport()

    def deliverBody(self, protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def drop(self) -> None:
        self.protocol.connectionLost(Failure(ResponseDone()))


class Provider:
    """Answers each open_url call with the next scripted outcome."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.pending: list[Deferred] = []

    def open_url(self, url: str) -> Deferred:
        self.urls.append(url)
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def answer(self, response) -> None:
        self.pending.pop(0).callback(response)

    def refuse(self) -> None:
        self.pending.pop(0).errback(ConnectionRefusedError())


def make(clock: Clock, provider: Provider, gave_up: list, **kw) -> tuple[Upstream, Fanout]:
    fanout = Fanout("1", clock, chunk_bytes=1)
    upstream = Upstream(clock, provider.open_url, ORIGINAL, fanout, backoff=lambda n: 0.5 * (n + 1),
                        on_give_up=gave_up.append, **kw)
    return upstream, fanout


def started(upstream: Upstream) -> list:
    out: list = []
    upstream.start().addBoth(out.append)
    return out


def test_follows_the_redirect_and_reconnects_to_the_final_url():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    ready = started(upstream)
    first = FakeResponse()
    provider.answer(first)
    assert ready == [None]
    assert upstream.state is State.STREAMING and upstream.redirected
    first.send(gop(5) + b"\x47")
    assert fanout.ring.tail == len(gop(5))
    first.drop()
    assert upstream.state is State.BACKOFF
    clock.advance(0.5)
    assert provider.urls == [ORIGINAL, REDIRECTED]
    provider.answer(FakeResponse())
    assert upstream.state is State.STREAMING and upstream.reconnects == 1


def test_an_expired_redirect_falls_back_to_the_original_url_at_once():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    started(upstream)
    provider.answer(FakeResponse())
    upstream._body.connectionLost(Failure(ResponseDone()))
    clock.advance(0.5)
    provider.answer(FakeResponse(code=403))
    assert provider.urls[-1] == REDIRECTED
    clock.advance(0)
    assert provider.urls[-1] == ORIGINAL
    provider.answer(FakeResponse())
    assert upstream.state is State.STREAMING


def test_silence_watchdog_reconnects_but_not_while_paused():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up, silence_timeout=2.0)
    started(upstream)
    response = FakeResponse()
    provider.answer(response)
    response.send(gop(3))
    clock.advance(1.5)
    response.send(gop(3))
    clock.advance(1.5)
    assert upstream.state is State.STREAMING  # data kept it alive
    upstream.pauseProducing()  # every viewer is paused: silence is expected
    assert response.transport.paused
    clock.advance(10)
    assert upstream.state is State.STREAMING
    upstream.resumeProducing()
    assert not response.transport.paused
    clock.advance(2.0)
    assert response.transport.stopped
    assert upstream.state is State.BACKOFF and "no data" in upstream.last_error


def test_a_new_connection_inherits_the_pause():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    started(upstream)
    upstream.pauseProducing()
    response = FakeResponse()
    provider.answer(response)
    assert response.transport.paused


def test_gives_up_after_the_bound_and_closes_viewers():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up, reconnect_bound=3.0)
    started(upstream)
    provider.answer(FakeResponse())
    upstream._body.connectionLost(Failure(ResponseDone()))
    for _ in range(20):
        if upstream.state is State.FAILED:
            break
        clock.advance(1.0)
        while provider.pending:
            provider.refuse()
    assert upstream.state is State.FAILED
    assert len(gave_up) == 1
    assert clock.seconds() <= 4.0


def test_first_connection_failure_is_reported_at_once():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    ready = started(upstream)
    provider.answer(FakeResponse(code=404))
    assert isinstance(ready[0], Failure) and ready[0].check(UpstreamError)
    assert "HTTP 404" in str(ready[0].value)
    assert gave_up == [] and upstream.state is State.FAILED


def test_connect_timeout():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up, connect_timeout=5.0)
    ready = started(upstream)
    clock.advance(5.0)
    assert ready[0].check(UpstreamError) and "no answer" in str(ready[0].value)


def test_stop_closes_the_body_and_cancels_timers():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    started(upstream)
    response = FakeResponse()
    provider.answer(response)
    stopped: list = []
    upstream.stop().addCallback(stopped.append)
    assert response.transport.stopped
    assert stopped == []
    response.protocol.connectionLost(Failure(ResponseDone()))
    assert stopped == [None]
    assert upstream.state is State.STOPPED
    assert clock.getDelayedCalls() == []
    assert upstream.stop().called


def test_stop_while_connecting_cancels_the_request():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    ready = started(upstream)
    upstream.stop()
    assert ready[0].check(UpstreamError)
    assert provider.pending[0].called  # cancelled
    assert clock.getDelayedCalls() == []


def test_refused_first_connection():
    clock, provider, gave_up = Clock(), Provider(), []
    upstream, fanout = make(clock, provider, gave_up)
    ready = started(upstream)
    provider.refuse()
    assert ready[0].check(UpstreamError)
    assert "ConnectionRefusedError" in str(ready[0].value)



def test_only_a_refusal_of_the_format_sends_an_auto_channel_to_hls():
    from xrelay.relay.upstream import NotMpegTs

    for code, expected in ((404, NotMpegTs), (403, NotMpegTs), (429, UpstreamError), (401, UpstreamError)):
        clock, provider, gave_up = Clock(), Provider(), []
        upstream, fanout = make(clock, provider, gave_up, on_not_ts=lambda reason: None)
        ready = started(upstream)
        provider.answer(FakeResponse(code=code))
        failure = ready[0]
        assert isinstance(failure, Failure) and type(failure.value) is expected, code
