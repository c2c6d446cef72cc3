"""get.php, xmltv.php and /asset/ over real HTTP against the running daemon."""

from __future__ import annotations

import gzip
import re
from urllib.parse import quote
from xml.etree import ElementTree

import pytest_twisted
from twisted.internet import defer

from apiclient import fetch, query
from demo_helpers import wait_until, within
from harness import USERS, start_relay
from xrelay.core.config import UserConfig
from xrelay.provider.images import MAX_IMAGE
from xrelay.demo.provider import DemoSettings
from xrelay.catalog.m3u import parse_m3u

ODD_USER = UserConfig(username="ed ü", password="p@ss w/rd&x=1%", max_connections=1)


@pytest_twisted.async_yield_fixture(scope="module")
async def relay(tmp_path_factory):
    r = await start_relay(tmp_path_factory.mktemp("playlists"),
                          settings=DemoSettings(live=30, vod=20, series=4, quirky=True),
                          users=USERS + (ODD_USER,))
    yield r
    await r.stop()


def entries(body: bytes):
    return list(parse_m3u(body.decode("utf-8").splitlines()))


@pytest_twisted.ensureDeferred
async def test_m3u_plus_lists_everything_with_xrelay_urls(relay):
    bundle = relay.bundle
    a = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus', output='ts')}")
    assert a.code == 200
    assert a.length == len(a.body)
    assert a.header("content-type").startswith("audio/x-mpegurl")
    assert a.header("content-disposition") == 'attachment; filename="tv_channels_alice_plus.m3u"'
    assert (a.header("cache-control"), a.header("pragma"), a.header("expires")) == ("must-revalidate", "public", "0")
    first = a.body.split(b"\r\n", 1)[0].decode()
    guide = f"{relay.url}/xmltv.php?username=alice&password=alicepw"
    assert first == f'#EXTM3U url-tvg="{guide}" x-tvg-url="{guide}"'
    got = entries(a.body)
    live, vod, eps = bundle["live_streams"], bundle["vod_streams"], bundle["episodes"]
    assert len(got) == len(live) + len(vod) + len(eps) and eps
    for entry, row in zip(got, live):
        assert entry.url == f"{relay.url}/live/alice/alicepw/{row['stream_id']}.ts"
        assert entry.attrs["tvg-id"] == (row["epg_channel_id"] or "")
        assert entry.attrs["tvg-name"] == row["name"].replace('"', "'")
        assert entry.attrs["tvg-logo"] == row["stream_icon"].replace("@XRELAY_BASE@", relay.url)
        assert "group-title" in entry.attrs
        if row["tv_archive"]:
            days = str(row["tv_archive_duration"])
            assert (entry.attrs["timeshift"], entry.attrs["catchup"], entry.attrs["catchup-days"]) == (days, "xc", days)
        else:
            assert "timeshift" not in entry.attrs
    for entry, row in zip(got[len(live):], vod):
        assert entry.url == f"{relay.url}/movie/alice/alicepw/{row['stream_id']}.{row['container_extension']}"
        assert "tvg-id" not in entry.attrs
    for entry, row in zip(got[len(live) + len(vod):], eps):
        assert entry.url == f"{relay.url}/series/alice/alicepw/{row['id']}.{row['ext']}"
    assert b"@XRELAY" not in a.body
    assert all(line.endswith(b"\r") or not line for line in a.body.split(b"\n")[:-1])


@pytest_twisted.ensureDeferred
async def test_types_outputs_and_post(relay):
    live = relay.bundle["live_streams"]
    total = len(entries((await fetch(f"{relay.url}/get.php?{query()}")).body))
    for output, ext in (("ts", "ts"), ("mpegts", "ts"), ("m3u8", "m3u8"), ("hls", "m3u8"), ("", "ts"), ("rtmp", "ts")):
        for kind in ("m3u", "m3u_plus"):
            a = await fetch(f"{relay.url}/get.php?{query(type=kind, output=output)}")
            assert a.code == 200 and a.length == len(a.body)
            got = entries(a.body)
            assert len(got) == total
            assert got[0].url == f"{relay.url}/live/alice/alicepw/{live[0]['stream_id']}.{ext}"
            if kind == "m3u":
                assert all(e.attrs == {} for e in got)
                assert a.header("content-disposition").endswith('tv_channels_alice.m3u"')
    # IPTV Smarters: POST with an empty body
    a = await fetch(f"{relay.url}/get.php?{query(type='m3u_plus', output='ts')}", method="POST", body=b"")
    assert a.code == 200 and len(entries(a.body)) == total
    a = await fetch(f"{relay.url}/get.php", method="POST", body=query(type="m3u").encode(),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert a.code == 200 and len(entries(a.body)) == total
    # gzip when the client accepts it
    plain = await fetch(f"{relay.url}/get.php?{query()}")
    zipped = await fetch(f"{relay.url}/get.php?{query()}", headers={"accept-encoding": "gzip"})
    assert zipped.header("content-encoding") == "gzip"
    assert gzip.decompress(zipped.body) == plain.body and len(zipped.body) < len(plain.body)
    # XUI key= filter
    a = await fetch(f"{relay.url}/get.php?{query(key='live')}")
    assert len(entries(a.body)) == len(live)
    head = await fetch(f"{relay.url}/get.php?{query()}", method="HEAD")
    assert head.code == 200 and head.body == b""


@pytest_twisted.ensureDeferred
async def test_credentials_are_url_encoded(relay):
    a = await fetch(f"{relay.url}/get.php?{query(ODD_USER.username, ODD_USER.password)}")
    assert a.code == 200 and a.length == len(a.body)
    user, pw = quote(ODD_USER.username, safe=""), quote(ODD_USER.password, safe="")
    got = entries(a.body)
    assert got and all(f"/{user}/{pw}/" in e.url for e in got)
    assert f"username={user}&password={pw}" in a.body.split(b"\r\n", 1)[0].decode()
    assert a.header("content-disposition") == 'attachment; filename="tv_channels_ed_plus.m3u"'
    # the account object echoes them exactly as sent
    info = (await fetch(f"{relay.url}/player_api.php?{query(ODD_USER.username, ODD_USER.password)}")).json()
    assert (info["user_info"]["username"], info["user_info"]["password"]) == (ODD_USER.username, ODD_USER.password)


@pytest_twisted.ensureDeferred
async def test_xmltv_plain_and_gzip(relay):
    a = await fetch(f"{relay.url}/xmltv.php?{query()}")
    assert a.code == 200
    assert a.header("content-type") == "application/xml; charset=utf-8"
    assert a.length == len(a.body)
    assert b"@XRELAY" not in a.body
    root = ElementTree.fromstring(a.body)
    assert root.tag == "tv"
    channels = {c.get("id") for c in root.iter("channel")}
    assert {r["epg_channel_id"] for r in relay.bundle["live_streams"] if r["epg_channel_id"]} <= channels
    icons = [i.get("src") for i in root.iter("icon")]
    assert icons and all(src.startswith(f"{relay.url}/asset/") for src in icons)
    assert len(list(root.iter("programme"))) == relay.bundle["counts"]["programmes"]
    # gzip: compressed on the fly first, then from the cached .gz
    for _ in range(2):
        z = await fetch(f"{relay.url}/xmltv.php?{query()}", headers={"accept-encoding": "gzip"})
        assert z.header("content-encoding") == "gzip"
        assert gzip.decompress(z.body) == a.body
        await _wait_for_gz(relay)
    assert z.length == len(z.body)
    # another base URL gets its own URLs
    other = await fetch(f"{relay.url}/xmltv.php?{query()}", headers={"host": "tv.lan:9000"})
    assert b"http://tv.lan:9000/asset/" in other.body and relay.url.encode() not in other.body
    assert other.length == len(other.body)


async def _wait_for_gz(relay):
    await within(relay.xr.api.guide.gz_idle(), 30, what="the compressed guide file")


@pytest_twisted.ensureDeferred
async def test_asset_proxy(relay):
    live = next(r for r in relay.bundle["live_streams"] if r["stream_icon"])
    url = live["stream_icon"].replace("@XRELAY_BASE@", relay.url)
    assert url.startswith(f"{relay.url}/asset/")
    a = await fetch(url)
    assert a.code == 200
    assert a.header("content-type") == "image/png"
    assert a.body.startswith(b"\x89PNG")
    assert a.header("set-cookie") is None and a.header("location") is None
    for secret in relay.upstream_secrets:
        assert secret not in a.all_headers()
    # fetched once for every client
    fetched = relay.provider.stats.requests["image"]
    assert fetched >= 1
    # a path the catalog does not name is not asked of the provider
    for path in ("no/such/thing.png", "player_api.php", "images/%2e%2e/get.php",
                 url.split("/asset/", 1)[1] + "?x=1"):
        missing = await fetch(f"{relay.url}/asset/{path}")
        assert missing.code == 404 and len(missing.body) < 100
    assert relay.provider.stats.requests["image"] == fetched
    # a movie's backdrop is named by its details: served once they were
    movie = relay.bundle["vod_streams"][0]["stream_id"]
    backdrop = f"{relay.url}/asset/images/vod/{movie}_backdrop.jpg"
    assert (await fetch(backdrop)).code == 404
    info = (await fetch(f"{relay.url}/player_api.php?{query(action='get_vod_info', vod_id=movie)}")).json()
    assert info["info"]["backdrop_path"] == [backdrop]
    assert (await fetch(backdrop)).code == 200
    fetched = relay.provider.stats.requests["image"]
    # a path the client encodes differently is the same path
    encoded = url.replace(".png", "%2Epng")
    assert (await fetch(encoded)).body == a.body
    again = await fetch(url)
    assert again.body == a.body and relay.provider.stats.requests["image"] == fetched
    # concurrent requests for a new image share one provider fetch
    fresh = [r for r in relay.bundle["vod_streams"] if r["stream_icon"]][-1]
    fresh_url = fresh["stream_icon"].replace("@XRELAY_BASE@", relay.url)
    answers = await defer.gatherResults([defer.ensureDeferred(fetch(fresh_url)) for _ in range(5)])
    assert {x.code for x in answers} == {200}
    assert relay.provider.stats.requests["image"] == fetched + 1
    # the size cap
    other = next(r for r in relay.bundle["live_streams"][1:] if r["stream_icon"])
    relay.xr.image_fetcher.max_bytes = 100
    try:
        big = await fetch(other["stream_icon"].replace("@XRELAY_BASE@", relay.url))
        assert (big.code, big.body) == (502, b"image too large\n")
    finally:
        relay.xr.image_fetcher.max_bytes = MAX_IMAGE
    head = await fetch(url, method="HEAD")
    assert head.code == 200 and head.header("content-type") == "image/png"


@pytest_twisted.ensureDeferred
async def test_no_answer_leaks_provider_secrets(relay):
    bundle = relay.bundle
    live = bundle["live_streams"][0]["stream_id"]
    urls = [f"/player_api.php?{query(action=a)}" for a in (
        "", "get_live_categories", "get_vod_categories", "get_series_categories",
        "get_live_streams", "get_vod_streams", "get_series", "nonsense")]
    urls += [f"/player_api.php?{query(action='get_vod_info', vod_id=r['stream_id'])}" for r in bundle["vod_streams"]]
    urls += [f"/player_api.php?{query(action='get_series_info', series_id=r['series_id'])}" for r in bundle["series"]]
    urls += [f"/player_api.php?{query(action=a, stream_id=live)}" for a in ("get_short_epg", "get_simple_data_table")]
    urls += [f"/panel_api.php?{query()}", f"/get.php?{query()}", f"/get.php?{query(type='m3u', output='m3u8')}",
             f"/xmltv.php?{query()}", f"/player_api.php?{query(password='bad')}", "/nothing",
             f"/asset/{bundle['live_streams'][0]['stream_icon'].split('/asset/', 1)[1]}", "/asset/nope.png"]
    scanned = 0
    for url in urls:
        for headers in ({}, {"accept-encoding": "gzip"}):
            a = await fetch(relay.url + url, headers=headers)
            body = a.body
            if a.header("content-encoding") == "gzip":
                body = gzip.decompress(body)
            text = body.decode("utf-8", "replace") + "\n" + a.all_headers()
            for secret in relay.upstream_secrets:
                assert secret not in text, (url, secret)
            # (scrubber.leaks() would flag 127.0.0.1: xrelay shares the provider's host here)
            assert not re.search(r'"direct_source":"[^"]', text), url
            scanned += 1
    assert scanned == 2 * len(urls)


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_reading_pauses_the_stream(tmp_path, monkeypatch):
    """Over a real socket: a client that does not read stops the producer
    (bounded memory), and gets the complete body once it reads again."""
    import socket

    from twisted.internet import threads

    from xrelay.http import body as api_body

    monkeypatch.setattr(api_body, "CHUNK", 16 * 1024)
    bodies: list[api_body.ThreadedBody] = []
    original = api_body.ThreadedBody.start

    def recording(self):
        bodies.append(self)
        # a small kernel send buffer, so that the transport's own buffer fills
        self.request.channel.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        return original(self)

    monkeypatch.setattr(api_body.ThreadedBody, "start", recording)
    relay = await start_relay(tmp_path, settings=DemoSettings(live=1000, vod=1000, series=50))
    try:
        target = f"/get.php?{query()}"
        size = len((await fetch(relay.url + target)).body)
        bodies.clear()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", relay.port))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\nConnection: close\r\n\r\n".encode())
        # bounded poll: the transport pauses the producer, and says so to nobody
        await wait_until(lambda: bool(bodies) and bodies[0].paused, 10,
                         what="the transport pausing the producer")
        body = bodies[0]
        assert body.paused, ("the transport never paused the producer", body.sent, size, body.stopped)
        assert body.sent < size / 2, (body.sent, size)

        def read_all() -> bytes:
            chunks = []
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)

        sock.settimeout(30)  # a body that never ends fails the test, not the thread pool
        raw = await threads.deferToThread(read_all)
        sock.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert b"200 OK" in head.split(b"\r\n")[0]
        assert len(payload) == size
    finally:
        await relay.stop()
