"""The ingest child process: its standard error scrubbed and logged, its end
with the daemon's, and the data directory's ingest lock (the daemon's child
against ``xrelay ingest``)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from daemon import REPO, Daemon, config_text, start_provider
from demo_helpers import wait_until
from harness import start_relay
from media_helpers import LogCapture
from xrelay.catalog.store import CacheStore, IngestLocked


@pytest_twisted.ensureDeferred
async def test_the_childs_standard_error_is_scrubbed_and_logged(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        user, password, hostport = relay.upstream_secrets
        crash = (f"import sys; sys.stderr.write('Traceback (most recent call last):\\n'"
                 f"'  File \"worker.py\", line 1\\nValueError: bad answer from http://{hostport}/"
                 f"player_api.php?username={user}&password={password}\\n'); sys.exit(1)")
        relay.xr.ingester.worker = ("-c", crash)
        with LogCapture() as logs:
            result = await relay.ingest()
        assert not result.ok and result.reason == "the ingest process exited with status 1"
        lines = [line for line in logs.lines if "ingest process: " in line]
        assert any("ValueError: bad answer from http://***/player_api.php" in line for line in lines), lines
        for secret in (user, password, hostport):
            assert secret not in "\n".join(logs.lines)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_two_ingests_never_run_on_one_data_directory(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        store = CacheStore(tmp_path / "data")
        held = store.lock_ingest()
        try:
            with pytest.raises(IngestLocked):
                CacheStore(tmp_path / "data").lock_ingest()
            result = await relay.ingest()  # the daemon's child finds it taken
            assert not result.ok and "another ingest is running on" in (result.reason or "")
            assert store.current() is None
            # and so does `xrelay ingest`
            config = tmp_path / "xrelay.toml"
            config.write_text(config_text(relay.provider, tmp_path / "data", 1))
            out, err, code = await getProcessOutputAndValue(
                sys.executable, ["-m", "xrelay.cli", "ingest", "--config", str(config)],
                env={**os.environ, "PYTHONPATH": str(REPO)}, path=str(REPO), reactor=reactor)
            assert code == 1 and b"another ingest is running on" in err, (out, err)
        finally:
            held.release()
        assert (await relay.ingest()).ok
    finally:
        await relay.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == pid and b"xrelay.ingest.worker" in cmdline:
            out.append(int(entry))
    return out


def _lock_free(store: CacheStore) -> bool:
    try:
        store.lock_ingest().release()
    except IngestLocked:
        return False
    return True


def _holders(store: CacheStore) -> list[str]:
    """The processes with the lock file open, as ``pid command``."""
    lock = str(store.root / "ingest.lock")
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == lock for fd in fds):
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read().replace(bytes(1), b" ").decode(errors="replace")[:120]
                found.append(f"{entry} {command}")
        except OSError:
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has ended
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest_twisted.ensureDeferred
async def test_the_ingest_child_ends_with_the_daemon(tmp_path: Path) -> None:
    provider = await start_provider()
    daemon = Daemon(tmp_path, provider)
    child = 0
    try:
        provider.faults.xmltv = "hang_midway"  # the ingest waits for the rest of the guide
        await daemon.start()
        await daemon.wait_line("ingest started")
        await wait_until(lambda: _children(daemon.process.pid), 30)
        (child,) = _children(daemon.process.pid)
        await wait_until(lambda: provider.stats.requests.get("xmltv", 0) > 0, 30)
        daemon.signal(signal.SIGKILL)
        await daemon.wait_exit()
        await wait_until(lambda: _gone(child), 20, what="the ingest child ending")
        # nothing was committed, and the next ingest may run (the lock goes
        # with the last process holding it; a deadline, with the holders named)
        store = CacheStore(daemon.data_dir)
        assert store.current() is None
        try:
            await wait_until(lambda: _lock_free(store), 20, what="the ingest lock released")
        except AssertionError as e:
            raise AssertionError(f"{e}; held by {_holders(store)}") from None
    finally:
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)
        if daemon.running:
            daemon.signal(signal.SIGKILL)
            await daemon.wait_exit()
        await provider.stop()
