"""Item details are fetched from the provider once per item per ingest."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import defer

from harness import start_relay
from xrelay.demo.provider import DemoSettings


@pytest_twisted.ensureDeferred
async def test_details_are_fetched_once_and_kept_on_disk(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(quirky=True))
    try:
        cache, stats = relay.xr.cache, relay.provider.stats
        vod_id = next(iter(relay.vod_by_id))
        series_id = next(iter(relay.series_by_id))
        first = await defer.gatherResults([
            defer.ensureDeferred(cache.details("vod", vod_id)) for _ in range(5)])
        assert stats.requests["player_api:get_vod_info"] == 1, "concurrent askers share one fetch"
        assert first[0]["movie_data"]["stream_id"] == vod_id
        assert isinstance(first[0]["info"], dict)
        again = await cache.details("vod", vod_id)
        assert again == first[0] and stats.requests["player_api:get_vod_info"] == 1
        series = await cache.details("series", series_id)
        assert series["episodes"] and series["seasons"]
        assert stats.requests["player_api:get_series_info"] == 1
        assert (relay.xr.store.current() / "details" / "vod" / f"{vod_id}.json").is_file()
        # an unknown id is answered without asking the provider
        assert await cache.details("vod", 999999) is None
        assert stats.requests["player_api:get_vod_info"] == 1
        # a new ingest starts a new generation: details are asked again, once
        assert (await relay.ingest()).ok
        await cache.details("vod", vod_id)
        assert stats.requests["player_api:get_vod_info"] == 2
        for data in (relay.xr.store.current() / "details").rglob("*.json"):
            for secret in relay.upstream_secrets:
                assert secret.encode() not in data.read_bytes()
    finally:
        await relay.stop()


