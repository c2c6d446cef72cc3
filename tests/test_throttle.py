"""Tests for xrelay.http.throttle: delays, lockouts, other addresses, memory."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest

from xrelay.http.throttle import LoginThrottle, ThrottlePolicy, client_key

POLICY = ThrottlePolicy(free_failures=3, base_delay=1.0, max_delay=4.0, lockout_after=8,
                        lockout=60.0, forget_after=600.0, max_addresses=100)


def fired(d: Deferred[Any]) -> bool:
    return d.called


def fail(throttle: LoginThrottle, clock: Clock, address: str) -> float:
    """One failed login; the seconds its answer was held back."""
    d = throttle.failed(address)
    waited = 0.0
    while not d.called:
        clock.advance(0.5)
        waited += 0.5
        assert waited < 1000, "the delay never ends"
    return waited


def test_first_failures_are_free_then_the_delay_grows_to_a_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    delays = [fail(throttle, clock, "10.0.0.9") for _ in range(7)]
    assert delays == [0, 0, 0, 1.0, 2.0, 4.0, 4.0]
    assert throttle.counters.failures == 7 and throttle.counters.delayed == 4


def test_lockout_refuses_with_429_then_ends() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(8):
        fail(throttle, clock, "10.0.0.9")
    refusal = throttle.check("10.0.0.9")
    assert refusal is not None and refusal.code == 429
    assert 1 <= refusal.retry_after <= 60
    request = DummyRequest([b""])
    body = refusal.render(request)
    assert request.responseCode == 429 and b"try again later" in body
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [str(refusal.retry_after).encode()]
    # the right password does not help during the lockout
    throttle.succeeded("10.0.0.9")
    assert throttle.check("10.0.0.9") is not None
    assert throttle.locked() == ["10.0.0.9"]
    clock.advance(60.0)
    assert throttle.check("10.0.0.9") is None
    # one more failure after the lockout locks the address out again at once
    throttle.failed("10.0.0.9")
    assert throttle.check("10.0.0.9") is not None
    assert throttle.counters.lockouts == 2 and throttle.counters.refused == 3


def test_lockout_is_logged_once_per_lockout() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY, realm="admin")
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(15):
            throttle.failed("10.0.0.9")
            throttle.check("10.0.0.9")
    finally:
        globalLogPublisher.removeObserver(events.append)
    lockouts = [e for e in events if e.get("event") == "login_lockout"]
    assert len(lockouts) == 1
    assert lockouts[0]["address"] == "10.0.0.9" and lockouts[0]["realm"] == "admin"


def test_other_addresses_are_never_affected() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(20):
        throttle.failed("10.0.0.9")
    assert throttle.check("10.0.0.9") is not None
    assert throttle.check("10.0.0.10") is None
    assert fail(throttle, clock, "10.0.0.10") == 0


def test_correct_logins_are_never_throttled_and_forgive_mistakes() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(1000):
        assert throttle.check("10.0.0.7") is None
        throttle.succeeded("10.0.0.7")
    for _ in range(5):
        fail(throttle, clock, "10.0.0.7")
    throttle.succeeded("10.0.0.7")
    assert fail(throttle, clock, "10.0.0.7") == 0  # counting starts again
    assert throttle.tracked() == 1


def test_quiet_addresses_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(5):
        fail(throttle, clock, "10.0.0.9")
    clock.advance(601.0)
    fail(throttle, clock, "10.0.0.10")  # housekeeping runs on a failure
    assert throttle.tracked() == 1
    assert fail(throttle, clock, "10.0.0.9") == 0


def test_table_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for i in range(1000):
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
    assert throttle.tracked() == 100
    assert throttle.counters.evicted == 900


def test_delay_can_be_cancelled_by_a_client_that_left() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(3):
        throttle.failed("10.0.0.9")
    d = throttle.failed("10.0.0.9")
    errors: list[Any] = []
    d.addErrback(errors.append)
    d.cancel()
    assert errors and clock.getDelayedCalls() == []


def test_address_forms_count_as_one() -> None:
    assert client_key("::ffff:10.0.0.9") == "10.0.0.9"
    assert client_key("2001:DB8:0:0::1") == "2001:db8::1"
    assert client_key("-") == "-"
    clock = Clock()
    throttle = LoginThrottle(clock, POLICY)
    for _ in range(4):
        throttle.failed("::ffff:10.0.0.9")
    for _ in range(4):
        throttle.failed("10.0.0.9")
    assert throttle.check("10.0.0.9") is not None


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(max_delay=0.1, base_delay=1.0)
    with pytest.raises(ValueError):
        ThrottlePolicy(lockout=600.0, forget_after=60.0)
    assert ThrottlePolicy(free_failures=1, base_delay=1, max_delay=10).delay(1000) == 10
