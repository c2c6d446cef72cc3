"""SiliconDust UDP discovery: the packet codec, the answers, and loopback."""

from __future__ import annotations

import struct
import zlib
from typing import Any, Sequence

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from udpclient import FirstReply
from xrelay.hdhr.discovery import (
    DiscoveryAnswer,
    DiscoveryProtocol,
    DiscoveryRequest,
    PacketError,
    decode_packet,
    discover_request,
    encode_packet,
    local_address_for,
    parse_request,
    reply_packet,
)

ANSWER = DiscoveryAnswer("10439EFD", 2, "http://127.0.0.1:8080/hdhr/plex-key-1")


# -- the codec -------------------------------------------------------------


def test_a_wildcard_discover_request_byte_for_byte() -> None:
    packet = discover_request()
    body = bytes.fromhex("0002000c" "0104ffffffff" "0204ffffffff")
    assert packet == body + struct.pack("<I", zlib.crc32(body))
    assert parse_request(packet) == DiscoveryRequest()


def test_the_reply_carries_type_id_tuners_and_urls() -> None:
    ptype, items = decode_packet(reply_packet(ANSWER))
    assert ptype == 0x0003
    assert items == [
        (0x01, b"\x00\x00\x00\x01"),
        (0x02, bytes.fromhex("10439EFD")),
        (0x10, b"\x02"),
        (0x2A, b"http://127.0.0.1:8080/hdhr/plex-key-1"),
        (0x27, b"http://127.0.0.1:8080/hdhr/plex-key-1/lineup.json"),
    ]


def test_long_values_use_a_two_byte_length() -> None:
    value = b"x" * 300
    packet = encode_packet(0x0003, [(0x2A, value), (0x01, b"\x00\x00\x00\x01")])
    # 300 = 0b10_0101100: low seven bits with the high bit set, then the rest.
    assert packet[4:7] == bytes([0x2A, 0x80 | (300 & 0x7F), 300 >> 7])
    assert decode_packet(packet)[1] == [(0x2A, value), (0x01, b"\x00\x00\x00\x01")]
    assert decode_packet(encode_packet(2, [(1, b"y" * 127)]))[1] == [(1, b"y" * 127)]
    assert encode_packet(2, [(1, b"y" * 127)])[5] == 127


@pytest.mark.parametrize(("data", "why"), [
    (b"\x00\x02", "too short"),
    (discover_request()[:-1], "length field"),
    (discover_request()[:-4] + b"\x00\x00\x00\x00", "bad CRC"),
    (encode_packet(0x0002, []) [:2] + b"\x00\x01" + b"\x01" + struct.pack("<I", zlib.crc32(b"\x00\x02\x00\x01\x01")),
     "truncated item"),
    (encode_packet(0x0004, []), "not a discover request"),
    (encode_packet(0x0002, [(0x01, b"\x01")]), "must hold 4 bytes"),
])
def test_bad_packets_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        parse_request(data)


def test_an_item_running_past_the_payload_is_refused() -> None:
    body = b"\x00\x02\x00\x03" + b"\x01\x05\x00"
    with pytest.raises(PacketError, match="runs past"):
        decode_packet(body + struct.pack("<I", zlib.crc32(body)))


def test_requests_match_by_type_and_id() -> None:
    assert DiscoveryRequest().matches("10439EFD")
    assert DiscoveryRequest(device_type=1).matches("10439EFD")
    assert not DiscoveryRequest(device_type=5).matches("10439EFD")  # storage only
    assert DiscoveryRequest(device_id=0x10439EFD).matches("10439EFD")
    assert not DiscoveryRequest(device_id=0x1A2B3C4D).matches("10439EFD")
    assert parse_request(encode_packet(2, [])) == DiscoveryRequest()


# -- the protocol, with a fake transport -----------------------------------


class FakeUDP:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))


def protocol(answers: Sequence[DiscoveryAnswer], clock: Clock | None = None,
             limit: int = 20) -> tuple[DiscoveryProtocol, FakeUDP, list[str]]:
    peers: list[str] = []

    def answer_for(peer: str) -> Sequence[DiscoveryAnswer]:
        peers.append(peer)
        return answers

    proto = DiscoveryProtocol(answer_for, clock or Clock(), max_replies_per_second=limit)
    transport = FakeUDP()
    proto.makeConnection(transport)  # type: ignore[arg-type]
    return proto, transport, peers


def test_every_matching_device_answers_the_requester() -> None:
    other = DiscoveryAnswer("1A2B3C4D", 4, "http://127.0.0.1:5004")
    proto, transport, peers = protocol([ANSWER, other])
    proto.datagramReceived(discover_request(), ("127.0.0.1", 40000))
    assert peers == ["127.0.0.1"]
    assert transport.sent == [(reply_packet(ANSWER), ("127.0.0.1", 40000)),
                              (reply_packet(other), ("127.0.0.1", 40000))]
    proto.datagramReceived(discover_request(device_id=0x1A2B3C4D), ("127.0.0.1", 40001))
    assert transport.sent[2:] == [(reply_packet(other), ("127.0.0.1", 40001))]
    assert proto.requests == 2 and proto.replies == 3


def test_garbage_and_replies_are_ignored_quietly() -> None:
    proto, transport, peers = protocol([ANSWER])
    proto.datagramReceived(b"hello", ("127.0.0.1", 1))
    proto.datagramReceived(reply_packet(ANSWER), ("127.0.0.1", 1))  # another device's reply
    assert transport.sent == [] and peers == [] and proto.ignored == 2


def test_replies_are_rate_limited() -> None:
    clock = Clock()
    proto, transport, _ = protocol([ANSWER], clock, limit=3)
    for _ in range(5):
        proto.datagramReceived(discover_request(), ("127.0.0.1", 1))
    assert len(transport.sent) == 3 and proto.dropped == 2
    clock.advance(1.0)
    proto.datagramReceived(discover_request(), ("127.0.0.1", 1))
    assert len(transport.sent) == 4


def test_the_local_address_for_a_loopback_peer() -> None:
    assert local_address_for("127.0.0.1") == "127.0.0.1"


# -- on loopback -----------------------------------------------------------



@pytest_twisted.ensureDeferred
async def test_discovery_answers_on_loopback() -> None:
    from twisted.internet import reactor

    server = DiscoveryProtocol(lambda peer: [ANSWER], reactor)
    port = reactor.listenUDP(0, server, interface="127.0.0.1")  # type: ignore[attr-defined]
    requester = FirstReply()
    client = reactor.listenUDP(0, requester, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        assert requester.transport is not None
        requester.transport.write(discover_request(), ("127.0.0.1", port.getHost().port))
        # A guard so that a lost datagram fails the test instead of hanging it.
        data = await requester.replies.addTimeout(10, reactor)
    finally:
        await defer.maybeDeferred(client.stopListening)
        await defer.maybeDeferred(port.stopListening)
    ptype, items = decode_packet(data)
    assert ptype == 0x0003
    assert dict(items)[0x02] == bytes.fromhex("10439EFD")
    assert dict(items)[0x2A] == ANSWER.base_url.encode()
