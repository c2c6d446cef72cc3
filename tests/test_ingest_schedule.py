"""The ingest schedule, on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from xrelay.ingest.ingester import IngestResult, IngestService


class FakeStore:
    def __init__(self, age: float | None) -> None:
        self._age = age

    def age(self) -> float | None:
        return self._age


class FakeIngester:
    """Counts runs; each run stays pending until the test finishes it."""

    def __init__(self, age: float | None) -> None:
        self.store = FakeStore(age)
        self.runs: list[defer.Deferred[IngestResult]] = []
        self.running: Any = None

    def run(self, trigger: str = "schedule", force: bool = False) -> defer.Deferred[IngestResult]:
        if self.runs and not self.runs[-1].called:
            return self.runs[-1]
        d: defer.Deferred[IngestResult] = defer.Deferred()
        self.runs.append(d)
        return d

    def cancel(self) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        self.runs[-1].callback(IngestResult(ok, 0.0, 1.0, reason=None if ok else "boom"))


def test_missing_cache_ingests_at_once_then_every_interval() -> None:
    clock, ingester = Clock(), FakeIngester(age=None)
    service = IngestService(clock, ingester, interval=100)
    service.startService()
    clock.advance(0)
    assert len(ingester.runs) == 1
    clock.advance(500)
    assert len(ingester.runs) == 1, "runs never overlap: nothing new while one is pending"
    ingester.finish(ok=False)
    clock.advance(99)
    assert len(ingester.runs) == 1
    clock.advance(1)
    assert len(ingester.runs) == 2, "a failed run does not stop the schedule"
    ingester.finish()
    clock.advance(100)
    assert len(ingester.runs) == 3
    service.stopService()


def test_fresh_cache_waits_for_the_rest_of_the_interval() -> None:
    clock, ingester = Clock(), FakeIngester(age=30)
    service = IngestService(clock, ingester, interval=100)
    service.startService()
    clock.advance(69)
    assert ingester.runs == []
    clock.advance(1)
    assert len(ingester.runs) == 1
    service.stopService()


def test_stale_cache_ingests_at_start() -> None:
    clock, ingester = Clock(), FakeIngester(age=1000)
    service = IngestService(clock, ingester, interval=100)
    service.startService()
    clock.advance(0)
    assert len(ingester.runs) == 1
    service.stopService()


def test_trigger_restarts_the_schedule_and_stop_cancels_timers() -> None:
    clock, ingester = Clock(), FakeIngester(age=50)
    service = IngestService(clock, ingester, interval=100)
    service.startService()
    service.trigger("SIGHUP")
    assert len(ingester.runs) == 1
    ingester.finish()
    clock.advance(99)
    assert len(ingester.runs) == 1
    clock.advance(1)
    assert len(ingester.runs) == 2
    ingester.finish()
    service.stopService()
    assert clock.getDelayedCalls() == []
