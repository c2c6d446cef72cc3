"""Shared fixtures.

Every test fails if it logged an error through twisted.logger (an errback
nobody handled, a traceback in a request...): pytest-twisted does not do
that on its own.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.logger import LogLevel, globalLogPublisher


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
