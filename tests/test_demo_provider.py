"""The demo provider's catalog endpoints over a real loopback socket."""

from __future__ import annotations

import base64
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThread

from xrelay.demo.provider import DemoProvider

from demo_helpers import start_provider, within

USER, PASS = "provider-user", "provider-pass"


@pytest_twisted.async_yield_fixture
async def provider() -> AsyncIterator[DemoProvider]:
    p = await start_provider(reactor, live=30, vod=20, series=3, seasons=2, episodes=3)
    yield p
    await p.stop()


async def api(p: DemoProvider, action: str = "", user: str = USER, **params: Any) -> Any:
    query = {"username": user, "password": PASS, **params}
    if action:
        query["action"] = action
    response = await treq.get(f"{p.url}/player_api.php", params=query)
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    return json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_account_info(provider: DemoProvider) -> None:
    info = await api(provider)
    user, server = info["user_info"], info["server_info"]
    assert user["auth"] == 1 and user["status"] == "Active"
    assert user["username"] == USER and user["password"] == PASS
    assert user["max_connections"] == "2" and user["active_cons"] == "0"
    assert user["exp_date"].isdigit()
    assert server["url"] == "127.0.0.1" and server["port"] == str(provider.port)
    assert server["timezone"] == "Europe/London" and server["server_protocol"] == "http"
    assert isinstance(server["timestamp_now"], int)
    datetime.strptime(server["time_now"], "%Y-%m-%d %H:%M:%S")
    assert await api(provider, "get_account_info") == await api(provider, "no_such_action")


@pytest_twisted.ensureDeferred
async def test_wrong_credentials_everywhere(provider: DemoProvider) -> None:
    assert await api(provider, user="intruder") == {"user_info": {"auth": 0}}
    bad = f"username={USER}&password=wrong"
    expected = {
        f"/get.php?{bad}&type=m3u_plus&output=ts": 404,
        f"/xmltv.php?{bad}": 401,
        f"/live/{USER}/wrong/1.ts": 401,
        f"/{USER}/wrong/1": 401,
        f"/live/{USER}/wrong/1.m3u8": 401,
        f"/movie/{USER}/wrong/31.mp4": 401,
        f"/timeshift/{USER}/wrong/60/2025-01-01:10-00/1.ts": 401,
        f"/streaming/timeshift.php?{bad}&stream=1&start=2025-01-01:10-00&duration=60": 401,
    }
    for path, code in expected.items():
        response = await treq.get(provider.url + path)
        await response.content()
        assert response.code == code, path
    assert provider.stats.requests["unauthorized"] == len(expected) + 1
    assert provider.stats.opened_total() == 0


@pytest_twisted.ensureDeferred
async def test_post_and_numeric_aliases(provider: DemoProvider) -> None:
    response = await treq.post(
        f"{provider.url}/player_api.php",
        data={"username": USER, "password": PASS, "action": "get_live_categories"},
    )
    assert response.code == 200
    cats = json.loads(await response.content())
    assert cats == await api(provider, "201")
    assert cats[0] == {"category_id": "1", "category_name": "UK | News", "parent_id": 0}


@pytest_twisted.ensureDeferred
async def test_lists_and_filters(provider: DemoProvider) -> None:
    live = await api(provider, "get_live_streams")
    assert len(live) == 30 and [r["stream_id"] for r in live] == list(range(1, 31))
    assert {r["stream_icon"].split("/images/")[0] for r in live} == {provider.url}
    vod = await api(provider, "get_vod_streams")
    assert len(vod) == 20 and all(isinstance(r["stream_id"], int) for r in vod)
    assert {r["container_extension"] for r in vod} == {"mp4", "mkv", "ts"}
    series = await api(provider, "get_series")
    assert [r["series_id"] for r in series] == [1, 2, 3]
    for kind in ("live", "vod", "series"):
        cats = await api(provider, f"get_{kind}_categories")
        assert all(c["category_id"].isdigit() for c in cats)
    vod_cat = vod[0]["category_id"]
    filtered = await api(provider, "get_vod_streams", category_id=vod_cat)
    assert filtered and all(r["category_id"] == vod_cat for r in filtered)


@pytest_twisted.ensureDeferred
async def test_details(provider: DemoProvider) -> None:
    movie = await api(provider, "get_vod_info", vod_id="31")
    assert movie["movie_data"]["stream_id"] == 31
    assert isinstance(movie["info"], dict) and movie["info"]["duration_secs"] > 0
    assert await api(provider, "get_vod_info", vod_id="9999") == {"info": []}
    series = await api(provider, "get_series_info", series_id="2")
    assert list(series["episodes"]) == ["1", "2"]
    assert [s["season_number"] for s in series["seasons"]] == [1, 2]
    assert len(series["episodes"]["2"]) == 3
    assert await api(provider, "get_series_info", series_id="77") == []


@pytest_twisted.ensureDeferred
async def test_epg_actions(provider: DemoProvider) -> None:
    tz = ZoneInfo("Europe/London")
    short = (await api(provider, "get_short_epg", stream_id="1"))["epg_listings"]
    assert len(short) == 4
    now = reactor.seconds()
    assert int(short[0]["start_timestamp"]) <= now < int(short[0]["stop_timestamp"])
    for row in short:
        base64.b64decode(row["title"], validate=True).decode()
        local = datetime.fromtimestamp(int(row["start_timestamp"]), tz)
        assert row["start"] == local.strftime("%Y-%m-%d %H:%M:%S")
        assert row["channel_id"] == "ch1.demo"
    assert len((await api(provider, "get_short_epg", stream_id="1", limit="2"))["epg_listings"]) == 2
    table = (await api(provider, "get_simple_data_table", stream_id="1"))["epg_listings"]
    assert len(table) > 4 and sum(r["now_playing"] for r in table) == 1
    assert any(r["has_archive"] == 1 for r in table)  # channel 1 has catch-up
    assert (await api(provider, "get_short_epg", stream_id="999")) == {"epg_listings": []}


@pytest_twisted.ensureDeferred
async def test_m3u_playlist(provider: DemoProvider) -> None:
    response = await treq.get(f"{provider.url}/get.php",
                              params={"username": USER, "password": PASS,
                                      "type": "m3u_plus", "output": "ts"})
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/octet-stream"]
    text = (await response.content()).decode()
    assert text.startswith("#EXTM3U\r\n")
    lines = text.split("\r\n")[1:-1]
    urls = lines[1::2]
    assert len(urls) == 30 + 20 + 3 * 2 * 3
    assert urls[0] == f"{provider.url}/live/{USER}/{PASS}/1.ts"
    assert lines[0].startswith('#EXTINF:-1 timeshift="7" tvg-id="ch1.demo"')
    assert sum("/movie/" in u for u in urls) == 20 and sum("/series/" in u for u in urls) == 18
    assert any(" S01E01" in line for line in lines[::2])


@pytest_twisted.ensureDeferred
async def test_xmltv_matches_epg_channel_ids(provider: DemoProvider) -> None:
    response = await treq.get(f"{provider.url}/xmltv.php",
                              params={"username": USER, "password": PASS})
    assert response.code == 200
    root = ElementTree.fromstring(await response.content())
    channel_ids = [c.get("id") for c in root.iter("channel")]
    live = await api(provider, "get_live_streams")
    assert set(channel_ids) == {r["epg_channel_id"] for r in live}
    programmes = list(root.iter("programme"))
    assert len(programmes) == 30 * 25  # 12 hours of half-hour programmes, both ends
    assert programmes[0].get("start", "").endswith((" +0000", " +0100"))


@pytest_twisted.ensureDeferred
async def test_images_are_png(provider: DemoProvider) -> None:
    live = await api(provider, "get_live_streams")
    response = await treq.get(live[0]["stream_icon"])
    assert response.code == 200
    assert (await response.content()).startswith(b"\x89PNG\r\n\x1a\n")


@pytest_twisted.ensureDeferred
async def test_big_list_is_streamed_whole() -> None:
    p = await start_provider(reactor, live=20_000)
    try:
        rows = await api(p, "get_live_streams")
        assert len(rows) == 20_000 and rows[-1]["num"] == 20_000
        assert p.stats.requests["player_api:get_live_streams"] == 1
    finally:
        await p.stop()


@pytest_twisted.ensureDeferred
async def test_service_listens_then_stops() -> None:
    from xrelay.demo import DemoProviderService

    service = DemoProviderService(DemoProvider(reactor))
    service.startService()
    p = await service.ready
    assert (await api(p))["user_info"]["auth"] == 1
    url = p.url
    await service.stopService()
    with pytest.raises(ConnectionRefusedError):
        await treq.get(f"{url}/player_api.php", timeout=2)


class _FirstLine(ProcessProtocol):
    def __init__(self) -> None:
        self.line: Deferred[str] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.out = b""

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if b"\n" in self.out and not self.line.called:
            self.line.callback(self.out.split(b"\n", 1)[0].decode())

    def processEnded(self, reason: Any) -> None:
        if not self.line.called:
            self.line.errback(reason)
        self.ended.callback(None)


@pytest_twisted.ensureDeferred
async def test_cli_runs_a_provider() -> None:
    from xrelay.demo.__main__ import parse_args

    args = parse_args(["--live", "7", "--bitrate", "8e6", "--max-connections", "0"])
    assert (args.live, args.bitrate, args.max_connections) == (7, 8e6, 0)
    proto = _FirstLine()
    process = reactor.spawnProcess(
        proto, sys.executable,
        [sys.executable, "-m", "xrelay.demo", "--listen", "tcp:0:interface=127.0.0.1",
         "--live", "5"],
        env=dict(os.environ), path=str(Path(__file__).resolve().parent.parent),
    )
    try:
        line = await within(proto.line)
        assert line.startswith("demo provider at http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        response = await treq.get(f"{url}/player_api.php",
                                  params={"username": USER, "password": PASS,
                                          "action": "get_live_streams"})
        assert len(json.loads(await response.content())) == 5
    finally:
        process.signalProcess("TERM")
        await within(proto.ended)


@pytest_twisted.ensureDeferred
async def test_quirky_provider_serves_every_endpoint() -> None:
    p = await start_provider(reactor, live=40, vod=20, series=3, quirky=True)
    try:
        info = await api(p)
        assert info["user_info"]["exp_date"] is None
        assert isinstance(info["server_info"]["port"], int)
        live = await api(p, "get_live_streams")
        assert {r["stream_type"] for r in live} >= {"created_live", "radio_streams"}
        assert any(r["direct_source"].startswith(f"{p.url}/live/{USER}/{PASS}/") for r in live)
        assert any(r["epg_channel_id"] is None for r in live)
        assert isinstance((await api(p, "get_series_info", series_id="1"))["episodes"], list)
        for action in ("get_vod_streams", "get_series", "get_vod_categories"):
            assert await api(p, action)
        response = await treq.get(f"{p.url}/get.php", params={"username": USER, "password": PASS})
        text = (await response.content()).decode()
        assert 'tvg-ID="' in text and text.count("\r\n#EXTINF") == 40 + 20 + 3 * 2 * 4
        response = await treq.get(f"{p.url}/xmltv.php", params={"username": USER, "password": PASS})
        root = ElementTree.fromstring(await response.content())
        ids = {r["epg_channel_id"] for r in live} - {None}
        assert {c.get("id") for c in root.iter("channel")} == ids
    finally:
        await p.stop()


@pytest_twisted.ensureDeferred
async def test_pyxtream_loads_the_demo_catalog(tmp_path: Path) -> None:
    """A real client library (blocking, so in a thread) accepts the field types."""
    pyxtream = pytest.importorskip("pyxtream")
    p = await start_provider(reactor, live=12, vod=8, series=2)

    def load() -> tuple[int, int, int, int]:
        client = pyxtream.XTream("demo", USER, PASS, p.url, cache_path=str(tmp_path),
                                 reload_time_sec=1)
        client.load_iptv()
        series = client.series[0]
        client.get_series_info_by_id(series)
        episodes = sum(len(season.episodes) for season in series.seasons.values())
        return len(client.channels), len(client.movies), len(client.series), episodes

    try:
        assert await deferToThread(load) == (12, 8, 2, 2 * 4)
    finally:
        await p.stop()
