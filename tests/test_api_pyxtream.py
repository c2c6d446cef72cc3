"""pyxtream 0.8.0 (a real Xtream client library) loads the whole catalog
through xrelay.  pyxtream blocks (requests), so it runs in a thread while
the relay runs in the reactor."""

from __future__ import annotations

import contextlib
import io

import pytest_twisted
from twisted.internet import threads

from harness import start_relay
from xrelay.demo.provider import DemoSettings


def _load(url: str, cache: str) -> dict:
    from pyxtream import XTream

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        xt = XTream("xrelay", "alice", "alicepw", url, cache_path=cache, reload_time_sec=-1)
        assert xt.state["authenticated"], out.getvalue()[-2000:]
        assert xt.load_iptv()
        episodes = {}
        for serie in xt.series:
            xt.get_series_info_by_id(serie)
            episodes[serie.series_id if serie.series_id else serie.name] = [
                ep for season in serie.seasons.values() for ep in season.episodes.values()]
        # (vodInfoByID() itself passes its URL as the timeout: a pyxtream 0.8.0 bug)
        from pyxtream import api as pyx_api

        vod_info = xt._get_request(pyx_api.get_VOD_info_URL_by_ID(xt.movies[0].id, xt.base_url))
        epg = xt.liveEpgByStreamAndLimit(xt.channels[0].id, 2)
    return {"xt": xt, "episodes": episodes, "vod_info": vod_info, "epg": epg, "log": out.getvalue()}


@pytest_twisted.ensureDeferred
async def test_pyxtream_loads_the_whole_catalog(tmp_path):
    relay = await start_relay(tmp_path / "relay", settings=DemoSettings(live=25, vod=15, series=4, quirky=True))
    try:
        cache = tmp_path / "pyxtream"
        cache.mkdir()
        got = await threads.deferToThread(_load, relay.url, str(cache))
        xt = got["xt"]
        bundle = relay.bundle
        assert sorted(c.id for c in xt.channels) == sorted(r["stream_id"] for r in bundle["live_streams"])
        assert sorted(m.id for m in xt.movies) == sorted(r["stream_id"] for r in bundle["vod_streams"])
        assert sorted(s.name for s in xt.series) == sorted(r["name"] for r in bundle["series"])
        for item in xt.channels + xt.movies:
            assert item.url.startswith(f"{relay.url}/"), item.url
            assert "/alice/alicepw/" in item.url
        named_groups = {g.name for g in xt.groups}
        assert {c["category_name"] for c in bundle["live_categories"]} <= named_groups
        all_eps = [ep for eps in got["episodes"].values() for ep in eps]
        assert len(all_eps) == len(bundle["episodes"]) > 0
        assert all(ep.url.startswith(f"{relay.url}/series/alice/alicepw/") for ep in all_eps)
        assert {int(ep.id) for ep in all_eps} == {e["id"] for e in bundle["episodes"]}
        assert got["vod_info"]["movie_data"]["stream_id"] == xt.movies[0].id
        assert isinstance(got["epg"]["epg_listings"], list)
        for secret in relay.upstream_secrets:
            assert secret not in got["log"]
    finally:
        await relay.stop()
