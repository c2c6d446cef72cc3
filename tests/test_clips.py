"""Status clips: validation, real-time looping, and what a decoder makes of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

import tsgen
from xrelay.relay.mpegts import PACKET_SIZE, packet_pid
from xrelay.relay.clips import (
    CLIP_REASONS,
    Clip,
    ClipError,
    ClipProducer,
    StatusClips,
    load_clips,
    parse_clip,
)

BUILTIN = Path(__file__).resolve().parent.parent / "xrelay" / "relay" / "clips"


@pytest.fixture(scope="module")
def clips() -> dict[str, Clip]:
    return load_clips()


class Consumer(StringTransport):
    """Collects what the producer writes; pauses it when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.unregistered = 0

    def unregisterProducer(self) -> None:
        self.unregistered += 1
        super().unregisterProducer()


def play(clip: Clip, limit: float, **kw: Any) -> tuple[ClipProducer, Consumer, Clock, list[str]]:
    clock, consumer = Clock(), Consumer()
    producer = ClipProducer(clip, consumer, clock, limit=limit, **kw)
    outcome: list[str] = []
    producer.start().addCallback(outcome.append)
    return producer, consumer, clock, outcome


def run_out(clock: Clock, outcome: list[str], seconds: float, step: float = 0.1) -> None:
    for _ in range(int(seconds / step) + 1):
        if outcome:
            return
        clock.advance(step)


# -- parsing the output ----------------------------------------------------


def packets(data: bytes) -> list[bytes]:
    assert len(data) % PACKET_SIZE == 0
    return [data[i : i + PACKET_SIZE] for i in range(0, len(data), PACKET_SIZE)]


def ts(b: bytes, at: int) -> int:
    return (((b[at] >> 1) & 7) << 30) | (b[at + 1] << 22) | ((b[at + 2] >> 1) << 15) | (b[at + 3] << 7) | (b[at + 4] >> 1)


def pcr(p: bytes) -> int | None:
    if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10:
        return (p[6] << 25) | (p[7] << 17) | (p[8] << 9) | (p[9] << 1) | (p[10] >> 7)
    return None


def pes_stamps(p: bytes) -> tuple[int | None, int | None]:
    if not p[1] & 0x40:
        return None, None
    pos = 4 + (1 + p[4] if p[3] & 0x20 else 0)
    if p[pos : pos + 3] != b"\x00\x00\x01" or p[pos + 3] < 0xC0:
        return None, None
    flags = p[pos + 7] >> 6
    pts = ts(p, pos + 9) if flags & 2 else None
    dts = ts(p, pos + 14) if flags == 3 else pts
    return pts, dts


def discontinuity(p: bytes) -> bool:
    return bool(p[3] & 0x20 and p[4] >= 1 and p[5] & 0x80)


def check_stream(data: bytes) -> dict[str, Any]:
    """Continuity counters, timestamps and discontinuity flags, per PID."""
    last_cc: dict[int, int] = {}
    last_pts: dict[int, int] = {}
    last_dts: dict[int, int] = {}
    last_pcr = -1
    flags: dict[int, int] = {}
    for p in packets(data):
        assert p[0] == 0x47
        pid = packet_pid(p)
        cc = p[3] & 0x0F
        payload = bool(p[3] & 0x10)
        if pid in last_cc:
            expected = (last_cc[pid] + 1) & 0x0F if payload else last_cc[pid]
            assert cc == expected, f"pid {pid:#x}: continuity counter {cc} after {last_cc[pid]}"
        if payload or pid not in last_cc:
            last_cc[pid] = cc
        if discontinuity(p):
            flags[pid] = flags.get(pid, 0) + 1
        value = pcr(p)
        if value is not None:
            assert value > last_pcr, "PCR went backwards"
            last_pcr = value
        pts, dts = pes_stamps(p)
        if pts is not None:
            assert pts > last_pts.get(pid, -1), f"pid {pid:#x}: PTS went backwards"
            last_pts[pid] = pts
        if dts is not None:
            assert dts > last_dts.get(pid, -1), f"pid {pid:#x}: DTS went backwards"
            last_dts[pid] = dts
    return {"flags": flags, "pids": set(last_cc), "last_pts": last_pts}


# -- the built-in clips ----------------------------------------------------


def test_the_builtin_clips_are_small_checked_and_complete(clips: dict[str, Clip]) -> None:
    assert set(clips) == set(CLIP_REASONS) == {"busy", "unavailable", "expired"}
    for reason, clip in clips.items():
        size = (BUILTIN / f"{reason}.ts").stat().st_size
        assert size < 300_000
        assert 2.0 <= clip.duration <= 10.0
        first = clip.packets[0]
        assert packet_pid(clip.data[first.offset : first.offset + 4]) in (0, 0x11)  # SDT or PAT


def test_the_builtin_clips_say_why(clips: dict[str, Clip]) -> None:
    script = (Path(__file__).resolve().parent.parent / "tools" / "make_status_clips.sh").read_text()
    assert "All connections are in use" in script
    assert "Channel unavailable" in script
    assert "Account expired" in script


# -- validation ------------------------------------------------------------


def pes(pts: int, body: bytes = b"\x00\x00\x00\x01\x65") -> bytes:
    """A video PES header carrying ``pts`` followed by ``body``."""
    stamp = bytes([
        0x21 | ((pts >> 29) & 0x0E), (pts >> 22) & 0xFF, ((pts >> 14) & 0xFE) | 1,
        (pts >> 7) & 0xFF, ((pts << 1) & 0xFE) | 1,
    ])
    return b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + stamp + body


def synthetic(frames: int = 25) -> bytes:
    """PAT, PMT (no adaptation fields), then one video frame per packet."""
    out = [tsgen.pat(), tsgen.pmt()]
    for i in range(frames):
        out.append(tsgen.packet(tsgen.VIDEO_PID, pes(90_000 + 3600 * i), pusi=True, rai=i == 0, cc=i))
    return b"".join(out)


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (synthetic()[:-1], "whole 188-byte"),
    (b"\x00" + synthetic()[1:], "whole 188-byte"),
    (synthetic()[2 * PACKET_SIZE :], "does not start with a PAT"),
    (tsgen.pat() + tsgen.video(keyframe=True), "before the PMT"),
    (tsgen.pat() + tsgen.pmt() + tsgen.video(keyframe=False), "keyframe"),
    (tsgen.pat() + tsgen.pmt() + tsgen.audio(), "no video packet"),
    (tsgen.gop(), "no PES timestamps"),
    (synthetic(frames=3), "a loop of 0.12 s"),
])
def test_a_clip_that_cannot_be_played_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ClipError, match=why):
        parse_clip("x.ts", data)


def test_every_pid_gets_a_discontinuity_marker_at_its_first_packet() -> None:
    clip = parse_clip("s.ts", synthetic())
    # PAT and PMT had no adaptation field: a marker packet goes before each;
    # the first video packet had one, which now carries the flag.
    assert len(clip.data) == len(synthetic()) + 2 * PACKET_SIZE
    assert clip.period == 25 * 3600
    firsts: dict[int, bytes] = {}
    for p in packets(clip.data):
        firsts.setdefault(packet_pid(p), p)
    assert set(firsts) == {0, tsgen.PMT_PID, tsgen.VIDEO_PID}
    assert all(discontinuity(p) for p in firsts.values())
    assert not firsts[0][3] & 0x10 and not firsts[tsgen.PMT_PID][3] & 0x10
    assert firsts[tsgen.VIDEO_PID][3] & 0x10
    # Looped, the synthetic clip keeps its counters and timestamps in order.
    producer, consumer, clock, outcome = play(clip, limit=5.0)
    run_out(clock, outcome, 10)
    assert outcome == ["complete"]
    assert check_stream(consumer.value())["flags"] == {0: 5, tsgen.PMT_PID: 5, tsgen.VIDEO_PID: 5}


def test_the_builtin_clip_already_carries_its_markers(clips: dict[str, Clip]) -> None:
    raw = (BUILTIN / "busy.ts").read_bytes()
    assert clips["busy"].data == raw  # ffmpeg's +initial_discontinuity did it


# -- looping ---------------------------------------------------------------


def test_loops_keep_counters_running_and_timestamps_increasing(clips: dict[str, Clip]) -> None:
    clip = clips["busy"]
    producer, consumer, clock, outcome = play(clip, limit=3.5 * clip.duration)
    run_out(clock, outcome, 30)
    assert outcome == ["complete"]
    assert producer.loops == 3
    seen = check_stream(consumer.value())
    # The first packet of every PID carries the marker at every loop.
    assert seen["flags"] == {pid: 4 for pid in seen["pids"]}
    # Three whole loops and a half: the video's last PTS is past three periods.
    video = max(seen["last_pts"], key=lambda pid: seen["last_pts"][pid])
    assert seen["last_pts"][video] > 3 * clip.period


def test_the_clip_is_paced_at_real_time_after_a_short_lead(clips: dict[str, Clip]) -> None:
    clip = clips["unavailable"]
    producer, consumer, clock, outcome = play(clip, limit=20.0, lead=1.0, tick=0.2)
    rate = len(clip.data) / clip.duration  # bytes per second
    first = len(consumer.value())
    assert 0 < first < 2.0 * rate
    for second in range(1, 15):
        clock.advance(1.0)
        sent = len(consumer.value())
        # Never more than the lead ahead of the clock, never far behind it.
        assert (second - 0.5) * rate < sent < (second + 1.0) * rate + 2 * PACKET_SIZE * 20
    run_out(clock, outcome, 10)
    assert outcome == ["complete"]
    assert clock.seconds() <= 20.0
    assert consumer.unregistered == 1 and consumer.producer is None
    assert not clock.getDelayedCalls()
    assert 19.0 * rate < producer.bytes_sent < 21.0 * rate


def test_a_paused_consumer_gets_nothing_until_it_resumes(clips: dict[str, Clip]) -> None:
    producer, consumer, clock, outcome = play(clips["busy"], limit=20.0)
    producer.pauseProducing()
    before = len(consumer.value())
    clock.advance(3.0)
    assert len(consumer.value()) == before
    producer.resumeProducing()
    assert len(consumer.value()) > before  # what fell due while paused
    run_out(clock, outcome, 25)
    assert outcome == ["complete"]
    check_stream(consumer.value())


def test_a_consumer_paused_for_good_is_dropped_after_the_grace(clips: dict[str, Clip]) -> None:
    producer, consumer, clock, outcome = play(clips["busy"], limit=20.0, lead=1.0, grace=10.0)
    producer.pauseProducing()
    clock.advance(30.9)
    assert outcome == []
    clock.advance(0.2)
    assert outcome == ["stalled"]
    assert consumer.producer is None and not clock.getDelayedCalls()


def test_stop_producing_stops_at_once(clips: dict[str, Clip]) -> None:
    producer, consumer, clock, outcome = play(clips["expired"], limit=20.0)
    producer.stopProducing()
    sent = len(consumer.value())
    clock.advance(5.0)
    assert outcome == ["stopped"]
    assert len(consumer.value()) == sent
    assert not clock.getDelayedCalls()
    producer.resumeProducing()
    assert len(consumer.value()) == sent


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_decodes_several_loops_with_increasing_timestamps(
        clips: dict[str, Clip], tmp_path: Path) -> None:
    clip = clips["busy"]
    producer, consumer, clock, outcome = play(clip, limit=4 * clip.duration)
    run_out(clock, outcome, 30)
    assert outcome == ["complete"]
    path = tmp_path / "looped.ts"
    path.write_bytes(consumer.value())
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "frame=stream_index,pts,media_type",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert result.stderr == ""
    pts: dict[str, list[int]] = {}
    for line in filter(None, result.stdout.splitlines()):
        kind, _, value = line.split(",")[:3]
        pts.setdefault(kind, []).append(int(value))
    assert set(pts) == {"video", "audio"}
    frames = clip.period // 3600  # 25 fps
    assert len(pts["video"]) >= 4 * frames - 2
    for kind, values in pts.items():
        assert all(b > a for a, b in zip(values, values[1:])), f"{kind} timestamps go backwards"
    assert pts["video"][-1] - pts["video"][0] > 3.9 * clip.period


# -- a real twisted.web response -------------------------------------------


class _ClipPage(Resource):
    isLeaf = True

    def __init__(self, status: StatusClips) -> None:
        super().__init__()
        self.status = status

    def render_GET(self, request: Any) -> Any:
        return self.status.play(request, "busy")

    def render_HEAD(self, request: Any) -> Any:
        return self.status.play(request, "busy")


def _connect(status: StatusClips, request: bytes) -> StringTransport:
    channel = Site(_ClipPage(status)).buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request)
    return transport


def test_status_clips_answer_200_mp2t_then_close(clips: dict[str, Clip]) -> None:
    clock = Clock()
    status = StatusClips(clock, clips, limit=6.0)
    transport = _connect(status, b"GET /live/u/p/1.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    head = transport.value().split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: video/mp2t" in head
    assert status.served == {"busy": 1} and status.playing == 1
    for _ in range(80):
        clock.advance(0.1)
    assert status.playing == 0
    assert transport.value().endswith(b"0\r\n\r\n")  # the chunked body ended
    assert transport.disconnecting
    assert not clock.getDelayedCalls()


def test_a_head_request_gets_the_headers_and_no_clip(clips: dict[str, Clip]) -> None:
    clock = Clock()
    status = StatusClips(clock, clips)
    transport = _connect(status, b"HEAD /live/u/p/1.ts HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert b"video/mp2t" in transport.value()
    assert status.served == {} and not clock.getDelayedCalls()


def test_a_client_leaving_stops_the_clip(clips: dict[str, Clip]) -> None:
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    clock = Clock()
    status = StatusClips(clock, clips)
    channel = Site(_ClipPage(status)).buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status.playing == 1
    channel.connectionLost(Failure(ConnectionLost()))
    assert status.playing == 0
    assert not clock.getDelayedCalls()


# -- replacement clips -----------------------------------------------------


def test_a_directory_replaces_the_clips_it_holds(tmp_path: Path) -> None:
    shutil.copy(BUILTIN / "expired.ts", tmp_path / "busy.ts")
    clips = load_clips(tmp_path)
    assert clips["busy"].name == str(tmp_path / "busy.ts")
    assert clips["busy"].data == clips["expired"].data
    assert clips["unavailable"].name == "built-in unavailable.ts"


def test_a_broken_replacement_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "expired.ts").write_bytes(b"not a clip")
    with pytest.raises(ClipError, match=r"expired\.ts: not whole 188-byte"):
        load_clips(tmp_path)
