"""The provider client's timers and body edges, in memory (Clock +
StringTransport): the idle watchdog of a download, back-pressure from a slow
disk, the size cap, and a request timeout told apart from a cancellation.
(tests/test_ingest.py runs the same paths against the demo provider.)"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from xrelay.core.config import UpstreamConfig
from xrelay.provider.client import ProviderClient, ProviderError, _BodyToSink, _MemorySink


def outcome(d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    return got[0]


def failure_of(d: Deferred[Any]) -> Failure:
    result = outcome(d)
    assert isinstance(result, Failure), f"it succeeded with {result!r}"
    return result


class SlowSink(_MemorySink):
    """A sink whose backlog the test sets, like a disk that falls behind."""

    HIGH_WATER = 100


def body(clock: Clock, sink: Any = None, *, max_bytes: int = 10_000,
         idle: float = 5.0) -> tuple[_BodyToSink, StringTransport]:
    protocol = _BodyToSink(clock, sink or _MemorySink(), max_bytes, idle, "xmltv.php")
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_the_idle_watchdog_fails_a_silent_download_and_stops_reading() -> None:
    clock = Clock()
    protocol, transport = body(clock)
    clock.advance(4)
    protocol.dataReceived(b"<tv>")  # data resets the watchdog
    clock.advance(4.9)
    assert not protocol.done.called
    clock.advance(0.1)
    failure = failure_of(protocol.done)
    assert failure.check(ProviderError)
    assert str(failure.value) == "xmltv.php: no data for 5 s"
    assert transport.producerState == "stopped"
    protocol.connectionLost(Failure(ResponseDone()))  # the end that follows changes nothing
    assert not clock.getDelayedCalls()


def test_a_slow_disk_pauses_the_body_without_tripping_the_idle_watchdog() -> None:
    clock = Clock()
    sink = SlowSink()
    protocol, transport = body(clock, sink)
    sink.backlog = 101
    protocol.dataReceived(b"x" * 50)
    assert transport.producerState == "paused"
    assert not clock.getDelayedCalls()  # the disk, not the provider, is slow
    clock.advance(60)
    assert not protocol.done.called
    sink.backlog = 0
    sink.on_drained()
    assert transport.producerState == "producing"
    clock.advance(5)  # reading again: the provider is watched again
    assert "no data for 5 s" in str(failure_of(protocol.done).value)


def test_a_body_larger_than_allowed_fails_and_stops_reading() -> None:
    clock = Clock()
    protocol, transport = body(clock, max_bytes=100)
    protocol.dataReceived(b"x" * 100)
    assert not protocol.done.called
    protocol.dataReceived(b"x")
    assert str(failure_of(protocol.done).value) == "xmltv.php: larger than 100 bytes"
    assert transport.producerState == "stopped"
    assert not clock.getDelayedCalls()


def test_a_whole_body_gives_its_size_and_a_broken_one_an_error() -> None:
    clock = Clock()
    sink = _MemorySink()
    protocol, _ = body(clock, sink)
    protocol.dataReceived(b"<tv></tv>")
    protocol.connectionLost(Failure(ResponseDone()))
    assert outcome(protocol.done) == 9 and sink.chunks == [b"<tv></tv>"]
    broken, _ = body(clock)
    broken.dataReceived(b"<tv>")
    broken.connectionLost(Failure(ConnectionError("reset")))
    assert str(failure_of(broken.done).value) == "xmltv.php: connection lost after 4 bytes"
    assert not clock.getDelayedCalls()


class PendingHTTP:
    """treq's HTTPClient, reduced to requests that wait for the test."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d


def client(clock: Clock) -> tuple[ProviderClient, PendingHTTP]:
    upstream = UpstreamConfig(url="http://provider.test:8080", username="secret-user",
                              password="secret-pass")
    provider = ProviderClient(clock, upstream)
    http = PendingHTTP()
    provider.http = http  # type: ignore[assignment]
    return provider, http


def test_a_request_timeout_is_a_provider_error_naming_no_secret() -> None:
    clock = Clock()
    provider, _ = client(clock)
    d = provider.request(provider.stream_url("live", 1, "ts"), timeout=5, what="live stream")
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    failure = failure_of(d)
    assert failure.check(ProviderError)
    assert str(failure.value) == "live stream: no answer within 5 s"


def test_a_cancelled_request_is_a_cancellation_not_a_timeout() -> None:
    clock = Clock()
    provider, _ = client(clock)
    d = provider.request(provider.stream_url("live", 1, "ts"), timeout=5)
    d.cancel()
    assert failure_of(d).check(CancelledError)
    assert not clock.getDelayedCalls()  # the timeout was disarmed


def test_an_answer_disarms_the_request_timeout() -> None:
    clock = Clock()
    provider, http = client(clock)
    d = provider.request(provider.stream_url("live", 1, "ts"), timeout=5)
    response = object()
    http.pending[0].callback(response)
    assert outcome(d) is response
    assert not clock.getDelayedCalls()
