"""Helpers for tests that use the demo provider, and the bounded waits every
test uses (:func:`within`, :func:`wait_until`).

    provider = await start_provider(reactor, max_connections=1)
    data = await read_stream(f"{provider.url}/live/{USER}/{PASS}/1.ts", 50_000)
    await provider.stop()

``StreamReader`` is a body protocol for ``treq`` responses read with
``unbuffered=True``: it keeps the bytes, fires ``done`` once it has
``want`` bytes (then stops reading) or when the body ends or breaks.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Coroutine

import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from xrelay.demo.provider import DemoProvider, DemoSettings


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
            self.stop()

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


def within(d: Deferred[Any] | Coroutine[Any, Any, Any], seconds: float = 15.0,
           clock: Any = None, what: str = "") -> Deferred[Any]:
    """``d`` (a Deferred or a coroutine), cancelled and failing with
    TimeoutError after ``seconds`` (naming ``what`` it waited for): a broken
    test fails instead of hanging the suite."""
    if clock is None:
        from twisted.internet import reactor as clock
    d = ensureDeferred(d)

    def expired(result: Any, timeout: float) -> None:
        raise TimeoutError(f"{what or repr(d)} did not happen within {timeout:g} s")

    return d.addTimeout(seconds, clock, onTimeoutCancel=expired)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0,
                     step: float = 0.02, clock: Any = None, what: str = "") -> None:
    """A bounded poll: only for conditions that no event reports (bytes in
    flight in the kernel, a counter in another component).  Fails with an
    AssertionError naming the condition once ``timeout`` seconds have passed
    on ``clock``."""
    if clock is None:
        from twisted.internet import reactor as clock
    deadline = clock.seconds() + timeout
    while not condition():
        if clock.seconds() >= deadline:
            raise AssertionError(f"{what or _describe(condition)} did not hold within {timeout:g} s")
        await deferLater(clock, step, lambda: None)


def _describe(condition: Callable[[], bool]) -> str:
    """A condition's source (a lambda's line), else its name."""
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return getattr(condition, "__qualname__", repr(condition))
