"""Lineups in the running daemon, against the demo provider, over loopback.

A kids' user (lineup ``kids``: adult hidden, sport and one channel
excluded, a few movies, three series) never sees anything outside its
lineup in any answer, and every stream form of something outside it is
answered exactly like an unknown id, without the provider hearing of it.
Channel numbers survive re-ingests; a SIGHUP that takes a channel out of a
lineup closes the stream of the user watching it.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import pytest_twisted

from apiclient import Answer, api, fetch
from demo_helpers import open_stream, wait_until, within
from harness import USERS, Relay, start_relay
from xrelay.core.config import HdhrDevice, UserConfig
from xrelay.core.lineups import parse_lineups
from xrelay.demo.catalog import DemoCatalog
from xrelay.demo.provider import DemoSettings
from xrelay.tap import DEMO_KIDS, DEMO_USER, demo_config

KID = UserConfig(username="kid", password="kidpw", max_connections=2, lineup="kids")
TV = UserConfig(username="tv", password="tvpw", lineup="everything")
TABLE: dict[str, Any] = {
    "kids": {
        "adult": "hide", "number_from": 100,
        "rename": [{"pattern": "^[A-Z]{2}: ", "replace": ""}],
        "live": {"exclude_streams": ["id:2", "re:sport"]},
        "vod": {"include_streams": ["re:willow|alpha"]},
        "series": {"include_streams": ["id:1", "*Lane*"]},
    },
    "everything": {"number_from": 1},
}
#: 60 channels: three live categories, the last one adult ("XXX | Adult").
SETTINGS = DemoSettings(live=60, vod=30, series=6, redirect_streams=False)


async def start(tmp_path: Any, table: dict[str, Any] | None = None, settings: DemoSettings = SETTINGS) -> Relay:
    users = USERS + (KID, TV)
    return await start_relay(tmp_path, settings=settings, users=users,
                             lineups=parse_lineups(table or TABLE, users, "<test>"))


def kid_api(relay: Relay, **params: Any) -> Any:
    return api(relay.url, "kid", "kidpw", **params)


def forbidden(relay: Relay) -> dict[str, set[int]]:
    """What the kids' lineup leaves out, read off the catalog itself."""
    view = relay.xr.lineups.views["kids"]
    live = {sid for sid in relay.live_by_id if not view.allows("live", sid)}
    vod = {sid for sid in relay.vod_by_id if not view.allows("vod", sid)}
    series = {sid for sid in relay.series_by_id if not view.allows("series", sid)}
    return {"live": live, "vod": vod, "series": series}


def adult_ids(relay: Relay) -> set[int]:
    return {sid for sid, row in relay.live_by_id.items() if str(row.get("is_adult")) == "1"}


# -- what the kids' user sees ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_kids_user_sees_only_its_lineup_in_every_answer(tmp_path: Any) -> None:
    relay = await start(tmp_path)
    try:
        out = forbidden(relay)
        adult = adult_ids(relay)
        assert adult and adult <= out["live"] and 2 in out["live"] and out["vod"] and out["series"]
        sport = {sid for sid, row in relay.live_by_id.items() if "sport" in row["name"].lower()}
        assert sport and sport <= out["live"]

        # lists: whole, gzip, per category, limited
        live = (await kid_api(relay, action="get_live_streams")).json()
        assert live and {r["stream_id"] for r in live}.isdisjoint(out["live"])
        assert all(not re.match(r"^[A-Z]{2}: ", r["name"]) for r in live)  # renamed for display
        assert [r["num"] for r in live] == sorted(r["num"] for r in live) and live[0]["num"] >= 100
        zipped = await fetch(f"{relay.url}/player_api.php?{urlencode({'username': 'kid', 'password': 'kidpw', 'action': 'get_live_streams'})}",
                             headers={"accept-encoding": "gzip"})
        assert json.loads(gzip.decompress(zipped.body)) == live
        categories = (await kid_api(relay, action="get_live_categories")).json()
        assert categories and all("adult" not in c["category_name"].lower() for c in categories)
        for c in categories:
            rows = (await kid_api(relay, action="get_live_streams", category_id=c["category_id"])).json()
            assert rows and {r["stream_id"] for r in rows}.isdisjoint(out["live"])
        limited = (await kid_api(relay, action="get_live_streams", limit=3)).json()
        assert limited == live[:3]
        adult_category = next(c["category_id"] for c in (await api(relay.url, action="get_live_categories")).json()
                              if "Adult" in c["category_name"])
        assert (await kid_api(relay, action="get_live_streams", category_id=adult_category)).json() == []
        movies = (await kid_api(relay, action="get_vod_streams")).json()
        assert movies and {r["stream_id"] for r in movies}.isdisjoint(out["vod"])
        series = (await kid_api(relay, action="get_series")).json()
        assert {r["series_id"] for r in series} == {1, 3, 5}
        assert (await kid_api(relay, action="get_vod_categories")).json()
        assert (await kid_api(relay, action="get_series_categories")).json()
        # the whole catalog for everyone else
        assert len((await api(relay.url, action="get_live_streams")).json()) == 60

        # details and EPG: outside the lineup answers as an unknown id, the provider not asked
        stats = relay.provider.stats
        asked = stats.requests["player_api:get_vod_info"], stats.requests["player_api:get_series_info"]
        movie_out, series_out = min(out["vod"]), min(out["series"])
        unknown_movie = await kid_api(relay, action="get_vod_info", vod_id=999999)
        assert (await kid_api(relay, action="get_vod_info", vod_id=movie_out)).body == unknown_movie.body
        unknown_series = await kid_api(relay, action="get_series_info", series_id=999999)
        assert (await kid_api(relay, action="get_series_info", series_id=series_out)).body == unknown_series.body
        assert (stats.requests["player_api:get_vod_info"], stats.requests["player_api:get_series_info"]) == asked
        assert (await kid_api(relay, action="get_series_info", series_id=1)).json()["episodes"]
        channel_out = min(adult)
        assert (await api(relay.url, action="get_short_epg", stream_id=channel_out)).json()["epg_listings"]
        for action in ("get_short_epg", "get_simple_data_table"):
            assert (await kid_api(relay, action=action, stream_id=channel_out)).json() == {"epg_listings": []}
        assert (await kid_api(relay, action="get_short_epg", stream_id=live[0]["stream_id"])).json()["epg_listings"]

        # panel_api.php: categories and channels
        panel = (await fetch(f"{relay.url}/panel_api.php?username=kid&password=kidpw")).json()
        assert {int(k) for k in panel["available_channels"]} == {r["stream_id"] for r in live}
        assert all("Adult" not in c["category_name"] for c in panel["categories"]["live"])

        # get.php: both styles, both outputs, and the XUI path form
        for query in ("type=m3u_plus&output=ts", "type=m3u&output=m3u8", "type=m3u_plus&output=hls&key=live"):
            text = (await fetch(f"{relay.url}/get.php?username=kid&password=kidpw&{query}")).body.decode()
            played = {(k, int(i)) for k, i in re.findall(r"/(live|movie|series)/kid/kidpw/(\d+)\.", text)}
            assert played and all(i not in out["live"] for k, i in played if k == "live")
            assert all(i not in out["vod"] for k, i in played if k == "movie")
        plus = (await fetch(f"{relay.url}/playlist/kid/kidpw/m3u_plus")).body.decode()
        numbers = {int(i): int(n) for n, i in re.findall(r'tvg-chno="(\d+)"[^\n]*\r?\n[^\n]*/live/kid/kidpw/(\d+)\.', plus)}
        assert numbers == {r["stream_id"]: r["num"] for r in live}
        episodes = {int(i) for i in re.findall(r"/series/kid/kidpw/(\d+)\.", plus)}
        demo = DemoCatalog(live=60, vod=30, series=6)
        assert episodes == {demo.episode_id(s, a, e) for s in (0, 2, 4) for a in range(2) for e in range(4)}

        # xmltv.php: only the lineup's channels and their programmes
        guide = (await fetch(f"{relay.url}/xmltv.php?username=kid&password=kidpw")).body.decode()
        channels = set(re.findall(r'<channel id="([^"]+)"', guide))
        programmes = set(re.findall(r'<programme[^>]* channel="([^"]+)"', guide))
        wanted = {relay.live_by_id[r["stream_id"]]["epg_channel_id"] for r in live}
        assert channels == wanted and programmes <= wanted and programmes
        whole = (await fetch(f"{relay.url}/xmltv.php?username=alice&password=alicepw")).body.decode()
        assert len(set(re.findall(r'<channel id="([^"]+)"', whole))) == 60
        gz = await fetch(f"{relay.url}/xmltv.php?username=kid&password=kidpw", headers={"accept-encoding": "gzip"})
        assert gzip.decompress(gz.body).decode() == guide
    finally:
        await relay.stop()


# -- what the kids' user may play -----------------------------------------------------------


def _start_arg() -> str:
    moment = datetime.fromtimestamp(int(time.time()) // 60 * 60 - 5400, timezone.utc)
    return moment.strftime("%Y-%m-%d:%H-%M")


def _same(a: Answer, b: Answer) -> None:
    assert (a.code, a.body, a.header("content-type")) == (b.code, b.body, b.header("content-type"))


@pytest_twisted.ensureDeferred
async def test_every_stream_form_outside_the_lineup_is_a_404_like_an_unknown_id(tmp_path: Any) -> None:
    relay = await start(tmp_path)
    try:
        out = forbidden(relay)
        archive = [sid for sid in sorted(out["live"]) if relay.live_by_id[sid]["tv_archive"]]
        assert archive
        channel, unknown = archive[0], 999999
        movie = min(out["vod"])
        ext = relay.vod_by_id[movie]["container_extension"]
        demo = DemoCatalog(live=60, vod=30, series=6)
        episode = demo.episode_id(1, 0, 0)  # of series 2, outside the lineup
        start_at = _start_arg()
        forms = {
            "live ts": "/live/kid/kidpw/{id}.ts", "live bare": "/live/kid/kidpw/{id}",
            "short ts": "/kid/kidpw/{id}.ts", "short bare": "/kid/kidpw/{id}",
            "live m3u8": "/live/kid/kidpw/{id}.m3u8",
            "timeshift": f"/timeshift/kid/kidpw/30/{start_at}/{{id}}.ts",
            "timeshift m3u8": f"/timeshift/kid/kidpw/30/{start_at}/{{id}}.m3u8",
            "timeshifts": f"/timeshifts/kid/kidpw/30/{{id}}/{start_at}.ts",
            "timeshift.php": f"/streaming/timeshift.php?username=kid&password=kidpw&stream={{id}}&start={start_at}&duration=30",
            "short timeshift.php": f"/timeshift.php?username=kid&password=kidpw&stream={{id}}&start={start_at}&duration=30&extension=ts",
        }
        stats = relay.provider.stats
        before = dict(stats.requests)
        for form, path in forms.items():
            refused = await fetch(relay.url + path.format(id=channel))
            assert refused.code == 404, form
            _same(refused, await fetch(relay.url + path.format(id=unknown)))
        for path, ident in ((f"/movie/kid/kidpw/{{id}}.{ext}", movie), ("/series/kid/kidpw/{id}.mp4", episode)):
            refused = await fetch(relay.url + path.format(id=ident))
            assert refused.code == 404, path
            _same(refused, await fetch(relay.url + path.format(id=unknown)))
            head = await fetch(relay.url + path.format(id=ident), method="HEAD")
            assert head.code == 404
        # /hls/: a segment of a channel the kid may not play, with the kid's own token
        playlist = (await fetch(f"{relay.url}/live/alice/alicepw/{channel}.m3u8")).body.decode()
        segment = next(line for line in playlist.splitlines() if line.startswith("http"))
        name = segment.rsplit("/", 1)[1]
        kid_token = relay.xr.hls.tokens.user_token("kid", "kidpw")
        fetched = dict(stats.segment_fetches)
        refused = await fetch(f"{relay.url}/hls/kid/{kid_token}/{name}")
        assert refused.code == 404
        _same(refused, await fetch(f"{relay.url}/hls/kid/{kid_token}/{'0' * 32}.ts"))
        assert dict(stats.segment_fetches) == fetched
        # the provider heard of none of it (alice's HLS playlist aside: it opened the
        # channel, whose one MPEG-TS connection xrelay cuts its HLS from)
        after = dict(stats.requests)
        for kind in ("movie", "series", "timeshift", "hls_segment", "hls_entry"):
            assert after.get(kind, 0) == before.get(kind, 0), kind
        assert after.get("live", 0) == before.get("live", 0) + 1
        assert (await fetch(segment)).code == 200  # alice may

        # inside the lineup the same forms play
        allowed = next(sid for sid in sorted(relay.live_by_id) if sid not in out["live"])
        response, reader = await open_stream(f"{relay.url}/live/kid/kidpw/{allowed}.ts", want=10_000)
        assert response.code == 200
        await within(reader.done, 20, what="the kid's channel")
        reader.stop()
        movie_in = min(set(relay.vod_by_id) - out["vod"])
        ext_in = relay.vod_by_id[movie_in]["container_extension"]
        assert (await fetch(f"{relay.url}/movie/kid/kidpw/{movie_in}.{ext_in}", method="HEAD")).code == 200
        episode_in = demo.episode_id(0, 0, 0)
        assert (await fetch(f"{relay.url}/series/kid/kidpw/{episode_in}.mp4", method="HEAD")).code == 200
    finally:
        await relay.stop()


# -- numbers, reloads, operations ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_channel_numbers_survive_reingests_that_add_and_remove_channels(tmp_path: Any) -> None:
    relay = await start(tmp_path)
    try:
        async def numbers() -> dict[int, int]:
            rows = (await api(relay.url, "tv", "tvpw", action="get_live_streams")).json()
            return {r["stream_id"]: r["num"] for r in rows}

        first = await numbers()
        assert len(first) == 60 and len(set(first.values())) == 60
        relay.provider.set_catalog(DemoCatalog(live=66, vod=30, series=6))
        assert (await relay.ingest()).ok
        grown = await numbers()
        assert {k: grown[k] for k in first} == first
        assert len(set(grown.values())) == 66  # the new channels took numbers of their own
        relay.provider.set_catalog(DemoCatalog(live=50, vod=30, series=6))
        assert (await relay.ingest()).ok
        shrunk = await numbers()
        assert shrunk == {k: first[k] for k in range(1, 51)}
        relay.provider.set_catalog(DemoCatalog(live=55, vod=30, series=6))
        assert (await relay.ingest()).ok
        back = await numbers()
        assert {k: back[k] for k in range(1, 51)} == shrunk
        removed = {grown[k] for k in range(51, 67)}
        assert not removed & {back[k] for k in range(51, 56)}  # a removed number is not given again soon
        assert (tmp_path / "data" / "channel-numbers.json").is_file()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_sighup_rereads_lineups_and_closes_streams_they_no_longer_hold(tmp_path: Any) -> None:
    relay = await start(tmp_path, settings=replace(SETTINGS, vod_bitrate_bps=400_000))  # a movie lasts 80 s
    try:
        out = forbidden(relay)
        watched = next(sid for sid in sorted(relay.live_by_id) if sid not in out["live"])
        response, reader = await open_stream(f"{relay.url}/live/kid/kidpw/{watched}.ts")
        assert response.code == 200
        await wait_until(lambda: reader.received > 5000, 20)
        table = json.loads(json.dumps(TABLE))
        table["kids"]["live"]["exclude_streams"].append(f"id:{watched}")
        users = USERS + (KID, TV)
        config = replace(relay.xr.config, users=users, lineups=parse_lineups(table, users, "<test>"))
        relay.xr.reload_config = lambda: config
        old_view = relay.xr.lineups.views["kids"]
        relay.xr.reload_users()
        await wait_until(lambda: relay.xr.lineups.views["kids"] is not old_view, 60)
        await within(reader.done, 20, what="the stream closed by the reload")
        rows = (await kid_api(relay, action="get_live_streams")).json()
        assert watched not in {r["stream_id"] for r in rows} and rows
        assert (await fetch(f"{relay.url}/live/kid/kidpw/{watched}.ts")).code == 404

        # a user moved to a lineup: its streams outside it close at once
        movie = min(out["vod"])
        ext = relay.vod_by_id[movie]["container_extension"]
        response, reader = await open_stream(f"{relay.url}/movie/alice/alicepw/{movie}.{ext}")
        assert response.code == 200
        await wait_until(lambda: reader.received > 0, 20)
        moved = tuple(replace(u, lineup="kids") if u.username == "alice" else u for u in users)
        relay.xr.take_users(moved)
        await within(reader.done, 20, what="alice's movie closed when she moved to the kids lineup")
        assert reader.received < SETTINGS.vod_size
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_admin_and_status_show_each_users_lineup(tmp_path: Any) -> None:
    relay = await start(tmp_path)
    try:
        auth = {"authorization": "Basic YWRtaW46YWRtaW5wdw=="}  # admin:adminpw
        status = (await fetch(f"{relay.url}/status", headers=auth)).json()
        users = {u["user"]: u for u in status["lineups"]["users"]}
        kids_counts = relay.xr.lineups.views["kids"].counts
        assert users["kid"]["lineup"] == "kids" and users["kid"]["counts"] == kids_counts
        assert users["alice"]["lineup"] is None and users["alice"]["counts"]["live"] == 60
        assert status["lineups"]["lineups"]["everything"]["live"] == 60
        page = (await fetch(f"{relay.url}/admin", headers=auth)).body.decode()
        assert 'id="lineups"' in page and "kids" in page and str(kids_counts["live"]) in page
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_the_demo_has_two_users_who_see_different_catalogs(tmp_path: Any) -> None:
    config = demo_config(None, str(tmp_path / "unused"))
    relay = await start_relay(tmp_path, users=config.users, lineups=config.lineups)
    try:
        (user, password), (kids, kids_password) = DEMO_USER, DEMO_KIDS
        everything = (await api(relay.url, user, password, action="get_live_streams")).json()
        theirs = (await api(relay.url, kids, kids_password, action="get_live_streams")).json()
        assert len(everything) == 20 and 0 < len(theirs) < len(everything)
        assert all("Kids" in r["name"] or "Music" in r["name"] for r in theirs)
        playlist = (await fetch(f"{relay.url}/get.php?username={kids}&password={kids_password}"
                                "&type=m3u_plus&output=ts")).body.decode()
        assert set(map(int, re.findall(r"/live/kids/kids/(\d+)\.ts", playlist))) == {r["stream_id"] for r in theirs}
        outside = min(set(r["stream_id"] for r in everything) - {r["stream_id"] for r in theirs})
        assert (await fetch(f"{relay.url}/live/{kids}/{kids_password}/{outside}.ts")).code == 404
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_tuner_naming_a_lineup_lists_its_channels_by_their_numbers(tmp_path: Any) -> None:
    users = USERS + (KID, TV)
    relay = await start_relay(tmp_path, settings=SETTINGS, users=users,
                              lineups=parse_lineups(TABLE, users, "<test>"),
                              hdhr=(HdhrDevice("Kids tuner", "kids-tuner-1", lineup="kids"),
                                    HdhrDevice("Everything", "all-tuner-1")))
    try:
        await wait_until(lambda: len(relay.xr.lineup_tuners("kids")) > 0, 20)
        listed = (await fetch(f"{relay.url}/hdhr/kids-tuner-1/lineup.json")).json()
        kids = (await kid_api(relay, action="get_live_streams")).json()
        assert [(c["GuideNumber"], c["GuideName"]) for c in listed] == [(str(r["num"]), r["name"]) for r in kids]
        assert len((await fetch(f"{relay.url}/hdhr/all-tuner-1/lineup.json")).json()) == 60
    finally:
        await relay.stop()
