"""Hostile clients against the real daemon (XRelay on loopback, the demo
provider behind it): bounded requests with the limits of ``[server]``,
failed logins throttled per address, /metrics counting both, the listen
backlog.  The limits themselves have unit tests (test_http_limits.py,
test_throttle.py, test_login_throttle.py); these check the wiring.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from demo_helpers import within
from harness import ADMIN, start_relay
from test_http_limits import RawClient
from xrelay.core.config import ServerConfig, with_default_backlog

SAFETY = 10.0
LIMITED = ServerConfig(listen="tcp:0:interface=127.0.0.1", header_timeout=0.5, body_timeout=0.5,
                       max_connections_per_address=6, login_free_failures=1, login_lockout_after=2,
                       login_lockout=600)
ADMIN_AUTH = {"authorization": "Basic " + base64.b64encode(f"{ADMIN.username}:{ADMIN.password}".encode()).decode()}


async def exchange(port: int, *sends: bytes) -> bytes:
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    for data in sends:
        client.transport.write(data)
    return await within(client.closed, SAFETY)


async def get(url: str, **kw: Any) -> tuple[int, bytes]:
    response = await within(treq.get(url, persistent=False, **kw), SAFETY)
    return response.code, await within(treq.content(response), SAFETY)


def metric(text: bytes, line: str) -> float:
    for row in text.decode().splitlines():
        name, _, value = row.rpartition(" ")
        if name == line:
            return float(value)
    raise AssertionError(f"{line} not in /metrics")


@pytest_twisted.ensureDeferred
async def test_requests_are_bounded_by_the_server_limits(tmp_path) -> None:
    relay = await start_relay(tmp_path, server=LIMITED)
    try:
        login = b"/player_api.php?username=alice&password=alicepw"
        post = b"POST " + login + b" HTTP/1.1\r\nHost: r\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        # 10 GB announced: 413 before a byte of it is read
        answer = await exchange(relay.port, post + b"Content-Length: 10000000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 ")
        # 500 KB sent: 413 too, and it never reaches the API
        answer = await exchange(relay.port, post + b"Content-Length: 500000\r\n\r\n" + b"a" * 500_000)
        assert answer.startswith(b"HTTP/1.1 413 ")
        # a 20 KB URL, a 1 MB header line, two Host headers
        answer = await exchange(relay.port, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: r\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414 ")
        answer = await exchange(relay.port, b"GET / HTTP/1.1\r\nHost: r\r\nX-A: " + b"b" * 1_000_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        answer = await exchange(relay.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        # a trickled head and a body that never comes: 408 at the deadline
        answer = await exchange(relay.port, b"GET " + login + b" HTTP/1.1\r\nHo")
        assert answer.startswith(b"HTTP/1.1 408 ")
        answer = await exchange(relay.port, post + b"Content-Length: 100\r\n\r\nab")
        assert answer.startswith(b"HTTP/1.1 408 ")
        # a small form is read and served
        response = await within(treq.post(f"{relay.url}/player_api.php", persistent=False,
                                          data={"username": "alice", "password": "alicepw"}), SAFETY)
        assert response.code == 200 and b'"auth":1' in await treq.content(response)
        code, text = await get(f"{relay.url}/metrics", headers=ADMIN_AUTH)
        assert code == 200
        for reason, count in (("body_too_large", 2), ("uri_too_long", 1), ("headers_too_large", 1),
                              ("duplicate_host", 1), ("header_timeout", 1), ("body_timeout", 1)):
            assert metric(text, f'xrelay_http_limit_refusals_total{{reason="{reason}"}}') == count, reason
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_connections_per_address_are_capped(tmp_path) -> None:
    relay = await start_relay(tmp_path, server=LIMITED)
    clients = [RawClient() for _ in range(LIMITED.max_connections_per_address + 1)]
    try:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port)
        for client in clients:
            await connectProtocol(endpoint, client)
        # one more than the cap: closed at once, without a byte
        assert await within(clients[-1].closed, SAFETY) == b""
        assert relay.xr.site.open_connections() == {"127.0.0.1": LIMITED.max_connections_per_address}
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.loseConnection()
        for client in clients:
            await within(client.closed, SAFETY)
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_password_guesses_are_throttled_and_counted(tmp_path) -> None:
    relay = await start_relay(tmp_path, server=LIMITED)
    try:
        guess = f"{relay.url}/player_api.php?username=alice&password=guess"
        assert (await get(guess))[0] == 401                      # free
        assert (await get(f"{relay.url}/live/alice/guess/1.ts"))[0] == 401   # delayed, then lockout
        code, body = await get(f"{relay.url}/player_api.php?username=alice&password=alicepw")
        assert code == 429 and body == b'{"user_info":{"auth":0}}'
        # the admin realm is another throttle
        code, text = await get(f"{relay.url}/metrics", headers=ADMIN_AUTH)
        assert code == 200
        assert metric(text, 'xrelay_login_failures_total{realm="users"}') == 2
        assert metric(text, 'xrelay_login_delayed_total{realm="users"}') == 1
        assert metric(text, 'xrelay_login_lockouts_total{realm="users"}') == 1
        assert metric(text, 'xrelay_login_refused_total{realm="users"}') == 1
        assert metric(text, 'xrelay_login_locked_addresses{realm="users"}') == 1
        assert metric(text, 'xrelay_login_failures_total{realm="admin"}') == 0
    finally:
        await relay.stop()


def test_listen_backlog_default() -> None:
    assert with_default_backlog("tcp:8080") == "tcp:8080:backlog=1024"
    assert with_default_backlog("tcp:8080:interface=127.0.0.1") == "tcp:8080:interface=127.0.0.1:backlog=1024"
    assert with_default_backlog("tcp:8080:backlog=20") == "tcp:8080:backlog=20"
    assert with_default_backlog("tcp6:port=8080:interface=\\:\\:1") == "tcp6:port=8080:interface=\\:\\:1:backlog=1024"
    assert with_default_backlog("unix:/run/xrelay.sock") == "unix:/run/xrelay.sock:backlog=1024"
    assert with_default_backlog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"


@pytest_twisted.ensureDeferred
async def test_the_daemon_listens_with_xrelays_backlog(tmp_path) -> None:
    relay = await start_relay(tmp_path, ingest=False,
                              server=ServerConfig(listen="tcp:0:interface=127.0.0.1"))
    try:
        endpoint = relay.xr.web_endpoint
        assert endpoint is not None and endpoint.inner._backlog == 1024
    finally:
        await relay.stop()
