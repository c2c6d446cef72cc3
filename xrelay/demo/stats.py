"""What the demo provider counts, for tests and benchmarks to assert on.

``DemoStats`` is the public accounting API (``provider.stats``):

* ``requests[kind]``: every HTTP request by kind: ``player_api``,
  ``player_api:<action>``, ``get.php``, ``xmltv``, ``live``, ``movie``,
  ``series``, ``timeshift``, ``hls_playlist``, ``hls_segment``, ``hls_key``,
  ``redirect``, ``image``, ``unauthorized``, ``not_found``, ``forbidden``,
  ``live_body``/``movie_body``/``series_body`` (redirect targets),
  ``hls_entry`` (``/live/U/P/ID.m3u8``) and ``xmltv_hung`` (the
  ``hang_midway`` fault has sent its half).
* ``opened[(kind, stream_id)]``: stream connections opened, kind one of
  ``live``, ``vod`` (movies and episodes), ``timeshift``, ``hls_playlist``,
  ``hls_segment``.  ``opened_total(kind)`` sums them.
* ``open_streams``: the stream bodies being sent now (live, vod, timeshift),
  oldest first.  These count against ``max_connections``.
* ``segment_fetches[path]``: fetches per HLS segment path.
* ``timeshift``: every catch-up request received, as ``TimeshiftRequest``.
* ``kicked``: connections cut because the account went over max_connections;
  ``dropped_slow``: live readers cut for being too far behind.

``wait_for(predicate)`` returns a Deferred that fires once the predicate is
true, re-checked after every change, so tests wait on events, not sleeps.
With a clock (the provider passes its reactor) the wait has a deadline: after
``timeout`` seconds it fails with :class:`WaitTimeout`, naming the condition
and what the provider counted, so a broken test fails instead of hanging.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: Seconds a ``wait_for`` waits by default before failing.
WAIT_TIMEOUT = 20.0


class WaitTimeout(AssertionError):
    """A ``DemoStats.wait_for`` condition did not hold before its deadline."""


@dataclass(frozen=True)
class TimeshiftRequest:
    """One catch-up request as the provider understood it."""

    stream_id: int
    start: str  # as received, in the provider's timezone
    duration: int  # minutes
    start_utc: int | None  # ``start`` read in the provider's timezone, or None
    form: str  # "path" or "query"


@dataclass(eq=False)
class StreamConnection:
    """An open stream body; ``close()`` cuts it like a panel does."""

    kind: str
    stream_id: int
    peer: str
    opened_at: float
    abort: Callable[[], None]
    bytes_sent: int = 0
    closed: bool = False


@dataclass
class DemoStats:
    max_connections: int = 2
    requests: Counter[str] = field(default_factory=Counter)
    opened: Counter[tuple[str, int]] = field(default_factory=Counter)
    open_streams: list[StreamConnection] = field(default_factory=list)
    segment_fetches: Counter[str] = field(default_factory=Counter)
    timeshift: list[TimeshiftRequest] = field(default_factory=list)
    kicked: int = 0
    kicked_connections: list[StreamConnection] = field(default_factory=list)
    dropped_slow: int = 0
    #: Arms the deadline of ``wait_for``; None waits without one.
    clock: IReactorTime | None = field(default=None, repr=False, compare=False)
    _waiters: list[tuple[Callable[[], bool], Deferred[None]]] = field(default_factory=list)

    # ----- queries --------------------------------------------------------
    def opened_total(self, kind: str | None = None) -> int:
        return sum(n for (k, _), n in self.opened.items() if kind is None or k == kind)

    def open_count(self, kind: str | None = None, stream_id: int | None = None) -> int:
        return sum(
            1 for c in self.open_streams
            if (kind is None or c.kind == kind) and (stream_id is None or c.stream_id == stream_id)
        )

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_TIMEOUT,
                 what: str = "") -> Deferred[None]:
        """A Deferred that fires once ``predicate()`` is true, or fails with
        :class:`WaitTimeout` after ``timeout`` seconds (when there is a clock).

        ``what`` names the condition in that failure (default: the
        predicate's source line)."""
        d: Deferred[None] = Deferred(lambda d: self._drop_waiter(d))
        if predicate():
            d.callback(None)
            return d
        self._waiters.append((predicate, d))
        if self.clock is not None:
            def expired(result: Any, seconds: float) -> None:
                raise WaitTimeout(f"demo provider: {what or _describe(predicate)} "
                                  f"did not hold within {seconds:g} s; {self.summary()}")
            d.addTimeout(timeout, self.clock, onTimeoutCancel=expired)
        return d

    def summary(self) -> str:
        """What the provider counted so far, for failure messages."""
        streams = ", ".join(f"{c.kind} {c.stream_id}" for c in self.open_streams) or "none"
        return (f"requests {dict(self.requests)}, open streams: {streams}, "
                f"kicked {self.kicked}, dropped_slow {self.dropped_slow}")

    def _drop_waiter(self, d: Deferred[None]) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not d]

    def changed(self) -> None:
        """Fire the waiters whose condition now holds."""
        ready = [w for w in self._waiters if w[0]()]
        for w in ready:
            self._waiters.remove(w)
        for _, d in ready:
            d.callback(None)

    # ----- recording ------------------------------------------------------
    def request(self, kind: str) -> None:
        self.requests[kind] += 1
        self.changed()

    def fetched(self, kind: str, stream_id: int) -> None:
        """A short stream request (HLS playlist or segment) was served."""
        self.opened[(kind, stream_id)] += 1
        self.changed()

    def segment(self, path: str) -> None:
        self.segment_fetches[path] += 1
        self.changed()

    def record_timeshift(self, req: TimeshiftRequest) -> None:
        self.timeshift.append(req)
        self.changed()

    def open_stream(self, conn: StreamConnection) -> None:
        """Register a stream body; cut the oldest ones beyond max_connections."""
        self.opened[(conn.kind, conn.stream_id)] += 1
        self.open_streams.append(conn)
        limit = self.max_connections
        while limit > 0 and len(self.open_streams) > limit:
            oldest = self.open_streams.pop(0)
            oldest.closed = True
            self.kicked += 1
            self.kicked_connections.append(oldest)
            log.info(
                "demo provider: over max_connections={limit}, cutting {kind} {stream} of {peer}",
                limit=limit, kind=oldest.kind, stream=oldest.stream_id, peer=oldest.peer,
            )
            oldest.abort()
        self.changed()

    def close_stream(self, conn: StreamConnection) -> None:
        """Forget a stream body that ended (idempotent)."""
        conn.closed = True
        if conn in self.open_streams:
            self.open_streams.remove(conn)
        self.changed()


def _describe(predicate: Callable[[], bool]) -> str:
    """The source of a predicate (a lambda's line), else its name."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
