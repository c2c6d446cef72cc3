"""The catalog cache: prepared generations loaded at start-up and after
each ingest, and item details fetched from the provider once per item per ingest."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from apiclient import api, fetch, query
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


class ProviderDown(Exception):
    pass


@pytest_twisted.ensureDeferred
async def test_a_details_fetch_that_fails_at_once_is_not_kept(tmp_path: Path) -> None:
    """A fetch failing synchronously (or with an already failed Deferred)
    fails every waiter, and the next request asks again."""
    from twisted.internet import reactor

    from xrelay.catalog.cache import CatalogCache

    relay = await start_relay(tmp_path)
    try:
        calls: list[str] = []

        def raising(action: str, **params: Any) -> Any:
            calls.append(action)
            raise ProviderDown(action)

        def failed(action: str, **params: Any) -> Any:
            calls.append(action)
            return defer.fail(ProviderDown(action))

        vod_id = next(iter(relay.vod_by_id))
        for fetch_json in (raising, failed):
            calls.clear()
            cache = CatalogCache(relay.xr.store, fetch_json, clock=reactor)
            assert await cache.reload()
            for attempt in (1, 2, 3):
                with pytest.raises(ProviderDown):
                    await cache.details("vod", vod_id)
                assert calls == ["get_vod_info"] * attempt
            assert cache._inflight == {}
    finally:
        await relay.stop()


async def restart(relay: Any, tmp_path: Path) -> Any:
    """Stop *relay* and start another xrelay on the same data directory,
    without an ingest: it serves what is cached."""
    await relay.stop()
    return await start_relay(tmp_path, ingest=False)


def archive_channel(relay: Any) -> int:
    return next(r["stream_id"] for r in relay.bundle["live_streams"] if r["epg_channel_id"] and r["tv_archive"])


@pytest_twisted.ensureDeferred
async def test_a_restart_serves_lists_and_guide_at_once(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        assert (relay.xr.store.current() / "api" / "manifest.json").is_file(), "the ingest prepared it"
        channel = archive_channel(relay)
        before = (await api(relay.url, action="get_simple_data_table", stream_id=channel)).json()
        relay = await restart(relay, tmp_path)
        # the first request waits for the start-up load, then has everything
        rows = (await api(relay.url, action="get_live_streams")).json()
        assert len(rows) == len(relay.bundle["live_streams"])
        after = (await api(relay.url, action="get_simple_data_table", stream_id=channel)).json()
        assert after["epg_listings"] and [r["start_timestamp"] for r in after["epg_listings"]] == \
               [r["start_timestamp"] for r in before["epg_listings"]]
    finally:
        await relay.stop()


def _as_an_older_xrelay_left_it(api_dir: Path) -> None:
    shutil.rmtree(api_dir)


def _with_a_damaged_index(api_dir: Path) -> None:
    (api_dir / "live_streams.idx").write_bytes(b"\0" * 10)


@pytest.mark.parametrize("damage", [_as_an_older_xrelay_left_it, _with_a_damaged_index])
@pytest_twisted.ensureDeferred
async def test_a_generation_without_usable_prepared_files_is_prepared_at_start_up(tmp_path: Path, damage) -> None:
    relay = await start_relay(tmp_path)
    try:
        api_dir = relay.xr.store.current() / "api"
        damage(api_dir)
        relay = await restart(relay, tmp_path)
        for action, key in (("get_live_streams", "live_streams"), ("get_vod_streams", "vod_streams")):
            rows = (await api(relay.url, action=action)).json()
            assert len(rows) == len(relay.bundle[key]), key
        assert (api_dir / "manifest.json").is_file()
        m3u = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus')}")
        assert m3u.code == 200 and m3u.body.count(b"#EXTINF") > len(rows)
        assert (await fetch(f"{relay.url}/live/alice/alicepw/999999.ts")).code == 404
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_stale_guide_index_is_built_again(tmp_path: Path) -> None:
    """A daemon started days after the last ingest indexes the guide around
    the present time again (in a child process), then serves that index."""
    relay = await start_relay(tmp_path)
    try:
        manifest_path = relay.xr.store.current() / "api" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["epg"]["built_at"] -= 3 * 86400
        manifest_path.write_text(json.dumps(manifest))
        reloaded = defer.Deferred()
        relay = await restart(relay, tmp_path)
        await api(relay.url, action="get_live_categories")  # waits for the start-up load
        relay.xr.cache.listeners.append(lambda cache: reloaded.called or reloaded.callback(cache))
        cache = relay.xr.cache
        if time.time() - cache.current.epg.built_at > 600:
            await reloaded  # the refreshed index, once loaded
        assert time.time() - cache.current.epg.built_at < 600
        assert json.loads(manifest_path.read_text())["epg"]["built_at"] == cache.current.epg.built_at
    finally:
        await relay.stop()


@pytest.mark.allow_logged_errors  # "cannot load the cache" is the admin's cue
@pytest_twisted.ensureDeferred
async def test_an_unusable_cache_is_ingested_again_at_start_up(tmp_path: Path) -> None:
    """A cache that can neither be loaded nor prepared (here a bundle that is
    not JSON any more) does not leave xrelay without a catalog until the
    next scheduled ingest: it ingests at once."""
    from twisted.internet import reactor

    from harness import make_config
    from xrelay.demo.provider import DemoProvider
    from xrelay.tap import build

    relay = await start_relay(tmp_path)
    first = relay.xr.store.current()
    channel = min(relay.live_by_id)
    await relay.stop()
    shutil.rmtree(first / "api")
    (first / "bundle.json").write_bytes(b"{not json")
    provider = DemoProvider(reactor, DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    service, xr = build(reactor, make_config(tmp_path / "data", provider))
    loaded: defer.Deferred = defer.Deferred()
    xr.cache.listeners.append(lambda cache: loaded.called or loaded.callback(cache))
    service.startService()
    try:
        cache = await loaded.addTimeout(60, reactor)
        assert cache.generation != first and cache.has("live", channel)
        assert provider.stats.requests["xmltv"] == 1, "one ingest, at start-up"
    finally:
        await defer.maybeDeferred(service.stopService)
        await xr.client.close()
        await provider.stop()
