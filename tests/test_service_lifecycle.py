"""The service tree's stop (what SIGTERM runs) and reload policy, in process."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
import treq
from twisted.internet.error import ConnectError
from twisted.web.client import ResponseDone

from demo_helpers import within
from harness import start_relay
from streamclient import open_stream
from daemon import cache_snapshot
from xrelay.core.config import UserConfig
from xrelay.ops.logs import LoggingRoot
from xrelay.ops.service import revoked_users
from xrelay.core.users import UserDB


@pytest_twisted.ensureDeferred
async def test_stop_order_port_first(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        names = [s.name for s in relay.service]
        assert names[-1] == "web"  # stopped first: no new client during the stop
        assert "ops" in names and "relay" in names
        assert names.index("relay") < names.index("signals") < names.index("web")
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_stop_ends_streams_cancels_ingest_keeps_cache(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    provider = relay.provider
    stream_id = relay.bundle["live_streams"][0]["stream_id"]
    _, alice = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
    _, bob = await open_stream(f"{relay.url}/live/bob/bobpw/{stream_id}.ts")
    await alice.wait_bytes(188 * 50)
    await bob.wait_bytes(188 * 50)
    before = cache_snapshot(relay.xr.store.root)

    provider.faults.xmltv = "hang_midway"
    ingest = relay.xr.ingest_service.trigger("test")
    await provider.stats.wait_for(lambda: provider.stats.requests["xmltv_hung"] >= 1)
    assert relay.xr.ingester.running is not None

    # The stop cancels the hung ingest rather than waiting for its timeout (60 s).
    await within(relay.stop(), 30, what="the stop with a hung ingest")
    result = await ingest
    assert (result.ok, result.reason) == (False, "cancelled")
    # viewers got the end of their response, not a reset
    for reader in (alice, bob):
        await reader.ended
        assert reader.reason.check(ResponseDone), reader.reason
    await provider.stats.wait_for(lambda: provider.stats.open_count("live") == 0)
    assert cache_snapshot(relay.xr.store.root) == before
    # the port is closed
    try:
        await treq.get(relay.url + "/", timeout=5)
    except ConnectError:
        pass
    else:
        raise AssertionError("the port still answers after the stop")


def test_reload_policy() -> None:
    now = 1_000_000.0
    previous = {
        "same": UserConfig("same", "pw", 2),
        "fewer": UserConfig("fewer", "pw", 3),
        "gone": UserConfig("gone", "pw"),
        "newpw": UserConfig("newpw", "pw"),
        "off": UserConfig("off", "pw"),
        "lapsed": UserConfig("lapsed", "pw"),
    }
    users = UserDB([
        UserConfig("same", "pw", 2),
        UserConfig("fewer", "pw", 1),
        UserConfig("newpw", "other"),
        UserConfig("off", "pw", enabled=False),
        UserConfig("lapsed", "pw", exp_date=int(now) - 1),
        UserConfig("added", "pw"),
    ])
    assert revoked_users(previous, users, now) == {"gone", "newpw", "off", "lapsed"}


@pytest_twisted.ensureDeferred
async def test_reload_closes_only_revoked_users_streams(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        _, alice = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
        _, bob = await open_stream(f"{relay.url}/live/bob/bobpw/{stream_id}.ts")
        await alice.wait_bytes(188 * 20)
        await bob.wait_bytes(188 * 20)
        from dataclasses import replace

        config = relay.xr.config
        kept = tuple(u for u in config.users if u.username != "bob") + (UserConfig("erin", "erinpw"),)
        relay.xr.take_users(kept)
        await bob.ended
        assert bob.reason.check(ResponseDone)
        await alice.wait_more(188 * 50)
        assert alice.reason is None
        alice.close()
    finally:
        await relay.stop()


def test_makeservice_puts_the_tree_under_a_logging_root(tmp_path: Path) -> None:
    from xrelay.tap import Options, makeService

    config = tmp_path / "x.toml"
    config.write_text(f"""
[upstream]
url = "http://127.0.0.1:9"
username = "u"
password = "p"
[server]
listen = "tcp:0:interface=127.0.0.1"
[ingest]
data_dir = "{tmp_path / 'data'}"
[log]
format = "json"
""")
    options = Options()
    options.parseOptions(["--config", str(config)])
    root = makeService(options)
    assert isinstance(root, LoggingRoot) and root.observer is not None
    inner = list(root)[0]
    assert [s.name for s in inner][-1] == "web"
    assert not root.running  # nothing was started: no port, no timer


def test_systemd_unit() -> None:
    unit = (Path(__file__).parent.parent / "etc" / "xrelay.service").read_text()
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["ExecStart"] == [
        "/opt/xrelay/venv/bin/twistd --nodaemon --pidfile= xrelay --config /etc/xrelay/xrelay.toml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["User"] == ["xrelay"] and settings["StateDirectory"] == ["xrelay"]
    assert settings["EnvironmentFile"] == ["-/etc/xrelay/xrelay.env"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                       ("Restart", "on-failure")):
        assert settings[key] == [value], key
    assert int(settings["LimitNOFILE"][0]) >= 65536
    assert 10 <= int(settings["TimeoutStopSec"][0]) <= 90
