"""The sample clip, its endless loop and the HLS segments cut from it."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from xrelay.demo import hls
from xrelay.demo.sample import (
    SAMPLE_PATH, TS_PACKET, _pes_timestamp_offsets, _read_ts, icon_png, retime, sample_clip,
)


def video_dts(data: bytes, video_pid: int = 0x100) -> list[int]:
    out = []
    for off in range(0, len(data), TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        if ((pkt[1] & 0x1F) << 8 | pkt[2]) == video_pid:
            offsets = _pes_timestamp_offsets(pkt)
            if offsets:
                out.append(_read_ts(pkt, offsets[-1]))
    return out


def continuity_errors(data: bytes) -> int:
    last: dict[int, int] = {}
    errors = 0
    for off in range(0, len(data), TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        pid = (pkt[1] & 0x1F) << 8 | pkt[2]
        if not pkt[3] & 0x10:
            continue
        cc = pkt[3] & 0x0F
        if pid in last and cc != (last[pid] + 1) & 0x0F:
            errors += 1
        last[pid] = cc
    return errors


def test_clip_properties() -> None:
    clip = sample_clip()
    assert SAMPLE_PATH.stat().st_size < 1_100_000
    assert len(clip.data) % TS_PACKET == 0
    assert all(clip.data[i] == 0x47 for i in range(0, len(clip.data), TS_PACKET))
    assert 4 <= clip.duration <= 6.5
    assert 700_000 <= clip.bitrate_bps <= 1_400_000
    assert len(clip.keyframe_offsets) == 5  # one keyframe a second
    for offset in clip.keyframe_offsets:
        assert clip.data[offset + 1] & 0x1F == 0 and clip.data[offset + 2] == 0  # a PAT
    assert clip.period_90k == pytest.approx(clip.duration * 90_000, rel=0.02)


def test_loop_keeps_timestamps_and_counters_continuous() -> None:
    clip = sample_clip()
    three = clip.cyclic(0, 3 * len(clip.data))
    dts = video_dts(three)
    assert all(b > a for a, b in zip(dts, dts[1:])), "video DTS must keep increasing"
    steps = {b - a for a, b in zip(dts, dts[1:])}
    assert max(steps) < 3600 * 2  # no jump back, at most a short gap at the seam
    assert continuity_errors(three) == 0
    assert clip.cyclic(len(clip.data) - 188, 376) == clip.loop(0)[-188:] + clip.loop(1)[:188]


def test_retime_round_trip() -> None:
    data = sample_clip().data
    assert retime(retime(data, 123_456_789), -123_456_789) == data
    assert retime(data, 1 << 33) == data  # timestamps wrap at 33 bits


def test_hls_segments_follow_each_other() -> None:
    n = 900_000_001
    first, second = video_dts(hls.segment_bytes(n)), video_dts(hls.segment_bytes(n + 1))
    assert first[0] + hls.SEGMENT_SECONDS * 90_000 == pytest.approx(second[0], abs=3600)
    assert hls.segment_bytes(n)[0] == 0x47


def test_icon_is_a_valid_png() -> None:
    png = icon_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    (idat_len,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    raw = zlib.decompress(png[41 : 41 + idat_len])
    assert len(raw) == height * (1 + 3 * width)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_reads_three_passes_of_the_loop(tmp_path: Path) -> None:
    clip = sample_clip()
    path = tmp_path / "loop.ts"
    path.write_bytes(clip.cyclic(0, 3 * len(clip.data)))
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,profile",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    info = json.loads(result.stdout)
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert float(info["format"]["duration"]) == pytest.approx(3 * clip.duration, rel=0.03)
    assert result.stderr == ""
