"""Shared fixtures and hooks.

Every test fails if it logged an error through twisted.logger (an errback
nobody handled, a traceback in a request...): pytest-twisted does not do
that on its own.

Every test fails rather than hangs.  pytest-timeout (``timeout`` in
pyproject.toml, ``@pytest.mark.timeout(N)`` for a slower test) is the hard
stop: with ``timeout_method = "thread"`` it prints every thread's stack and
ends the run, the only way out of a test that blocks the reactor.  (The
``signal`` method cannot be used: its exception lands in pytest-twisted's
reactor greenlet and stops the reactor for every later test.)  So that an
asynchronous test that merely waits forever fails alone, its Deferred is
cancelled at three quarters of that limit, which runs the test's ``finally``
clauses and reports where it was waiting, while the run goes on.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generator, Iterator

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

#: Fraction of a test's pytest-timeout limit after which its Deferred is cancelled.
CANCEL_AT = 0.75


def _timeout_of(item: pytest.Item) -> float:
    """The item's pytest-timeout limit in seconds (0: none), taken in the
    plugin's order: the marker, the command line, the ini file."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.kwargs.get("timeout", marker.args[0] if marker.args else 0)
    else:
        value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    return float(value or 0)


def _cancel_after(test: Callable[..., Any], seconds: float, name: str,
                  clock: Any = reactor) -> Callable[..., Any]:
    """``test``, whose Deferred (or coroutine) fails after ``seconds``."""

    def bounded(**kwargs: Any) -> Any:
        result = test(**kwargs)
        if inspect.iscoroutine(result):
            result = ensureDeferred(result)
        if isinstance(result, Deferred):
            def expired(outcome: Any, timeout: float) -> None:
                where = outcome.getTraceback() if isinstance(outcome, Failure) else repr(outcome)
                raise AssertionError(f"{name} did not finish within {timeout:g} s and was "
                                     f"cancelled; where it waited:\n{where}")
            result.addTimeout(seconds, clock, onTimeoutCancel=expired)
        return result

    return bounded


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, None, None]:
    limit = _timeout_of(pyfuncitem)
    original = pyfuncitem.obj
    if limit > 0 and getattr(original, "hypothesis", None) is None:
        pyfuncitem.obj = _cancel_after(original, limit * CANCEL_AT, pyfuncitem.nodeid)
    try:
        yield
    finally:
        pyfuncitem.obj = original


class _ErrorCatcher:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical) or event.get("isError"):
            self.errors.append(event)


@pytest.fixture(autouse=True)
def fail_on_logged_errors(request: pytest.FixtureRequest) -> Iterator[_ErrorCatcher]:
    catcher = _ErrorCatcher()
    globalLogPublisher.addObserver(catcher)
    try:
        yield catcher
    finally:
        globalLogPublisher.removeObserver(catcher)
    if request.node.get_closest_marker("allow_logged_errors"):
        return
    if catcher.errors:
        from twisted.logger import formatEvent

        lines = []
        for e in catcher.errors[:5]:
            text = formatEvent(e)
            failure = e.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            lines.append(text)
        pytest.fail("errors were logged:\n" + "\n---\n".join(lines), pytrace=False)
