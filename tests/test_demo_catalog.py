"""The demo catalog: deterministic, XC-era types, quirks on demand, fast."""

from __future__ import annotations

import json

from xrelay.demo.catalog import Context, DemoCatalog

CTX = Context("http://provider.test:8080", "u", "p")


def test_live_rows_have_xc_types() -> None:
    rows = DemoCatalog(live=30).list_rows("live", CTX)
    assert [r["num"] for r in rows] == list(range(1, 31))
    for row in rows:
        assert isinstance(row["stream_id"], int)
        assert isinstance(row["tv_archive"], int)
        assert isinstance(row["tv_archive_duration"], int)
        assert isinstance(row["category_id"], str) and row["category_id"].isdigit()
        assert isinstance(row["added"], str) and row["added"].isdigit()
        assert row["stream_type"] == "live"
        assert row["direct_source"] == ""
        assert row["stream_icon"].startswith("http://provider.test:8080/images/")
    archive = [r for r in rows if r["tv_archive"] == 1]
    assert archive and all(r["tv_archive_duration"] == 7 for r in archive)


def test_catalog_is_deterministic_and_seeded() -> None:
    a = json.dumps(DemoCatalog(seed=3).list_rows("vod", CTX))
    b = json.dumps(DemoCatalog(seed=3).list_rows("vod", CTX))
    c = json.dumps(DemoCatalog(seed=4).list_rows("vod", CTX))
    assert a == b != c


def test_ids_do_not_overlap() -> None:
    cat = DemoCatalog(live=10, vod=10, series=3, seasons=2, episodes=3)
    live, vod, eps = set(cat.live_ids()), set(cat.vod_ids()), set(cat.episode_ids())
    assert len(eps) == 18
    assert not live & vod and not vod & eps and not live & eps
    ids = {int(ep["id"]) for _, _, ep in cat.episodes_flat(CTX)}
    assert ids == eps


def test_category_filter() -> None:
    cat = DemoCatalog(live=100)
    cats = cat.categories("live")
    assert len(cats) == 4
    first = int(cats[0]["category_id"])
    rows = cat.list_rows("live", CTX, first)
    assert rows and all(r["category_id"] == str(first) for r in rows)
    assert len(rows) == 25


def test_series_info_shapes() -> None:
    cat = DemoCatalog(series=2, seasons=2, episodes=3)
    info = cat.series_info(1, CTX)
    assert isinstance(info, dict)
    assert list(info["episodes"]) == ["1", "2"]
    assert [s["season_number"] for s in info["seasons"]] == [1, 2]
    ep = info["episodes"]["1"][0]
    assert isinstance(ep["id"], str) and isinstance(ep["episode_num"], int)
    assert isinstance(ep["info"], dict) and ep["season"] == 1
    assert cat.series_info(99, CTX) == []


def test_quirks() -> None:
    cat = DemoCatalog(live=60, vod=30, series=3, quirky=True)
    live = cat.list_rows("live", CTX)
    types = {r["stream_type"] for r in live}
    assert {"live", "created_live", "radio_streams"} <= types
    assert any(r["epg_channel_id"] is None for r in live)
    assert any(isinstance(r["stream_id"], str) for r in live)
    assert any(isinstance(r["tv_archive_duration"], str) for r in live)
    assert all(r["direct_source"].startswith("http://provider.test:8080/live/u/p/") for r in live)
    ids = [int(r["stream_id"]) for r in live]
    assert len(ids) > len(set(ids)), "rows duplicated by category"
    # A series with seasons 0 and 1: PHP encodes its episodes as a list of lists.
    info = cat.series_info(1, CTX)
    assert isinstance(info, dict) and isinstance(info["episodes"], list)
    assert [eps[0]["season"] for eps in info["episodes"]] == [0, 1]
    assert isinstance(cat.series_info(2, CTX)["episodes"], dict)  # type: ignore[index]
    assert any(cat.vod_info(i, CTX)["info"] == [] for i in cat.vod_ids())
    assert cat.vod_info(1, CTX) == {"info": []}  # a live id is no movie


def test_epg_window_and_shared_ids() -> None:
    cat = DemoCatalog(live=20, epg_hours=4, quirky=True)
    progs = cat.programmes("ch1.demo", 1_800_000_000)
    assert len(progs) == 9
    assert progs[0].start <= 1_800_000_000 - 2 * 3600 + 1800
    assert all(a.stop == b.start for a, b in zip(progs, progs[1:]))
    epg_ids = [e for e, _ in cat.epg_channels()]
    assert len(epg_ids) == len(set(epg_ids))
    assert cat.epg_channel_id(8) == cat.epg_channel_id(7)


def test_hundred_thousand_items() -> None:
    """A benchmark-sized catalog, whole and in order (its speed is measured by
    the benchmarks that use it, bench/big_catalog.py: a wall-clock bound here
    would fail on a busy machine)."""
    cat = DemoCatalog(live=100_000, vod=100_000)
    rows = cat.list_rows("live", CTX)
    body = json.dumps(rows, separators=(",", ":"))
    assert len(rows) == 100_000 and len(body) > 10_000_000
    assert [r["stream_id"] for r in rows] == list(range(1, 100_001))
    vod = cat.list_rows("vod", CTX)
    assert [r["stream_id"] for r in vod] == list(range(100_001, 200_001))
