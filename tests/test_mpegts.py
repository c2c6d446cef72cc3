"""Tests for xrelay.relay.mpegts: packet alignment and random access points."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from xrelay.relay.mpegts import (
    PACKET_SIZE,
    AccessPoint,
    AccessPointScanner,
    PacketAligner,
    is_aligned,
    is_random_access,
    parse_pat,
    parse_pmt,
)

from tsgen import AUDIO_PID, PMT_PID, VIDEO_PID, audio, gop, packet, pat, pmt, video

SAMPLE = Path(__file__).resolve().parents[1] / "xrelay" / "demo" / "sample.ts"


def feed_in_pieces(aligner: PacketAligner, data: bytes, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 3000)
        piece = aligner.feed(data[pos : pos + size])
        assert len(piece) % PACKET_SIZE == 0
        out.append(piece)
        pos += size
    return b"".join(out)


def test_aligner_passes_aligned_stream_through_unchanged():
    data = gop(30) * 5
    aligner = PacketAligner()
    # The newest packet waits for the next one's sync byte to confirm it.
    assert feed_in_pieces(aligner, data) + aligner.feed(b"\x47") == data
    assert aligner.dropped == 0


def test_aligner_holds_partial_packet_until_complete():
    aligner = PacketAligner()
    p = video()
    assert aligner.feed(p[:100]) == b""
    assert aligner.feed(p[100:]) == b""
    assert aligner.feed(p[:10]) == p
    assert aligner.feed(p[10:] + b"\x47") == p


def test_aligner_resyncs_after_garbage():
    good = gop(10)
    data = b"\x01\x02\x47junk" + good + b"\x47" * 3 + b"xyz" + good
    aligner = PacketAligner()
    out = feed_in_pieces(aligner, data, seed=7) + aligner.feed(b"\x47")
    assert is_aligned(out)
    assert out == good + good
    assert aligner.dropped == len(data) - len(out)
    assert aligner.resyncs >= 2


def test_aligner_drops_a_truncated_packet_in_the_middle():
    packets = [video(fill=i) for i in range(10)]
    data = b"".join(packets[:4]) + packets[4][:50] + b"".join(packets[5:])
    out = PacketAligner().feed(data + b"\x47")
    assert is_aligned(out)
    # Only the cut packet is lost: the aligner resyncs from inside it.
    assert out == b"".join(packets[:4]) + b"".join(packets[5:])


def test_aligner_reset_forgets_partial_packet():
    aligner = PacketAligner()
    aligner.feed(video()[:60])
    aligner.reset()
    assert aligner.feed(video() + b"\x47") == video()


def test_is_aligned():
    assert is_aligned(gop(3))
    assert not is_aligned(gop(3)[1:])
    assert not is_aligned(gop(3) + b"\x47")
    assert is_aligned(b"")


def test_parse_pat_and_pmt():
    assert parse_pat(pat()) == frozenset({PMT_PID})
    assert parse_pmt(pmt()) == {VIDEO_PID: 0x1B, AUDIO_PID: 0x0F}
    # Not a PAT/PMT: wrong table id, no payload unit start.
    assert parse_pat(pmt()) == frozenset()
    assert parse_pmt(pat()) is None
    assert parse_pat(packet(0, b"\x00" * 184)) == frozenset()


def test_random_access_indicator_and_idr_detection():
    assert is_random_access(video(keyframe=True))
    assert not is_random_access(video())
    # A PES start with an H.264 IDR NAL but no RAI flag is accepted too.
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + b"\x21\x00\x01\x00\x01" + b"\x00\x00\x00\x01\x65"
    assert is_random_access(packet(VIDEO_PID, pes + b"\x00" * 100, pusi=True), 0x1B)
    non_idr = pes[:-1] + b"\x41"
    assert not is_random_access(packet(VIDEO_PID, non_idr + b"\x00" * 100, pusi=True), 0x1B)


def test_scanner_reports_pat_followed_by_pmt_and_keyframe():
    data = gop(10) + gop(10)
    points = AccessPointScanner().scan(data, 1000)
    second = 1000 + len(gop(10))
    assert AccessPoint(1000, True) in points
    assert AccessPoint(second, True) in points
    assert [p.offset for p in points if not p.keyframe] == [1000, second]


def test_scanner_needs_pmt_between_pat_and_keyframe():
    scanner = AccessPointScanner()
    scanner.scan(pat() + pmt(), 0)  # learn the tables
    data = pat() + video(keyframe=True) + audio()
    points = scanner.scan(data, 376)
    assert points == [AccessPoint(376, False)]


def test_scanner_works_across_chunks():
    data = gop(10)
    scanner = AccessPointScanner()
    points = []
    for off in range(0, len(data), PACKET_SIZE):
        points += scanner.scan(data[off : off + PACKET_SIZE], 500 + off)
    assert AccessPoint(500, True) in points


def test_scanner_keyframe_reported_once_per_pat():
    scanner = AccessPointScanner()
    data = pat() + pmt() + video(keyframe=True) + video(keyframe=True)
    assert [p for p in scanner.scan(data, 0) if p.keyframe] == [AccessPoint(0, True)]


@pytest.mark.skipif(not SAMPLE.exists(), reason="demo sample missing")
def test_scanner_on_the_demo_sample_matches_its_keyframes():
    from xrelay.demo.sample import sample_clip

    data = SAMPLE.read_bytes()
    points = AccessPointScanner().scan(data, 0)
    assert tuple(p.offset for p in points if p.keyframe) == sample_clip().keyframe_offsets
