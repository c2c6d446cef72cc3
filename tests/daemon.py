"""Run the real daemon (``twistd -n xrelay --config FILE``) as a subprocess.

The demo provider runs in the test's reactor on loopback (its counters and
faults stay at hand); xrelay runs exactly as systemd would start it, from
this checkout (``PYTHONPATH`` = the repository root).  Loopback port 0 is
not observable from outside the process, so xrelay gets a free port picked
through a bound socket.

    provider = await start_provider()
    daemon = Daemon(tmp_path, provider)
    await daemon.start()                  # returns once the port listens
    await daemon.wait_line("ingest succeeded")
    daemon.signal(signal.SIGTERM)
    code = await daemon.wait_exit()
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.python.failure import Failure

from xrelay.demo.provider import DemoProvider, DemoSettings

REPO = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "adminpw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_provider(settings: DemoSettings | None = None) -> DemoProvider:
    provider = DemoProvider(reactor, settings or DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    return provider


USERS_TOML = """
[[users]]
username = "alice"
password = "alicepw"
max_connections = 2

[[users]]
username = "bob"
password = "bobpw"
"""


def config_text(provider: DemoProvider, data_dir: Path, port: int, *, users: str = USERS_TOML,
                log_format: str = "text", extra: str = "") -> str:
    s = provider.settings
    return textwrap.dedent(f"""
        [upstream]
        url = "{provider.url}"
        username = "{s.username}"
        password = "{s.password}"

        [server]
        listen = "tcp:{port}:interface=127.0.0.1"

        [ingest]
        data_dir = "{data_dir}"
        interval = 3600
        timeout = 60

        [admin]
        username = "{ADMIN[0]}"
        password = "{ADMIN[1]}"

        [relay]
        linger = 1

        [log]
        format = "{log_format}"
        """) + extra + users


def cache_snapshot(data_dir: Path) -> dict[str, str]:
    """Every file and symlink of the cache (not the ingest record, not staging)."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(data_dir):
        rel_root = Path(root).relative_to(data_dir)
        if rel_root.parts[:1] == ("staging",):
            continue
        for name in dirs + files:
            path = Path(root) / name
            rel = str(rel_root / name)
            if rel == "ingests.json" or rel == "staging":
                continue
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class _Output(protocol.ProcessProtocol):
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon

    def outReceived(self, data: bytes) -> None:
        self.daemon._received(data)

    def errReceived(self, data: bytes) -> None:
        self.daemon._received(data)

    def processEnded(self, reason: Failure) -> None:
        self.daemon._ended(reason)


class Daemon:
    """One ``twistd -n xrelay`` subprocess and everything it printed."""

    def __init__(self, tmp_path: Path, provider: DemoProvider, *, log_format: str = "text",
                 users: str = USERS_TOML) -> None:
        self.provider = provider
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "data"
        self.config = tmp_path / "xrelay.toml"
        self.log_format = log_format
        self.write_config(users)
        self.output = bytearray()
        self._exit_waiters: list[defer.Deferred[int | None]] = []
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.running = False
        self._waiters: list[tuple[bytes, int, defer.Deferred[None]]] = []
        self.process: Any = None

    def write_config(self, users: str = USERS_TOML) -> None:
        self.config.write_text(config_text(self.provider, self.data_dir, self.port, users=users,
                                           log_format=self.log_format))

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XRELAY_UPSTREAM_")}
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "xrelay", "--config", str(self.config)]
        self.process = reactor.spawnProcess(_Output(self), sys.executable, argv, env=env, path=str(REPO))
        self.running = True
        # twistd's Site logs "starting on PORT" once the port is bound
        await self.wait_line(f"starting on {self.port}", timeout=30)

    def signal(self, signum: int) -> None:
        self.process.signalProcess({signal.SIGTERM: "TERM", signal.SIGHUP: "HUP",
                                    signal.SIGKILL: "KILL"}.get(signum, signum))

    def wait_line(self, needle: str, *, after: int = 0, timeout: float = 30.0) -> defer.Deferred[None]:
        """Fires once *needle* appears in the output (past byte *after*)."""
        d: defer.Deferred[None] = defer.Deferred()
        needle_b = needle.encode()
        if self.output.find(needle_b, after) >= 0:
            d.callback(None)
            return d
        if not self.running:
            d.errback(AssertionError(f"daemon exited before printing {needle!r}:\n{self.text}"))
            return d
        entry = (needle_b, after, d)
        self._waiters.append(entry)

        def expire() -> None:
            if entry in self._waiters:
                self._waiters.remove(entry)
                d.errback(AssertionError(f"no {needle!r} within {timeout} s; output:\n{self.text}"))

        timer = reactor.callLater(timeout, expire)
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return d

    def wait_exit(self) -> defer.Deferred[int | None]:
        """Fires with the exit code once the process has ended."""
        d: defer.Deferred[int | None] = defer.Deferred()
        if not self.running:
            d.callback(self.exit_code)
        else:
            self._exit_waiters.append(d)
        return d

    @property
    def exited_cleanly_on_sigterm(self) -> bool:
        """Exit status 0, or death by the SIGTERM twistd re-raises after a
        clean shutdown (systemd counts both as success)."""
        return self.exit_code == 0 or (self.exit_code is None and self.exit_signal == signal.SIGTERM)

    async def live_ids(self, timeout: float = 15.0) -> list[int]:
        """The live stream ids, once the API serves the catalog (bounded poll:
        the daemon announces the ingest, not the end of the API's precompute)."""
        import treq
        from twisted.internet.task import deferLater

        deadline = reactor.seconds() + timeout
        while True:
            response = await treq.get(self.url + "/player_api.php?username=alice&password=alicepw"
                                                 "&action=get_live_streams", timeout=10)
            rows = await response.json() if response.code == 200 else await response.content()
            if isinstance(rows, list) and rows:
                return [int(r["stream_id"]) for r in rows]
            if reactor.seconds() > deadline:
                raise AssertionError(f"the API served no live streams within {timeout} s")
            await deferLater(reactor, 0.05, lambda: None)

    def mark(self) -> int:
        """The output length now, for ``wait_line(after=...)``."""
        return len(self.output)

    def _received(self, data: bytes) -> None:
        self.output += data
        for entry in list(self._waiters):
            needle, after, d = entry
            if self.output.find(needle, after) >= 0:
                self._waiters.remove(entry)
                d.callback(None)

    def _ended(self, reason: Failure) -> None:
        self.running = False
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        for needle, _, d in self._waiters:
            d.errback(AssertionError(f"daemon exited before printing {needle!r}:\n{self.text}"))
        self._waiters = []
        waiters, self._exit_waiters = self._exit_waiters, []
        for d in waiters:
            d.callback(self.exit_code)

    async def stop(self) -> None:
        """SIGTERM if still running, and wait for the exit (SIGKILL after 30 s)."""
        if not self.running:
            return
        self.signal(signal.SIGTERM)
        timer = reactor.callLater(30, lambda: self.running and self.signal(signal.SIGKILL))
        try:
            await self.wait_exit()
        finally:
            if timer.active():
                timer.cancel()
