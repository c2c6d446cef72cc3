"""MPEG transport stream helpers for the live relay.

Two small, incremental tools that never look at more than they must:

* :class:`PacketAligner` turns an arbitrary byte stream (TCP reads of any
  size) into runs of whole 188-byte packets, dropping garbage and resyncing
  when the 0x47 sync byte is lost.
* :class:`AccessPointScanner` follows the PAT and PMT tables and reports the
  offsets where a decoder can start: the latest PAT that is followed by a PMT
  and then a video packet flagged as a random access point (a keyframe), or,
  as a weaker fallback, any PAT.

Both work on absolute stream offsets so the fan-out ring can keep them next
to its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

PACKET_SIZE = 188
SYNC_BYTE = 0x47
_SYNC = bytes([SYNC_BYTE])

PAT_PID = 0x0000
NULL_PID = 0x1FFF

# ISO/IEC 13818-1 stream_type values that carry video.
VIDEO_STREAM_TYPES = frozenset(
    {
        0x01,  # MPEG-1 video
        0x02,  # MPEG-2 video
        0x10,  # MPEG-4 part 2
        0x1B,  # H.264 / AVC
        0x1F,  # H.264 SVC
        0x20,  # H.264 MVC
        0x24,  # H.265 / HEVC
        0x33,  # H.266 / VVC
        0x42,  # AVS
        0xD1,  # Dirac
        0xEA,  # VC-1
    }
)
_H264_TYPES = frozenset({0x1B, 0x1F, 0x20})
_HEVC_TYPES = frozenset({0x24})

# How many following sync bytes must agree before a resync is trusted.
_RESYNC_CONFIRMATIONS = 2


def packet_pid(packet: bytes | memoryview, offset: int = 0) -> int:
    """The 13-bit PID of the packet starting at ``offset``."""
    return ((packet[offset + 1] & 0x1F) << 8) | packet[offset + 2]


def is_aligned(data: bytes | memoryview) -> bool:
    """True when ``data`` is a whole number of packets, each starting 0x47."""
    count, rest = divmod(len(data), PACKET_SIZE)
    return rest == 0 and bytes(data[::PACKET_SIZE]) == _SYNC * count


class PacketAligner:
    """Cut an arbitrary byte stream into whole, sync-checked TS packets.

    ``feed`` returns the packets completed by the new data (possibly
    ``b""``); at most a few packets' worth of bytes are held between calls.
    Bytes that cannot belong to a packet are dropped and counted in
    :attr:`dropped`.
    """

    def __init__(self) -> None:
        self._pending = b""
        self.dropped = 0
        self.resyncs = 0

    def reset(self) -> None:
        """Forget partial data (a new upstream connection starts afresh)."""
        self.dropped += len(self._pending)
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else bytes(data)
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while True:
            # A packet is only trusted once the sync byte of the packet after
            # it has arrived, so the newest packet always waits for the next.
            count = (end - pos - 1) // PACKET_SIZE
            if count <= 0:
                break
            stop = pos + count * PACKET_SIZE
            syncs = buf[pos : stop + 1 : PACKET_SIZE]
            good = _leading_syncs(syncs)
            if good == count + 1:
                out.append(buf[pos:stop])
                pos = stop
                break
            # Sync is lost at packet ``good``, so the packet before it is
            # damaged (cut short, or followed by inserted bytes): keep the
            # packets before that one and resync from inside it.
            if good > 1:
                out.append(buf[pos : pos + (good - 1) * PACKET_SIZE])
                pos += (good - 1) * PACKET_SIZE
            found = self._resync(buf, pos)
            if found is None:
                # Not enough data to confirm a new sync point yet: keep the
                # tail starting at the first candidate (if any).
                candidate = buf.find(_SYNC, pos + 1)
                if candidate < 0:
                    self.dropped += end - pos
                    pos = end
                else:
                    self.dropped += candidate - pos
                    pos = candidate
                break
            self.dropped += found - pos
            self.resyncs += 1
            pos = found
        self._pending = buf[pos:]
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    @staticmethod
    def _resync(buf: bytes, pos: int) -> int | None:
        """The first offset after ``pos`` where sync bytes repeat every 188."""
        need = _RESYNC_CONFIRMATIONS * PACKET_SIZE
        candidate = buf.find(_SYNC, pos + 1)
        while candidate >= 0 and candidate + need < len(buf):
            if all(
                buf[candidate + k * PACKET_SIZE] == SYNC_BYTE
                for k in range(1, _RESYNC_CONFIRMATIONS + 1)
            ):
                return candidate
            candidate = buf.find(_SYNC, candidate + 1)
        return None


def _leading_syncs(syncs: bytes) -> int:
    """How many of ``syncs`` (one byte per packet) are 0x47 from the start."""
    return len(syncs) - len(syncs.lstrip(_SYNC))


@dataclass(frozen=True)
class AccessPoint:
    """A place in the stream where a new viewer can start decoding.

    ``offset`` is the absolute stream offset of a PAT packet. ``keyframe``
    tells whether a PMT and then a video random access point followed it
    (a strong start point) or whether it is only a PAT (a fallback).
    """

    offset: int
    keyframe: bool


class AccessPointScanner:
    """Find decoder start points in a packet-aligned stream, incrementally.

    Feed it consecutive aligned chunks with their absolute offsets; each call
    returns the access points completed inside the new data, in order.
    """

    def __init__(self) -> None:
        self.pmt_pids: frozenset[int] = frozenset()
        self.video_pids: dict[int, int] = {}  # pid -> stream_type
        self._pat_at: int | None = None
        self._pmt_since_pat = False
        self._last_keyframe_at = -1
        self.keyframes_seen = 0

    def scan(self, data: bytes | memoryview, base: int) -> list[AccessPoint]:
        found: list[AccessPoint] = []
        pmt_pids = self.pmt_pids
        video = self.video_pids
        for off in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE):
            b1 = data[off + 1]
            pid = ((b1 & 0x1F) << 8) | data[off + 2]
            if pid == PAT_PID:
                if b1 & 0x40:
                    pids = parse_pat(data[off : off + PACKET_SIZE])
                    if pids:
                        if pids != pmt_pids:
                            self.pmt_pids = pmt_pids = pids
                            self.video_pids = video = {}
                        self._pat_at = base + off
                        self._pmt_since_pat = False
                        found.append(AccessPoint(base + off, keyframe=False))
            elif pid in pmt_pids:
                if b1 & 0x40 and self._pat_at is not None:
                    streams = parse_pmt(data[off : off + PACKET_SIZE])
                    if streams is not None:
                        self._pmt_since_pat = True
                        vids = {p: t for p, t in streams.items() if t in VIDEO_STREAM_TYPES}
                        if vids.keys() != video.keys():
                            self.video_pids = video = vids
            elif pid in video:
                if (
                    self._pmt_since_pat
                    and self._pat_at is not None
                    and self._pat_at > self._last_keyframe_at
                    and is_random_access(data[off : off + PACKET_SIZE], video[pid])
                ):
                    self._last_keyframe_at = self._pat_at
                    self.keyframes_seen += 1
                    found.append(AccessPoint(self._pat_at, keyframe=True))
        return found


def _section(packet: bytes | memoryview, table_id: int) -> bytes | None:
    """The PSI section starting in this packet (PUSI set), or None."""
    afc = (packet[3] >> 4) & 0x3
    pos = 4
    if afc & 0x2:
        pos += 1 + packet[4]
    if not afc & 0x1 or pos >= PACKET_SIZE:
        return None
    pos += 1 + packet[pos]  # pointer_field
    if pos + 3 > PACKET_SIZE or packet[pos] != table_id:
        return None
    length = ((packet[pos + 1] & 0x0F) << 8) | packet[pos + 2]
    return bytes(packet[pos : min(PACKET_SIZE, pos + 3 + length)])


def parse_pat(packet: bytes | memoryview) -> frozenset[int]:
    """PMT PIDs listed by a PAT packet (empty when it is not a usable PAT)."""
    section = _section(packet, 0x00)
    if section is None or len(section) < 12:
        return frozenset()
    length = ((section[1] & 0x0F) << 8) | section[2]
    end = min(len(section), 3 + length - 4)  # without the CRC
    pids = set()
    for pos in range(8, end - 3, 4):
        program = (section[pos] << 8) | section[pos + 1]
        if program != 0:  # 0 is the network PID
            pids.add(((section[pos + 2] & 0x1F) << 8) | section[pos + 3])
    return frozenset(pids)


def parse_pmt(packet: bytes | memoryview) -> dict[int, int] | None:
    """Elementary streams (pid -> stream_type) of a PMT packet, or None."""
    section = _section(packet, 0x02)
    if section is None or len(section) < 16:
        return None
    length = ((section[1] & 0x0F) << 8) | section[2]
    end = min(len(section), 3 + length - 4)
    info_len = ((section[10] & 0x0F) << 8) | section[11]
    pos = 12 + info_len
    streams: dict[int, int] = {}
    while pos + 5 <= end:
        stream_type = section[pos]
        pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
        es_len = ((section[pos + 3] & 0x0F) << 8) | section[pos + 4]
        streams[pid] = stream_type
        pos += 5 + es_len
    return streams


def is_random_access(packet: bytes | memoryview, stream_type: int = 0x1B) -> bool:
    """True when this video packet starts a picture a decoder can begin at.

    The adaptation field's random_access_indicator is the standard signal;
    for H.264/HEVC PES starts without it, an IDR/IRAP NAL unit (or the
    parameter sets that precede one) in the packet's payload is accepted.
    """
    afc = (packet[3] >> 4) & 0x3
    pos = 4
    if afc & 0x2:
        af_len = packet[4]
        if af_len and packet[5] & 0x40:
            return True
        pos += 1 + af_len
    if not (packet[1] & 0x40) or not afc & 0x1 or pos + 9 > PACKET_SIZE:
        return False
    if stream_type not in _H264_TYPES and stream_type not in _HEVC_TYPES:
        return False
    payload = bytes(packet[pos:PACKET_SIZE])
    if payload[:3] != b"\x00\x00\x01":
        return False
    es = payload[9 + payload[8] :]
    hevc = stream_type in _HEVC_TYPES
    start = es.find(b"\x00\x00\x01")
    while 0 <= start < len(es) - 3:
        header = es[start + 3]
        if hevc:
            nal_type = (header >> 1) & 0x3F
            if 16 <= nal_type <= 21 or nal_type == 32:  # IRAP or VPS
                return True
        else:
            nal_type = header & 0x1F
            if nal_type in (5, 7):  # IDR slice or SPS
                return True
        start = es.find(b"\x00\x00\x01", start + 3)
    return False
