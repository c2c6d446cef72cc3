"""Helpers for tests and benchmarks that use the demo provider.

    provider = await start_provider(reactor, max_connections=1)
    data = await read_stream(f"{provider.url}/live/{USER}/{PASS}/1.ts", 50_000)
    await provider.stop()

``StreamReader`` is a body protocol for ``treq`` responses read with
``unbuffered=True``: it keeps the bytes, fires ``done`` once it has
``want`` bytes (then stops reading) or when the body ends or breaks.
"""

from __future__ import annotations

from typing import Any, Callable

import treq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from .provider import DemoProvider, DemoSettings


async def start_provider(reactor: Any, **settings: Any) -> DemoProvider:
    """A provider listening on a free loopback port."""
    provider = DemoProvider(reactor, DemoSettings(**settings))
    await provider.listen("tcp:0:interface=127.0.0.1")
    return provider


class StreamReader(Protocol):
    def __init__(self, want: int | None = None) -> None:
        self.want = want
        self.chunks: list[bytes] = []
        self.received = 0
        self.reason: Failure | None = None
        self.done: Deferred[StreamReader] = Deferred()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.want is not None and self.received >= self.want and not self.done.called:
            self.done.callback(self)
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        if not self.done.called:
            self.done.callback(self)

    def stop(self) -> None:
        """Drop the connection."""
        if self.transport is not None:
            self.transport.stopProducing()


async def open_stream(url: str, want: int | None = None, **kw: Any) -> tuple[Any, StreamReader]:
    """GET ``url`` unbuffered; returns (response, reader already attached)."""
    response = await treq.get(url, unbuffered=True, **kw)
    reader = StreamReader(want)
    response.deliverBody(reader)
    return response, reader


async def read_stream(url: str, want: int, timeout: float = 30.0, **kw: Any) -> bytes:
    """The first ``want`` bytes (or fewer, if the body ends) of ``url``;
    TimeoutError after ``timeout`` seconds."""
    _, reader = await open_stream(url, want, **kw)
    try:
        await within(reader.done, timeout)
    finally:
        reader.stop()
    return reader.data[:want]


def within(d: Deferred[Any], seconds: float = 15.0, clock: Any = None) -> Deferred[Any]:
    """``d``, failing with TimeoutError after ``seconds``: a broken test fails
    instead of hanging the suite."""
    if clock is None:
        from twisted.internet import reactor as clock
    return d.addTimeout(seconds, clock)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0,
                     step: float = 0.02, clock: Any = None) -> None:
    """A bounded poll: only for conditions that no event reports (bytes in
    flight in the kernel, a counter in another component)."""
    if clock is None:
        from twisted.internet import reactor as clock
    from twisted.internet.task import deferLater

    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(clock, step, lambda: None)
        waited += step
