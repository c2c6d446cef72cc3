"""SIGTERM and SIGHUP on the real daemon (``twistd -n xrelay`` subprocess)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import pytest_twisted
from twisted.web.client import ResponseDone

from daemon import Daemon, cache_snapshot, start_provider
from demo_helpers import within
from streamclient import open_stream

pytestmark = pytest.mark.slow

#: The unit's TimeoutStopSec: systemd kills a daemon whose stop takes longer.
STOP_TIMEOUT = 30.0


async def first_live_id(daemon: Daemon) -> int:
    return (await daemon.live_ids())[0]


@pytest_twisted.ensureDeferred
async def test_sigterm_during_an_ingest(tmp_path: Path) -> None:
    provider = await start_provider()
    daemon = Daemon(tmp_path, provider)
    reader = None
    try:
        await daemon.start()
        await daemon.wait_line("ingest succeeded")
        stream_id = await first_live_id(daemon)
        response, reader = await open_stream(f"{daemon.url}/live/alice/alicepw/{stream_id}.ts")
        assert response.code == 200
        await reader.wait_bytes(188 * 100)
        before = cache_snapshot(daemon.data_dir)
        assert "current" in before and "bundle.json" in before

        # an ingest that hangs half-way through the guide
        provider.faults.xmltv = "hang_midway"
        daemon.signal(signal.SIGHUP)
        await provider.stats.wait_for(lambda: provider.stats.requests["xmltv_hung"] >= 1)

        daemon.signal(signal.SIGTERM)
        # The stop cancels the hung ingest rather than waiting for its timeout (60 s).
        await within(daemon.wait_exit(), STOP_TIMEOUT, what="the exit after SIGTERM")
        assert daemon.exited_cleanly_on_sigterm, (daemon.exit_code, daemon.exit_signal, daemon.text)
        assert "cancelling the running ingest" in daemon.text
        assert "previous cache kept: cancelled" in daemon.text

        # the viewer's stream ended cleanly (a complete chunked response)
        await reader.ended
        assert reader.reason is not None and reader.reason.check(ResponseDone), reader.reason
        # the provider saw its stream connection closed
        await provider.stats.wait_for(lambda: provider.stats.open_count("live") == 0)
        # the cache is byte for byte what it was
        assert cache_snapshot(daemon.data_dir) == before
        assert not list((daemon.data_dir / "staging").glob("*")) if (daemon.data_dir / "staging").exists() else True
    finally:
        if reader is not None:
            reader.close()
        await daemon.stop()
        await provider.stop()


@pytest_twisted.ensureDeferred
async def test_sighup_adds_a_user_without_interrupting_a_viewer(tmp_path: Path) -> None:
    provider = await start_provider()
    daemon = Daemon(tmp_path, provider)
    readers = []
    try:
        await daemon.start()
        await daemon.wait_line("ingest succeeded")
        stream_id = await first_live_id(daemon)
        url = daemon.url + "/live/{}/{}/" + f"{stream_id}.ts"
        refused, _ = await open_stream(url.format("erin", "erinpw"))
        assert refused.code in (401, 403)
        await refused.content()
        _, alice = await open_stream(url.format("alice", "alicepw"))
        _, bob = await open_stream(url.format("bob", "bobpw"))
        readers += [alice, bob]
        await alice.wait_bytes(188 * 100)
        await bob.wait_bytes(188 * 100)
        assert provider.stats.opened_total("live") == 1

        # erin joins the configuration, bob leaves it
        daemon.write_config(users="""
[[users]]
username = "alice"
password = "alicepw"
max_connections = 2

[[users]]
username = "erin"
password = "erinpw"
""")
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        await daemon.wait_line("users reloaded", after=mark)

        response, erin = await open_stream(url.format("erin", "erinpw"))
        readers.append(erin)
        assert response.code == 200
        await erin.wait_bytes(188 * 100)
        # alice never noticed: same connection, still receiving, same upstream
        received = alice.received
        await alice.wait_more(188 * 200)
        assert alice.reason is None and alice.received > received
        assert provider.stats.opened_total("live") == 1
        # bob was removed: his stream was closed cleanly
        await bob.ended
        assert bob.reason is not None and bob.reason.check(ResponseDone)
        assert "streams of 1 removed or changed users closed" in daemon.text
    finally:
        for r in readers:
            r.close()
        await daemon.stop()
        await provider.stop()
