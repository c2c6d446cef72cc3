"""Sending bodies with back-pressure: a push producer, paced or not.

``BodyWriter`` is registered as the request's streaming producer, so a
reader that stops reading pauses it instead of growing the send buffer.

* Unpaced (``rate_bps=None``): writes the chunks of an iterator while not
  paused, and finishes the request at the end.
* Paced: every ``tick`` seconds it works out how many bytes are due at
  ``rate_bps`` since the start and writes them, rounded down to whole
  ``align``-byte units (7 TS packets for live), taken from ``source(offset,
  length)``.  A paused (slow) reader accumulates debt; once that debt exceeds
  ``max_lag`` seconds of stream it is cut, as a real server would.

``hold()`` true makes a paced writer send nothing and owe nothing (a
silent upstream) until it turns false again.  ``at_end`` replaces finishing the request at the end of the body (to
leave it hanging or drop it: faults).  ``total`` ends a paced body after that many bytes (paced VOD); ``limit``
cuts the connection after that many bytes (fault injection).
"""

from __future__ import annotations

from typing import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

log = Logger()

#: Seconds a cut connection may take to drain before it is aborted.
CUT_GRACE = 2.0


def _abort_if_open(transport: object) -> None:
    if getattr(transport, "connected", False):
        transport.abortConnection()  # type: ignore[attr-defined]


@implementer(IPushProducer)
class BodyWriter:
    def __init__(
        self,
        reactor: IReactorTime,
        request: Request,
        *,
        chunks: Iterator[bytes] | None = None,
        source: Callable[[int, int], bytes] | None = None,
        rate_bps: float | None = None,
        align: int = 1,
        tick: float = 0.02,
        max_lag: float | None = None,
        limit: int | None = None,
        total: int | None = None,
        at_end: Callable[[], None] | None = None,
        hold: Callable[[], bool] | None = None,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        if (chunks is None) == (source is None):
            raise ValueError("give exactly one of chunks and source")
        if source is not None and not rate_bps:
            raise ValueError("a source needs a rate")
        self.reactor = reactor
        self.request = request
        self.transport = request.channel.transport if request.channel else None
        self.chunks = chunks
        self.source = source
        self.rate = (rate_bps or 0) / 8  # bytes per second
        self.align = align
        self.tick = tick
        self.max_lag = max_lag
        self.limit = limit
        self.total = total
        self.at_end = at_end
        self.hold = hold
        self._held_at: float | None = None
        self.on_close = on_close
        self.sent = 0
        self.paused = False
        self.done = False
        self._started_at = 0.0
        self._timer: IDelayedCall | None = None
        self._pumping = False

    # ----- lifecycle ------------------------------------------------------
    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(self._request_gone)
        self._started_at = self.reactor.seconds()
        if self.source is not None:
            self.request.write(b"")  # headers now, the first data on the first tick
            self._schedule(0)
        else:
            self._pump()

    def abort(self, reason: str = "aborted") -> None:
        """Cut the connection at once (idempotent)."""
        if self.transport is not None and not self.done:
            self._close(reason)
            self.transport.abortConnection()  # type: ignore[attr-defined]  # HTTP is on TCP

    def cut(self, reason: str) -> None:
        """Close the connection once what was written has been sent (a FIN,
        where ``abort`` sends an RST and drops the unsent bytes)."""
        if self.transport is not None and not self.done:
            self._close(reason)
            try:
                self.request.unregisterProducer()
            except RuntimeError:
                pass
            transport = self.transport
            transport.loseConnection()
            # A reader that stopped reading never drains the send buffer, so
            # the FIN would never go out: cut it outright after a grace period.
            self.reactor.callLater(CUT_GRACE, _abort_if_open, transport)

    def _request_gone(self, result: object) -> None:
        if isinstance(result, Failure):
            self._close("client gone")
        return None

    def _close(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.on_close is not None:
            self.on_close(reason)

    def _finish(self) -> None:
        self._close("finished")
        if self.at_end is not None:  # leave the request open; at_end decides
            self.at_end()
            return
        try:
            self.request.unregisterProducer()
            self.request.finish()
        except RuntimeError:  # the client left while we were writing
            pass

    # ----- IPushProducer --------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.done:
            return
        if self.source is None:
            self._pump()
        else:
            self._schedule(0)

    def stopProducing(self) -> None:
        self._close("stopped")

    # ----- writing --------------------------------------------------------
    def _write(self, data: bytes) -> bool:
        """Write, honouring ``limit``; False once the connection was cut."""
        if self.limit is not None and self.sent + len(data) >= self.limit:
            data = data[: self.limit - self.sent]
            self.sent += len(data)
            if data:
                self.request.write(data)
            self.cut("byte limit")
            return False
        self.sent += len(data)
        self.request.write(data)
        return True

    def _pump(self) -> None:
        assert self.chunks is not None
        if self._pumping:  # resumeProducing re-entered from write()
            return
        self._pumping = True
        try:
            while not self.paused and not self.done:
                chunk = next(self.chunks, None)
                if chunk is None:
                    self._finish()
                    return
                if not self._write(chunk):
                    return
        finally:
            self._pumping = False

    def _schedule(self, delay: float) -> None:
        """(Re)arm the one pacing timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.reactor.callLater(delay, self._paced_tick)

    def _paced_tick(self) -> None:
        self._timer = None
        if self.done:
            return
        assert self.source is not None
        now = self.reactor.seconds()
        if self.hold is not None and self.hold():  # silent: send nothing, owe nothing
            if self._held_at is None:
                self._held_at = now
            self._schedule(self.tick)
            return
        if self._held_at is not None:
            self._started_at += now - self._held_at
            self._held_at = None
        due = self.rate * (now - self._started_at) + self.rate * self.tick
        owed = due - self.sent
        if self.max_lag is not None and owed > self.rate * self.max_lag:
            log.info("demo provider: dropping a reader {lag}s behind", lag=self.max_lag)
            self.abort("too slow")
            return
        if self.paused:  # keep watching the lag; resumeProducing writes at once
            self._schedule(max(self.tick, 0.25))
            return
        # Catch up at most a second of stream per tick; whole units only.
        length = int(min(owed, self.rate + self.align)) // self.align * self.align
        if self.total is not None:
            length = min(length, self.total - self.sent)
        if length > 0 and not self._write(self.source(self.sent, length)):
            return
        if self.total is not None and self.sent >= self.total:
            self._finish()
        elif not self.done:
            self._schedule(self.tick)
