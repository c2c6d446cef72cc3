"""Tests for xrelay.http.limits: deadlines, sizes and connections per address.

Unit tests drive a LimitedSite's channels with StringTransport and Clock;
the last ones speak to a real listening port on 127.0.0.1.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from xrelay.http.limits import EarlyAnswer, LimitedChannel, LimitedSite, Limits, RequestHead

GET = b"GET /x HTTP/1.1\r\nHost: relay\r\n\r\n"


class Recorder(Resource):
    """Answers every request with what it received; remembers the requests."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []
        self.content_types: list[type] = []

    def render(self, request: Any) -> bytes:
        self.requests.append(request)
        self.content_types.append(type(request.content))
        body = request.content.read()
        request.setHeader(b"content-type", b"text/plain")
        return b"ok %d %r" % (len(body), sorted(request.args.items()))


class HalfCloseTransport(StringTransport):
    """A StringTransport that can shut its sending side, like TCP."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def make_site(clock: Clock, gate: Any = None, **limits: Any) -> tuple[LimitedSite, Recorder]:
    resource = Recorder()
    return LimitedSite(resource, Limits(**limits), reactor=clock, body_gate=gate), resource


def connect(site: LimitedSite, host: str = "10.0.0.5", port: int = 40000,
            transport: StringTransport | None = None) -> tuple[LimitedChannel, StringTransport]:
    address = IPv4Address("TCP", host, port)
    channel = site.buildProtocol(address)
    assert channel is not None
    transport = transport if transport is not None else StringTransport(peerAddress=address)
    channel.makeConnection(transport)
    return channel, transport


def status(transport: StringTransport) -> bytes:
    return transport.value().split(b"\r\n", 1)[0]


def post(path: bytes, body: bytes, *extra: bytes) -> bytes:
    head = [b"POST " + path + b" HTTP/1.1", b"Host: relay",
            b"Content-Type: application/x-www-form-urlencoded",
            b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def chunked(path: bytes, *chunks: bytes, end: bool = True) -> bytes:
    head = (b"POST " + path + b" HTTP/1.1\r\nHost: relay\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head + body + (b"0\r\n\r\n" if end else b"")


# -- ordinary requests ------------------------------------------------------------------


def test_ordinary_requests_are_served_and_kept_alive() -> None:
    clock = Clock()
    site, resource = make_site(clock)
    channel, transport = connect(site)
    channel.dataReceived(GET)
    assert status(transport) == b"HTTP/1.1 200 OK"
    transport.clear()
    channel.dataReceived(post(b"/form", b"username=a&password=b"))
    assert status(transport) == b"HTTP/1.1 200 OK"
    assert b"(b'password', [b'b'])" in transport.value()
    assert not transport.disconnecting
    assert len(resource.requests) == 2


@pytest.mark.parametrize("body", [
    post(b"/form", b"a=1&b=2"),
    chunked(b"/form", b"a=1", b"&b=2"),
])
def test_body_is_kept_in_memory(body: bytes) -> None:
    clock = Clock()
    site, resource = make_site(clock)
    channel, transport = connect(site)
    channel.dataReceived(body)
    assert status(transport) == b"HTTP/1.1 200 OK"
    (request,) = resource.requests
    (kind,) = resource.content_types
    assert issubclass(kind, BytesIO)  # never a temporary file
    assert request.args == {b"a": [b"1"], b"b": [b"2"]}


def test_body_at_the_limit_is_accepted() -> None:
    clock = Clock()
    site, resource = make_site(clock, max_body=100)
    channel, transport = connect(site)
    channel.dataReceived(post(b"/form", b"a=" + b"x" * 98))
    assert status(transport) == b"HTTP/1.1 200 OK"
    assert b"ok 100 " in transport.value()


# -- 413 ------------------------------------------------------------------------------------


def test_big_content_length_is_refused_before_the_body() -> None:
    clock = Clock()
    site, resource = make_site(clock, max_body=1000)
    channel, transport = connect(site)
    head = post(b"/player_api.php", b"").replace(b"Content-Length: 0", b"Content-Length: 10000000000")
    channel.dataReceived(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    answer = transport.value()
    assert status(transport) == b"HTTP/1.1 413 Content Too Large"
    assert b"100 Continue" not in answer  # the client is not asked for the body
    assert b"Connection: close" in answer
    assert transport.disconnecting
    channel.dataReceived(b"x" * 5000)  # what the client sends on is dropped
    assert resource.requests == []
    assert site.stats["body_too_large"] == 1


def test_chunked_body_passing_the_limit_is_refused() -> None:
    clock = Clock()
    site, resource = make_site(clock, max_body=1000)
    channel, transport = connect(site)
    channel.dataReceived(chunked(b"/form", b"a=" + b"x" * 600, end=False))
    assert transport.value() == b""
    request = channel.requests[-1]
    channel.dataReceived(b"200\r\n" + b"y" * 0x200 + b"\r\n")
    assert status(transport) == b"HTTP/1.1 413 Content Too Large"
    assert transport.disconnecting
    assert len(request.content.getvalue()) <= 1000  # nothing kept past the limit
    channel.dataReceived(b"200\r\n" + b"z" * 0x200 + b"\r\n0\r\n\r\n")
    assert resource.requests == []


def test_chunked_body_passing_the_limit_in_one_read_is_refused() -> None:
    clock = Clock()
    site, resource = make_site(clock, max_body=1000)
    channel, transport = connect(site)
    channel.dataReceived(chunked(b"/form", b"a" * 700, b"b" * 700))  # the whole request at once
    assert status(transport) == b"HTTP/1.1 413 Content Too Large"
    assert resource.requests == []


def test_refused_connection_drops_what_follows_then_is_cut() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_body=10, linger=2.0, max_linger_bytes=1000)
    address = IPv4Address("TCP", "10.0.0.5", 40000)
    transport = HalfCloseTransport(peerAddress=address)
    channel, _ = connect(site, transport=transport)
    channel.dataReceived(post(b"/form", b"x" * 100)[:-100])
    assert status(transport) == b"HTTP/1.1 413 Content Too Large"
    assert transport.write_closed and not transport.disconnecting  # still reading
    channel.dataReceived(b"x" * 500)
    assert not transport.disconnecting
    clock.advance(2.0)
    assert transport.disconnected  # aborted after the linger time


def test_lingering_stops_after_enough_bytes() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_body=10, max_linger_bytes=1000)
    address = IPv4Address("TCP", "10.0.0.5", 40000)
    transport = HalfCloseTransport(peerAddress=address)
    channel, _ = connect(site, transport=transport)
    channel.dataReceived(post(b"/form", b"x" * 5000))
    assert transport.disconnected  # more than max_linger_bytes followed the refusal


# -- 414, 431, 400 ------------------------------------------------------------------------------


def test_long_request_line_gets_414() -> None:
    clock = Clock()
    site, resource = make_site(clock, max_request_line=1024)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: relay\r\n\r\n")
    assert status(transport) == b"HTTP/1.1 414 URI Too Long"
    assert transport.disconnecting and resource.requests == []
    assert site.stats["uri_too_long"] == 1


def test_endless_request_line_gets_414_without_being_buffered() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_request_line=1024, max_header_line=1024)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /" + b"a" * 1030)  # no end of line yet
    assert status(transport) == b"HTTP/1.1 414 URI Too Long"


def test_request_line_within_the_limit_passes() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_request_line=1024)
    channel, transport = connect(site)
    line = b"GET /" + b"a" * (1024 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 1024
    channel.dataReceived(line + b"\r\nHost: relay\r\n\r\n")
    assert status(transport) == b"HTTP/1.1 404 Not Found" or status(transport) == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize("headers", [
    [b"X-Big: " + b"b" * 2000],                                  # one long line
    [b"X-Big: " + b"b" * 100000],                                 # a megabyte-ish line, arriving whole
    [b"X-%d: v" % i for i in range(60)],                          # too many lines
    [b"X-%d: " % i + b"v" * 900 for i in range(6)],               # too much in all
])
def test_large_headers_get_431(headers: list[bytes]) -> None:
    clock = Clock()
    site, resource = make_site(clock, max_header_line=1024, max_headers=50, max_header_size=4096)
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: relay\r\n" + b"\r\n".join(headers) + b"\r\n\r\n")
    assert status(transport) == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert transport.disconnecting and resource.requests == []


def test_endless_header_line_gets_431() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_header_line=1024, max_request_line=1024)
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: ")
    for _ in range(3):
        channel.dataReceived(b"b" * 500)
    assert status(transport) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_two_host_headers_get_400() -> None:
    clock = Clock()
    site, resource = make_site(clock)
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: relay\r\nHost: other\r\n\r\n")
    assert status(transport) == b"HTTP/1.1 400 Bad Request"
    assert transport.disconnecting and resource.requests == []
    assert site.stats["duplicate_host"] == 1


# -- deadlines ----------------------------------------------------------------------------------


def test_trickled_head_is_cut_at_the_deadline() -> None:
    clock = Clock()
    site, resource = make_site(clock, header_timeout=10.0, idle_timeout=30.0)
    channel, transport = connect(site)
    request = b"GET / HTTP/1.1\r\nHost: relay\r\nX-Slow: " + b"s" * 100
    for i in range(9):  # one byte a second never resets the deadline
        channel.dataReceived(request[i:i + 1])
        clock.advance(1.0)
    assert not transport.disconnecting
    channel.dataReceived(request[9:10])
    clock.advance(1.0)
    assert status(transport) == b"HTTP/1.1 408 Request Timeout"
    assert transport.disconnecting and resource.requests == []
    assert site.stats["header_timeout"] == 1


def test_silent_connection_is_closed_at_the_deadline() -> None:
    clock = Clock()
    site, _ = make_site(clock, header_timeout=10.0)
    channel, transport = connect(site)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting and transport.value() == b""


def test_trickled_body_is_cut_at_its_deadline() -> None:
    clock = Clock()
    site, resource = make_site(clock, body_timeout=20.0)
    channel, transport = connect(site)
    channel.dataReceived(post(b"/form", b"a=" + b"x" * 100)[:-50])
    for _ in range(19):
        channel.dataReceived(b"x")
        clock.advance(1.0)
    assert not transport.disconnecting
    clock.advance(1.0)
    assert status(transport) == b"HTTP/1.1 408 Request Timeout"
    assert resource.requests == []
    assert site.stats["body_timeout"] == 1


def test_kept_alive_connection_waits_for_its_idle_timeout_then_a_new_deadline() -> None:
    clock = Clock()
    site, resource = make_site(clock, header_timeout=10.0, idle_timeout=30.0)
    channel, transport = connect(site)
    channel.dataReceived(GET)
    clock.advance(25.0)  # idle between requests: the header deadline does not run
    assert not transport.disconnecting
    channel.dataReceived(b"GET /second HTTP/1.1\r\n")
    clock.advance(9.0)
    assert not transport.disconnecting
    clock.advance(1.0)
    assert transport.disconnecting  # the second request's head took too long
    assert len(resource.requests) == 1


def test_idle_kept_alive_connection_is_closed() -> None:
    clock = Clock()
    site, _ = make_site(clock, idle_timeout=30.0)
    channel, transport = connect(site)
    channel.dataReceived(GET)
    clock.advance(30.0)
    assert transport.disconnecting


def test_long_response_is_not_cut_by_the_deadlines() -> None:
    clock = Clock()

    class Slow(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            request.write(b"first")
            return 1  # NOT_DONE_YET: a stream

    site = LimitedSite(Slow(), Limits(header_timeout=1.0, body_timeout=1.0, idle_timeout=2.0),
                       reactor=clock)
    channel, transport = connect(site)
    channel.dataReceived(GET)
    clock.advance(3600.0)
    assert not transport.disconnecting
    assert transport.value().endswith(b"first\r\n")


# -- the body gate ----------------------------------------------------------------------------


def test_body_gate_answers_without_reading_the_body() -> None:
    clock = Clock()
    seen: list[RequestHead] = []

    def gate(head: RequestHead) -> EarlyAnswer | None:
        seen.append(head)
        if head.path == b"/player_api.php" and b"password=right" not in head.uri:
            return EarlyAnswer(401, b'{"user_info":{"auth":0}}',
                               ((b"Content-Type", b"application/json"),))
        return None

    site, resource = make_site(clock, gate=gate)
    channel, transport = connect(site)
    channel.dataReceived(post(b"/player_api.php?username=a&password=wrong", b"x" * 1000)[:-1000])
    assert status(transport) == b"HTTP/1.1 401 Unauthorized"
    assert transport.value().endswith(b'{"user_info":{"auth":0}}')
    assert b"Content-Type: application/json" in transport.value()
    assert resource.requests == []
    assert seen[0].method == b"POST" and seen[0].length == 1000
    assert seen[0].client.host == "10.0.0.5"

    channel, transport = connect(site)
    channel.dataReceived(post(b"/player_api.php?username=a&password=right", b"a=1"))
    assert status(transport) == b"HTTP/1.1 200 OK"

    channel, transport = connect(site)
    before = len(seen)
    channel.dataReceived(GET)  # no body: the route decides
    assert len(seen) == before and status(transport) == b"HTTP/1.1 200 OK"
    assert site.stats["early_answer"] == 1


# -- connections per address ------------------------------------------------------------------


def test_connections_per_address_are_capped() -> None:
    clock = Clock()
    site, _ = make_site(clock, max_per_address=2)
    first, _ = connect(site, "10.0.0.5", 1)
    connect(site, "10.0.0.5", 2)
    assert site.buildProtocol(IPv4Address("TCP", "10.0.0.5", 3)) is None
    connect(site, "10.0.0.6", 1)  # another address is not affected
    assert site.open_connections() == {"10.0.0.5": 2, "10.0.0.6": 1}
    first.connectionLost(Failure(ConnectionError("gone")))
    assert site.buildProtocol(IPv4Address("TCP", "10.0.0.5", 4)) is not None
    assert site.stats["connections_per_address"] == 1


def test_loopback_is_capped_unless_told_otherwise() -> None:
    clock = Clock()
    capped, _ = make_site(clock, max_per_address=1)
    connect(capped, "127.0.0.1")
    assert capped.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2)) is None
    free, _ = make_site(clock, max_per_address=1, cap_loopback=False)
    for port in range(5):
        connect(free, "127.0.0.1", port)
    assert free.open_connections() == {}


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        Limits(max_body=0)
    with pytest.raises(ValueError):
        Limits(header_timeout=0)


# -- real sockets on 127.0.0.1 ------------------------------------------------------------------


class RawClient(Protocol):
    """Sends bytes as told; ``closed`` fires with everything received."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self.first: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.first.called:
            self.first.callback(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.closed.called:
            self.closed.callback(self.received)


SAFETY = 10.0  # seconds: a failing test fails instead of hanging


async def listen(limits: Limits, gate: Any = None) -> tuple[Any, Recorder]:
    resource = Recorder()
    site = LimitedSite(resource, limits, reactor=reactor, body_gate=gate)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return port, resource


async def exchange(port: Any, *sends: bytes) -> bytes:
    client = RawClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    await connectProtocol(endpoint, client)
    for data in sends:
        client.transport.write(data)
    return await client.closed.addTimeout(SAFETY, reactor)


@pytest_twisted.ensureDeferred
async def test_socket_big_content_length_refused_at_once() -> None:
    port, resource = await listen(Limits(max_body=65536))
    try:
        head = post(b"/player_api.php", b"").replace(b"Content-Length: 0", b"Content-Length: 10000000000")
        answer = await exchange(port, head)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert resource.requests == []
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_socket_oversized_body_sent_whole_still_sees_413() -> None:
    port, resource = await listen(Limits(max_body=65536))
    try:
        body = b"a=" + b"x" * 500_000
        answer = await exchange(port, post(b"/player_api.php", body))
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert resource.requests == []
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_socket_endless_chunked_body_refused() -> None:
    port, resource = await listen(Limits(max_body=65536))
    try:
        chunks = [b"4000\r\n" + b"y" * 0x4000 + b"\r\n"] * 8  # 128 KiB, never ended
        answer = await exchange(port, chunked(b"/form", end=False), *chunks)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert resource.requests == []
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_socket_protocol_edges() -> None:
    port, _ = await listen(Limits())
    try:
        answer = await exchange(port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: relay\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414 ")
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: relay\r\nX-Big: " + b"b" * 1_000_000
                                + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_socket_trickling_head_is_closed() -> None:
    port, resource = await listen(Limits(header_timeout=0.3))
    try:
        answer = await exchange(port, b"GET / HTTP/1.1\r\nHo")  # and never more
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert resource.requests == []
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_socket_connections_per_address_capped() -> None:
    port, _ = await listen(Limits(max_per_address=3))
    clients = [RawClient() for _ in range(4)]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    try:
        for client in clients:
            await connectProtocol(endpoint, client)
        # the fourth is closed at once, without a byte
        assert await clients[3].closed.addTimeout(SAFETY, reactor) == b""
        # the first three are served
        clients[0].transport.write(GET)
        assert (await clients[0].first.addTimeout(SAFETY, reactor)).startswith(b"HTTP/1.1 200 ")
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.loseConnection()
        for client in clients:
            await client.closed.addTimeout(SAFETY, reactor)
        await port.stopListening()


def test_refusals_are_logged_at_most_a_burst_a_minute() -> None:
    from twisted.logger import globalLogPublisher

    from xrelay.http.limits import LOG_BURST

    clock = Clock()
    site, _ = make_site(clock)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(LOG_BURST + 30):
            channel, _ = connect(site)
            channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert len([e for e in events if e.get("event") == "http_refused"]) == LOG_BURST
        clock.advance(60.0)
        channel, _ = connect(site)
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e["skipped"] for e in events if "skipped" in e] == [30]
    assert site.stats["duplicate_host"] == LOG_BURST + 31
