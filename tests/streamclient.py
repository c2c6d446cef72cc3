"""A test player: reads a live stream over a real socket and counts bytes."""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from demo_helpers import wait_until  # noqa: F401  (re-exported for the tests)


class StreamReader(Protocol):
    """Keeps the first ``keep`` bytes, counts the rest, fires waiters."""

    def __init__(self, keep: int = 256 * 1024) -> None:
        self.keep = keep
        self.head = bytearray()
        self.received = 0
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        if len(self.head) < self.keep:
            self.head += data[: self.keep - len(self.head)]
        self.received += len(data)
        ready = [w for w in self._waiters if self.received >= w[0]]
        for w in ready:
            self._waiters.remove(w)
            w[1].callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        for _, d in self._waiters:
            d.errback(AssertionError(f"stream ended after {self.received} bytes: {reason.value!r}"))
        self._waiters = []
        self.ended.callback(None)

    def wait_bytes(self, n: int, timeout: float = 20.0) -> Deferred[None]:
        """Fires once ``n`` bytes arrived; fails if the stream ends first or
        after ``timeout`` seconds."""
        d: Deferred[None] = Deferred(lambda d: self._drop(d))
        if self.received >= n:
            d.callback(None)
        elif self.reason is not None:
            d.errback(AssertionError(f"stream ended after {self.received} bytes"))
        else:
            self._waiters.append((n, d))

            def expired(result: Any, seconds: float) -> None:
                raise AssertionError(f"{n} bytes did not arrive within {seconds:g} s "
                                     f"(got {self.received})")

            d.addTimeout(timeout, global_reactor, onTimeoutCancel=expired)
        return d

    def _drop(self, d: Deferred[None]) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not d]

    def wait_more(self, n: int) -> Deferred[None]:
        return self.wait_bytes(self.received + n)

    def close(self) -> None:
        if self.transport is not None and self.reason is None:
            self.transport.stopProducing()


async def open_stream(url: str, keep: int = 256 * 1024) -> tuple[Any, StreamReader]:
    response = await treq.get(url, unbuffered=True, persistent=False)
    reader = StreamReader(keep)
    if response.code == 200:
        response.deliverBody(reader)
    return response, reader


