"""xrelay.ops.heap: the start-up heap frozen, full collections made rare and logged."""

from __future__ import annotations

from typing import Any, Callable, Literal

from twisted.logger import globalLogPublisher

from xrelay.ops.heap import FULL_AFTER, MIDDLE_AFTER, HeapService


class FakeCollector:
    """Records what the service asks of the ``gc`` module."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.threshold = (700, 10, 10)
        self.callbacks: list[Callable[[Literal["start", "stop"], dict[str, int]], object]] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect {generation}")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")

    def get_freeze_count(self) -> int:
        return 1234

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def set_threshold(self, threshold0: int, threshold1: int = 10, threshold2: int = 10) -> None:
        self.calls.append("set_threshold")
        self.threshold = (threshold0, threshold1, threshold2)

    def run(self, generation: int, collected: int) -> None:
        """A collection, as the interpreter reports it to the callbacks."""
        for callback in list(self.callbacks):
            callback("start", {"generation": generation, "collected": 0, "uncollectable": 0})
        for callback in list(self.callbacks):
            callback("stop", {"generation": generation, "collected": collected, "uncollectable": 0})


class FromThreads:
    def __init__(self) -> None:
        self.calls = 0

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        f(*args, **kwargs)


def start(timer: Callable[[], float] = lambda: 0.0) -> tuple[HeapService, FakeCollector, FromThreads]:
    collector, reactor = FakeCollector(), FromThreads()
    service = HeapService(reactor, collector, timer=timer)  # type: ignore[arg-type]
    service.startService()
    return service, collector, reactor


def test_start_collects_freezes_and_sets_the_thresholds_then_stop_restores_them() -> None:
    service, collector, _ = start()
    assert collector.calls == ["collect 2", "freeze", "set_threshold"]
    assert (MIDDLE_AFTER, FULL_AFTER) == (2, 2000)
    assert service.frozen == 1234
    assert collector.threshold == (700, MIDDLE_AFTER, FULL_AFTER)  # the youngest keeps Python's
    service.stopService()
    assert collector.threshold == (700, 10, 10) and collector.callbacks == []


def test_full_collections_are_logged_with_their_pause_from_the_reactor_thread() -> None:
    times = iter([10.0, 10.125])
    service, collector, reactor = start(timer=lambda: next(times))
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        collector.run(0, 5)
        collector.run(1, 7)
        assert reactor.calls == 0 and not [e for e in events if e.get("event") == "gc_full"]
        collector.run(2, 4321)
    finally:
        globalLogPublisher.removeObserver(events.append)
        service.stopService()
    full = [e for e in events if e.get("event") == "gc_full"]
    assert reactor.calls == 1 and len(full) == 1
    assert round(full[0]["ms"]) == 125 and full[0]["collected"] == 4321
