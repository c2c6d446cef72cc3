"""Tests for xrelay.relay.hls_segmenter: live HLS segments cut from the shared ring."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from xrelay.relay.fanout import StreamRing
from xrelay.relay.hls_segmenter import Segment, Segmenter
from xrelay.relay.mpegts import PACKET_SIZE, is_aligned

from hls_tsgen import WRAP, Feeder, Source, keyframe_video_index, pids
from tsgen import AUDIO_PID, PMT_PID, VIDEO_PID

START = 1_700_000_000.0


def make(source: Source | None = None, step: float = 0.1, **kw: Any) -> tuple[Segmenter, Feeder, Clock]:
    clock = Clock()
    clock.advance(START)
    segmenter = Segmenter(clock, name="test", **kw)
    return segmenter, Feeder(segmenter, clock, source or Source(), step=step), clock




def data(segment: Segment) -> bytes:
    return b"".join(bytes(p) for p in segment.pieces)


def collect(segmenter: Segmenter) -> list[Segment]:
    out: list[Segment] = []
    segmenter.listen(lambda s: out.append(s) if s is not None else None)
    return out


# -- cut points -------------------------------------------------------------------------------


def test_segments_start_with_pat_pmt_keyframe_and_tile_the_stream() -> None:
    segmenter, feeder, _ = make()
    cut = collect(segmenter)
    feeder.play(30)
    assert len(cut) >= 6
    stream = b"".join(c.data for c in feeder.chunks)
    start = stream.find(data(cut[0]))
    assert start >= 0
    for segment in cut:
        body = data(segment)
        assert is_aligned(body)
        assert pids(body)[:3] == [0, PMT_PID, VIDEO_PID]
        assert keyframe_video_index(body) == 2
        assert segment.keyframe and not segment.forced and not segment.discontinuity
        assert segment.duration == pytest.approx(4.0)
        # consecutive segments follow each other byte for byte: nothing lost, nothing doubled
        assert stream[start : start + len(body)] == body
        start += len(body)


def test_segments_share_the_chunks_bytes() -> None:
    segmenter, feeder, _ = make()
    feeder.play(12)
    chunk_data = {id(c.data) for c in feeder.chunks}
    segment = segmenter.window[0]
    assert len(segment.pieces) > 2
    for piece in segment.pieces:
        owner = piece.obj if isinstance(piece, memoryview) else piece
        assert id(owner) in chunk_data  # a view of a ring chunk, never a copy


def test_never_splits_a_packet() -> None:
    # chunks of odd sizes: 7 frames of 4 packets each
    segmenter, feeder, _ = make(Source(fps=30, gop=20), step=0.2)
    feeder.play(20)
    for segment in segmenter.window:
        assert all(len(p) % PACKET_SIZE == 0 for p in segment.pieces)


@pytest.mark.parametrize(
    ("gop_frames", "target", "duration"),
    [
        (25, 6, 4.0),  # 1 s GOP: 4 GOPs a segment
        (75, 6, 3.0),  # 3 s GOP: the keyframe nearest to 4 s is at 3 s
        (60, 6, 4.8),  # 2.4 s GOP: 4.8 s is nearer to 4 s than 2.4 s
        (250, 13, 10.0),  # 10 s GOP: one GOP a segment, the target follows the GOP
    ],
)
def test_target_duration_is_frozen_from_the_aim_and_the_gop(gop_frames: int, target: int,
                                                           duration: float) -> None:
    segmenter, feeder, _ = make(Source(gop=gop_frames))
    cut = collect(segmenter)
    feeder.play(70)
    assert segmenter.target == target
    assert {round(s.duration, 3) for s in cut} == {duration}
    assert all(s.keyframe for s in cut)


def test_forced_cut_rather_than_exceeding_the_target() -> None:
    # a 6 s GOP cannot fit a fixed 4 s target
    segmenter, feeder, _ = make(Source(gop=150), target=4)
    cut = collect(segmenter)
    feeder.play(60)
    assert segmenter.target == 4
    assert all(round(s.duration) <= 4 and s.duration <= 4.0 + 1e-9 for s in cut)
    forced = [s for s in cut if s.forced]
    assert forced and segmenter.forced_cuts == len(forced)
    assert any(s.keyframe for s in cut[1:])  # keyframes still start segments when they can
    for segment in forced:
        body = data(segment)
        # prefixed with the PAT and PMT, then a frame start (a PES start of the video)
        assert pids(body)[:3] == [0, PMT_PID, VIDEO_PID]
        assert body[2 * PACKET_SIZE + 1] & 0x40
        assert not segment.keyframe


def test_gop_longer_than_max_target_is_cut_before_max_target() -> None:
    segmenter, feeder, _ = make(Source(gop=500), max_target=8)
    cut = collect(segmenter)
    feeder.play(60)
    assert segmenter.target is not None and segmenter.target <= 8
    assert all(s.duration <= segmenter.target + 1e-9 for s in cut)
    assert cut[0].keyframe and cut[0].duration == pytest.approx(8.0)


def test_audio_only_channel_cut_at_pes_starts_with_tables() -> None:
    segmenter, feeder, _ = make(Source(video=False), keyframe_wait=2.0)
    cut = collect(segmenter)
    feeder.play(30)
    assert len(cut) >= 5
    for segment in cut:
        body = data(segment)
        assert pids(body)[:3] == [0, PMT_PID, AUDIO_PID]
        assert body[2 * PACKET_SIZE + 1] & 0x40
        assert segment.duration == pytest.approx(4.0)
        assert not segment.discontinuity
    assert segmenter.snapshot()["keyframes"] is False


def test_stream_without_timestamps_is_timed_by_arrival() -> None:
    segmenter, feeder, _ = make(Source(timestamps=False), probe=1.0)
    cut = collect(segmenter)
    feeder.play(30)
    assert segmenter.snapshot()["timebase"] == "clock"
    assert len(cut) >= 4
    assert all(s.keyframe for s in cut)
    assert all(s.duration == pytest.approx(4.0, abs=0.11) for s in cut)


def test_keyframes_returning_switch_back_to_keyframe_cuts() -> None:
    source = Source(keyframes=False)
    segmenter, feeder, _ = make(source, keyframe_wait=2.0)
    feeder.play(12)
    assert segmenter.snapshot()["keyframes"] is False
    source.keyframes = True
    cut = collect(segmenter)
    feeder.play(20)
    assert segmenter.snapshot()["keyframes"] is True
    assert cut[-1].keyframe and keyframe_video_index(data(cut[-1])) == 2


# -- window, sequence, grace --------------------------------------------------------------------------


def test_sequence_grows_and_window_slides() -> None:
    segmenter, feeder, _ = make(window=6)
    seen: list[tuple[int, int]] = []
    segmenter.listen(lambda s: seen.append((segmenter.media_sequence, len(segmenter.window))))
    feeder.play(80)
    assert [s.sequence for s in segmenter.window] == list(
        range(segmenter.media_sequence, segmenter.media_sequence + 6))
    sequences = [m for m, _ in seen]
    assert sequences == sorted(sequences) and sequences[-1] > 0
    assert max(n for _, n in seen) == 6
    window = segmenter.playlist()
    assert window is not None and window.media_sequence == segmenter.window[0].sequence
    assert window.version == segmenter.segments_cut


def test_window_lasts_at_least_three_target_durations() -> None:
    segmenter, feeder, _ = make(window=2)
    feeder.play(60)
    assert segmenter.target == 6
    total = sum(s.duration for s in segmenter.window)
    assert total >= 18 - 1e-9
    assert total - segmenter.window[0].duration < 18
    assert len(segmenter.window) == 5


def test_segment_out_of_the_window_is_served_for_a_grace_period_then_gone() -> None:
    segmenter, feeder, clock = make(window=6)
    feeder.play(30)
    assert segmenter.get(segmenter.next_sequence) is None  # not cut yet
    sequence = play_until_one_leaves(segmenter, feeder)
    segment = segmenter.get(sequence)
    assert segment is not None
    # its duration plus the playlist's duration (RFC 8216 6.2.2)
    grace = segment.duration + sum(s.duration for s in segmenter.window)
    assert grace == pytest.approx(28.0)
    clock.advance(grace - 0.1)
    assert segmenter.get(sequence) is segment
    clock.advance(0.2)
    assert segmenter.get(sequence) is None
    assert segmenter.get(0) is None


def play_until_one_leaves(segmenter: Segmenter, feeder: Feeder) -> int:
    """Feed until a segment leaves the window; its sequence number."""
    first = segmenter.media_sequence
    for _ in range(1000):
        feeder.play(0.1)
        if segmenter.media_sequence > first:
            return first
    raise AssertionError("no segment left the window")


def test_fixed_grace() -> None:
    segmenter, feeder, clock = make(window=6, grace=2.0)
    feeder.play(30)
    sequence = play_until_one_leaves(segmenter, feeder)
    clock.advance(1.9)
    assert segmenter.get(sequence) is not None
    clock.advance(0.2)
    assert segmenter.get(sequence) is None


def test_memory_is_bounded_by_window_and_grace() -> None:
    segmenter, feeder, _ = make(window=6)
    feeder.play(200)
    per_segment = max(s.size for s in segmenter.window)
    # window + the segments in their grace period (about one window more) + the open one
    assert segmenter.held_bytes() <= per_segment * (6 + 8 + 2)
    assert len(segmenter._retired) <= 8


def test_segments_out_of_the_window_go_early_past_a_byte_cap() -> None:
    free, feeder, _ = make(window=6)
    feeder.play(200)
    per_segment = max(s.size for s in free.window)
    capped, feeder, _ = make(window=6, max_held_bytes=8 * per_segment)
    feeder.play(200)
    assert len(capped.window) == 6  # the window itself is never cut short
    kept = sum(s.size for s in capped.window) + sum(s.size for s, _ in capped._retired.values())
    assert kept <= 8 * per_segment and capped._retired
    newest_retired = max(capped._retired)
    assert capped.get(newest_retired) is not None  # the newest ones stay
    assert capped.get(min(free._retired)) is None  # the oldest went early


def test_program_date_time_follows_arrival_then_durations() -> None:
    segmenter, feeder, _ = make()
    cut = collect(segmenter)
    feeder.play(20)
    # the stream starts with a keyframe: the first segment starts in the first chunk
    assert cut[0].program_time == feeder.chunks[0].stamp
    for a, b in zip(cut, cut[1:]):
        assert b.program_time == pytest.approx(a.program_time + a.duration)


def test_continues_an_earlier_numbering() -> None:
    old, feeder, _ = make()
    feeder.play(13)
    old.reset()
    feeder.play(10)
    assert old.next_sequence == 6 and old.window[-1].discontinuity_number == 1
    old.close()
    segmenter, feeder, _ = make(**old.continuation())
    feeder.play(12)
    first = segmenter.window[0]
    assert first.sequence == 6 and first.discontinuity and first.discontinuity_number == 2
    assert segmenter.discontinuity_sequence == 1


# -- discontinuities ----------------------------------------------------------------------------------


def test_upstream_reset_marks_a_discontinuity_and_keeps_numbering() -> None:
    segmenter, feeder, _ = make(window=3)
    cut = collect(segmenter)
    feeder.play(13)
    before = list(cut)
    segmenter.reset()
    # the old stream's last segment was closed at the reset point
    assert len(cut) == len(before) + 1 and cut[-1].duration == pytest.approx(1.0)
    assert not cut[-1].discontinuity
    feeder.source.pts = 12345  # the new connection starts elsewhere
    feeder.play(30)
    after = cut[len(before) + 1 :]
    assert after[0].discontinuity and after[0].keyframe
    assert not any(s.discontinuity for s in after[1:])
    sequences = [s.sequence for s in cut]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert after[0].discontinuity_number == 1
    # the discontinuity sequence counts the tagged segment once it left the window
    assert segmenter.window[0].sequence > after[0].sequence
    assert segmenter.discontinuity_sequence == 1
    assert segmenter.discontinuities == 1


def test_reset_while_waiting_for_a_keyframe() -> None:
    segmenter, feeder, _ = make()
    feeder.play(0.3)
    segmenter.reset()
    feeder.play(10)
    assert segmenter.window and not segmenter.window[0].discontinuity  # nothing before it


def test_discontinuity_sequence_in_playlist_while_tagged_segment_listed() -> None:
    segmenter, feeder, _ = make(window=6)
    feeder.play(13)
    segmenter.reset()
    feeder.play(9)
    tagged = [s for s in segmenter.window if s.discontinuity]
    assert len(tagged) == 1
    assert segmenter.discontinuity_sequence == 0
    assert tagged[0].discontinuity_number == 1


@pytest.mark.parametrize("jump", [-90_000 * 3600, 90_000 * 30], ids=["back", "forward"])
def test_timestamp_jump_marks_a_discontinuity(jump: int) -> None:
    segmenter, feeder, _ = make(window=10)
    cut = collect(segmenter)
    feeder.play(14)
    count = len(cut)
    feeder.source.pts = (feeder.source.pts + jump) % WRAP
    feeder.play(20)
    # the segment before the jump ends at the jump, the next one starts at a keyframe after it
    assert cut[count].duration == pytest.approx(2.0)
    assert not cut[count].discontinuity
    assert cut[count + 1].discontinuity and cut[count + 1].keyframe
    assert all(s.duration == pytest.approx(4.0) for s in cut[count + 1 :])
    assert segmenter.timing.jumps == 1


def test_small_timestamp_steps_are_not_jumps() -> None:
    segmenter, feeder, _ = make(window=10)
    feeder.play(10)
    feeder.source.pts += 90_000  # one second of lost frames
    feeder.play(20)
    assert not any(s.discontinuity for s in segmenter.window)


def test_timestamp_wrap_is_not_a_discontinuity() -> None:
    segmenter, feeder, _ = make(Source(pts=WRAP - 90_000 * 7), window=10)
    cut = collect(segmenter)
    feeder.play(30)
    assert not any(s.discontinuity for s in cut)
    assert all(s.duration == pytest.approx(4.0) for s in cut)


# -- feeding from a ring, closing -------------------------------------------------------------------------


def test_prime_from_a_running_rings_chunks() -> None:
    clock = Clock()
    clock.advance(START)
    ring = StreamRing(clock, max_behind=30)
    source = Source()
    for i in range(150):  # 15 s of stream in the ring, 2.5 frames a chunk
        clock.advance(0.1)
        ring.append(source.frames(2 if i % 2 else 3))
    segmenter = Segmenter(clock, name="primed")
    segmenter.prime([ring.chunks[s] for s in range(ring.first_seq, ring.next_seq)], ring.access_points())
    window = segmenter.playlist()
    assert window is not None and len(window.segments) >= 2
    assert all(pids(data(s))[:3] == [0, PMT_PID, VIDEO_PID] for s in window.segments)
    assert all(s.duration == pytest.approx(4.0) for s in window.segments)


def test_close_tells_listeners_and_forgets_segments() -> None:
    segmenter, feeder, _ = make()
    events: list[Segment | None] = []
    segmenter.listen(events.append)
    feeder.play(10)
    assert events and events[-1] is not None
    segmenter.close("no viewers left")
    assert events[-1] is None
    assert segmenter.get(0) is None and segmenter.playlist() is None
    feeder.play(10)  # ignored
    late: list[Segment | None] = []
    segmenter.listen(late.append)
    assert late == [None]


def split_keyframes(source: Source, seconds: float) -> list[bytes]:
    """Frames as chunks, each keyframe's PAT and PMT in a chunk of their own
    (the access point then lies in the chunk before its keyframe)."""
    out = []
    for _ in range(int(seconds * source.fps)):
        frame = source.next_frame()
        if pids(frame)[0] == 0:
            out += [frame[: 2 * PACKET_SIZE], frame[2 * PACKET_SIZE :]]
        else:
            out.append(frame)
    return out


def test_access_point_in_the_chunk_before_its_keyframe() -> None:
    segmenter, feeder, clock = make()
    for chunk in split_keyframes(feeder.source, 30):
        clock.advance(0.02)
        feeder.push(chunk)
    assert len(segmenter.window) >= 5
    for segment in segmenter.window:
        assert pids(data(segment))[:3] == [0, PMT_PID, VIDEO_PID]
        assert segment.duration == pytest.approx(4.0)


def test_prime_decides_access_points_at_their_keyframe() -> None:
    clock = Clock()
    clock.advance(START)
    ring = StreamRing(clock, max_behind=60)
    for chunk in split_keyframes(Source(), 20):
        clock.advance(0.02)
        ring.append(chunk)
    segmenter = Segmenter(clock, name="primed")
    segmenter.prime([ring.chunks[s] for s in range(ring.first_seq, ring.next_seq)], ring.access_points())
    assert [round(s.duration, 3) for s in segmenter.window] == [4.0] * 4
    assert all(pids(data(s))[:3] == [0, PMT_PID, VIDEO_PID] for s in segmenter.window)
