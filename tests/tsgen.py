"""Synthetic MPEG-TS packets for the relay's unit tests."""

from __future__ import annotations



PMT_PID = 0x1000
VIDEO_PID = 0x100
AUDIO_PID = 0x101


def _crc(section: bytes) -> bytes:
    # MPEG-2 CRC32 (not zlib's reflected one); the relay does not check it.
    crc = 0xFFFFFFFF
    for byte in section:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc.to_bytes(4, "big")


def packet(pid: int, payload: bytes = b"", *, pusi: bool = False, rai: bool = False, cc: int = 0) -> bytes:
    header = bytes([0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF])
    if rai:
        af = bytes([0x40])  # flags: random_access_indicator
        body = payload[: 188 - 4 - 2 - len(af) + 1]
        stuffing = 188 - 4 - 1 - len(af) - len(body)
        af_bytes = bytes([len(af) + stuffing]) + af + b"\xff" * stuffing
        return header + bytes([0x30 | (cc & 0xF)]) + af_bytes + body
    body = payload[:184]
    if len(body) < 184:
        stuffing = 184 - len(body)
        if stuffing == 1:
            return header + bytes([0x30 | (cc & 0xF)]) + b"\x00" + body
        af_bytes = bytes([stuffing - 1, 0x00]) + b"\xff" * (stuffing - 2)
        return header + bytes([0x30 | (cc & 0xF)]) + af_bytes + body
    return header + bytes([0x10 | (cc & 0xF)]) + body


def pat(pmt_pid: int = PMT_PID) -> bytes:
    body = b"\x00\x01\xc1\x00\x00" + b"\x00\x01" + bytes([0xE0 | (pmt_pid >> 8), pmt_pid & 0xFF])
    section = bytes([0x00, 0xB0, len(body) + 4]) + body
    section += _crc(section)
    return packet(0, b"\x00" + section + b"\xff" * (183 - len(section)), pusi=True)


def pmt(video_pid: int = VIDEO_PID, audio_pid: int = AUDIO_PID, video_type: int = 0x1B) -> bytes:
    streams = bytes([video_type, 0xE0 | (video_pid >> 8), video_pid & 0xFF, 0xF0, 0x00])
    streams += bytes([0x0F, 0xE0 | (audio_pid >> 8), audio_pid & 0xFF, 0xF0, 0x00])
    body = b"\x00\x01\xc1\x00\x00" + bytes([0xE0 | (video_pid >> 8), video_pid & 0xFF, 0xF0, 0x00]) + streams
    section = bytes([0x02, 0xB0, len(body) + 4]) + body
    section += _crc(section)
    return packet(PMT_PID, b"\x00" + section + b"\xff" * (183 - len(section)), pusi=True)


def video(keyframe: bool = False, fill: int = 0) -> bytes:
    return packet(VIDEO_PID, bytes([fill]) * 184, pusi=keyframe, rai=keyframe)


def audio(fill: int = 0) -> bytes:
    return packet(AUDIO_PID, bytes([fill]) * 184)


def gop(frames: int = 20, with_tables: bool = True) -> bytes:
    """PAT, PMT, a keyframe packet, then ``frames`` video/audio packets."""
    out = [pat(), pmt()] if with_tables else []
    out.append(video(keyframe=True))
    for i in range(frames):
        out.append(video(fill=i & 0xFF) if i % 3 else audio(fill=i & 0xFF))
    return b"".join(out)


__all__ = ["packet", "pat", "pmt", "video", "audio", "gop"]
