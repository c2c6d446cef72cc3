"""Chained relays: an edge xrelay ingests from a central xrelay, which
ingests from the demo provider; the edge ends up with the same catalog."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor

from apiclient import api, fetch, query
from harness import bundle_of, start_relay
from xrelay.core.config import Config, IngestConfig, RelayConfig, ServerConfig, UpstreamConfig, UserConfig
from xrelay.demo.provider import DemoSettings
from xrelay.tap import build

MARK = "@XRELAY_BASE@"


async def start_edge(tmp_path, central_url: str) -> tuple[Any, Any, str]:
    config = Config(
        upstream=UpstreamConfig(url=central_url, username="alice", password="alicepw"),
        server=ServerConfig(listen="tcp:0:interface=127.0.0.1"),
        ingest=IngestConfig(data_dir=tmp_path / "edge", interval=3600, timeout=60),
        users=(UserConfig(username="eve", password="evepw", max_connections=1),),
        relay=RelayConfig(),
        source="<edge>",
    )
    service, xr = build(reactor, config)
    service.startService()
    port = await service.getServiceNamed("web")._waitingForPort
    return service, xr, f"http://127.0.0.1:{port.getHost().port}"


def same_urls(value: Any, edge: bool) -> Any:
    """Edge icons are the central's /asset/ URLs behind the edge's /asset/."""
    if isinstance(value, str):
        return value.replace(f"{MARK}/asset/asset/", "/asset/") if edge else value.replace(f"{MARK}/asset/", "/asset/")
    if isinstance(value, list):
        return [same_urls(v, edge) for v in value]
    if isinstance(value, dict):
        return {k: same_urls(v, edge) for k, v in value.items()}
    return value


@pytest_twisted.ensureDeferred
async def test_edge_relay_gets_the_same_catalog(tmp_path):
    central = await start_relay(tmp_path / "central", settings=DemoSettings(live=30, vod=20, series=4, quirky=True))
    service = xr = None
    try:
        service, xr, edge_url = await start_edge(tmp_path, central.url)
        result = await xr.ingest_service.trigger("test")
        assert result.ok, result.reason
        a, b = central.bundle, bundle_of(xr)
        for key in ("live_categories", "vod_categories", "series_categories",
                    "live_streams", "vod_streams", "series", "episodes"):
            assert same_urls(b[key], True) == same_urls(a[key], False), key
            assert b[key], key
        assert b["counts"]["programmes"] == a["counts"]["programmes"] > 0
        assert b["counts"]["channels"] == a["counts"]["channels"]
        # details through the chain
        movie = a["vod_streams"][0]["stream_id"]
        one = (await api(central.url, action="get_vod_info", vod_id=movie)).json()
        two = (await api(edge_url, "eve", "evepw", action="get_vod_info", vod_id=movie)).json()
        assert two["movie_data"]["stream_id"] == one["movie_data"]["stream_id"]
        assert two["info"]["name"] == one["info"]["name"]
        series = a["series"][0]["series_id"]
        one = (await api(central.url, action="get_series_info", series_id=series)).json()
        two = (await api(edge_url, "eve", "evepw", action="get_series_info", series_id=series)).json()
        assert {k: [e["id"] for e in v] for k, v in two["episodes"].items()} == \
               {k: [e["id"] for e in v] for k, v in one["episodes"].items()}
        # EPG and images through the chain
        live = next(r for r in a["live_streams"] if r["epg_channel_id"])
        one = (await api(central.url, action="get_short_epg", stream_id=live["stream_id"])).json()
        two = (await api(edge_url, "eve", "evepw", action="get_short_epg", stream_id=live["stream_id"])).json()
        assert [r["title"] for r in two["epg_listings"]] == [r["title"] for r in one["epg_listings"]]
        icon = b["live_streams"][0]["stream_icon"].replace(MARK, edge_url)
        image = await fetch(icon)
        assert image.code == 200 and image.body.startswith(b"\x89PNG")
        # the edge's own playlist points at the edge, with the edge user's credentials
        m3u = await fetch(f"{edge_url}/get.php?{query('eve', 'evepw')}")
        assert m3u.body.count(b"#EXTINF") == len(a["live_streams"]) + len(a["vod_streams"]) + len(a["episodes"])
        assert f"{edge_url}/live/eve/evepw/".encode() in m3u.body
        for secret in central.upstream_secrets + ("alicepw",):
            assert secret.encode() not in m3u.body
    finally:
        if service is not None:
            await defer.maybeDeferred(service.stopService)
            await xr.client.close()
        await central.stop()
