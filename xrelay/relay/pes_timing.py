"""Media time of a packet-aligned MPEG-TS stream, read from its PES headers.

The live HLS segmenter measures segment durations in the stream's own time,
not in arrival time: :class:`TimingTracker` follows the PAT and PMT, picks
one *timing* elementary stream (the first video stream, else the first audio
stream), and turns the DTS (else PTS) of each of its PES starts into a
:class:`Mark`: the absolute offset of that TS packet and its time in seconds
on one continuous timeline.

* The 33-bit, 90 kHz timestamps wrap about every 26.5 hours; the timeline
  does not (the difference between consecutive timestamps is taken modulo
  2**33).
* A timestamp that goes back by more than ``max_back`` seconds, or forward by
  more than ``max_gap`` seconds, from the previous one of the same stream is a
  break (a looping source, a provider restart): that mark says ``jump`` and
  the timeline is glued on (one frame after the previous mark), so durations
  measured on either side of it stay right.
* It also keeps the latest PAT and PMT packets (:attr:`TimingTracker.psi`) so
  that a segment cut elsewhere than at a PAT can be prefixed with them.

Only packets with ``payload_unit_start_indicator`` set are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from xrelay.relay.mpegts import PACKET_SIZE, PAT_PID, VIDEO_STREAM_TYPES, parse_pat, parse_pmt

TIMESCALE = 90_000
WRAP = 1 << 33
#: stream_type values taken as audio when a program has no video.
AUDIO_STREAM_TYPES = frozenset(
    {
        0x03,  # MPEG-1 audio
        0x04,  # MPEG-2 audio
        0x0F,  # AAC (ADTS)
        0x11,  # AAC (LATM)
        0x1C,  # MPEG-4 audio
        0x81,  # AC-3 (ATSC)
        0x87,  # E-AC-3 (ATSC)
    }
)
#: PES stream_id values whose packets have no optional header (no PTS).
_NO_PES_HEADER = frozenset({0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF})
DEFAULT_MAX_GAP = 5.0
DEFAULT_MAX_BACK = 1.0
#: Assumed frame duration until two consecutive timestamps were seen.
DEFAULT_FRAME = 0.04


@dataclass(frozen=True, slots=True)
class Mark:
    """A PES start of the timing stream: where it is and when it is."""

    offset: int
    time: float
    #: The stream's timestamps broke just before this mark.
    jump: bool = False


def _timestamp(b: bytes | memoryview, pos: int) -> int:
    return (
        ((b[pos] >> 1) & 0x07) << 30
        | b[pos + 1] << 22
        | (b[pos + 2] >> 1) << 15
        | b[pos + 3] << 7
        | b[pos + 4] >> 1
    )


def pes_timestamp(data: bytes | memoryview, off: int = 0) -> int | None:
    """The DTS (else the PTS) of the PES starting in the packet at ``off``,
    as a raw 33-bit 90 kHz value; None when the packet carries none."""
    if data[off + 3] & 0xC0:  # scrambled
        return None
    afc = (data[off + 3] >> 4) & 0x3
    pos = off + 4
    if afc & 0x2:
        pos += 1 + data[off + 4]
    end = off + PACKET_SIZE
    if not afc & 0x1 or pos + 14 > end:
        return None
    if data[pos] or data[pos + 1] or data[pos + 2] != 1 or data[pos + 3] in _NO_PES_HEADER:
        return None
    flags = data[pos + 7] >> 6
    if flags == 3:
        if pos + 19 > end:
            return None
        return _timestamp(data, pos + 14)
    if flags == 2:
        return _timestamp(data, pos + 9)
    return None


def choose_timing_pid(streams: dict[int, int]) -> int | None:
    """The elementary stream whose timestamps give the program's time."""
    for pid, stream_type in streams.items():
        if stream_type in VIDEO_STREAM_TYPES:
            return pid
    for pid, stream_type in streams.items():
        if stream_type in AUDIO_STREAM_TYPES:
            return pid
    return None


class TimingTracker:
    """Incremental PES timestamp reader for consecutive aligned chunks."""

    def __init__(self, *, max_gap: float = DEFAULT_MAX_GAP, max_back: float = DEFAULT_MAX_BACK) -> None:
        self.max_gap = max_gap
        self.max_back = max_back
        self.pmt_pids: frozenset[int] = frozenset()
        self.timing_pid: int | None = None
        #: The latest PAT packet and PMT packet (b"" until seen).
        self.pat = b""
        self.pmt = b""
        #: The timeline, in 90 kHz ticks (integers: durations add up exactly).
        self.ticks = 0
        self.frame_ticks = round(DEFAULT_FRAME * TIMESCALE)
        self._last_raw: int | None = None
        #: The timing stream changed: the next mark is a break.
        self._switched = False
        self.marks_seen = 0
        self.jumps = 0

    @property
    def frame(self) -> float:
        """The latest frame duration seen, in seconds."""
        return self.frame_ticks / TIMESCALE

    @property
    def psi(self) -> bytes:
        """The latest PAT and PMT packets, or b"" until both were seen."""
        return self.pat + self.pmt if self.pat and self.pmt else b""

    def reset(self) -> None:
        """A new upstream connection: do not compare its first timestamp with
        the old connection's last one (the caller marks the break itself)."""
        if self._last_raw is not None:
            self.ticks += self.frame_ticks
        self._last_raw = None

    def scan(self, data: bytes | memoryview, base: int) -> list[Mark]:
        """The marks of the timing stream in ``data`` (at absolute ``base``)."""
        marks: list[Mark] = []
        heads = data[1 : len(data) : PACKET_SIZE]
        for index, b1 in enumerate(heads):
            if not b1 & 0x40:
                continue
            off = index * PACKET_SIZE
            if off + PACKET_SIZE > len(data):
                break
            pid = ((b1 & 0x1F) << 8) | data[off + 2]
            if pid == self.timing_pid:
                raw = pes_timestamp(data, off)
                if raw is not None:
                    marks.append(self._mark(base + off, raw))
            elif pid == PAT_PID:
                packet = bytes(data[off : off + PACKET_SIZE])
                pids = parse_pat(packet)
                if pids:
                    self.pat = packet
                    if pids != self.pmt_pids:
                        self.pmt_pids = pids
                        self.pmt = b""
            elif pid in self.pmt_pids:
                packet = bytes(data[off : off + PACKET_SIZE])
                streams = parse_pmt(packet)
                if streams is not None:
                    self.pmt = packet
                    timing = choose_timing_pid(streams)
                    if timing != self.timing_pid:
                        if self.timing_pid is not None:
                            # Another program or stream layout: a break.
                            self.reset()
                            self._switched = True
                        self.timing_pid = timing
        return marks

    def _mark(self, offset: int, raw: int) -> Mark:
        self.marks_seen += 1
        last = self._last_raw
        self._last_raw = raw
        jump = self._switched
        self._switched = False
        if last is None:
            return Mark(offset, self.ticks / TIMESCALE, jump)
        delta = (raw - last) % WRAP
        if delta >= WRAP // 2:
            delta -= WRAP
        if delta < -self.max_back * TIMESCALE or delta > self.max_gap * TIMESCALE:
            self.jumps += 1
            self.ticks += self.frame_ticks
            return Mark(offset, self.ticks / TIMESCALE, True)
        if delta > 0:
            self.frame_ticks = delta
        self.ticks += delta
        return Mark(offset, self.ticks / TIMESCALE, jump)
