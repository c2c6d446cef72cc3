"""The ``signals`` service: SIGHUP re-reads the users and starts an ingest."""

from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

__all__ = ["SignalService"]

log = Logger()


class SignalService(Service):
    """On SIGHUP (delivered on the reactor thread): *reload*, then *ingest*."""

    name = "signals"

    def __init__(self, reactor: IReactorFromThreads, reload: Callable[[], None],
                 ingest: Callable[[str], Any]) -> None:
        self.reactor = reactor
        self.reload = reload
        self.ingest = ingest
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        if hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.hangup)

    def hangup(self) -> None:
        log.info("SIGHUP: reloading users and starting an ingest")
        self.reload()
        self.ingest("SIGHUP")
