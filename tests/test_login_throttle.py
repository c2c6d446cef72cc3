"""Failed logins throttled in the one login place (xrelay.web.guards) and
answered before their body (xrelay.web.gate).

A small Klein front with the real guards is served by a LimitedSite with
the real body gate, on two loopback listeners (127.0.0.1 and ::1: two client
addresses); the throttles run on a Clock, so the delays are driven by the
test, never waited for.  The daemon-level checks (the real routes, /metrics)
are at the end.
"""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
import pytest_twisted
import treq
from klein import Klein
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.web.iweb import IRequest

from demo_helpers import wait_until, within
from harness import start_relay
from xrelay.core.config import AdminConfig, ServerConfig, UpstreamConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.http.errors import HTTPError, render_error
from xrelay.http.limits import LimitedSite, Limits
from xrelay.http.throttle import LoginThrottle, ThrottlePolicy
from xrelay.web.gate import LoginGate
from xrelay.web.guards import LoginThrottles, admin_only, user_login

USERS = (UserConfig("alice", "alicepw"), UserConfig("off", "offpw", enabled=False))
ADMIN = AdminConfig("admin", "adminpw")
POLICY = ThrottlePolicy(free_failures=5, base_delay=0.5, max_delay=8.0, lockout_after=20, lockout=300.0)
SAFETY = 10.0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Front:
    """Routes guarded exactly as xrelay's are."""

    app = Klein()

    def __init__(self, clock: Clock) -> None:
        self.users = UserDB(USERS)
        self.admin: AdminConfig | None = ADMIN
        self.scrubber = Scrubber(UpstreamConfig("http://provider.example", "provuser", "provpass"))
        self.throttles = LoginThrottles(users=LoginThrottle(clock, POLICY, "player login"),
                                        admin=LoginThrottle(clock, POLICY, "admin login"))

    @app.route("/player_api.php", methods=["GET", "POST"])
    @user_login("json")
    def player_api(self, request: IRequest, account: UserConfig) -> bytes:
        return f"hello {account.username}".encode()

    @app.route("/live/<user>/<password>/<stream>", methods=["GET"])
    @user_login("text")
    def live(self, request: IRequest, account: UserConfig, stream: str) -> bytes:
        return b"stream"

    @app.route("/admin", methods=["GET", "POST"])
    @admin_only
    def admin_page(self, request: IRequest) -> bytes:
        return b"admin"

    @app.handle_errors(HTTPError)
    def http_error(self, request: IRequest, failure: Any) -> bytes:
        return render_error(request, failure.value)


class Served:
    def __init__(self) -> None:
        self.clock = Clock()
        self.front = Front(self.clock)
        self.site = LimitedSite(self.front.app.resource(), Limits(), reactor=reactor,
                                body_gate=LoginGate(self.front))
        self.v4 = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.v6 = reactor.listenTCP(0, self.site, interface="::1") if _ipv6_loopback() else None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.v4.getHost().port}{path}"

    @property
    def users(self) -> LoginThrottle:
        return self.front.throttles.users

    async def stop(self) -> None:
        await self.v4.stopListening()
        if self.v6 is not None:
            await self.v6.stopListening()


@pytest_twisted.async_yield_fixture
async def served():
    s = Served()
    yield s
    await s.stop()


async def get(url: str, **kw: Any) -> tuple[int, bytes, Any]:
    response = await within(treq.get(url, persistent=False, **kw), SAFETY)
    return response.code, await within(treq.content(response), SAFETY), response.headers


async def raw_get_v6(served: Served, path: str) -> bytes:
    """GET *path* from ::1 (treq's URLs do not take an IPv6 literal here)."""
    from test_http_limits import RawClient
    from twisted.internet.endpoints import TCP6ClientEndpoint, connectProtocol

    assert served.v6 is not None
    client = RawClient()
    await connectProtocol(TCP6ClientEndpoint(reactor, "::1", served.v6.getHost().port), client)
    client.transport.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
    return await within(client.closed, SAFETY)


def api(user: str, password: str) -> str:
    return f"/player_api.php?username={user}&password={password}"


async def wrong_login_answered_after(served: Served, delay: float, url: str | None = None) -> int:
    """A wrong login whose answer waits for exactly *delay* seconds of the
    throttle's clock; returns its status."""
    before = served.users.counters.failures
    pending = treq.get(url or served.url(api("alice", "guess")), persistent=False)
    answered: list[Any] = []
    pending.addBoth(lambda result: answered.append(result) or result)
    await wait_until(lambda: served.users.counters.failures == before + 1, SAFETY)
    if delay:
        served.clock.advance(delay - 0.01)
        assert not answered, "answered before its delay"
        served.clock.advance(0.01)
    response = await within(pending, SAFETY)
    await treq.content(response)
    return response.code


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_delayed_more_and_more_then_refused(served) -> None:
    for _ in range(POLICY.free_failures):                 # free: answered at once
        assert await wrong_login_answered_after(served, 0) == 401
    for failure in range(POLICY.free_failures + 1, POLICY.lockout_after):
        assert await wrong_login_answered_after(served, POLICY.delay(failure)) == 401
    assert POLICY.delay(POLICY.free_failures + 1) == 0.5 and POLICY.delay(POLICY.lockout_after - 1) == 8.0
    # the lockout: 429 at once, even for the right password
    assert await wrong_login_answered_after(served, POLICY.max_delay) == 401
    code, body, headers = await get(served.url(api("alice", "alicepw")))
    assert code == 429  # for the lockout less the delay of its last failure
    assert int(headers.getRawHeaders(b"retry-after")[0]) == POLICY.lockout - POLICY.max_delay
    assert b'"auth":0' in body
    code, _, _ = await get(served.url("/live/alice/alicepw/1.ts"))
    assert code == 429
    assert served.users.locked() == ["127.0.0.1"]
    # the admin realm is not locked by the users' guesses
    auth = {"authorization": "Basic " + base64.b64encode(b"admin:adminpw").decode()}
    assert (await get(served.url("/admin"), headers=auth))[0] == 200
    # after the lockout the right password works again, and is never delayed
    served.clock.advance(300)
    assert (await get(served.url(api("alice", "alicepw"))))[0] == 200
    # the failures are kept: one more guess locks the address out again
    assert await wrong_login_answered_after(served, POLICY.max_delay) == 401
    assert (await get(served.url(api("alice", "alicepw"))))[0] == 429
    served.clock.advance(POLICY.forget_after + POLICY.lockout)
    assert (await get(served.url(api("alice", "alicepw"))))[0] == 200
    counters = served.users.counters
    assert (counters.failures, counters.lockouts) == (POLICY.lockout_after + 1, 2)
    assert counters.delayed == POLICY.lockout_after + 1 - POLICY.free_failures
    assert counters.refused == 3


@pytest_twisted.ensureDeferred
async def test_a_player_on_another_address_is_never_locked_out(served) -> None:
    if served.v6 is None:
        pytest.skip("no IPv6 loopback")
    for failure in range(1, POLICY.lockout_after + 1):
        await wrong_login_answered_after(served, POLICY.delay(failure))
    assert (await get(served.url(api("alice", "alicepw"))))[0] == 429
    answer = await raw_get_v6(served, api("alice", "alicepw"))
    assert answer.startswith(b"HTTP/1.1 200 ") and b"hello alice" in answer
    # ::ffff:127.0.0.1 and 127.0.0.1 are one address; ::1 another
    assert served.users.locked() == ["127.0.0.1"]


@pytest_twisted.ensureDeferred
async def test_a_correct_login_does_not_erase_the_guesses_before_it(served) -> None:
    """A client with one valid account cannot interleave its own login with
    guesses at another account to stay among the free failures."""
    for failure in range(1, POLICY.lockout_after + 1):
        assert (await get(served.url(api("alice", "alicepw"))))[0] == 200
        await wrong_login_answered_after(served, POLICY.delay(failure), served.url(api("bob", "guess")))
    assert served.users.locked() == ["127.0.0.1"]


@pytest_twisted.ensureDeferred
async def test_a_correct_login_retried_is_never_throttled(served) -> None:
    for _ in range(3 * POLICY.lockout_after):
        assert (await get(served.url(api("alice", "alicepw"))))[0] == 200
    # missing credentials and a disabled account are refused without counting
    for _ in range(2 * POLICY.lockout_after):
        assert (await get(served.url("/player_api.php")))[0] == 401
        assert (await get(served.url(api("off", "offpw"))))[0] == 401
    assert served.users.counters.failures == 0 and served.users.tracked() == 0


@pytest_twisted.ensureDeferred
async def test_refused_logins_are_logged_once_per_address(served) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for failure in range(1, POLICY.lockout_after + 1):
            await wrong_login_answered_after(served, POLICY.delay(failure),
                                             served.url(api("provuser", "provpass")))
    finally:
        globalLogPublisher.removeObserver(events.append)
    refused = [e for e in events if e.get("event") == "login_refused"]
    lockouts = [e for e in events if e.get("event") == "login_lockout"]
    assert len(refused) == 1 and len(lockouts) == 1
    # the provider's username (a guess) is never logged
    assert "provuser" not in repr(refused[0]) and refused[0]["who"] == " for '***'"


@pytest_twisted.ensureDeferred
async def test_admin_failures_are_throttled_and_a_missing_login_is_not_counted(served) -> None:
    admin = served.front.throttles.admin
    for _ in range(2 * POLICY.lockout_after):  # a browser before its prompt
        code, _, headers = await get(served.url("/admin"))
        assert code == 401 and headers.getRawHeaders(b"www-authenticate")
    assert admin.counters.failures == 0
    wrong = {"authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    for failure in range(1, POLICY.free_failures + 2):
        pending = treq.get(served.url("/admin"), headers=wrong, persistent=False)
        await wait_until(lambda: admin.counters.failures == failure, SAFETY)
        served.clock.advance(POLICY.delay(failure))
        assert (await within(pending, SAFETY)).code == 401
    assert admin.counters.delayed == 1
    assert served.users.counters.failures == 0


@pytest_twisted.ensureDeferred
async def test_a_refused_login_is_answered_before_its_body(served) -> None:
    """The body gate: 401 without reading the body (here never sent), then
    429 at once in a lockout; a correct login's form body is read."""
    from test_http_limits import RawClient
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", served.v4.getHost().port)

    async def post_without_body(path: bytes, length: int = 60_000) -> bytes:
        client = RawClient()
        await connectProtocol(endpoint, client)
        client.transport.write(b"POST " + path + b" HTTP/1.1\r\nHost: relay\r\n"
                               b"Content-Type: application/x-www-form-urlencoded\r\n"
                               b"Content-Length: %d\r\n\r\n" % length)
        return await within(client.closed, SAFETY)

    answer = await post_without_body(api("alice", "guess").encode())
    assert answer.startswith(b"HTTP/1.1 401 ") and answer.endswith(b'{"user_info":{"auth":0}}')
    assert served.site.stats["early_answer"] == 1
    assert served.users.failures("127.0.0.1") == 1
    wrong_admin = b"Basic " + base64.b64encode(b"admin:guess")
    client = RawClient()
    await connectProtocol(endpoint, client)
    client.transport.write(b"POST /admin HTTP/1.1\r\nHost: r\r\nAuthorization: " + wrong_admin
                           + b"\r\nContent-Length: 1000\r\n\r\n")
    assert (await within(client.closed, SAFETY)).startswith(b"HTTP/1.1 401 ")
    # the right login in the form: the body is read and the route runs
    response = await within(treq.post(served.url("/player_api.php"), persistent=False,
                                      data={"username": "alice", "password": "alicepw"}), SAFETY)
    assert await treq.content(response) == b"hello alice"
    # past the free failures the gate lets the guard delay the answer (the
    # body is read: at most max_body bytes)
    for failure in range(2, POLICY.lockout_after + 1):
        await wrong_login_answered_after(served, POLICY.delay(failure))
    answer = await post_without_body(api("alice", "alicepw").encode())
    assert answer.startswith(b"HTTP/1.1 429 ")
