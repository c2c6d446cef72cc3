"""A synthetic live MPEG-TS source with PES timestamps, for the HLS tests.

Builds on :mod:`tsgen` (PAT, PMT and packet framing): every video frame is
one PES (a PUSI packet with PTS and DTS, then ``frame_packets - 1``
continuation packets), keyframes are preceded by a PAT and a PMT and carry
the random_access_indicator, and each frame is followed by one audio PES.
:class:`Feeder` plays it into a :class:`~xrelay.relay.hls_segmenter.Segmenter`
the way a channel's ring does: one sealed chunk per step, with the access
points its scanner found, while a ``Clock`` advances.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from tsgen import AUDIO_PID, PMT_PID, VIDEO_PID, _crc, packet, pat, pmt
from xrelay.relay.fanout import Chunk
from xrelay.relay.mpegts import PACKET_SIZE, AccessPointScanner, packet_pid

WRAP = 1 << 33


def _ts(prefix: int, value: int) -> bytes:
    value %= WRAP
    return bytes([
        (prefix << 4) | ((value >> 29) & 0x0E) | 1,
        (value >> 22) & 0xFF,
        ((value >> 14) & 0xFE) | 1,
        (value >> 7) & 0xFF,
        ((value << 1) & 0xFE) | 1,
    ])


def pes_header(stream_id: int, pts: int, dts: int | None = None) -> bytes:
    if dts is None:
        return bytes([0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5]) + _ts(0b0010, pts)
    return bytes([0, 0, 1, stream_id, 0, 0, 0x80, 0xC0, 10]) + _ts(0b0011, pts) + _ts(0b0001, dts)


def pmt_audio_only(audio_pid: int = AUDIO_PID) -> bytes:
    """A PMT listing one AAC stream (its PCR on the audio PID)."""
    streams = bytes([0x0F, 0xE0 | (audio_pid >> 8), audio_pid & 0xFF, 0xF0, 0x00])
    body = b"\x00\x01\xc1\x00\x00" + bytes([0xE0 | (audio_pid >> 8), audio_pid & 0xFF, 0xF0, 0x00]) + streams
    section = bytes([0x02, 0xB0, len(body) + 4]) + body
    section += _crc(section)
    return packet(PMT_PID, b"\x00" + section + b"\xff" * (183 - len(section)), pusi=True)


class Source:
    """An endless synthetic channel: ``fps`` frames a second, a keyframe
    every ``gop`` frames (none if ``keyframes`` is false), timestamps from
    ``pts`` (90 kHz)."""

    def __init__(self, *, fps: int = 25, gop: int = 25, pts: int = 900_000, keyframes: bool = True,
                 timestamps: bool = True, video: bool = True, frame_packets: int = 3) -> None:
        self.fps = fps
        self.gop = gop
        self.pts = pts
        self.keyframes = keyframes
        self.timestamps = timestamps
        self.video = video
        self.frame_packets = frame_packets
        self.frame = 0
        self._cc: dict[int, int] = {}

    @property
    def frame_ticks(self) -> int:
        return 90_000 // self.fps

    def _packet(self, pid: int, payload: bytes, **kw: Any) -> bytes:
        cc = self._cc.get(pid, 0)
        self._cc[pid] = (cc + 1) & 0xF
        return packet(pid, payload, cc=cc, **kw)

    def next_frame(self) -> bytes:
        key = self.keyframes and self.frame % self.gop == 0
        out = []
        if self.frame % self.gop == 0:
            out += [pat(), pmt() if self.video else pmt_audio_only()]
        pts = self.pts
        if self.video:
            header = pes_header(0xE0, pts + 3600, pts) if self.timestamps else b"\x00" * 19
            out.append(self._packet(VIDEO_PID, header + b"\x11" * 170, pusi=True, rai=key))
            out += [self._packet(VIDEO_PID, b"\x22" * 184) for _ in range(self.frame_packets - 1)]
        audio = pes_header(0xC0, pts) if self.timestamps else b"\x00" * 14
        out.append(self._packet(AUDIO_PID, audio + b"\x33" * 170, pusi=True))
        self.frame += 1
        self.pts = (self.pts + self.frame_ticks) % WRAP
        return b"".join(out)

    def frames(self, count: int) -> bytes:
        return b"".join(self.next_frame() for _ in range(count))


class Feeder:
    """Plays a :class:`Source` into ``sink.publish(chunk, points)`` in
    real time on a ``Clock``, one chunk per ``step`` seconds."""

    def __init__(self, sink: Any, clock: Clock, source: Source | None = None, *, step: float = 0.1) -> None:
        self.sink = sink
        self.clock = clock
        self.source = source or Source()
        self.step = step
        self.scanner = AccessPointScanner()
        self.offset = 0
        self.seq = 0
        self.chunks: list[Chunk] = []
        self._owed = 0.0

    def push(self, data: bytes) -> Chunk:
        chunk = Chunk(self.seq, self.offset, data, self.clock.seconds())
        self.seq += 1
        self.offset += len(data)
        self.chunks.append(chunk)
        self.sink.publish(chunk, self.scanner.scan(data, chunk.start))
        return chunk

    def play(self, seconds: float) -> None:
        """``seconds`` of stream, in chunks of ``step`` seconds."""
        steps = round(seconds / self.step)
        for _ in range(steps):
            self._owed += self.step * self.source.fps
            count = int(self._owed + 1e-9)
            self._owed -= count
            self.clock.advance(self.step)
            if count:
                self.push(self.source.frames(count))


def pids(data: bytes | memoryview) -> list[int]:
    return [packet_pid(data, off) for off in range(0, len(data), PACKET_SIZE)]


def keyframe_video_index(data: bytes) -> int | None:
    """Index of the first video packet with the random_access_indicator."""
    for i, off in enumerate(range(0, len(data), PACKET_SIZE)):
        if packet_pid(data, off) == VIDEO_PID and data[off + 3] & 0x20 and data[off + 5] & 0x40:
            return i
    return None
