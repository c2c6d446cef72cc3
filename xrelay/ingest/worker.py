"""Ingest in a child process, so the daemon keeps answering at full speed.

Parsing, normalising, scrubbing and writing a 50k/100k/10k catalog is tens
of seconds of pure-Python work.  In a thread of the daemon it competes with
the reactor for the GIL and every API answer waits its turn; in a child
process it competes for nothing but a core, and its memory goes back to
the system when it exits.

:class:`ProcessIngester` is an :class:`~xrelay.ingest.ingester.Ingester` whose work
step runs ``python -m xrelay.ingest.worker``: the child reads its settings
(provider address and credentials included) as JSON on stdin, runs the very
same download-check-swap code, and prints one JSON line with the counts and
the new generation, or the reason it failed.  The daemon keeps everything
else: scheduling, never overlapping, the overall timeout, the record in
``ingests.json``, logging and reloading the catalog.  Cancelling (timeout,
SIGTERM) terminates the child; being killed midway is safe by design (see
:mod:`xrelay.catalog.store`).

The child never outlives the daemon: its standard input stays open for as
long as the daemon lives, and the child cancels its ingest when it reads the
end of it (the daemon is gone, even killed with SIGKILL); on Linux it also
asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``).
What it writes on standard error (a crash's traceback) is scrubbed and
logged by the daemon, at most :data:`STDERR_LINES` lines.  The data
directory's ingest lock (:meth:`~xrelay.catalog.store.CacheStore.lock_ingest`)
keeps any other ingest (``xrelay ingest``, a daemon started meanwhile) off
the directory while the child works.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IProcessTransport, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.failure import Failure
from zope.interface import provider

from xrelay.core.config import IngestConfig, UpstreamConfig
from xrelay.core.reactor import IReactor
from xrelay.core.scrub import Scrubber
from xrelay.ingest.ingester import Ingester, IngestError

__all__ = ["ProcessIngester", "main"]

log = Logger()

#: Seconds a terminated child may take to clean up before it is killed.
KILL_GRACE = 5.0
#: Lines of the child's standard error logged at most (its last ones).
STDERR_LINES = 60
#: Bytes of the child's standard error kept at most.
STDERR_BYTES = 64 * 1024


class _Child(protocol.ProcessProtocol):
    transport: IProcessTransport  # set before connectionMade

    def __init__(self, settings: bytes, scrubber: Scrubber) -> None:
        self.settings = settings
        self.scrubber = scrubber
        self.out: list[bytes] = []
        self.err = bytearray()
        self.err_dropped = 0
        self.ended: defer.Deferred[int] = defer.Deferred()

    def connectionMade(self) -> None:
        # One line of settings; standard input then stays open: its end tells
        # the child that the daemon is gone.
        assert self.transport is not None
        self.transport.write(self.settings + b"\n")

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err += data
        if len(self.err) > STDERR_BYTES:  # keep the end: a traceback's last lines say most
            cut = len(self.err) - STDERR_BYTES
            self.err_dropped += cut
            del self.err[:cut]

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        self._log_stderr(code)
        self.ended.callback(-1 if code is None else code)

    def _log_stderr(self, code: int | None) -> None:
        lines = [line.rstrip() for line in self.err.decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines:
            return
        dropped = len(lines) - STDERR_LINES
        emit = log.warn if code != 0 else log.info
        if dropped > 0 or self.err_dropped:
            emit("the ingest process wrote more on its standard error; its last {count} lines follow",
                 count=min(len(lines), STDERR_LINES))
        for line in lines[-STDERR_LINES:]:
            emit("ingest process: {line}", line=self.scrubber.text(line[:2000]), event="ingest_stderr")


class ProcessIngester(Ingester):
    """Runs each ingest's work in a child process."""

    #: The child's Python arguments.
    worker: tuple[str, ...] = ("-m", "xrelay.ingest.worker")

    async def _ingest(self, force: bool) -> tuple[dict[str, int], str]:
        settings = json.dumps({
            "upstream": {**asdict(self.client.upstream), "url": self.client.origin},
            "ingest": {**asdict(self.config), "data_dir": str(self.config.data_dir)},
            "force": force,
            "parent": os.getpid(),
        }).encode()
        child = _Child(settings, self.scrubber)
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        process = self.reactor.spawnProcess(child, sys.executable, [sys.executable, *self.worker], env=env)
        try:
            code = await _cancellable(child.ended, process, self.reactor)
        except defer.CancelledError:
            # The child was told to stop: wait until it has cleaned up, so
            # that no two ingests ever run at once.
            await _wait_ended(child.ended)
            raise
        answer = _last_json_line(b"".join(child.out))
        for warning in answer.get("warnings", []):
            log.warn("ingest: {warning}", warning=warning)
        if answer.get("peak_rss_mb"):
            log.info("the ingest process used at most {mb:.0f} MB of memory", mb=answer["peak_rss_mb"])
        if code != 0 or not answer:
            raise IngestError(answer.get("reason") or f"the ingest process exited with status {code}")
        if not answer.get("ok"):
            raise IngestError(answer.get("reason") or "failed")
        return answer["counts"], answer["generation"]


def _cancellable(ended: defer.Deferred[int], process: IProcessTransport,
                 reactor: IReactorTime) -> defer.Deferred[int]:
    """Wait for the child; cancelling terminates it (and kills it if it lingers)."""
    waiter: defer.Deferred[int] = defer.Deferred(lambda _: _terminate(process, reactor, ended))
    ended.addBoth(lambda r: (None if waiter.called else
                             (waiter.errback(r) if isinstance(r, Failure) else waiter.callback(r))))
    return waiter


async def _wait_ended(ended: defer.Deferred[int]) -> None:
    done: defer.Deferred[None] = defer.Deferred()
    ended.addBoth(lambda r: done.callback(None))
    await done


def _terminate(process: IProcessTransport, reactor: IReactorTime, ended: defer.Deferred[int]) -> None:
    try:
        process.signalProcess("TERM")
    except error.ProcessExitedAlready:
        return

    def kill() -> None:
        try:
            process.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    timer = reactor.callLater(KILL_GRACE, kill)
    ended.addBoth(lambda r: timer.cancel() if timer.active() else None)


def _last_json_line(out: bytes) -> dict[str, Any]:
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


# -- the child ---------------------------------------------------------------------------

def main() -> None:
    from twisted.internet import task

    raw = json.loads(sys.stdin.buffer.readline())
    _end_with_parent(raw.get("parent"))
    upstream = UpstreamConfig(**raw["upstream"])
    ingest = dict(raw["ingest"])
    ingest["data_dir"] = Path(ingest["data_dir"])
    config = IngestConfig(**ingest)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(_child(reactor, upstream, config,
                                                                   raw.get("force", False))))


async def _child(reactor: IReactor, upstream: UpstreamConfig, config: IngestConfig, force: bool) -> None:
    from twisted.logger import globalLogPublisher

    from xrelay.provider.client import ProviderClient
    from xrelay.catalog.store import CacheStore

    warnings: list[str] = []

    @provider(ILogObserver)
    def keep_warnings(event: LogEvent) -> None:
        from twisted.logger import LogLevel, formatEvent

        if event.get("log_level") == LogLevel.warn and event.get("log_namespace", "").startswith("xrelay"):
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(keep_warnings)
    scrubber = Scrubber(upstream)
    client = ProviderClient(reactor, upstream, scrubber, persistent=False)
    ingester = Ingester(reactor, client, CacheStore(config.data_dir), config, scrubber)
    work = defer.Deferred.fromCoroutine(ingester._ingest(force))

    def stop(signum: int, frame: Any) -> None:
        reactor.callFromThread(work.cancel)

    signal.signal(signal.SIGTERM, stop)
    _watch_parent(reactor, work.cancel)
    answer: dict[str, Any]
    try:
        counts, generation = await work
        answer = {"ok": True, "counts": counts, "generation": generation}
    except defer.CancelledError:
        answer = {"ok": False, "reason": "cancelled"}
    except Exception as e:  # reported to the parent, which logs and records it
        answer = {"ok": False, "reason": scrubber.text(_reason(e))}
    answer["warnings"] = [scrubber.text(w) for w in warnings]
    answer["peak_rss_mb"] = _peak_rss_mb()
    await client.close()
    try:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    except OSError:  # the daemon is gone
        pass


def _end_with_parent(parent: Any) -> None:
    """Ask Linux for SIGTERM when the parent dies, and exit now if it is
    already gone (it died before the request took effect)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if isinstance(parent, int) and os.getppid() != parent:
        sys.exit(3)


def _watch_parent(reactor: Any, cancel: Any) -> None:
    """Cancel the ingest when standard input ends: the daemon that holds its
    other end has exited (on any system, whatever killed it)."""
    import threading

    def watch() -> None:
        # the raw descriptor: a buffered reader's lock, held by this thread,
        # would stop the interpreter's exit
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        reactor.callFromThread(cancel)

    threading.Thread(target=watch, name="xrelay-parent-watch", daemon=True).start()


def _peak_rss_mb() -> float:
    """This process's peak resident memory, MB (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _reason(e: Exception) -> str:
    from xrelay.catalog import rows as catalog_rows
    from xrelay.provider.client import ProviderError

    if isinstance(e, (IngestError, ProviderError, catalog_rows.AuthRefused)):
        return str(e)
    if isinstance(e, OSError):
        return f"disk error: {e.strerror or e}"
    return f"internal error: {type(e).__name__}"


if __name__ == "__main__":
    main()
