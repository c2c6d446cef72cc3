"""Tests for xrelay.relay.hls_live: playlists, segment producers, the first-segment wait."""

from __future__ import annotations

import random
from typing import Any, Sequence

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from xrelay.relay.hls_live import (
    BATCH_BYTES,
    ClientGone,
    FirstSegmentTimeout,
    SegmentProducer,
    WriteTurns,
    SegmenterClosed,
    ignore_client_gone,
    program_date_time,
    render_playlist,
    wait_for_segment,
)
from xrelay.relay.hls_segmenter import PlaylistWindow, Segment, Segmenter

from hls_tsgen import Feeder, Source

START = 1_700_000_000.0


def segment(sequence: int, duration: float = 4.0, *, at: float = START, discontinuity: bool = False,
            number: int = 0, pieces: tuple[bytes | memoryview, ...] = (b"x" * 188,)) -> Segment:
    return Segment(sequence=sequence, pieces=pieces, size=sum(len(p) for p in pieces),
                   duration=duration, program_time=at, discontinuity=discontinuity,
                   discontinuity_number=number, keyframe=True)


# -- playlists ----------------------------------------------------------------------------------


def test_playlist_text() -> None:
    segments = (
        segment(41, 4.0, at=START),
        segment(42, 3.9999, at=START + 4.0),
        segment(43, 1.25, at=START + 7.9999, discontinuity=True, number=3),
    )
    window = PlaylistWindow(target=6, media_sequence=41, discontinuity_sequence=2, segments=segments,
                            version=7)
    text = render_playlist(window, lambda s: f"/hls/u/TOKEN/L7-{s.sequence}.ts")
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:6\n"
        "#EXT-X-MEDIA-SEQUENCE:41\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"
        "#EXTINF:4.000,\n"
        "/hls/u/TOKEN/L7-41.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n"
        "#EXTINF:4.000,\n"
        "/hls/u/TOKEN/L7-42.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z\n"
        "#EXTINF:1.250,\n"
        "/hls/u/TOKEN/L7-43.ts\n"
    )
    assert "#EXT-X-ENDLIST" not in text


def test_program_date_time_rounds_to_milliseconds() -> None:
    assert program_date_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert program_date_time(1.2344) == "1970-01-01T00:00:01.234Z"
    assert program_date_time(59.9996) == "1970-01-01T00:01:00.000Z"


def test_playlist_of_a_live_segmenter() -> None:
    clock = Clock()
    clock.advance(START)
    segmenter = Segmenter(clock, window=3)
    Feeder(segmenter, clock, Source()).play(30)
    window = segmenter.playlist()
    assert window is not None
    lines = render_playlist(window, lambda s: f"{s.sequence}.ts").splitlines()
    assert "#EXT-X-TARGETDURATION:6" in lines
    assert f"#EXT-X-MEDIA-SEQUENCE:{window.media_sequence}" in lines
    uris = [line for line in lines if line.endswith(".ts")]
    assert uris == [f"{s.sequence}.ts" for s in window.segments]
    assert sum(1 for line in lines if line.startswith("#EXTINF:4.000,")) == len(uris)


# -- waiting for the first segment ---------------------------------------------------------------


def results(d: Any) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_wait_fires_with_the_first_segment_of_a_cold_channel() -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    got = results(wait_for_segment(segmenter, clock, timeout=15))
    feeder = Feeder(segmenter, clock, Source())
    feeder.play(4.0)
    assert got == []
    feeder.play(0.2)
    assert len(got) == 1 and isinstance(got[0], Segment) and got[0].sequence == 0
    assert clock.getDelayedCalls() == []
    assert segmenter._listeners == []


def test_wait_answers_at_once_when_a_segment_exists() -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    Feeder(segmenter, clock, Source()).play(12)
    got = results(wait_for_segment(segmenter, clock))
    assert got == [segmenter.latest]


def test_wait_times_out_with_a_reason() -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    got = results(wait_for_segment(segmenter, clock, timeout=10))
    Feeder(segmenter, clock, Source(gop=500)).play(9.9)  # a 20 s GOP: no segment yet
    assert got == []
    clock.advance(0.2)
    assert len(got) == 1 and isinstance(got[0], Failure)
    assert got[0].check(FirstSegmentTimeout)
    assert str(got[0].value) == "the channel delivered no complete segment within 10 s"
    assert segmenter._listeners == []


def test_wait_fails_when_the_channel_closes() -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    got = results(wait_for_segment(segmenter, clock))
    segmenter.close("the provider stream is gone")
    assert isinstance(got[0], Failure) and got[0].check(SegmenterClosed)
    assert "the provider stream is gone" in str(got[0].value)
    assert clock.getDelayedCalls() == []
    closed = results(wait_for_segment(segmenter, clock))
    assert isinstance(closed[0], Failure) and closed[0].check(SegmenterClosed)


def test_cancelled_wait_leaves_nothing_behind() -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    d = wait_for_segment(segmenter, clock)
    got = results(d)
    d.cancel()
    assert isinstance(got[0], Failure)
    assert clock.getDelayedCalls() == [] and segmenter._listeners == []


# -- producing segments ------------------------------------------------------------------------------


class Consumer(StringTransport):
    """Pauses its producer from inside write() once more than ``limit``
    bytes are buffered, as a transport does."""

    def __init__(self, limit: int = 10**9) -> None:
        super().__init__()
        self.limit = limit
        self.writes: list[Any] = []
        self.unregistered = 0

    def write(self, data: Any) -> None:
        self.writes.append(data)
        super().write(bytes(data))
        if len(self.value()) > self.limit and self.producer is not None:
            self.producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.unregistered += 1
        super().unregisterProducer()

    def read(self) -> bytes:
        """The client reads everything; the transport resumes the producer."""
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


def shared_pieces() -> tuple[bytes, tuple[bytes | memoryview, ...]]:
    a, b, c = bytes(range(256)) * 4, b"B" * 3000, b"C" * 500
    return a + b[:1000] + c, (a, memoryview(b)[:1000], c)


def test_producer_honours_back_pressure() -> None:
    whole, pieces = shared_pieces()
    consumer = Consumer(limit=100)
    producer = SegmentProducer(consumer, pieces)
    done = results(producer.start())
    assert consumer.producer is producer and consumer.streaming
    assert len(consumer.writes) == 1 and producer.paused  # paused after the first piece
    received = consumer.read()
    assert len(consumer.writes) == 2 and done == []
    received += consumer.read()
    # everything was handed to the consumer: done, even though it is paused
    assert done == [len(whole)]
    assert consumer.unregistered == 1 and consumer.producer is None
    received += consumer.read()
    assert received == whole
    # the shared objects themselves were written, not copies
    assert consumer.writes[0] is pieces[0] and consumer.writes[2] is pieces[2]


def test_producer_with_a_writer_that_takes_part() -> None:
    whole, pieces = shared_pieces()
    consumer = Consumer()
    taken: list[bytes] = []

    def write(data: bytes | memoryview) -> int:
        part = bytes(data[:300])  # the socket takes 300 bytes, then is full
        taken.append(part)
        producer.pauseProducing()
        return len(part)

    producer = SegmentProducer(consumer, pieces, write=write)
    done = results(producer.start())
    for _ in range(100):
        if done:
            break
        producer.resumeProducing()
    assert b"".join(taken) == whole and done == [len(whole)]
    assert producer.sent == len(whole)


@pytest.mark.parametrize("seed", range(30))
def test_producer_sends_several_pieces_per_call_with_write_many(seed: int) -> None:
    """With a writer that takes several pieces at once (a socket's
    ``sendmsg``), each call offers the pieces from the cursor, up to
    BATCH_BYTES, and the cursor follows whatever the socket took."""
    rng = random.Random(seed)
    pieces = tuple(bytes([i]) * rng.randrange(1, 400_000) for i in range(12))
    whole = b"".join(pieces)
    consumer = Consumer()
    offered: list[int] = []
    taken: list[bytes] = []

    def write_many(batch: Sequence[bytes | memoryview]) -> int:
        size = sum(len(b) for b in batch)
        offered.append(size)
        assert size - len(batch[-1]) < BATCH_BYTES
        n = rng.choice([0, 1, rng.randrange(size + 1), size, size])
        taken.append(b"".join(bytes(b) for b in batch)[:n])
        if n < size:
            producer.pauseProducing()  # the socket is full
        return n

    def write(data: bytes | memoryview) -> int:
        return write_many([data])

    producer = SegmentProducer(consumer, pieces, write=write, write_many=write_many)
    done = results(producer.start())
    for _ in range(10_000):
        if done:
            break
        producer.resumeProducing()
    assert b"".join(taken) == whole and done == [len(whole)]
    assert max(offered) > max(len(p) for p in pieces)  # pieces went together


def test_producer_range_of_a_segment() -> None:
    whole, pieces = shared_pieces()
    seg = segment(1, pieces=pieces)
    consumer = Consumer()
    done = results(SegmentProducer.for_segment(consumer, seg, 1000, 1600).start())
    assert consumer.value() == whole[1000:1600]
    assert done == [600]
    assert b"".join(bytes(p) for p in seg.slice(10)) == whole[10:]
    assert seg.slice() == list(pieces)


def test_client_leaving_stops_the_producer() -> None:
    _, pieces = shared_pieces()
    consumer = Consumer(limit=10)
    producer = SegmentProducer(consumer, pieces)
    done = producer.start()
    got = results(done)
    producer.stopProducing()
    assert isinstance(got[0], Failure) and got[0].check(ClientGone)
    producer.resumeProducing()  # a late resume writes nothing more
    assert len(consumer.writes) == 1


def test_a_stopped_producer_lets_go_of_its_request_and_writer() -> None:
    """The request still names its producer after the client left: were the
    producer to hold the request (or the writer that holds it), the pair
    would wait for the cyclic collector."""
    import gc

    _, pieces = shared_pieces()
    consumer = Consumer(limit=10)

    class Writer:
        def __call__(self, data: Any) -> int:
            return 0

        def many(self, batch: Any) -> int:
            return 0

    writer = Writer()
    producer = SegmentProducer(consumer, pieces, write=writer, write_many=writer.many)
    producer.start().addErrback(ignore_client_gone)
    producer.stopProducing()
    reachable = gc.get_referents(*gc.get_referents(producer))  # its attributes
    assert consumer not in reachable and writer not in reachable
    assert not [r for r in reachable if getattr(r, "__self__", None) in (consumer, writer)]
    assert consumer.producer is producer  # (the request side is Twisted's)
    producer.resumeProducing()
    producer.pump()  # late calls write nothing


def test_ignore_client_gone() -> None:
    consumer = Consumer(limit=10)
    producer = SegmentProducer(consumer, shared_pieces()[1])
    done = producer.start()
    done.addErrback(ignore_client_gone)
    producer.stopProducing()
    assert results(done) == [None]


def test_empty_segment_finishes_at_once() -> None:
    consumer = Consumer()
    assert results(SegmentProducer(consumer, []).start()) == [0]
    assert consumer.producer is None


@pytest.mark.parametrize("limit", [1, 5000, 10**6])
def test_producer_writes_a_live_segment_whole(limit: int) -> None:
    clock = Clock()
    segmenter = Segmenter(clock)
    Feeder(segmenter, clock, Source()).play(12)
    seg = segmenter.window[0]
    consumer = Consumer(limit=limit)
    done = results(SegmentProducer.for_segment(consumer, seg).start())
    received = b""
    for _ in range(1000):
        if done:
            break
        received += consumer.read()
    received += consumer.read()
    assert received == b"".join(bytes(p) for p in seg.pieces) and done == [seg.size]


def test_resumed_producers_write_in_budgeted_turns() -> None:
    """Many players' sockets turning writable at once: their writes go out
    in reactor turns of at most the budget, never inside resumeProducing."""
    for budget, expected_turns in ((1000, 3), (10**6, 1)):
        clock = Clock()
        turns = WriteTurns(clock, budget=budget)
        whole, pieces = shared_pieces()  # 1024 + 1000 + 500 bytes
        consumers = [Consumer(limit=100) for _ in range(3)]
        producers = [SegmentProducer(c, pieces, turns=turns) for c in consumers]
        done = [results(p.start()) for p in producers]
        assert all(len(c.writes) == 1 for c in consumers)  # the first write goes at once
        for c in consumers:
            c.clear()
            c.producer.resumeProducing()  # writable again
        assert all(len(c.writes) == 1 for c in consumers)  # nothing written inside resume
        clock.advance(0)  # each producer writes its 1000-byte piece, then its socket is full
        assert [len(c.writes) for c in consumers] == [2, 2, 2]
        assert turns.turns == expected_turns  # one turn per budget's worth
        for _ in range(5):
            for c in consumers:
                if c.producer is not None and c.producer.paused:
                    c.clear()
                    c.producer.resumeProducing()
            clock.advance(0)
        assert all(d == [len(whole)] for d in done)
