"""/admin over real sockets: login, live view, ingest now, disconnect, CSRF."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest_twisted
import treq

from xrelay.demo.provider import DemoSettings
from harness import ADMIN, start_relay
from streamclient import open_stream, wait_until
from xrelay.ops.admin import AdminPage, _e

AUTH = (ADMIN.username, ADMIN.password)


async def get(relay: Any, path: str, **kw: Any) -> tuple[int, bytes, Any]:
    response = await treq.get(relay.url + path, **kw)
    return response.code, await response.content(), response


async def post(relay: Any, path: str, token: str | None, data: dict[str, str] | None = None,
               headers: dict[bytes, list[bytes]] | None = None) -> tuple[int, bytes]:
    h = dict(headers or {})
    if token is not None:
        h[b"x-xrelay-token"] = [token.encode()]
    response = await treq.post(relay.url + path, data=data or {}, headers=h, auth=AUTH)
    return response.code, await response.content()


def page_token(page: bytes) -> str:
    match = re.search(rb'<meta name="xrelay-token" content="([^"]+)">', page)
    assert match
    return match.group(1).decode()


@pytest_twisted.ensureDeferred
async def test_every_admin_path_needs_the_login(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        for path in ("/admin", "/admin/", "/admin/live", "/admin/state.json", "/admin/static/admin.js"):
            code, _, response = await get(relay, path)
            assert code == 401, path
            assert response.headers.getRawHeaders(b"www-authenticate")
        response = await treq.post(relay.url + "/admin/ingest")
        assert response.code == 401
        await response.content()
        code, _, _ = await get(relay, "/admin", auth=("admin", "wrong"))
        assert code == 401
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_page_shows_channel_viewer_and_ingests(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        row = relay.bundle["live_streams"][0]
        response, reader = await open_stream(f"{relay.url}/live/alice/alicepw/{row['stream_id']}.ts")
        await reader.wait_bytes(188 * 50)
        code, slash, _ = await get(relay, "/admin/", auth=AUTH)
        assert code == 200 and b"<title>xrelay admin</title>" in slash
        code, page, response = await get(relay, "/admin", auth=AUTH)
        assert code == 200
        assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/html")
        assert response.headers.getRawHeaders(b"x-frame-options") == [b"DENY"]
        text = page.decode()
        assert _e(row["name"]) in text
        assert '<td data-label="User">alice</td>' in text
        assert '<td data-label="Address">127.0.0.1</td>' in text
        assert 'data-action="disconnect"' in text and 'data-action="ingest"' in text
        assert '<td data-label="Trigger">test</td>' in text
        assert 'name="viewport"' in text
        for secret in relay.upstream_secrets:
            assert secret not in text
        code, live, _ = await get(relay, "/admin/live", auth=AUTH)
        assert code == 200 and b"alice" in live and b"<html" not in live
        code, body, _ = await get(relay, "/admin/state.json", auth=AUTH)
        state = json.loads(body)
        channel = state["relay"]["channels"][0]
        assert channel["stream_id"] == row["stream_id"]
        assert channel["viewers"][0]["user"] == "alice"
        assert channel["viewers"][0]["id"].startswith("v")
        assert state["ingest"]["history"][0]["trigger"] == "test"
        for secret in relay.upstream_secrets:  # (the demo's host is loopback, as are the viewers)
            assert secret.encode() not in body
        for name in ("admin.js", "admin.css"):
            code, _, _ = await get(relay, "/admin/static/" + name, auth=AUTH)
            assert code == 200
        reader.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_posts_need_the_page_token_and_same_origin(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        calls: list[str] = []
        relay.xr.admin.trigger_ingest = lambda why: calls.append(why) or __import__(
            "twisted.internet.defer", fromlist=["succeed"]).succeed(None)
        _, page, _ = await get(relay, "/admin", auth=AUTH)
        token = page_token(page)
        assert (await post(relay, "/admin/ingest", None))[0] == 403
        assert (await post(relay, "/admin/ingest", "forged"))[0] == 403
        evil = {b"origin": [b"http://evil.example"]}
        assert (await post(relay, "/admin/ingest", token, headers=evil))[0] == 403
        assert calls == []
        same = {b"origin": [relay.url.encode()]}
        code, body = await post(relay, "/admin/ingest", token, headers=same)
        assert code == 202 and json.loads(body)["ok"]
        assert calls == ["admin"]
        code, _, _ = await get(relay, "/admin/ingest", auth=AUTH)
        assert code == 405  # a GET never acts
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_ingest_now_runs_an_ingest(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        _, page, _ = await get(relay, "/admin", auth=AUTH)
        code, body = await post(relay, "/admin/ingest", page_token(page))
        assert code == 202
        overview = relay.xr.admin.overview
        await wait_until(lambda: (overview.last_ingest() or {}).get("trigger") == "admin")
        _, live, _ = await get(relay, "/admin/live", auth=AUTH)
        assert b'<td data-label="Trigger">admin</td>' in live
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_disconnect_a_viewer(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        _, alice = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
        _, bob = await open_stream(f"{relay.url}/live/bob/bobpw/{stream_id}.ts")
        await alice.wait_bytes(188 * 10)
        await bob.wait_bytes(188 * 10)
        _, page, _ = await get(relay, "/admin", auth=AUTH)
        state = relay.xr.admin.overview.state()
        ids = {v["user"]: v["id"] for v in state["relay"]["channels"][0]["viewers"]}
        code, body = await post(relay, "/admin/disconnect", page_token(page), {"id": ids["bob"]})
        assert code == 200, body
        await bob.ended  # bob's stream ends cleanly
        await alice.wait_more(188 * 10)  # alice keeps watching
        code, body = await post(relay, "/admin/disconnect", page_token(page), {"id": ids["bob"]})
        assert code == 404
        alice.close()
    finally:
        await relay.stop()


def test_names_are_escaped() -> None:
    class FakeOverview:
        def state(self) -> dict[str, Any]:
            return {"uptime": 5, "relay": {"slots": {"used": 1, "allowed": 2}, "viewers": 1, "channels": [{
                "stream_id": 7, "name": "<script>alert(1)</script>", "state": "streaming",
                "upstream": {"bytes": 10, "bitrate_bps": 4e6},
                "viewers": [{"user": "<b>x</b>", "address": "10.0.0.2", "seconds": 75, "bytes": 3e6,
                             "rate_bps": 3.9e6, "id": "v1\"><img>"}]}]},
                "ingest": {"running": True, "cache_age": 3700, "catalog": {"live_streams": 3},
                           "history": [{"ok": False, "started": 0, "trigger": "SIGHUP", "duration": 2.5,
                                        "reason": "<i>provider</i> said no"}]}}

    html = AdminPage(FakeOverview(), lambda why: None).live()  # type: ignore[arg-type]
    assert "<script>" not in html and "<b>" not in html and "<img>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html
    assert "1 min 15 s" in html and "3.9 Mbit/s" in html and "Ingest running" in html


@pytest_twisted.ensureDeferred
async def test_movies_are_listed_and_can_be_disconnected(tmp_path: Path) -> None:
    # paced, so the movie is still playing when the page is read (unpaced, the
    # 4 MB file could be read to its end before the page was asked for)
    relay = await start_relay(tmp_path, settings=DemoSettings(vod_bitrate_bps=4_000_000))
    try:
        movie = relay.bundle["vod_streams"][0]
        ext = movie.get("container_extension") or "mp4"
        response, reader = await open_stream(f"{relay.url}/movie/bob/bobpw/{movie['stream_id']}.{ext}")
        assert response.code == 200
        await reader.wait_bytes(64 * 1024)
        _, page, _ = await get(relay, "/admin", auth=AUTH)
        assert b'<tr class="file">' in page and b'<td data-label="User">bob</td>' in page
        files = relay.xr.admin.overview.state()["media"]["files"]
        assert files[0]["user"] == "bob"
        code, body = await post(relay, "/admin/disconnect", page_token(page), {"id": files[0]["id"]})
        assert code == 200, body
        await reader.ended
    finally:
        await relay.stop()


def test_long_viewer_lists_are_cut() -> None:
    viewer = {"user": "u", "address": "10.0.0.9", "seconds": 5, "bytes": 1, "id": "v1"}

    class FakeOverview:
        def state(self) -> dict[str, Any]:
            return {"uptime": 1, "relay": {"slots": {}, "viewers": 150, "channels": [
                {"stream_id": 1, "name": "busy", "state": "streaming", "upstream": {},
                 "viewers": [viewer] * 150}]},
                "ingest": {"running": False, "cache_age": None, "catalog": {}, "history": []}}

    html = AdminPage(FakeOverview(), lambda why: None).live()  # type: ignore[arg-type]
    assert html.count('<tr class="viewer">') == 100
    assert "and 50 more viewers" in html
