"""player_api.php and panel_api.php over real HTTP, against the running daemon
(xrelay + the demo provider on loopback).  Field types per
docs/xtream-api.md."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from twisted.internet import defer

from apiclient import api, fetch, query
from harness import start_relay
from xrelay.core.config import ServerConfig
from xrelay.demo.provider import DemoSettings

AUTH_FAILED = {"user_info": {"auth": 0}}
NUMSTR = str


@pytest_twisted.async_yield_fixture(scope="module")
async def relay(tmp_path_factory):
    # This module's tests make many failed logins from 127.0.0.1 on one relay:
    # the throttle (tested in test_login_throttle.py) is out of their way.
    r = await start_relay(tmp_path_factory.mktemp("api"),
                          settings=DemoSettings(live=40, vod=30, series=5, quirky=True),
                          server=ServerConfig(listen="tcp:0:interface=127.0.0.1",
                                              login_free_failures=10_000, login_lockout_after=10_000))
    yield r
    await r.stop()


def is_numstr(value) -> bool:
    return isinstance(value, str) and value.lstrip("-").isdigit()


def check_category(row) -> None:
    assert is_numstr(row["category_id"])
    assert isinstance(row["category_name"], str)
    assert row["parent_id"] == 0


def check_common(row) -> None:
    assert isinstance(row["num"], int) and not isinstance(row["num"], bool)
    assert isinstance(row["name"], str)
    assert is_numstr(row["added"])
    assert row["category_id"] is None or is_numstr(row["category_id"])
    assert all(isinstance(c, int) for c in row["category_ids"])
    assert row["is_adult"] in ("0", "1")
    assert row["custom_sid"] == ""
    assert row["direct_source"] == ""
    assert isinstance(row["stream_icon"], str)


def check_live(row) -> None:
    check_common(row)
    assert isinstance(row["stream_id"], int)
    assert row["stream_type"] == "live"
    assert row["epg_channel_id"] is None or isinstance(row["epg_channel_id"], str)
    assert row["tv_archive"] in (0, 1)
    assert isinstance(row["tv_archive_duration"], int)


def check_vod(row) -> None:
    check_common(row)
    assert isinstance(row["stream_id"], int)
    assert row["stream_type"] == "movie"
    assert isinstance(row["rating_5based"], (int, float))
    assert isinstance(row["container_extension"], str) and row["container_extension"].isalnum()


def check_series(row) -> None:
    assert isinstance(row["num"], int)
    assert isinstance(row["series_id"], int)
    assert isinstance(row["name"], str)
    assert isinstance(row["cover"], str)
    for key in ("plot", "cast", "director", "genre", "releaseDate", "youtube_trailer"):
        assert isinstance(row[key], str), key
    assert is_numstr(row["last_modified"])
    assert isinstance(row["rating"], str)
    assert isinstance(row["rating_5based"], (int, float))
    assert isinstance(row["backdrop_path"], list)
    assert is_numstr(row["episode_run_time"])
    assert row["category_id"] is None or is_numstr(row["category_id"])


def check_account(data, user="alice", password="alicepw", max_connections="2") -> None:
    info = data["user_info"]
    assert info["username"] == user and info["password"] == password
    assert info["auth"] == 1 and info["status"] == "Active"
    for key in ("exp_date", "is_trial", "active_cons", "created_at", "max_connections"):
        assert is_numstr(info[key]), key
    assert info["max_connections"] == max_connections
    assert info["allowed_output_formats"] == ["m3u8", "ts"]
    server = data["server_info"]
    assert "://" not in server["url"] and ":" not in server["url"]
    for key in ("port", "https_port", "rtmp_port"):
        assert is_numstr(server[key]), key
    assert server["server_protocol"] in ("http", "https")
    assert isinstance(server["timestamp_now"], int)
    datetime.strptime(server["time_now"], "%Y-%m-%d %H:%M:%S")
    assert server["timezone"] == "UTC"


# -- account info ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_account_info_for_no_unknown_and_alias_actions(relay):
    for action in (None, "", "nonsense", "get_account_info", "get_user_info", "get_server_info", "999"):
        params = {} if action is None else {"action": action}
        a = await api(relay.url, **params)
        assert a.code == 200, action
        assert a.header("content-type").startswith("application/json")
        data = a.json()
        check_account(data)
        assert data["server_info"]["port"] == str(relay.port)
        assert data["server_info"]["url"] == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_account_info_by_post_form_and_query_wins(relay):
    a = await fetch(f"{relay.url}/player_api.php", method="POST",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                    body=b"username=alice&password=alicepw")
    check_account(a.json())
    # the query string wins over the body
    a = await fetch(f"{relay.url}/player_api.php?{query()}&action=get_live_categories", method="POST",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                    body=b"username=bob&password=wrong&action=get_vod_categories")
    assert a.code == 200
    assert a.json() == relay.bundle["live_categories"]
    # empty POST body, credentials in the query
    a = await fetch(f"{relay.url}/player_api.php?{query()}", method="POST", body=b"")
    check_account(a.json())


@pytest_twisted.ensureDeferred
async def test_server_info_follows_the_host_header(relay):
    a = await fetch(f"{relay.url}/player_api.php?{query()}", headers={"host": "tv.example.net:8080"})
    server = a.json()["server_info"]
    assert (server["url"], server["port"], server["server_protocol"]) == ("tv.example.net", "8080", "http")
    a = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus')}", headers={"host": "tv.example.net:8080"})
    assert b"http://tv.example.net:8080/live/alice/alicepw/" in a.body


@pytest_twisted.ensureDeferred
async def test_a_host_without_port_is_the_default_port_of_the_scheme(relay):
    """Behind a port forward (80 -> xrelay's port) or a reverse proxy, the
    client's Host has no port: the URLs handed out must not name xrelay's
    own listening port, which the client cannot reach."""
    a = await fetch(f"{relay.url}/player_api.php?{query()}", headers={"host": "tv.example.net"})
    server = a.json()["server_info"]
    assert (server["url"], server["port"], server["server_protocol"]) == ("tv.example.net", "80", "http")
    proxied = {"host": "tv.example.net", "x-forwarded-proto": "https"}
    a = await fetch(f"{relay.url}/player_api.php?{query()}", headers=proxied)
    server = a.json()["server_info"]
    assert (server["port"], server["https_port"], server["server_protocol"]) == ("443", "443", "https")
    a = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus')}", headers=proxied)
    assert b"https://tv.example.net:443/live/alice/alicepw/" in a.body
    assert f":{relay.port}".encode() not in a.body
    rows = (await fetch(f"{relay.url}/player_api.php?{query(action='get_live_streams')}", headers=proxied)).json()
    icons = [r["stream_icon"] for r in rows if r["stream_icon"]]
    assert icons and all(icon.startswith("https://tv.example.net:443/asset/") for icon in icons)
    # a forwarded scheme that is neither http nor https is ignored
    a = await fetch(f"{relay.url}/player_api.php?{query()}", headers={"host": "tv.example.net", "x-forwarded-proto": "gopher"})
    assert a.json()["server_info"]["server_protocol"] == "http"


@pytest_twisted.ensureDeferred
async def test_server_info_from_public_url_and_timezone(tmp_path):
    relay = await start_relay(tmp_path, server=ServerConfig(
        listen="tcp:0:interface=127.0.0.1", public_url="https://tv.example.org", timezone="Asia/Tokyo"))
    try:
        data = (await api(relay.url, user="bob", password="bobpw")).json()
        server = data["server_info"]
        assert server["url"] == "tv.example.org"
        assert server["port"] == "443" and server["https_port"] == "443"
        assert server["server_protocol"] == "https"
        assert server["timezone"] == "Asia/Tokyo"
        assert data["user_info"]["max_connections"] == "1"
        now = datetime.now(ZoneInfo("Asia/Tokyo"))
        shown = datetime.strptime(server["time_now"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        assert abs((shown - now).total_seconds()) < 60
        # EPG strings are in the server timezone too
        live = relay.bundle["live_streams"][0]
        rows = (await api(relay.url, user="bob", password="bobpw", action="get_short_epg",
                          stream_id=live["stream_id"])).json()["epg_listings"]
        assert rows
        for row in rows:
            start = datetime.fromtimestamp(int(row["start_timestamp"]), ZoneInfo("Asia/Tokyo"))
            assert row["start"] == start.strftime("%Y-%m-%d %H:%M:%S")
        rows = (await api(relay.url, user="bob", password="bobpw", action="get_live_streams")).json()
        icons = [r["stream_icon"] for r in rows if r["stream_icon"]]
        assert icons and all(icon.startswith("https://tv.example.org/asset/") for icon in icons)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_refused_logins_get_401_and_nothing_else(relay):
    provider_user, provider_pass, _ = relay.upstream_secrets
    cases = [("alice", "wrong"), ("alice", ""), ("", ""), ("nobody", "x"), ("carol", "carolpw"),
             ("dave", "davepw"), (provider_user, provider_pass), ("ALICE", "alicepw")]
    for user, password in cases:
        for path in ("player_api.php", "panel_api.php", "get.php", "xmltv.php"):
            a = await fetch(f"{relay.url}/{path}?{query(user, password, action='get_live_streams')}")
            assert a.code == 401, (path, user)
            assert a.json() == AUTH_FAILED
    for path in ("player_api.php", "get.php", "xmltv.php"):
        a = await fetch(f"{relay.url}/{path}")
        assert (a.code, a.json()) == (401, AUTH_FAILED)
        a = await fetch(f"{relay.url}/{path}", method="POST", body=b"")
        assert (a.code, a.json()) == (401, AUTH_FAILED)


# -- lists ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_lists_types_aliases_and_counts(relay):
    bundle = relay.bundle
    checks = {
        "get_live_categories": ("201", check_category, "live_categories"),
        "get_vod_categories": ("200", check_category, "vod_categories"),
        "get_series_categories": ("206", check_category, "series_categories"),
        "get_live_streams": ("202", check_live, "live_streams"),
        "get_vod_streams": ("203", check_vod, "vod_streams"),
        "get_series": ("208", check_series, "series"),
    }
    for action, (alias, check, key) in checks.items():
        a = await api(relay.url, action=action)
        assert a.code == 200
        rows = a.json()
        assert isinstance(rows, list) and len(rows) == len(bundle[key]) > 0, action
        for row in rows:
            check(row)
        b = await api(relay.url, action=alias)
        assert b.body == a.body, alias
    live = (await api(relay.url, action="get_live_streams")).json()
    assert [r["stream_id"] for r in live] == [r["stream_id"] for r in bundle["live_streams"]]
    assert len({r["stream_id"] for r in live}) == len(live)


@pytest_twisted.ensureDeferred
async def test_category_filters_and_limit(relay):
    bundle = relay.bundle
    for action, cats_key, rows_key in (("get_live_streams", "live_categories", "live_streams"),
                                       ("get_vod_streams", "vod_categories", "vod_streams"),
                                       ("get_series", "series_categories", "series")):
        seen = set()
        for cat in bundle[cats_key]:
            rows = (await api(relay.url, action=action, category_id=cat["category_id"])).json()
            assert isinstance(rows, list)
            for row in rows:
                assert int(cat["category_id"]) in row["category_ids"]
                assert row["category_id"] == cat["category_id"]  # as XUI answers a category
            seen.update(r.get("stream_id", r.get("series_id")) for r in rows)
        categorised = {r.get("stream_id", r.get("series_id")) for r in bundle[rows_key] if r["category_ids"]}
        assert categorised and seen == categorised
        full = (await api(relay.url, action=action)).body
        for everything in ("0", "", "abc"):
            assert (await api(relay.url, action=action, category_id=everything)).body == full
        assert (await api(relay.url, action=action, category_id="999999")).body == b"[]"
        limited = (await api(relay.url, action=action, limit=3)).json()
        assert limited == json.loads(full)[:3]
        first_cat = bundle[cats_key][0]["category_id"]
        one = (await api(relay.url, action=action, category_id=first_cat, limit=1)).json()
        assert len(one) == 1


@pytest_twisted.ensureDeferred
async def test_lists_gzip_when_accepted(relay):
    plain = await api(relay.url, action="get_live_streams")
    a = await fetch(f"{relay.url}/player_api.php?{query(action='get_live_streams')}",
                    headers={"accept-encoding": "gzip, deflate"})
    assert a.header("content-encoding") == "gzip"
    assert a.length == len(a.body)
    assert gzip.decompress(a.body) == plain.body
    assert plain.header("content-encoding") is None
    assert plain.length == len(plain.body)


@pytest_twisted.ensureDeferred
async def test_empty_lists_are_empty_arrays(tmp_path):
    relay = await start_relay(tmp_path, settings=DemoSettings(live=3, vod=0, series=0))
    try:
        for action in ("get_vod_streams", "get_series"):
            a = await api(relay.url, action=action)
            assert (a.code, a.body) == (200, b"[]"), action
        cat = relay.bundle["vod_categories"][0]["category_id"]
        a = await api(relay.url, action="get_vod_streams", category_id=cat)
        assert (a.code, a.body) == (200, b"[]")
        a = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus')}")
        assert a.body.count(b"#EXTINF") == 3
    finally:
        await relay.stop()


# -- details ----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_vod_info(relay):
    assert relay.bundle["vod_streams"]
    for row in relay.bundle["vod_streams"][:10]:
        for action in ("get_vod_info", "209"):
            data = (await api(relay.url, action=action, vod_id=row["stream_id"])).json()
            info, movie = data["info"], data["movie_data"]
            assert isinstance(info, dict)
            for key in ("movie_image", "cover_big", "plot", "genre", "releasedate", "duration"):
                assert isinstance(info[key], str), key
            for key in ("name", "o_name", "director", "actors", "cast", "description", "youtube_trailer",
                        "country"):
                assert isinstance(info[key], str), key
            assert isinstance(info["duration_secs"], int) and isinstance(info["tmdb_id"], int)
            assert isinstance(info["backdrop_path"], list)
            assert isinstance(info["rating"], (int, float))
            assert movie["stream_id"] == row["stream_id"]
            assert movie["container_extension"] == row["container_extension"]
            assert is_numstr(movie["added"]) and movie["direct_source"] == ""
            assert "@XRELAY" not in json.dumps(data)


@pytest_twisted.ensureDeferred
async def test_series_info_shapes(relay):
    assert relay.bundle["series"]
    for row in relay.bundle["series"]:
        for action in ("get_series_info", "204"):
            data = (await api(relay.url, action=action, series_id=row["series_id"])).json()
            episodes, seasons, info = data["episodes"], data["seasons"], data["info"]
            assert isinstance(episodes, dict) and episodes
            assert isinstance(seasons, list) and seasons
            assert sorted(s["season_number"] for s in seasons) == sorted(int(k) for k in episodes)
            for season in seasons:
                assert isinstance(season["season_number"], int)
                assert isinstance(season["name"], str) and season["name"]
                assert isinstance(season["cover"], str) and isinstance(season["cover_big"], str)
                assert isinstance(season["id"], int) and season["id"] > 0
                assert isinstance(season["air_date"], str) and isinstance(season["overview"], str)
                assert season["episode_count"] == len(episodes[str(season["season_number"])])
            assert len({s["id"] for s in seasons}) == len(seasons)
            for key, eps in episodes.items():
                assert key.isdigit()
                for ep in eps:
                    assert is_numstr(ep["id"])
                    assert isinstance(ep["episode_num"], int) and isinstance(ep["season"], int)
                    assert ep["season"] == int(key)
                    assert isinstance(ep["info"], dict)
                    assert ep["container_extension"].isalnum()
                    assert ep["direct_source"] == ""
            assert is_numstr(info["category_id"])
            assert isinstance(info["backdrop_path"], list)
            # info carries the list row's categories (typed clients read them)
            assert info["category_ids"] == row["category_ids"]
            assert info["category_id"] == row["category_id"]


@pytest_twisted.ensureDeferred
async def test_unknown_and_bad_ids_do_not_reach_the_provider(relay):
    before = relay.provider.stats.requests.copy()
    for value in ("999999", "0", "-1", "abc", "", "1e5", "9" * 40, "1;DROP", "\u00b2", "\u0661\u0662"):
        vod = await api(relay.url, action="get_vod_info", vod_id=value)
        assert (vod.code, vod.json()) == (200, {"info": {}, "movie_data": {}}), value
        series = await api(relay.url, action="get_series_info", series_id=value)
        assert series.code == 200
        assert series.json() == {"seasons": [], "info": {}, "episodes": {}}
        for action in ("get_short_epg", "get_simple_data_table"):
            epg = await api(relay.url, action=action, stream_id=value)
            assert (epg.code, epg.json()) == (200, {"epg_listings": []})
    missing = await api(relay.url, action="get_vod_info")
    assert missing.json() == {"info": {}, "movie_data": {}}
    assert relay.provider.stats.requests == before
    # a known item is fetched once, then served from the cache
    movie = relay.bundle["vod_streams"][-1]["stream_id"]
    for _ in range(3):
        await api(relay.url, action="get_vod_info", vod_id=movie)
    assert relay.provider.stats.requests["player_api:get_vod_info"] == before["player_api:get_vod_info"] + 1


@pytest_twisted.ensureDeferred
async def test_details_when_the_provider_fails(tmp_path):
    relay = await start_relay(tmp_path, settings=DemoSettings(live=5, vod=5, series=2))
    try:
        relay.provider.faults.api = "http500"
        movie = relay.bundle["vod_streams"][0]
        data = (await api(relay.url, action="get_vod_info", vod_id=movie["stream_id"])).json()
        assert data["movie_data"]["stream_id"] == movie["stream_id"]
        assert data["movie_data"]["container_extension"] == movie["container_extension"]
        assert isinstance(data["info"], dict) and data["info"]["name"] == movie["name"]
        series = relay.bundle["series"][0]
        a = await api(relay.url, action="get_series_info", series_id=series["series_id"])
        assert a.code == 200
        data = a.json()
        assert data["info"]["name"] == series["name"]
        assert isinstance(data["seasons"], list) and data["seasons"]
        assert isinstance(data["episodes"], dict)
        relay.provider.faults.clear()
        data = (await api(relay.url, action="get_series_info", series_id=series["series_id"])).json()
        assert data["episodes"], "details are fetched again once the provider is back"
    finally:
        await relay.stop()


# -- EPG -------------------------------------------------------------------------------------

def _epg_channel(relay):
    return next(r for r in relay.bundle["live_streams"] if r["epg_channel_id"] and r["tv_archive"])


@pytest_twisted.ensureDeferred
async def test_short_epg(relay):
    live = _epg_channel(relay)
    for action in ("get_short_epg", "205"):
        rows = (await api(relay.url, action=action, stream_id=live["stream_id"])).json()["epg_listings"]
        assert len(rows) == 4
        for row in rows:
            assert row["channel_id"] == live["epg_channel_id"]
            assert is_numstr(row["id"]) and is_numstr(row["start_timestamp"]) and is_numstr(row["stop_timestamp"])
            title = base64.b64decode(row["title"], validate=True).decode()
            assert title
            base64.b64decode(row["description"], validate=True)
            start = datetime.fromtimestamp(int(row["start_timestamp"]), ZoneInfo("UTC"))
            assert row["start"] == start.strftime("%Y-%m-%d %H:%M:%S")
            stop = datetime.fromtimestamp(int(row["stop_timestamp"]), ZoneInfo("UTC"))
            assert row["end"] == row["stop"] == stop.strftime("%Y-%m-%d %H:%M:%S")
            assert is_numstr(row["epg_id"]) and isinstance(row["lang"], str)
            assert "now_playing" not in row
        now = datetime.now().timestamp()
        assert int(rows[0]["stop_timestamp"]) > now
        assert int(rows[0]["start_timestamp"]) <= now + 1800
    rows = (await api(relay.url, action="get_short_epg", stream_id=live["stream_id"], limit=2)).json()
    assert len(rows["epg_listings"]) == 2


@pytest_twisted.ensureDeferred
async def test_simple_data_table(relay):
    live = _epg_channel(relay)
    for action in ("get_simple_data_table", "207"):
        rows = (await api(relay.url, action=action, stream_id=live["stream_id"])).json()["epg_listings"]
        assert len(rows) > 4
        assert sum(r["now_playing"] for r in rows) == 1
        assert all(r["now_playing"] in (0, 1) and r["has_archive"] in (0, 1) for r in rows)
        now = datetime.now().timestamp()
        for r in rows:
            assert r["has_archive"] == (1 if int(r["stop_timestamp"]) <= now else 0)
        starts = [int(r["start_timestamp"]) for r in rows]
        assert starts == sorted(starts)
    no_archive = next(r for r in relay.bundle["live_streams"]
                      if r["epg_channel_id"] and not r["tv_archive"])
    rows = (await api(relay.url, action="get_simple_data_table",
                      stream_id=no_archive["stream_id"])).json()["epg_listings"]
    assert rows and all(r["has_archive"] == 0 for r in rows)


# -- panel_api.php -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_panel_api(relay):
    a = await fetch(f"{relay.url}/panel_api.php?{query()}")
    data = a.json()
    check_account(data)
    assert set(data["categories"]) == {"live", "movie", "series"}
    bundle = relay.bundle
    assert len(data["available_channels"]) == len(bundle["live_streams"])
    some = data["available_channels"][str(bundle["live_streams"][0]["stream_id"])]
    assert some["direct_source"] == "" and isinstance(some["stream_id"], int)
    a = await fetch(f"{relay.url}/panel_api.php?{query(action='get_live_categories')}", method="POST", body=b"")
    assert a.json() == bundle["live_categories"]


@pytest_twisted.ensureDeferred
async def test_panel_api_categories_and_channel_types(relay):
    data = (await fetch(f"{relay.url}/panel_api.php?{query()}")).json()
    bundle = relay.bundle
    assert data["categories"] == {"live": bundle["live_categories"], "movie": bundle["vod_categories"],
                                  "series": bundle["series_categories"]}
    names = {c["category_id"]: c["category_name"] for c in bundle["live_categories"]}
    assert names and bundle["live_streams"]
    for row in bundle["live_streams"]:
        channel = data["available_channels"][str(row["stream_id"])]
        assert isinstance(channel["num"], int) and isinstance(channel["tv_archive"], int)
        assert isinstance(channel["tv_archive_duration"], int) and channel["live"] == "1"
        assert channel["category_id"] == row["category_id"] and channel["custom_sid"] == ""
        assert channel["category_name"] == names.get(row["category_id"], "")
        assert b"@XRELAY" not in json.dumps(channel).encode()


@pytest_twisted.ensureDeferred
async def test_gzip_slices_and_limits_are_the_plain_ones(relay):
    cat = relay.bundle["vod_categories"][0]["category_id"]
    for params in ({"category_id": cat}, {"limit": 3}, {"category_id": cat, "limit": 2}):
        plain = await api(relay.url, action="get_vod_streams", **params)
        zipped = await fetch(f"{relay.url}/player_api.php?{query(action='get_vod_streams', **params)}",
                             headers={"accept-encoding": "gzip"})
        assert zipped.header("content-encoding") == "gzip", params
        assert gzip.decompress(zipped.body) == plain.body, params


@pytest_twisted.ensureDeferred
async def test_epg_of_a_channel_without_a_guide_is_empty(relay):
    without = [r for r in relay.bundle["live_streams"] if not r["epg_channel_id"]]
    assert without, "the demo catalog has channels without an EPG id"
    for action in ("get_short_epg", "get_simple_data_table"):
        a = await api(relay.url, action=action, stream_id=without[0]["stream_id"])
        assert a.code == 200 and a.json() == {"epg_listings": []}
    rows = (await api(relay.url, action="get_simple_data_table", stream_id=_epg_channel(relay)["stream_id"],
                      limit=3)).json()["epg_listings"]
    assert len(rows) == 3


@pytest_twisted.ensureDeferred
async def test_ipv6_host_and_simple_playlist_and_guide_head(relay):
    a = await fetch(f"{relay.url}/player_api.php?{query()}", headers={"host": "[fd00::5]:8080"})
    server = a.json()["server_info"]
    assert (server["url"], server["port"]) == ("[fd00::5]", "8080")
    assert a.json()["server_info"]["process"] is True and a.json()["user_info"]["auth"] == 1
    simple = await fetch(f"{relay.url}/get.php?{query(type='simple')}")
    assert simple.body == (await fetch(f"{relay.url}/get.php?{query(type='m3u')}")).body
    guide = await fetch(f"{relay.url}/xmltv.php?{query()}")
    head = await fetch(f"{relay.url}/xmltv.php?{query()}", method="HEAD")
    assert head.code == 200 and head.body == b""
    assert int(head.header("content-length")) == len(guide.body)
    assert guide.header("content-disposition") == 'inline; filename="epg.xml"'


@pytest_twisted.ensureDeferred
async def test_before_the_first_ingest(tmp_path):
    """Nothing cached yet: lists answer empty at once, the playlist and the
    guide say 503 with Retry-After; a wrong login is still a 401."""
    relay = await start_relay(tmp_path, ingest=False)
    try:
        assert (await api(relay.url, action="get_live_streams")).json() == []
        for path in (f"/get.php?{query()}", f"/xmltv.php?{query()}", "/epg/alice/alicepw/gz"):
            a = await fetch(relay.url + path)
            assert a.code == 503 and a.header("retry-after") == "30", path
        assert (await fetch(f"{relay.url}/get.php?{query(password='nope')}")).code == 401
    finally:
        await relay.stop()


# -- bad input --------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_bad_input_never_500(relay):
    q = query()
    weird = [
        ("GET", f"/player_api.php?{q}&action=get_live_streams&category_id=" + "9" * 5000, None, {}),
        ("GET", f"/player_api.php?{q}&" + "&".join(f"x{i}=1" for i in range(1500)), None, {}),
        ("GET", f"/player_api.php?{q}&action=%ff%fe&limit=-5", None, {}),
        ("GET", "/player_api.php?username=%ff&password=%00", None, {}),
        ("POST", "/player_api.php", b"\x00\xff" * 1000,
         {"content-type": "application/x-www-form-urlencoded"}),
        ("POST", f"/player_api.php?{q}", b"--xx\r\nbroken", {"content-type": "multipart/form-data; boundary=xx"}),
        ("POST", f"/player_api.php?{q}", b'{"action": "get_live_streams"}', {"content-type": "application/json"}),
        ("POST", f"/get.php?{q}", b"", {}),
        ("GET", f"/get.php?{q}&type=enigma16&output=rtmp", None, {}),
        ("GET", f"/xmltv.php?{q}&prev_days=abc", None, {}),
        ("GET", "/nothing/here.php", None, {}),
        ("GET", "/player_api.phpx", None, {}),
        ("GET", "/asset/", None, {}),
        ("GET", "/asset/../../etc/passwd", None, {}),
        ("GET", "/asset/images/%2e%2e/%2e%2e/player_api.php", None, {}),
        ("DELETE", f"/player_api.php?{q}", None, {}),
    ]
    for method, path, body, headers in weird:
        a = await fetch(relay.url + path, method=method, body=body, headers=headers)
        assert a.code < 500, (method, path[:80], a.code)
        assert b"Traceback" not in a.body and b"File \"" not in a.body
    big = await fetch(f"{relay.url}/player_api.php?{q}&action=get_live_categories&pad=" + "x" * 12000)
    assert big.code == 200 and isinstance(big.json(), list)
    # beyond [server] max_request_line: 414, before anything is routed
    huge = await fetch(f"{relay.url}/player_api.php?{q}&pad=" + "x" * 70000)
    assert huge.code == 414


@pytest_twisted.ensureDeferred
async def test_xui_path_aliases(relay):
    """/player_api/U/P[/ACTION], /playlist/U/P[/TYPE], /epg/U/P[/gz] answer as
    player_api.php, get.php and xmltv.php do."""
    account = (await fetch(f"{relay.url}/player_api/alice/alicepw")).json()
    check_account(account)
    assert account["user_info"]["username"] == "alice"
    cats = await fetch(f"{relay.url}/player_api/alice/alicepw/get_live_categories")
    assert cats.json() == relay.bundle["live_categories"]
    # the path's action wins over the query's
    same = await fetch(f"{relay.url}/player_api/alice/alicepw/get_vod_categories?action=get_live_categories")
    assert same.json() == relay.bundle["vod_categories"]
    refused = await fetch(f"{relay.url}/player_api/alice/WRONG/get_live_streams")
    assert refused.code == 401 and refused.json() == {"user_info": {"auth": 0}}
    plain = await fetch(f"{relay.url}/playlist/alice/alicepw/m3u")
    reference = await fetch(f"{relay.url}/get.php?{query(type='m3u')}")
    assert plain.code == 200 and plain.body == reference.body
    plus = await fetch(f"{relay.url}/playlist/alice/alicepw")
    assert plus.body == (await fetch(f"{relay.url}/get.php?{query(type='m3u_plus')}")).body
    assert (await fetch(f"{relay.url}/playlist/bob/WRONG")).code == 401
    xml = await fetch(f"{relay.url}/epg/alice/alicepw")
    assert xml.code == 200 and xml.body == (await fetch(f"{relay.url}/xmltv.php?{query()}")).body
    gz = await fetch(f"{relay.url}/epg/alice/alicepw/gz")
    assert gz.code == 200 and gz.header("content-type") == "application/gzip"
    assert gz.header("content-encoding") is None and gzip.decompress(gz.body) == xml.body
    by_query = await fetch(f"{relay.url}/xmltv.php?{query(gzip=1)}")
    assert gzip.decompress(by_query.body) == xml.body
    assert (await fetch(f"{relay.url}/epg/alice/alicepw/other")).code == 404
    assert (await fetch(f"{relay.url}/epg/alice/WRONG/gz")).code == 401


@pytest_twisted.ensureDeferred
async def test_get_php_keys(relay):
    """XUI's key=live,movie,series (radio_streams is live, vod is movie)."""
    whole = await fetch(f"{relay.url}/get.php?{query(type='m3u')}")
    count = lambda a: a.body.count(b"#EXTINF")  # noqa: E731
    live = await fetch(f"{relay.url}/get.php?{query(type='m3u', key='live')}")
    radio = await fetch(f"{relay.url}/get.php?{query(type='m3u', key='radio_streams')}")
    movies = await fetch(f"{relay.url}/get.php?{query(type='m3u', key='vod')}")
    series = await fetch(f"{relay.url}/get.php?{query(type='m3u', key='series')}")
    assert count(live) == count(radio) == len(relay.bundle["live_streams"])
    assert count(movies) == len(relay.bundle["vod_streams"])
    assert count(series) == len(relay.bundle["episodes"])
    assert count(live) + count(movies) + count(series) == count(whole)
    assert b"/movie/" in movies.body and b"/live/" not in movies.body


@pytest_twisted.ensureDeferred
async def test_unknown_paths_answer_404(relay):
    for path in ("/nothing", "/player_api", "/api/v1", "/asset/no/such/image.png"):
        a = await fetch(relay.url + path)
        assert a.code == 404, path
        assert len(a.body) < 200


@pytest_twisted.ensureDeferred
async def test_big_lists_are_kept_in_memory_or_streamed_from_their_template_files(tmp_path, monkeypatch):
    monkeypatch.setattr("xrelay.catalog.list_template.IN_MEMORY", 1000)
    monkeypatch.setattr("xrelay.api.player_api.DIRECT_FROM", 100)  # MemoryBody for these small lists
    relay = await start_relay(tmp_path, settings=DemoSettings(live=60, vod=40, series=5))
    try:
        assert relay.xr.api.answers.templates["live_streams"].data is None
        cache = relay.xr.api.answer_cache
        for kept in (True, False):
            if not kept:  # too big for the cache: streamed from the template file
                cache.budget = 100
                relay.xr.api.answers.adopt(relay.xr.api.answers.templates)
            for action, key in (("get_live_streams", "live_streams"), ("get_vod_streams", "vod_streams"),
                                ("get_series", "series")):
                plain = await api(relay.url, action=action)
                assert plain.code == 200 and plain.length == len(plain.body)
                again = await api(relay.url, action=action)  # from memory when kept
                assert (again.body, again.length) == (plain.body, plain.length)
                rows = plain.json()
                assert len(rows) == len(relay.bundle[key])
                assert b"@XRELAY" not in plain.body
                for _ in range(2):
                    zipped = await fetch(f"{relay.url}/player_api.php?{query(action=action)}",
                                         headers={"accept-encoding": "gzip"})
                    assert zipped.length == len(zipped.body) and gzip.decompress(zipped.body) == plain.body
                cat = rows[0]["category_id"]
                sliced = (await api(relay.url, action=action, category_id=cat)).json()
                assert sliced == [{**r, "category_id": str(cat)} for r in rows if int(cat) in r["category_ids"]]
                assert (await api(relay.url, action=action, limit=7)).json() == rows[:7]
            assert (cache.size > 0) == kept
            live = await api(relay.url, action="get_live_streams")
            head = await fetch(f"{relay.url}/player_api.php?{query(action='get_live_streams')}", method="HEAD")
            assert head.code == 200 and head.body == b""
            assert head.header("content-length") == str(len(live.body))
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_active_cons_counts_the_users_open_streams(tmp_path):
    import treq
    from twisted.internet import reactor
    from twisted.internet.protocol import Protocol

    relay = await start_relay(tmp_path, settings=DemoSettings(live=3, vod=2, series=1))
    try:
        if relay.xr.relay is None:
            pytest.skip("no live relay in this build")

        async def active(user: str, password: str) -> str:
            return (await api(relay.url, user, password)).json()["user_info"]["active_cons"]

        assert await active("alice", "alicepw") == "0"
        got_data: defer.Deferred[None] = defer.Deferred()

        class Reader(Protocol):
            def dataReceived(self, data: bytes) -> None:
                if not got_data.called:
                    got_data.callback(None)

        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        response = await treq.get(f"{relay.url}/live/alice/alicepw/{stream_id}.ts", unbuffered=True)
        assert response.code == 200
        reader = Reader()
        response.deliverBody(reader)
        await got_data
        assert await active("alice", "alicepw") == "1"
        assert await active("bob", "bobpw") == "0"
        reader.transport.stopProducing()
        for _ in range(200):  # bounded poll: the relay notices the disconnect on its own
            if await active("alice", "alicepw") == "0":
                break
            d = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        assert await active("alice", "alicepw") == "0"
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_logs_never_show_provider_secrets(relay):
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []
    observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
    # an address's first failure is logged: forget this module's earlier ones
    relay.xr.throttles.users.succeeded("127.0.0.1")
    globalLogPublisher.addObserver(observer)
    try:
        user, password, _ = relay.upstream_secrets
        for path in ("player_api.php", "get.php", "xmltv.php", "panel_api.php"):
            a = await fetch(f"{relay.url}/{path}?{query(user, password)}")
            assert a.code == 401
        await api(relay.url, action="get_vod_info", vod_id=relay.bundle["vod_streams"][1]["stream_id"])
    finally:
        globalLogPublisher.removeObserver(observer)
    assert any("refused" in line for line in lines)
    text = "\n".join(l for l in lines if "GET /" not in l)  # the access log is web.py's
    for secret in relay.upstream_secrets:
        assert secret not in text


@pytest_twisted.ensureDeferred
async def test_restart_serves_the_cached_catalog_at_once(tmp_path):
    first = await start_relay(tmp_path, settings=DemoSettings(live=12, vod=6, series=2))
    expected = (await api(first.url, action="get_live_streams")).body
    await first.stop()
    # same data directory, no ingest: the cached catalog loads at start-up, and
    # a request arriving meanwhile waits for it instead of getting []
    second = await start_relay(tmp_path, settings=DemoSettings(live=12, vod=6, series=2), ingest=False)
    try:
        a = await api(second.url, action="get_live_streams")
        assert a.code == 200 and json.loads(a.body) == json.loads(expected.replace(
            str(first.port).encode(), str(second.port).encode()))
        m3u = await fetch(f"{second.url}/get.php?{query()}")
        assert m3u.code == 200 and m3u.body.count(b"#EXTINF") == 12 + 6 + len(second.bundle["episodes"])
    finally:
        await second.stop()
