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


@dataclass(frozen=True)
class SampleClip:
    """The clip's bytes plus what the provider needs to know about them."""

    data: bytes
    duration: float
    #: Byte offsets where a playable unit starts: the PAT that precedes each
    #: video keyframe (or the keyframe packet itself when no PAT precedes it).
    keyframe_offsets: tuple[int, ...]

    @property
    def bitrate_bps(self) -> float:
        return len(self.data) * 8 / self.duration

    @property
    def packets(self) -> int:
        return len(self.data) // TS_PACKET

    def cyclic(self, position: int, length: int) -> bytes:
        """``length`` bytes of the endlessly looped clip, from ``position``."""
        size = len(self.data)
        position %= size
        out = bytearray()
        while length > 0:
            piece = self.data[position : position + length]
            out += piece
            length -= len(piece)
            position = 0
        return bytes(out)

    def slice_between_keyframes(self, first: int, count: int) -> bytes:
        """Bytes from keyframe ``first`` to keyframe ``first + count`` (exclusive)."""
        offsets = self.keyframe_offsets + (len(self.data),)
        first %= len(self.keyframe_offsets)
        end = min(first + count, len(offsets) - 1)
        return self.data[offsets[first] : offsets[end]]


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
    return SampleClip(data, duration, tuple(keyframes or [0]))


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
