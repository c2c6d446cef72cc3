"""SiliconDust's UDP discovery (port 65001) for the emulated devices.

A discover request is a packet: type (16-bit big-endian, 0x0002), payload
length (16-bit big-endian), a payload of tag-length-value items, then the
CRC32 of all that, little-endian. Its items may name a device type and a
device id (absent or 0xFFFFFFFF: any). :class:`DiscoveryProtocol` answers
each matching device with a reply (type 0x0003) carrying device type tuner,
DeviceID, tuner count, base URL and lineup URL.

Opt-in per device (``udp_discovery = true``): entering the base URL in the
media server is the supported path. The reply holds the base URL, token
included, for whoever asks on the LAN. Replies are rate-limited so the
port cannot be used to flood a third party.
"""

from __future__ import annotations

import socket
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = [
    "DISCOVER_PORT",
    "DiscoveryAnswer",
    "DiscoveryProtocol",
    "DiscoveryRequest",
    "PacketError",
    "decode_packet",
    "discover_request",
    "encode_packet",
    "local_address_for",
    "parse_request",
    "reply_packet",
]

log = Logger()

DISCOVER_PORT = 65001
TYPE_DISCOVER_REQ = 0x0002
TYPE_DISCOVER_RPY = 0x0003
TAG_DEVICE_TYPE = 0x01
TAG_DEVICE_ID = 0x02
TAG_TUNER_COUNT = 0x10
TAG_LINEUP_URL = 0x27
TAG_BASE_URL = 0x2A
DEVICE_TYPE_TUNER = 0x00000001
WILDCARD = 0xFFFFFFFF
#: Largest packet a device sends or accepts.
MAX_PACKET = 1460
#: Replies sent per second at most (all requesters together).
MAX_REPLIES_PER_SECOND = 20


class PacketError(ValueError):
    """Not a well-formed discovery packet."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n >= 0x8000:
        raise PacketError(f"a value of {n} bytes is too long")
    return bytes([(n & 0x7F) | 0x80, n >> 7])


def encode_packet(ptype: int, items: Sequence[tuple[int, bytes]]) -> bytes:
    """A packet of type ``ptype`` holding the ``(tag, value)`` items."""
    payload = b"".join(bytes([tag]) + _length(len(value)) + value for tag, value in items)
    body = struct.pack(">HH", ptype, len(payload)) + payload
    if len(body) + 4 > MAX_PACKET:
        raise PacketError("the packet is too long")
    return body + struct.pack("<I", zlib.crc32(body))


def decode_packet(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(type, [(tag, value), ...]) of a packet; :class:`PacketError` if bad."""
    if len(data) < 8:
        raise PacketError("too short")
    ptype, length = struct.unpack_from(">HH", data)
    if len(data) != 4 + length + 4:
        raise PacketError("its length field does not match its size")
    (crc,) = struct.unpack_from("<I", data, 4 + length)
    if crc != zlib.crc32(data[: 4 + length]):
        raise PacketError("bad CRC")
    items: list[tuple[int, bytes]] = []
    pos, end = 4, 4 + length
    while pos < end:
        if pos + 2 > end:
            raise PacketError("a truncated item")
        tag, n = data[pos], data[pos + 1]
        pos += 2
        if n & 0x80:
            if pos >= end:
                raise PacketError("a truncated item length")
            n = (n & 0x7F) | (data[pos] << 7)
            pos += 1
        if pos + n > end:
            raise PacketError("an item runs past the payload")
        items.append((tag, data[pos : pos + n]))
        pos += n
    return ptype, items


@dataclass(frozen=True)
class DiscoveryRequest:
    """What a discover request asks for (WILDCARD: anything)."""

    device_type: int = WILDCARD
    device_id: int = WILDCARD

    def matches(self, device_id: str) -> bool:
        return (self.device_type in (WILDCARD, DEVICE_TYPE_TUNER)
                and self.device_id in (WILDCARD, int(device_id, 16)))


def parse_request(data: bytes) -> DiscoveryRequest:
    """The discover request in ``data``; :class:`PacketError` otherwise."""
    ptype, items = decode_packet(data)
    if ptype != TYPE_DISCOVER_REQ:
        raise PacketError(f"not a discover request (type {ptype:#06x})")
    values: dict[int, int] = {}
    for tag, value in items:
        if tag in (TAG_DEVICE_TYPE, TAG_DEVICE_ID):
            if len(value) != 4:
                raise PacketError(f"tag {tag:#04x} must hold 4 bytes")
            values[tag] = int.from_bytes(value, "big")
    return DiscoveryRequest(values.get(TAG_DEVICE_TYPE, WILDCARD), values.get(TAG_DEVICE_ID, WILDCARD))


def discover_request(device_type: int = WILDCARD, device_id: int = WILDCARD) -> bytes:
    """A discover request packet (as media servers and hdhomerun_config send)."""
    return encode_packet(TYPE_DISCOVER_REQ, [
        (TAG_DEVICE_TYPE, device_type.to_bytes(4, "big")),
        (TAG_DEVICE_ID, device_id.to_bytes(4, "big")),
    ])


@dataclass(frozen=True)
class DiscoveryAnswer:
    """One device's answer to one requester."""

    device_id: str  # 8 hex digits
    tuner_count: int
    base_url: str  # no trailing slash


def reply_packet(answer: DiscoveryAnswer) -> bytes:
    """The discover reply for one device."""
    return encode_packet(TYPE_DISCOVER_RPY, [
        (TAG_DEVICE_TYPE, DEVICE_TYPE_TUNER.to_bytes(4, "big")),
        (TAG_DEVICE_ID, int(answer.device_id, 16).to_bytes(4, "big")),
        (TAG_TUNER_COUNT, bytes([max(0, min(255, answer.tuner_count))])),
        (TAG_BASE_URL, answer.base_url.encode()),
        (TAG_LINEUP_URL, f"{answer.base_url}/lineup.json".encode()),
    ])


def local_address_for(peer: str) -> str:
    """This host's address on the route to ``peer`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((peer, DISCOVER_PORT))
            host: str = s.getsockname()[0]
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
    return f"[{host}]" if family == socket.AF_INET6 else host


class DiscoveryProtocol(DatagramProtocol):
    """Answers discover requests for the devices with ``udp_discovery``.

    ``answers(peer_host)`` gives each such device's answer for that
    requester (its base URL must be one the requester can reach, e.g. built
    from :func:`local_address_for`); it is asked for every valid request.
    """

    def __init__(self, answers: Callable[[str], Sequence[DiscoveryAnswer]], clock: IReactorTime,
                 *, max_replies_per_second: int = MAX_REPLIES_PER_SECOND) -> None:
        self.answers = answers
        self.clock = clock
        self.max_replies_per_second = max_replies_per_second
        self.requests = 0
        self.replies = 0
        self.ignored = 0
        self.dropped = 0
        self._window = -1
        self._in_window = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse_request(data)
        except PacketError as e:
            self.ignored += 1
            log.debug("HDHomeRun discovery: ignored a packet from {host}: {why}", host=addr[0], why=str(e))
            return
        self.requests += 1
        for answer in self.answers(addr[0]):
            if not request.matches(answer.device_id):
                continue
            if not self._allowed():
                self.dropped += 1
                return
            assert self.transport is not None
            self.transport.write(reply_packet(answer), addr)
            self.replies += 1

    def _allowed(self) -> bool:
        window = int(self.clock.seconds())
        if window != self._window:
            self._window, self._in_window = window, 0
        if self._in_window >= self.max_replies_per_second:
            return False
        self._in_window += 1
        return True
