"""Tests for xrelay.relay.fanout: the shared ring and the viewers' push producers."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from xrelay.relay.fanout import MIN_KEEP_BYTES, Fanout, StreamRing
from xrelay.relay.mpegts import PACKET_SIZE, is_aligned

from tsgen import audio, gop, pat, pmt, video

SYNC = b"\x47"


class Consumer(StringTransport):
    """A transport that pauses its producer, from inside write(), once more
    than ``limit`` bytes are buffered (like FileDescriptor does)."""

    def __init__(self, limit: int = 10**9, clock: Clock | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.clock = clock
        self.writes: list[object] = []
        self.aborted = False

    def write(self, data):
        self.writes.append(data)
        super().write(bytes(data))
        if len(self.value()) > self.limit and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The client reads everything; the transport resumes the producer."""
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
            if self.clock is not None:  # the fan-out writes on its next turn
                self.clock.advance(0)
        return data

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


class Upstream:
    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.paused = False
        self.calls.append("resume")


def make_fanout(clock=None, **kw) -> tuple[Fanout, Clock, Upstream]:
    clock = clock or Clock()
    kw.setdefault("chunk_bytes", 1)  # publish every feed at once
    kw.setdefault("keyframe_wait", 0)  # most tests feed packets without keyframes
    fanout = Fanout("ch1", clock, **kw)
    upstream = Upstream()
    fanout.set_upstream(upstream)
    return fanout, clock, upstream


def packets(n: int, fill: int = 0) -> bytes:
    return b"".join(video(fill=(fill + i) & 0xFF) for i in range(n))


def test_first_viewer_gets_whole_packets_as_they_arrive():
    fanout, clock, _ = make_fanout()
    consumer = Consumer()
    fanout.attach(consumer, user="u", address="a")
    data = gop(20)
    fanout.feed(data[:1000])
    fanout.feed(data[1000:] + SYNC)
    got = consumer.value()
    assert got == data  # every packet, in order, once
    assert is_aligned(got)


def test_small_reads_are_coalesced_into_one_chunk():
    fanout, clock, _ = make_fanout(chunk_bytes=10 * PACKET_SIZE, chunk_delay=0.05)
    consumer = Consumer()
    fanout.attach(consumer)
    data = packets(12)
    for i in range(0, 7 * PACKET_SIZE, PACKET_SIZE):
        fanout.feed(data[i : i + PACKET_SIZE])
    assert consumer.writes == []  # waiting for more, or for the delay
    clock.advance(0.05)
    assert len(consumer.writes) == 1
    assert consumer.value() == data[: 6 * PACKET_SIZE]  # the 7th waits for a sync byte
    fanout.feed(data[7 * PACKET_SIZE :] + SYNC)
    assert len(consumer.writes) == 1  # 6 packets pending, below chunk_bytes
    clock.advance(0.05)
    assert consumer.value() == data


def test_viewers_share_the_chunk_objects():
    fanout, clock, _ = make_fanout()
    a, b = Consumer(), Consumer()
    fanout.attach(a)
    fanout.attach(b)
    fanout.feed(packets(10) + SYNC)
    assert len(a.writes) == 1 and a.writes[0] is b.writes[0]
    assert a.writes[0] is fanout.ring.chunks[fanout.ring.next_seq - 1].data


def test_pause_reentered_during_write_stops_the_loop():
    fanout, clock, upstream = make_fanout()
    fanout.feed(gop(10) + pat())
    fanout.feed(pmt() + packets(10))
    fanout.feed(packets(10, 50))
    # The transport pauses inside the very first write of the burst.
    consumer = Consumer(limit=1, clock=clock)
    viewer = fanout.attach(consumer)
    assert len(consumer.writes) == 1
    assert viewer.paused
    assert upstream.paused  # the only viewer is paused
    first = consumer.drain()
    assert len(consumer.writes) == 2  # one more write, then paused again inside it
    rest = b""
    for _ in range(1000):
        if not viewer.paused:
            break
        rest += consumer.drain()
    else:
        raise AssertionError("the viewer stayed paused through 1000 drains")
    assert is_aligned(first + rest)
    assert fanout.ring.tail - viewer.offset == 0
    assert not upstream.paused


def test_upstream_paused_only_when_every_viewer_is_paused():
    fanout, clock, upstream = make_fanout()
    fanout.feed(gop(5) + SYNC)
    consumers = [Consumer() for _ in range(3)]
    viewers = [fanout.attach(c) for c in consumers]
    viewers[0].pauseProducing()
    viewers[1].pauseProducing()
    assert not upstream.paused
    viewers[2].pauseProducing()
    assert upstream.paused
    viewers[1].resumeProducing()
    assert not upstream.paused
    clock.advance(0)
    viewers[1].pauseProducing()
    assert upstream.paused
    # The only unpaused... none; a paused viewer leaving keeps it paused,
    viewers[0].detach()
    assert upstream.paused
    # and a new viewer joining resumes it.
    fanout.attach(Consumer())
    assert not upstream.paused
    assert upstream.calls == ["pause", "resume", "pause", "resume"]


def test_last_unpaused_viewer_leaving_pauses_the_upstream():
    fanout, clock, upstream = make_fanout()
    a, b = fanout.attach(Consumer()), fanout.attach(Consumer())
    a.pauseProducing()
    assert not upstream.paused
    b.detach()
    assert upstream.paused
    a.detach()  # no viewers: the upstream keeps flowing while the channel lingers
    assert not upstream.paused


def test_new_upstream_inherits_pause_state():
    fanout, clock, upstream = make_fanout()
    fanout.attach(Consumer()).pauseProducing()
    replacement = Upstream()
    fanout.set_upstream(replacement)
    assert replacement.paused


def test_stop_producing_before_connection_lost_and_double_detach():
    fanout, clock, upstream = make_fanout()
    consumer = Consumer()
    viewer = fanout.attach(consumer)
    detached = []
    viewer.on_detach(detached.append)
    viewer.stopProducing()  # the transport lost the connection ...
    viewer.detach("finish errback")  # ... then notifyFinish's errback
    viewer.stopProducing()
    viewer.evict()  # and a late eviction does nothing either
    viewer.close("late")
    assert detached == [viewer]
    assert fanout.viewers == set()
    assert fanout.evictions == 0
    assert consumer.producer is None
    assert not consumer.aborted
    # Data arriving afterwards is not written to the gone viewer.
    fanout.feed(packets(3) + SYNC)
    assert consumer.value() == b""
    # A callback registered after detaching runs at once.
    viewer.on_detach(detached.append)
    assert detached == [viewer, viewer]


def test_detach_when_unregister_fails_because_request_is_gone():
    fanout, clock, upstream = make_fanout()

    class GoneRequest(Consumer):
        def unregisterProducer(self):
            raise AttributeError("'NoneType' object has no attribute 'unregisterProducer'")

    viewer = fanout.attach(GoneRequest())
    viewer.detach()
    assert viewer.detached and fanout.viewers == set()


def test_lagging_viewer_is_evicted_when_the_ring_drops_its_data():
    clock = Clock()
    fanout, _, upstream = make_fanout(clock, max_behind=1.0, max_bytes=MIN_KEEP_BYTES)
    fast, slow = Consumer(clock=clock), Consumer(limit=1)
    fanout.attach(fast)
    slow_viewer = fanout.attach(slow)
    chunk = packets(500)  # ~94 KB
    sent = 0
    while not slow_viewer.detached:
        fanout.feed(chunk)
        sent += 1
        clock.advance(0.1)
        fast.drain()
        assert sent < 100
    assert slow.aborted
    assert fanout.evictions == 1
    assert slow_viewer.evicted
    # The stalled viewer never held more than what it was handed before pausing.
    assert len(slow.writes) == 1
    # The fast viewer got everything, in order.
    assert fanout.viewers == {v for v in fanout.viewers if v.consumer is fast}
    assert not upstream.paused


def test_eviction_during_a_burst():
    clock = Clock()
    fanout, _, upstream = make_fanout(clock, max_behind=1.0, max_bytes=MIN_KEEP_BYTES)
    for i in range(5):
        fanout.feed(gop(400))
    keep = Consumer(clock=clock)
    fanout.attach(keep)
    late = Consumer(limit=1)
    viewer = fanout.attach(late)
    assert viewer.paused and len(late.writes) == 1  # paused inside its burst
    for _ in range(100):
        if viewer.detached:
            break
        fanout.feed(gop(400))
        keep.drain()
    else:
        raise AssertionError("the paused viewer was never evicted")
    assert viewer.evicted and late.aborted
    # After the eviction nothing more is written to it, even if resumed.
    writes = len(late.writes)
    viewer.resumeProducing()
    fanout.feed(gop(10))
    clock.advance(0)
    assert len(late.writes) == writes


def test_joining_viewer_starts_at_latest_pat_pmt_keyframe_on_a_packet_boundary():
    fanout, clock, _ = make_fanout()
    first = gop(30)
    second = gop(30)
    stream = first + second + packets(7)
    # Feed in pieces that do not line up with packets or GOPs.
    for i in range(0, len(stream), 1000):
        fanout.feed(stream[i : i + 1000])
    fanout.feed(SYNC)
    consumer = Consumer()
    viewer = fanout.attach(consumer)
    got = consumer.value()
    assert viewer.start_offset == len(first)
    assert got == second + packets(7)
    assert got.startswith(pat() + pmt() + video(keyframe=True))
    assert is_aligned(got)


def test_joining_viewer_mid_chunk_gets_the_chunk_tail_then_shared_chunks():
    fanout, clock, _ = make_fanout()
    fanout.feed(packets(5) + gop(5) + SYNC)
    consumer = Consumer()
    fanout.attach(consumer)
    assert consumer.value() == gop(5)
    fanout.feed(packets(3))
    assert consumer.writes[-1] is fanout.ring.chunks[fanout.ring.next_seq - 1].data


def test_join_falls_back_to_pat_then_to_newest_chunk():
    fanout, clock, _ = make_fanout()
    fanout.feed(packets(5))
    fanout.feed(packets(5, 9))
    consumer = Consumer()
    fanout.attach(consumer)
    newest = fanout.ring.chunks[fanout.ring.next_seq - 1].data
    assert consumer.value() == newest == packets(5)[-PACKET_SIZE:] + packets(4, 9)
    fanout.feed(pat() + audio() + audio())
    fanout.feed(packets(2))
    consumer = Consumer()
    fanout.attach(consumer)
    assert consumer.value().startswith(pat())


def test_viewer_joining_an_empty_channel_waits_for_data():
    fanout, clock, _ = make_fanout()
    consumer = Consumer()
    fanout.attach(consumer)
    assert consumer.value() == b""
    fanout.feed(gop(3) + SYNC)
    assert consumer.value() == gop(3)


def test_stalled_viewers_evicted_when_the_upstream_is_paused():
    clock = Clock()
    fanout, _, upstream = make_fanout(clock, max_behind=5.0)
    fanout.feed(gop(5) + SYNC)
    stalled = Consumer()
    viewer = fanout.attach(stalled)
    viewer.pauseProducing()
    assert upstream.paused
    clock.advance(4.9)
    assert not viewer.detached
    clock.advance(0.2)
    assert viewer.evicted and stalled.aborted
    assert not upstream.paused  # nobody left: the channel lingers, reading


def test_stall_timer_reschedules_for_viewers_paused_later():
    clock = Clock()
    fanout, _, upstream = make_fanout(clock, max_behind=5.0)
    early, late = fanout.attach(Consumer()), fanout.attach(Consumer())
    early.pauseProducing()
    clock.advance(3)
    late.pauseProducing()
    clock.advance(2.01)
    assert early.evicted and not late.detached
    assert upstream.paused
    clock.advance(3)
    assert late.evicted


def test_close_finishes_every_viewer():
    fanout, clock, _ = make_fanout()
    finished = []
    for i in range(3):
        fanout.attach(Consumer(), user=f"u{i}", finish=lambda i=i: finished.append(i))
    fanout.close("upstream gone")
    assert sorted(finished) == [0, 1, 2]
    assert fanout.viewers == set()


def test_on_empty_called_when_last_viewer_leaves():
    fanout, clock, _ = make_fanout()
    empty = []
    fanout.on_empty = empty.append
    a, b = fanout.attach(Consumer()), fanout.attach(Consumer())
    a.detach()
    assert empty == []
    b.stopProducing()
    b.detach()
    assert empty == [fanout]


def test_ring_bound_follows_measured_bitrate():
    clock = Clock()
    ring = StreamRing(clock, max_behind=2.0, max_bytes=50 * 1024 * 1024)
    piece = packets(1000)  # 188 000 bytes
    for _ in range(100):  # 1.88 MB/s for 10 s
        ring.append(piece)
        clock.advance(0.1)
    rate = ring.bitrate()
    assert 1.7e6 < rate < 2.1e6
    assert 2.0 * rate - len(piece) <= ring.size <= 2.0 * rate + len(piece)


def test_ring_hard_byte_cap():
    clock = Clock()
    ring = StreamRing(clock, max_behind=10.0, max_bytes=MIN_KEEP_BYTES)
    for _ in range(30):
        ring.append(packets(1000))
        clock.advance(0.1)
    assert ring.size <= MIN_KEEP_BYTES
    assert ring.locate(ring.head) == (ring.first_seq, 0)
    assert ring.locate(ring.tail) == (ring.next_seq, 0)


def test_publishing_to_many_viewers_is_spread_over_reactor_turns():
    fanout, clock, _ = make_fanout(drain_batch=2)
    consumers = [Consumer() for _ in range(5)]
    viewers = [fanout.attach(c) for c in consumers]
    viewers[3].detach()  # leaves while it waits its turn: skipped
    fanout.feed(packets(4) + SYNC)
    assert sum(1 for c in consumers if c.value()) == 2
    clock.advance(0)
    assert sum(1 for c in consumers if c.value()) == 4
    clock.advance(0)
    assert [bool(c.value()) for c in consumers] == [True, True, True, False, True]
    assert all(c.value() == packets(4) for i, c in enumerate(consumers) if i != 3)
    assert clock.getDelayedCalls() == []


def test_a_turn_stops_after_its_byte_budget():
    fanout, clock, _ = make_fanout(drain_budget=3 * PACKET_SIZE)
    consumers = [Consumer() for _ in range(4)]
    for c in consumers:
        fanout.attach(c)
    fanout.feed(packets(2) + SYNC)  # 376 bytes per viewer
    assert sum(1 for c in consumers if c.value()) == 2
    clock.advance(0)
    assert all(c.value() == packets(2) for c in consumers)


def test_resumed_viewer_writes_on_the_next_turn_not_inside_resume():
    fanout, clock, _ = make_fanout()
    consumer = Consumer()
    viewer = fanout.attach(consumer)
    viewer.pauseProducing()
    fanout.feed(packets(3) + SYNC)
    assert consumer.value() == b""
    viewer.resumeProducing()  # called by the transport amid its socket events
    assert consumer.value() == b""
    clock.advance(0)
    assert consumer.value() == packets(3)


def test_short_writes_keep_the_cursor_inside_the_chunk():
    fanout, clock, upstream = make_fanout()
    got = bytearray()
    holder = []

    def write(data):
        take = min(len(data), 500)
        got.extend(bytes(data[:take]))
        if take < len(data):
            holder[0].pauseProducing()  # as the socket writer does
        return take

    consumer = Consumer()
    viewer = fanout.attach(consumer, write=write)
    holder.append(viewer)
    stream = packets(20)
    fanout.feed(stream + SYNC)
    rounds = 0
    while len(got) < len(stream):
        assert viewer.paused
        assert rounds < len(stream), "no progress: the viewer is resumed but writes nothing"
        viewer.resumeProducing()  # the socket is writable again
        clock.advance(0)
        rounds += 1
    assert bytes(got) == stream
    assert viewer.bytes_sent == len(stream)
    assert rounds == len(stream) // 500
    assert consumer.value() == b""  # nothing went through consumer.write


def test_viewers_of_a_new_channel_start_at_its_first_keyframe():
    fanout, clock, _ = make_fanout(keyframe_wait=3.0)
    first, second = Consumer(), Consumer()
    fanout.attach(first)
    fanout.feed(packets(10))  # the middle of a GOP: undecodable
    fanout.attach(second)
    assert first.value() == second.value() == b""
    fanout.feed(gop(5) + SYNC)
    assert first.value() == second.value()
    assert first.value().startswith(pat() + pmt() + video(keyframe=True))
    assert fanout.ring.head == 0  # the skipped GOP tail is still in the ring


def test_waiting_for_a_keyframe_gives_up_after_a_while():
    fanout, clock, _ = make_fanout(keyframe_wait=3.0)
    consumer = Consumer()
    viewer = fanout.attach(consumer)
    fanout.feed(packets(10))
    clock.advance(3.0)
    assert not viewer.waiting
    assert consumer.value() == packets(9)  # the newest chunk; the 10th waits for a sync
    # Later viewers of this stream start at once.
    late = Consumer()
    fanout.attach(late)
    assert late.value() != b""


def test_observers_get_each_chunk_with_its_access_points():
    fanout, clock, _ = make_fanout()
    seen = []
    fanout.ring.observers.append(lambda chunk, points: seen.append((chunk.start, len(chunk.data), points)))
    data = gop(10)
    fanout.feed(data + packets(1))
    assert [(start, size) for start, size, _ in seen] == [(0, len(data))]
    points = seen[0][2]
    assert points and points[0].offset == 0 and any(p.keyframe for p in points)


def test_upstream_reset_publishes_pending_data_then_calls_the_hooks():
    fanout, clock, _ = make_fanout(chunk_bytes=10**6)
    order = []
    fanout.ring.observers.append(lambda chunk, points: order.append(("chunk", len(chunk.data))))
    fanout.on_reset.append(lambda reason: order.append(("reset", reason)))
    fanout.feed(packets(5) + b"\x47\x00")  # five whole packets pending, a partial one held
    fanout.upstream_reset("the upstream reconnected")
    assert order == [("chunk", 5 * PACKET_SIZE), ("reset", "the upstream reconnected")]
    fanout.feed(packets(3) + packets(1))
    fanout.flush()
    assert order[-1] == ("chunk", 3 * PACKET_SIZE)  # the partial packet was forgotten


def test_feed_packets_publishes_whole_segments_in_bounded_chunks():
    fanout, clock, _ = make_fanout(chunk_bytes=10 * PACKET_SIZE)
    sizes = []
    fanout.ring.observers.append(lambda chunk, points: sizes.append(len(chunk.data)))
    fanout.feed_packets(packets(25))
    fanout.flush()
    assert sizes == [10 * PACKET_SIZE, 10 * PACKET_SIZE, 5 * PACKET_SIZE]  # nothing held back


def test_keep_flowing_never_pauses_the_upstream():
    fanout, clock, upstream = make_fanout()
    consumer = Consumer(limit=0)
    fanout.attach(consumer, user="u", address="a")
    fanout.feed(gop(10))
    assert upstream.paused  # its only viewer is paused
    fanout.set_keep_flowing(True)  # an HLS viewer came
    assert not upstream.paused
    fanout.feed(gop(10))
    assert not upstream.paused
    fanout.set_keep_flowing(False)  # the HLS viewer left: the paused viewer pauses it again
    assert upstream.paused
