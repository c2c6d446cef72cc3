"""The tests' own deadlines: every wait a test makes fails, with a message
naming what it waited for, instead of hanging (all on a Clock)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from conftest import _cancel_after, _timeout_of
from demo_helpers import wait_until, within
from xrelay.demo.stats import DemoStats, WaitTimeout


def outcome(d: Deferred[Any]) -> Any:
    """What a fired Deferred holds (a result or a Failure)."""
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "the Deferred has not fired"
    return got[0]


def failure_of(d: Deferred[Any]) -> Failure:
    result = outcome(d)
    assert isinstance(result, Failure), f"it succeeded with {result!r}"
    return result


def test_stats_wait_for_fires_on_the_change_that_makes_it_true() -> None:
    clock = Clock()
    stats = DemoStats(clock=clock)
    d = stats.wait_for(lambda: stats.requests["xmltv"] == 2)
    stats.request("xmltv")
    assert not d.called
    stats.request("xmltv")
    assert d.called
    clock.advance(3600)  # the deadline was cancelled with it
    assert not clock.getDelayedCalls()


def test_stats_wait_for_fails_at_its_deadline_naming_the_condition() -> None:
    clock = Clock()
    stats = DemoStats(clock=clock)
    stats.request("live")
    d = stats.wait_for(lambda: stats.kicked == 1, timeout=5)
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    failure = failure_of(d)
    assert failure.check(WaitTimeout)
    message = str(failure.value)
    assert "stats.kicked == 1" in message and "within 5 s" in message
    assert "'live': 1" in message  # what the provider counted
    assert not stats._waiters  # the waiter was dropped
    stats.changed()  # and a later change does not touch the failed Deferred


def test_stats_wait_for_names_what_it_was_told() -> None:
    clock = Clock()
    stats = DemoStats(clock=clock)
    d = stats.wait_for(lambda: False, timeout=1, what="the second stream")
    clock.advance(1)
    assert "demo provider: the second stream did not hold within 1 s" in str(failure_of(d).value)


def test_wait_until_fails_at_its_deadline_on_the_clock() -> None:
    clock = Clock()
    state = {"ready": False}
    d = ensureDeferred(wait_until(lambda: state["ready"], timeout=1.0, step=0.1, clock=clock))
    clock.pump([0.1] * 9)
    assert not d.called
    clock.pump([0.1] * 2)
    failure = failure_of(d)
    assert failure.check(AssertionError)
    assert 'state["ready"]' in str(failure.value) and "within 1 s" in str(failure.value)


def test_wait_until_returns_once_the_condition_holds() -> None:
    clock = Clock()
    state = {"ready": False}
    d = ensureDeferred(wait_until(lambda: state["ready"], timeout=1.0, step=0.1, clock=clock))
    clock.advance(0.1)
    state["ready"] = True
    clock.advance(0.1)
    assert outcome(d) is None


def test_within_cancels_and_names_what_it_waited_for() -> None:
    clock = Clock()
    cancelled: list[bool] = []
    d: Deferred[None] = Deferred(lambda _: cancelled.append(True))
    bounded = within(d, 2, clock=clock, what="the viewer's first bytes")
    clock.advance(2)
    failure = failure_of(bounded)
    assert cancelled == [True]
    assert failure.check(TimeoutError)
    assert str(failure.value) == "the viewer's first bytes did not happen within 2 s"


def test_a_hanging_asynchronous_test_is_cancelled_and_says_where_it_waited() -> None:
    clock = Clock()
    cleaned: list[bool] = []

    async def hangs() -> None:
        try:
            await Deferred()
        finally:
            cleaned.append(True)

    bounded = _cancel_after(hangs, 90, "tests/x.py::hangs", clock)
    d = bounded()
    clock.advance(89)
    assert not d.called
    clock.advance(1)
    failure = failure_of(d)
    assert cleaned == [True]  # its finally clause ran
    assert failure.check(AssertionError)
    message = str(failure.value)
    assert "tests/x.py::hangs did not finish within 90 s" in message
    assert "await Deferred()" in message  # where it waited


def test_a_synchronous_test_is_left_to_pytest_timeout() -> None:
    clock = Clock()
    assert _cancel_after(lambda: 42, 1, "t", clock)() == 42
    assert not clock.getDelayedCalls()


@pytest.mark.timeout(7)
def test_the_limit_comes_from_the_marker_then_the_ini_file(request: pytest.FixtureRequest) -> None:
    assert _timeout_of(request.node) == 7
    assert float(request.config.getini("timeout")) == 120
