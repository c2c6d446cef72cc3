"""BodyWriter, the demo provider's paced push producer, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from xrelay.demo.sample import TS_CHUNK, TS_PACKET, sample_clip
from xrelay.demo.streaming import BodyWriter


class FakeRequest:
    """Just what BodyWriter uses of a twisted.web Request."""

    def __init__(self, on_write: Any = None) -> None:
        self.channel = type("Channel", (), {})()
        self.channel.transport = StringTransport()
        self.writes: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self._finish: Deferred[None] = Deferred()
        self.on_write = on_write

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def notifyFinish(self) -> Deferred[None]:
        return self._finish

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if self.on_write:
            self.on_write(self)

    def finish(self) -> None:
        self.finished = True
        self._finish.callback(None)

    def lose(self) -> None:
        self._finish.errback(Failure(ConnectionError("gone")))

    @property
    def body(self) -> bytes:
        return b"".join(self.writes)


def paced(reactor: Any, request: FakeRequest, rate: float = 1_000_000, **kw: Any) -> BodyWriter:
    clip = sample_clip()
    closed: list[str] = []
    writer = BodyWriter(reactor, request, source=clip.cyclic, rate_bps=rate, align=TS_CHUNK,
                        tick=0.02, on_close=closed.append, **kw)
    writer.closed_reasons = closed  # type: ignore[attr-defined]
    writer.start()
    return writer


def test_paced_writes_are_whole_packet_chunks_at_the_rate() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    paced(reactor, request, rate=1_000_000)
    for _ in range(100):  # two seconds
        reactor.advance(0.02)
    data = [w for w in request.writes if w]
    assert data, "nothing written"
    for w in data:
        assert len(w) % TS_CHUNK == 0 and w[0] == 0x47
    body = request.body
    assert all(body[i] == 0x47 for i in range(0, len(body), TS_PACKET))
    assert body == sample_clip().cyclic(0, len(body))
    expected = 1_000_000 / 8 * 2
    assert expected * 0.95 <= len(body) <= expected * 1.05


def test_pause_stops_writing_and_resume_catches_up() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    writer = paced(reactor, request, rate=800_000, max_lag=10)
    reactor.advance(0.5)
    writer.pauseProducing()
    before = len(request.body)
    for _ in range(50):
        reactor.advance(0.02)
    assert len(request.body) == before
    writer.resumeProducing()
    reactor.advance(0)
    assert len(request.body) > before + 800_000 / 8 * 0.9  # the missed second, at once
    assert not request.channel.transport.disconnecting


def test_reader_too_far_behind_is_cut() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    writer = paced(reactor, request, rate=800_000, max_lag=3)
    reactor.advance(0.1)
    writer.pauseProducing()
    for _ in range(20):
        reactor.advance(0.25)
    assert request.channel.transport.disconnecting
    assert writer.closed_reasons == ["too slow"]  # type: ignore[attr-defined]
    assert not reactor.getDelayedCalls()


def test_limit_cuts_after_exactly_n_bytes() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    writer = paced(reactor, request, rate=8_000_000, limit=10_000)
    for _ in range(20):
        reactor.advance(0.02)
    assert len(request.body) == 10_000
    assert request.channel.transport.disconnecting
    assert writer.closed_reasons == ["byte limit"]  # type: ignore[attr-defined]


def test_client_gone_stops_the_timer_once() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    writer = paced(reactor, request)
    reactor.advance(0.1)
    request.lose()
    writer.stopProducing()  # may come too, in any order
    assert writer.closed_reasons == ["client gone"]  # type: ignore[attr-defined]
    assert not reactor.getDelayedCalls()


def test_unpaced_respects_pause_from_inside_write() -> None:
    def pause_every_write(req: FakeRequest) -> None:
        req.producer.pauseProducing()

    reactor, request = MemoryReactorClock(), FakeRequest(pause_every_write)
    chunks = iter([b"a", b"b", b"c"])
    writer = BodyWriter(reactor, request, chunks=chunks)
    writer.start()
    assert request.writes == [b"a"]
    writer.resumeProducing()
    assert request.writes == [b"a", b"b"]
    writer.resumeProducing()
    writer.resumeProducing()
    assert request.body == b"abc" and request.finished


def test_paced_total_ends_the_body() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    data = bytes(range(256)) * 100
    writer = BodyWriter(reactor, request, source=lambda off, n: data[off : off + n],
                        rate_bps=800_000, total=len(data))
    writer.start()
    for _ in range(30):
        reactor.advance(0.05)
    assert request.body == data and request.finished


def test_hold_sends_nothing_and_owes_nothing() -> None:
    reactor, request = MemoryReactorClock(), FakeRequest()
    silent = [False]
    clip = sample_clip()
    writer = BodyWriter(reactor, request, source=clip.cyclic, rate_bps=1_000_000,
                        align=TS_CHUNK, tick=0.02, hold=lambda: silent[0])
    writer.start()
    for _ in range(50):
        reactor.advance(0.02)
    one_second = len(request.body)
    silent[0] = True
    for _ in range(100):
        reactor.advance(0.02)
    assert len(request.body) == one_second
    silent[0] = False
    reactor.advance(0.02)
    assert len(request.body) - one_second < 10_000  # no burst for the silent time
    for _ in range(49):
        reactor.advance(0.02)
    assert len(request.body) == pytest.approx(2 * one_second, rel=0.05)
    assert request.body == clip.cyclic(0, len(request.body))  # resumes where it stopped


def test_resume_during_a_tick_keeps_one_timer() -> None:
    def resume_inside_write(req: FakeRequest) -> None:
        req.producer.pauseProducing()
        req.producer.resumeProducing()

    reactor, request = MemoryReactorClock(), FakeRequest(resume_inside_write)
    writer = paced(reactor, request)
    for _ in range(10):
        reactor.advance(0.02)
    assert len(reactor.getDelayedCalls()) == 1
    writer.stopProducing()
    assert not reactor.getDelayedCalls()
