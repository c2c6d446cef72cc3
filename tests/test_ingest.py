"""Ingest against the demo provider over loopback, and every way it can fail.

The rule under test: a failed, partial, malformed or refused download leaves
every previous file in the data directory byte-identical, and the reason is
logged and recorded.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from xrelay.catalog import prepare as prepare_module
from xrelay.core.config import IngestConfig, UpstreamConfig
from xrelay.demo.provider import DemoProvider, DemoSettings
from xrelay.ingest.ingester import Ingester
from xrelay.provider.client import ProviderClient
from xrelay.catalog.store import CACHE_FILES, CacheStore

ROOT = Path(__file__).resolve().parent.parent


class Setup:
    def __init__(self, tmp_path: Path, settings: DemoSettings | None = None, **ingest: Any) -> None:
        self.tmp_path = tmp_path
        self.provider = DemoProvider(reactor, settings or DemoSettings(quirky=True))
        self.data_dir = tmp_path / "data"
        self.ingest_config = IngestConfig(data_dir=self.data_dir, **{"timeout": 20, **ingest})

    async def start(self) -> "Setup":
        await self.provider.listen()
        s = self.provider.settings
        self.upstream = UpstreamConfig(url=self.provider.url, username=s.username, password=s.password)
        self.client = ProviderClient(reactor, self.upstream, persistent=False)
        self.store = CacheStore(self.data_dir)
        self.ingester = Ingester(reactor, self.client, self.store, self.ingest_config)
        return self

    async def stop(self) -> None:
        await self.client.close()
        await self.provider.stop()

    def snapshot(self) -> dict[str, bytes]:
        """Every cache file's bytes, read through the public names."""
        return {name: (self.data_dir / name).read_bytes() for name in CACHE_FILES}

    def all_files(self) -> dict[str, bytes]:
        out = {}
        for path in self.data_dir.rglob("*"):
            if path.is_file() and not path.is_symlink():
                out[str(path.relative_to(self.data_dir))] = path.read_bytes()
        return out


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    holder: list[Setup] = []

    async def make(**kw: Any) -> Setup:
        s = await Setup(tmp_path, **kw).start()
        holder.append(s)
        return s

    yield make
    for s in holder:
        pytest_twisted.blockon(defer.ensureDeferred(s.stop()))


@pytest_twisted.ensureDeferred
async def test_ingest_writes_the_four_files_without_secrets(setup: Any) -> None:
    s = await setup()
    result = await s.ingester.run("test")
    assert result.ok, result.reason
    files = s.snapshot()
    bundle = json.loads(files["bundle.json"])
    settings = s.provider.settings
    assert len(bundle["live_streams"]) == settings.live
    assert len(bundle["vod_streams"]) == settings.vod
    assert len(bundle["series"]) == settings.series
    assert bundle["episodes"], "series episodes come from the provider's playlist"
    assert files["live.m3u"].startswith(b"#EXTM3U")
    assert b"/movie/" not in files["live.m3u"] and b"/movie/" in files["full.m3u"]
    assert b"/series/" in files["full.m3u"]
    assert files["guide.xml"].rstrip().endswith(b"</tv>")
    assert result.counts["programmes"] > 0
    # Nothing in the data directory names the provider: not its host, port or credentials.
    host_port = s.provider.url.split("://")[1]
    for name, data in s.all_files().items():
        for secret in (settings.username, settings.password, host_port):
            assert secret.encode() not in data, f"{secret!r} found in {name}"
    for row in bundle["live_streams"] + bundle["vod_streams"]:
        assert row["direct_source"] == ""
    history = s.store.history()
    assert history[-1]["ok"] is True and history[-1]["counts"]["live_streams"] == settings.live


@pytest_twisted.ensureDeferred
async def test_types_are_normalised_from_a_quirky_provider(setup: Any) -> None:
    s = await setup()
    assert (await s.ingester.run()).ok
    bundle = json.loads((s.data_dir / "bundle.json").read_bytes())
    ids = [r["stream_id"] for r in bundle["live_streams"]]
    assert ids and len(ids) == len(set(ids)), "duplicate rows per category are merged"
    for row in bundle["live_streams"]:
        assert isinstance(row["stream_id"], int) and isinstance(row["num"], int)
        assert row["stream_type"] == "live"
        assert isinstance(row["tv_archive"], int) and isinstance(row["tv_archive_duration"], int)
        assert row["category_id"] is None or row["category_id"].isdigit()
        assert row["added"].isdigit()
    assert bundle["vod_streams"]
    for row in bundle["vod_streams"]:
        assert row["container_extension"].isalnum()


FAULTS = [
    ("api", "html", "HTML"),
    ("api", "bad_json", "malformed or truncated JSON"),
    ("api", "auth0", "auth 0"),
    ("api", "http500", "HTTP 500"),
    ("api", "shrink", "refusing to replace the cache"),
    ("xmltv", "truncated", "xmltv.php"),
    ("xmltv", "http500", "xmltv.php: HTTP 500"),
]


@pytest.mark.parametrize("where, fault, reason", FAULTS)
@pytest_twisted.ensureDeferred
async def test_a_failed_ingest_keeps_the_previous_cache(setup: Any, where: str, fault: str,
                                                        reason: str) -> None:
    s = await setup(settings=DemoSettings(quirky=True, live=40, vod=40, series=30))
    assert (await s.ingester.run()).ok
    before = s.snapshot()
    history_before = len(s.store.history())
    setattr(s.provider.faults, where, fault)
    result = await s.ingester.run("test")
    assert not result.ok
    assert reason in result.reason
    assert s.snapshot() == before
    history = s.store.history()
    assert len(history) == history_before + 1
    assert history[-1]["ok"] is False and reason in history[-1]["reason"]
    assert s.provider.settings.password not in result.reason
    # and the next healthy run goes through
    s.provider.faults.clear()
    assert (await s.ingester.run()).ok


@pytest_twisted.ensureDeferred
async def test_a_hanging_provider_times_out_and_keeps_the_cache(setup: Any) -> None:
    s = await setup(timeout=1.0)
    assert (await s.ingester.run()).ok
    before = s.snapshot()
    s.provider.faults.xmltv = "hang_midway"
    result = await s.ingester.run()
    assert not result.ok and "timed out" in result.reason
    assert s.snapshot() == before
    assert list((s.data_dir / "staging").iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_provider_down(setup: Any) -> None:
    s = await setup()
    assert (await s.ingester.run()).ok
    before = s.snapshot()
    await s.provider.stop()
    result = await s.ingester.run()
    assert not result.ok and "connection refused" in result.reason
    assert s.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_refused_playlist_builds_from_the_api_lists(setup: Any) -> None:
    s = await setup()
    s.provider.faults.get_php = "refuse"
    result = await s.ingester.run()
    assert result.ok
    assert result.counts["episodes"] == 0
    live = (s.data_dir / "live.m3u").read_text()
    assert live.count("#EXTINF") == s.provider.settings.live


@pytest_twisted.ensureDeferred
async def test_full_disk_keeps_the_cache(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await setup()
    assert (await s.ingester.run()).ok
    before = s.snapshot()

    def no_space(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module.BundleWriter, "rows", no_space)
    result = await s.ingester.run()
    assert not result.ok and "No space left on device" in result.reason
    assert s.snapshot() == before
    assert list((s.data_dir / "staging").iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_runs_never_overlap(setup: Any) -> None:
    s = await setup()
    first, second = s.ingester.run(), s.ingester.run()
    a, b = await first, await second
    assert a is b and a.ok
    assert s.provider.stats.requests["xmltv"] == 1


def run_cli(*args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "xrelay.cli", *args],
        capture_output=True, text=True, env=env, timeout=60)


def write_config(s: Setup) -> Path:
    path = s.tmp_path / "xrelay.toml"
    path.write_text(f"""
[upstream]
url = "{s.provider.url}"
username = "{s.provider.settings.username}"
password = "{s.provider.settings.password}"
[ingest]
data_dir = "{s.data_dir}"
timeout = 30
""")
    return path


@pytest_twisted.ensureDeferred
async def test_ingest_command(setup: Any) -> None:
    s = await setup()
    config = write_config(s)
    ok = await run_cli("ingest", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "ingest ok" in ok.stdout
    before = s.snapshot()
    s.provider.faults.api = "auth0"
    bad = await run_cli("ingest", "--config", str(config))
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "auth 0" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert s.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_killed_midway_leaves_the_cache_intact(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A power cut during an ingest: SIGKILL while the guide is half sent."""
    s = await setup()
    config = write_config(s)
    assert (await run_cli("ingest", "--config", str(config))).returncode == 0
    before = s.snapshot()
    s.provider.faults.xmltv = "hang_midway"
    # A temporary directory of this test's own: the sweep below must not
    # touch what other processes on the machine keep in /tmp.
    scratch_root = s.tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch_root)}
    proc = subprocess.Popen([sys.executable, "-m", "xrelay.cli", "ingest", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await s.provider.stats.wait_for(lambda: s.provider.stats.requests["xmltv"] >= 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        await threads.deferToThread(proc.wait, 30)
    assert s.snapshot() == before
    # the next run sweeps what the killed run left, here and in the temporary directory
    leftovers = list(scratch_root.glob("xrelay-ingest-*"))
    assert leftovers, "the killed run left its scratch directory"
    for path in leftovers:
        os.utime(path, (0, 0))  # as if left long ago
    s.provider.faults.clear()
    assert (await s.ingester.run()).ok
    assert list((s.data_dir / "staging").iterdir()) == []
    assert not any(p.exists() for p in leftovers)


@pytest_twisted.ensureDeferred
async def test_guide_times_are_cached_in_utc(setup: Any) -> None:
    """A provider in New York sends -0500/-0400 times; the cache has the same
    moments written +0000 (docs/xtream-api.md, "Guide times")."""
    import re

    import treq

    from xrelay.catalog.epg import parse_xmltv_time

    s = await setup(settings=DemoSettings(timezone="America/New_York"))
    assert (await s.ingester.run("test")).ok
    original = await (await treq.get(s.client.xmltv_url())).content()
    cached = (s.data_dir / "guide.xml").read_bytes()
    pattern = re.compile(rb' (start|stop)="([^"]+)"')
    theirs = [parse_xmltv_time(m.group(2).decode()) for m in pattern.finditer(original)]
    ours = pattern.findall(cached)
    assert theirs and all(not v.endswith(b"+0000") for v in (m.group(2) for m in pattern.finditer(original)))
    assert all(value.endswith(b" +0000") for _, value in ours)
    assert [parse_xmltv_time(v.decode()) for _, v in ours] == theirs


def test_utc_times_across_chunks_and_odd_values() -> None:
    from xrelay.ingest.ingester import utc_times

    assert utc_times(b' start="20250101070000 +0100" stop="20250101080000 -0230"') == \
           b' start="20250101060000 +0000" stop="20250101103000 +0000"'
    same = b' start="20250101070000" stop="garbage +0100" start="20251301070000 +0100"'
    assert utc_times(same) == same  # no offset, not a time, not a date: left alone
    assert utc_times(utc_times(b' start="20250101070000 +0100"')) == b' start="20250101060000 +0000"'
