"""The demo provider's media: the sample MPEG-TS clip and what is cut from it.

``sample.ts`` (regenerate with ``tools/make_sample_ts.sh``) is a short
H.264/AAC clip with a keyframe every second, PAT/PMT before each keyframe
and the random-access indicator set.  Everything the demo provider streams
comes from it: live channels loop it, HLS segments are slices of it cut on
keyframes, VOD files and catch-up answers repeat it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TS_PACKET = 188
SYNC_BYTE = 0x47
#: Live writes are whole multiples of this (7 packets, the usual UDP/RTP payload).
TS_CHUNK = 7 * TS_PACKET

SAMPLE_PATH = Path(__file__).with_name("sample.ts")
#: A TS null packet (PID 0x1FFF): padding that decoders skip.
NULL_PACKET = bytes([SYNC_BYTE, 0x1F, 0xFF, 0x10]) + b"\xff" * (TS_PACKET - 4)


@dataclass(frozen=True)
class SampleClip:
    """The clip's bytes plus what the provider needs to know about them."""

    data: bytes
    #: Seconds of playback in one pass (from the timestamps; PCRs if none).
    duration: float
    #: Byte offsets where a playable unit starts: the PAT that precedes each
    #: video keyframe (or the keyframe packet itself when no PAT precedes it).
    keyframe_offsets: tuple[int, ...]
    #: Timestamp span of one pass (90 kHz): from the first PTS/DTS to the end
    #: of the last frame of the longest stream.  Each pass of the loop is
    #: shifted by this much, so timestamps keep increasing.
    period_90k: int = 0
    #: Payload packets per PID in one pass (continuity counters advance by it).
    payload_packets: tuple[tuple[int, int], ...] = ()

    @property
    def bitrate_bps(self) -> float:
        return len(self.data) * 8 / self.duration

    @property
    def packets(self) -> int:
        return len(self.data) // TS_PACKET

    def loop(self, k: int) -> bytes:
        """Pass ``k`` of the endless loop: the clip with its PCR/PTS/DTS moved
        on by ``k`` periods and continuity counters carried on, so the loop
        plays as one continuous stream."""
        if k == 0 or not self.period_90k:
            return self.data
        cached = _LOOPS.get((id(self), k))
        if cached is None:
            cc = {pid: k * n for pid, n in self.payload_packets}
            cached = retime(self.data, k * self.period_90k, cc, clear_discontinuity=True)
            if len(_LOOPS) >= 8:
                _LOOPS.pop(next(iter(_LOOPS)))
            _LOOPS[(id(self), k)] = cached
        return cached

    def cyclic(self, position: int, length: int) -> bytes:
        """``length`` bytes of the endless loop, from byte ``position``."""
        size = len(self.data)
        k, position = divmod(position, size)
        out = bytearray()
        while length > 0:
            piece = self.loop(k)[position : position + length]
            out += piece
            length -= len(piece)
            position = 0
            k += 1
        return bytes(out)

    def padded(self, position: int, length: int, rate_bps: float) -> bytes:
        """``length`` bytes from byte ``position`` of the loop sent at
        ``rate_bps`` (above the clip's own bitrate) as a constant-bitrate
        multiplex: each clip packet where it falls due at the clip's own rate,
        null packets between, so that timestamps still run in real time.
        ``position`` and ``length`` are whole packets."""
        ratio = min(1.0, self.bitrate_bps / rate_bps)
        first, count = position // TS_PACKET, length // TS_PACKET
        lo, hi = int(first * ratio), int((first + count) * ratio)
        clip = self.cyclic(lo * TS_PACKET, (hi - lo) * TS_PACKET)
        out = bytearray()
        taken = 0
        for i in range(first, first + count):
            if int((i + 1) * ratio) > int(i * ratio):
                out += clip[taken * TS_PACKET : (taken + 1) * TS_PACKET]
                taken += 1
            else:
                out += NULL_PACKET
        return bytes(out)

    def slice_between_keyframes(self, first: int, count: int) -> bytes:
        """Bytes from keyframe ``first`` to keyframe ``first + count`` (exclusive)."""
        offsets = self.keyframe_offsets + (len(self.data),)
        first %= len(self.keyframe_offsets)
        end = min(first + count, len(offsets) - 1)
        return self.data[offsets[first] : offsets[end]]


_LOOPS: dict[tuple[int, int], bytes] = {}
_WRAP_90K = 1 << 33


def _read_ts(b: bytes | bytearray, at: int) -> int:
    return (((b[at] >> 1) & 7) << 30) | (b[at + 1] << 22) | ((b[at + 2] >> 1) << 15) \
        | (b[at + 3] << 7) | (b[at + 4] >> 1)


def _write_ts(b: bytearray, at: int, ts: int) -> None:
    ts %= _WRAP_90K
    b[at] = (b[at] & 0xF0) | ((ts >> 29) & 0x0E) | 1
    b[at + 1] = (ts >> 22) & 0xFF
    b[at + 2] = ((ts >> 14) & 0xFE) | 1
    b[at + 3] = (ts >> 7) & 0xFF
    b[at + 4] = ((ts << 1) & 0xFE) | 1


def _pes_timestamp_offsets(pkt: bytes | bytearray) -> list[int]:
    """Offsets in the packet of the PES header's PTS and DTS, if any."""
    if not pkt[1] & 0x40 or not pkt[3] & 0x10:
        return []
    p = 5 + pkt[4] if pkt[3] & 0x20 else 4
    if p + 14 > TS_PACKET or pkt[p : p + 3] != b"\0\0\1":
        return []
    flags = pkt[p + 7]
    out = [p + 9] if flags & 0x80 else []
    if flags & 0xC0 == 0xC0:
        out.append(p + 14)
    return out


def retime(data: bytes, shift_90k: int, cc_shift: dict[int, int] | None = None,
           clear_discontinuity: bool = False) -> bytes:
    """``data`` with every PCR, PTS and DTS moved on by ``shift_90k`` and each
    PID's continuity counter by ``cc_shift[pid]``."""
    out = bytearray(data)
    for off in range(0, len(out) - TS_PACKET + 1, TS_PACKET):
        pid = ((out[off + 1] & 0x1F) << 8) | out[off + 2]
        if cc_shift and pid in cc_shift:
            b3 = out[off + 3]
            out[off + 3] = (b3 & 0xF0) | ((b3 + cc_shift[pid]) & 0x0F)
        if out[off + 3] & 0x20 and out[off + 4] > 0:
            if clear_discontinuity:
                out[off + 5] &= 0x7F
            if out[off + 5] & 0x10 and out[off + 4] >= 7:
                pcr = _pcr(bytes(out[off : off + 12]))
                assert pcr is not None
                base = (pcr // 300 + shift_90k) % _WRAP_90K
                ext = pcr % 300
                out[off + 6 : off + 12] = (
                    (base << 15) | 0x7E00 | ext
                ).to_bytes(6, "big")
        for at in _pes_timestamp_offsets(out[off : off + TS_PACKET]):
            _write_ts(out, off + at, _read_ts(out, off + at) + shift_90k)
    return bytes(out)


def _loop_period(data: bytes) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(period in 90 kHz ticks, payload packets per PID) of one pass."""
    stamps: dict[int, list[int]] = {}
    payload: dict[int, int] = {}
    for off in range(0, len(data), TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pkt[3] & 0x10:
            payload[pid] = payload.get(pid, 0) + 1
        offsets = _pes_timestamp_offsets(pkt)
        if offsets:
            stamps.setdefault(pid, []).append(_read_ts(pkt, offsets[-1]))  # DTS if present
    if not stamps:
        return 0, tuple(payload.items())
    start = min(min(v) for v in stamps.values())
    end = 0
    for values in stamps.values():
        ordered = sorted(values)
        steps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
        frame = max(set(steps), key=steps.count) if steps else 0
        end = max(end, ordered[-1] + frame)
    return end - start, tuple(sorted(payload.items()))


def _pcr(packet: bytes) -> int | None:
    """The PCR (in 27 MHz ticks) carried by one TS packet, if any."""
    if not packet[3] & 0x20 or packet[4] < 7 or not packet[5] & 0x10:
        return None
    base = int.from_bytes(packet[6:11], "big") >> 7
    ext = ((packet[10] & 1) << 8) | packet[11]
    return base * 300 + ext


def _video_pid(data: bytes) -> int | None:
    """The first H.264 elementary PID named by the first PMT."""
    pmt_pid = None
    for off in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if not pkt[1] & 0x40:  # no section starts in this packet
            continue
        payload = pkt[5 + pkt[4] :] if pkt[3] & 0x20 else pkt[4:]
        section = payload[1 + payload[0] :]
        if pid == 0 and pmt_pid is None:
            pmt_pid = ((section[10] & 0x1F) << 8) | section[11]
        elif pid == pmt_pid:
            info_len = ((section[10] & 0x0F) << 8) | section[11]
            pos, end = 12 + info_len, 3 + (((section[1] & 0x0F) << 8) | section[2]) - 4
            while pos < end:
                stype, epid = section[pos], ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
                if stype == 0x1B:
                    return epid
                pos += 5 + (((section[pos + 3] & 0x0F) << 8) | section[pos + 4])
            return None
    return None


def analyse(data: bytes) -> SampleClip:
    """Find the clip's duration (from its PCRs) and its keyframe offsets."""
    if len(data) % TS_PACKET or not data or data[0] != SYNC_BYTE:
        raise ValueError("not a packet-aligned MPEG-TS file")
    vpid = _video_pid(data)
    first_pcr = last_pcr = None
    last_pcr_off = first_pcr_off = 0
    keyframes: list[int] = []
    last_pat = -1
    for off in range(0, len(data), TS_PACKET):
        pkt = data[off : off + TS_PACKET]
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pid == 0:
            last_pat = off
        pcr = _pcr(pkt)
        if pcr is not None:
            if first_pcr is None:
                first_pcr, first_pcr_off = pcr, off
            last_pcr, last_pcr_off = pcr, off
        random_access = pkt[3] & 0x20 and pkt[4] > 0 and pkt[5] & 0x40
        if pid == vpid and random_access:
            # Start at the PAT just before the keyframe when it is close by.
            start = last_pat if 0 <= off - last_pat <= 8 * TS_PACKET else off
            keyframes.append(start)
    if first_pcr is None or last_pcr is None or last_pcr <= first_pcr:
        raise ValueError("sample has no usable PCR")
    span = (last_pcr - first_pcr) / 27_000_000
    # Scale the PCR span to the whole file so the looped clip keeps its rate.
    duration = span * len(data) / max(last_pcr_off - first_pcr_off, TS_PACKET)
    period, payload = _loop_period(data)
    if period:  # pace by the timestamps so the loop plays in real time
        duration = period / 90_000
    return SampleClip(data, duration, tuple(keyframes or [0]), period, payload)


@cache
def sample_clip() -> SampleClip:
    """The packaged clip, read and analysed once."""
    return analyse(SAMPLE_PATH.read_bytes())


def repeated(data: bytes, size: int) -> bytes:
    """``data`` repeated and cut to ``size`` bytes."""
    count = -(-size // len(data))
    return (data * count)[:size]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@cache
def icon_png(size: int = 16) -> bytes:
    """A small RGB PNG (a diagonal gradient) for ``/images/...`` answers."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(size) for c in (x * 255 // size, y * 255 // size, 160))
        for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )
