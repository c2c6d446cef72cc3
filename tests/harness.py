"""Run a real xrelay against the real demo provider, on loopback sockets.

Both run in the test's own reactor: the demo provider listens on a loopback
port, and xrelay's whole MultiService (the same one ``twistd -n xrelay``
runs, built by :func:`xrelay.tap.build`) listens on another.  Tests talk to
xrelay over HTTP like any player and read the provider's counters.

    relay = await start_relay(tmp_path)
    try:
        response = await treq.get(relay.url + "/player_api.php?username=alice&password=alicepw")
    finally:
        await relay.stop()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor as global_reactor

from xrelay.app import XRelay
from xrelay.core.config import (AdminConfig, Config, IngestConfig, RelayConfig, ServerConfig,
                           UpstreamConfig, UserConfig)
from xrelay.demo.provider import DemoProvider, DemoSettings
from xrelay.tap import build

USERS = (
    UserConfig(username="alice", password="alicepw", max_connections=2),
    UserConfig(username="bob", password="bobpw", max_connections=1),
    UserConfig(username="carol", password="carolpw", enabled=False),
    UserConfig(username="dave", password="davepw", exp_date=1000),
)
ADMIN = AdminConfig(username="admin", password="adminpw")


@dataclass
class Relay:
    xr: XRelay
    service: Any
    provider: DemoProvider
    url: str
    port: int
    stopped: bool = False

    @property
    def upstream_secrets(self) -> tuple[str, str, str]:
        """What must never reach a client: provider username, password, host:port."""
        s = self.provider.settings
        return s.username, s.password, self.provider.url.split("://", 1)[1]

    async def ingest(self) -> Any:
        return await self.xr.ingest_service.trigger("test")

    @property
    def bundle(self) -> dict[str, Any]:
        """The catalog xrelay serves now, read from its cache (the daemon
        itself never holds it as Python objects)."""
        return bundle_of(self.xr)

    @property
    def live_by_id(self) -> dict[int, dict[str, Any]]:
        return {s["stream_id"]: s for s in self.bundle["live_streams"]}

    @property
    def vod_by_id(self) -> dict[int, dict[str, Any]]:
        return {s["stream_id"]: s for s in self.bundle["vod_streams"]}

    @property
    def series_by_id(self) -> dict[int, dict[str, Any]]:
        return {s["series_id"]: s for s in self.bundle["series"]}

    @property
    def episode_ids(self) -> set[int]:
        return {int(e["id"]) for e in self.bundle["episodes"]}

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await defer.maybeDeferred(self.service.stopService)
        await self.xr.client.close()
        await self.provider.stop()


_bundles: dict[Path, dict[str, Any]] = {}


def bundle_of(xr: Any) -> dict[str, Any]:
    """The bundle of *xr*'s current generation (read once per generation)."""
    generation = xr.cache.generation
    assert generation is not None, "no catalog loaded"
    if generation not in _bundles:
        _bundles.clear()
        _bundles[generation] = json.loads((generation / "bundle.json").read_bytes())
    return _bundles[generation]


def make_config(data_dir: Path, provider: DemoProvider, **overrides: Any) -> Config:
    s = provider.settings
    config = Config(
        upstream=UpstreamConfig(url=provider.url, username=s.username, password=s.password),
        server=ServerConfig(listen="tcp:0:interface=127.0.0.1"),
        ingest=IngestConfig(data_dir=data_dir, interval=3600, timeout=60),
        users=USERS,
        admin=ADMIN,
        relay=RelayConfig(),
        source="<test>",
    )
    return replace(config, **overrides)


async def start_relay(tmp_path: Path, *, settings: DemoSettings | None = None,
                      ingest: bool = True, reactor: Any = None, **overrides: Any) -> Relay:
    """Start the demo provider and xrelay; wait for the first ingest."""
    reactor = reactor or global_reactor
    provider = DemoProvider(reactor, settings or DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    config = make_config(tmp_path / "data", provider, **overrides)
    service, xr = build(reactor, config)
    if not ingest:
        xr.ingest_service.disownServiceParent()
    service.startService()
    web = service.getServiceNamed("web")
    port = await web._waitingForPort
    number = port.getHost().port
    relay = Relay(xr, service, provider, f"http://127.0.0.1:{number}", number)
    if ingest:
        result = await relay.ingest()
        if not result.ok:
            await relay.stop()
            raise AssertionError(f"first ingest failed: {result.reason}")
    return relay
