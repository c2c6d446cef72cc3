"""The ``heap`` service: garbage collection that does not stop the relay for long.

CPython's cyclic collector stops the reactor while it runs, for as long as
it takes to visit every object of the generations it collects (about a
microsecond per object on a busy 2-core machine whose caches the relay's
copies keep cold).  A full collection visits the whole heap: with Python's
settings that was 100 to 250 ms every 10 to 20 s under a player load (the
modules, classes and functions imported at start-up alone are some 70 000
objects; 2000 connections and their requests add about as many), during
which no playlist was answered.  :class:`HeapService`, started once the
daemon's other services have started, does three things for the process:

* **freezes the start-up heap**: one full collection, then ``gc.freeze()``;
  what is alive then (modules, classes, the routes, the components) moves
  to a permanent generation that no later collection visits.  Those objects
  live as long as the process anyway; the few that would become garbage
  later (the users of a configuration replaced by a reload) are kept, a few
  kilobytes per reload;
* **keeps the middle generation small**: it is collected after every
  :data:`MIDDLE_AFTER` young collections instead of 10.  Under a player
  load what survives a young collection is mostly requests in flight (an
  HLS segment is written for seconds), and a middle collection visits all
  of those made since the last one: 5 to 30 ms with Python's 10, a few
  milliseconds with 2.  The survivors move on to the old generation sooner, where
  most of them die by reference counting without being visited;
* **makes full collections rare**: Python runs one after every 10 middle
  collections (once the old generation holds a quarter more objects than
  after the last one), which under a player load is every 10 to 20 s.
  Here one follows every :data:`FULL_AFTER` middle collections: under the
  benchmark's load of 2000 clients about every quarter of an hour, taking
  about 100 ms.  Cyclic garbage that outlives three young collections
  waits for it (little: the live and HLS requests make none, see
  :mod:`xrelay.web.hot_routes`).

Each full collection is logged with its duration and what it freed, so
that the pause is never a surprise (from the reactor thread: a collection
runs in whichever thread allocates).
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Literal, Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

__all__ = ["HeapService", "Collector", "MIDDLE_AFTER", "FULL_AFTER"]

log = Logger()

#: Young collections between two collections of the middle generation
#: (Python's default: 10).
MIDDLE_AFTER = 2
#: Middle collections between two full collections (Python's default: 10).
FULL_AFTER = 2000


class Collector(Protocol):
    """What the service uses of the :mod:`gc` module."""

    callbacks: list[Callable[[Literal["start", "stop"], dict[str, int]], object]]

    def collect(self, generation: int = 2) -> int: ...

    def freeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...

    def get_threshold(self) -> tuple[int, int, int]: ...

    def set_threshold(self, threshold0: int, threshold1: int = ..., threshold2: int = ...) -> None: ...


class HeapService(Service):
    """Freezes the start-up heap, keeps the middle generation small and
    makes full collections rare (see the module docstring); logs each full
    collection."""

    name = "heap"

    def __init__(self, reactor: IReactorFromThreads, collector: Collector = gc,
                 middle_after: int = MIDDLE_AFTER, full_after: int = FULL_AFTER,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        #: Where a collection is logged from (it may run in any thread).
        self.reactor = reactor
        self.collector = collector
        self.middle_after = middle_after
        self.full_after = full_after
        #: Measures a collection's pause (a duration, not a schedule).
        self.timer = timer
        #: Objects frozen at start (0 until started).
        self.frozen = 0
        self._previous: tuple[int, int, int] | None = None
        self._started_at: float | None = None

    def startService(self) -> None:
        super().startService()
        collector = self.collector
        collector.collect()
        collector.freeze()
        self.frozen = collector.get_freeze_count()
        self._previous = collector.get_threshold()
        collector.set_threshold(self._previous[0], self.middle_after, self.full_after)
        collector.callbacks.append(self._observe)
        log.info("start-up heap frozen: {count} objects the garbage collector no longer visits; "
                 "collection thresholds {thresholds}", count=self.frozen,
                 thresholds=collector.get_threshold(), event="heap_frozen")

    def stopService(self) -> None:
        super().stopService()
        if self._observe in self.collector.callbacks:
            self.collector.callbacks.remove(self._observe)
        if self._previous is not None:
            self.collector.set_threshold(*self._previous)
            self._previous = None

    def _observe(self, phase: Literal["start", "stop"], info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook: times and logs the full collections."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started_at = self.timer()
            return
        if self._started_at is None:
            return
        pause = self.timer() - self._started_at
        self._started_at = None
        self.reactor.callFromThread(_log_full, pause, info.get("collected", 0))


def _log_full(pause: float, collected: int) -> None:
    log.info("full garbage collection: {ms:.0f} ms, {collected} objects freed",
             ms=pause * 1000, collected=collected, event="gc_full")
