"""Small Deferred helpers."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")


class Shared(Generic[T]):
    """One operation that any number of callers can wait for.

    Each :meth:`wait` gets its own Deferred, so one waiter's callbacks (or
    cancellation) never change what the others see.
    """

    def __init__(self, d: defer.Deferred[T]) -> None:
        self.operation = d
        self.done = False
        self.result: Any = None
        self._waiters: list[defer.Deferred[T]] = []
        d.addBoth(self._fire)

    def _fire(self, result: Any) -> None:
        self.done, self.result = True, result
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            self._deliver(w)
        return None  # the operation's own chain ends here, handled

    def _deliver(self, w: defer.Deferred[T]) -> None:
        if w.called:
            return
        if isinstance(self.result, Failure):
            w.errback(self.result)
        else:
            w.callback(self.result)

    def wait(self) -> defer.Deferred[T]:
        w: defer.Deferred[T] = defer.Deferred(lambda d: self._waiters.remove(d) if d in self._waiters else None)
        if self.done:
            self._deliver(w)
        else:
            self._waiters.append(w)
        return w

    def cancel(self) -> None:
        self.operation.cancel()
