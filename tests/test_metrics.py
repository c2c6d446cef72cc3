"""/metrics: Prometheus text, live figures read at scrape time (xrelay.ops.metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families

from harness import ADMIN, start_relay
from streamclient import open_stream, wait_until
from xrelay.core.config import RelayConfig
from xrelay.demo.provider import DemoSettings
from xrelay.ops.metrics import endpoint_of

AUTH = (ADMIN.username, ADMIN.password)


@pytest.mark.parametrize("path,endpoint", [
    (b"/player_api.php", "player_api"),
    (b"/get.php", "get_php"),
    (b"/live/alice/secret/12.ts", "live"),
    (b"/live/alice/secret/12.m3u8", "hls"),
    (b"/alice/secret/12", "live"),
    (b"/movie/alice/secret/3.mp4", "movie"),
    (b"/timeshift/a/b/60/2024-01-01:10-00/3.ts", "timeshift"),
    (b"/streaming/timeshift.php", "timeshift"),
    (b"/hls/abc/1.ts", "hls"),
    (b"/admin/state.json", "admin"),
    (b"/", "index"),
    (b"/wp-login.php", "other"),
])
def test_endpoint_names_come_from_routes_never_from_urls(path: bytes, endpoint: str) -> None:
    assert endpoint_of(path) == endpoint


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name, tuple(sorted(labels.items()))]


async def scrape(relay: Any) -> tuple[str, dict]:
    response = await treq.get(relay.url + "/metrics", auth=AUTH)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4")
    text = (await response.content()).decode()
    return text, samples(text)


@pytest_twisted.ensureDeferred
async def test_metrics_need_the_admin_login(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        response = await treq.get(relay.url + "/metrics")
        assert response.code == 401
        assert response.headers.getRawHeaders(b"www-authenticate")
        await response.content()
        response = await treq.get(relay.url + "/metrics", auth=("admin", "nope"))
        assert response.code == 401
        await response.content()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_live_figures(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=RelayConfig(linger=0))
    try:
        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        _, before = await scrape(relay)
        assert value(before, "xrelay_viewers") == 0
        assert value(before, "xrelay_ingests_total", outcome="ok", trigger="test") == 1
        assert value(before, "xrelay_ingest_last_ok") == 1
        assert value(before, "xrelay_catalog_items", kind="live_streams") > 0
        assert 0 <= value(before, "xrelay_catalog_age_seconds") < 60

        response, reader = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
        assert response.code == 200
        await reader.wait_bytes(188 * 100)
        api = await treq.get(relay.url + "/player_api.php?username=alice&password=alicepw"
                             "&action=get_live_categories")
        await api.content()
        bad = await treq.get(f"{relay.url}/live/alice/wrongpw/{stream_id}.ts")
        assert bad.code == 401
        await bad.content()

        text, now = await scrape(relay)
        assert value(now, "xrelay_viewers") == 1
        assert value(now, "xrelay_channels") == 1
        assert value(now, "xrelay_channel_viewers", stream_id=str(stream_id)) == 1
        assert value(now, "xrelay_user_streams", user="alice") == 1
        assert value(now, "xrelay_user_streams", user="bob") == 0
        assert value(now, "xrelay_users") == 4
        assert value(now, "xrelay_upstream_slots_used") == 1
        assert value(now, "xrelay_upstream_slots_allowed") >= 1
        bytes_in = value(now, "xrelay_upstream_bytes_total")
        assert bytes_in > 0
        assert value(now, "xrelay_http_requests_total", endpoint="live", code="401") == 1
        assert value(now, "xrelay_http_refused_total", endpoint="live", reason="unauthorized") == 1
        assert value(now, "xrelay_http_requests_total", endpoint="player_api", code=str(api.code)) == 1
        assert value(now, "xrelay_api_calls_total", action="get_live_categories") == 1
        assert value(now, "xrelay_http_response_start_seconds_count", endpoint="player_api") == 1
        # the open stream counts at once, before it ends
        assert value(now, "xrelay_http_response_start_seconds_count", endpoint="live") == 2
        assert value(now, "xrelay_http_open_requests") >= 2  # the stream and this scrape
        sent = value(now, "xrelay_http_response_bytes_total", endpoint="live")
        assert sent >= 188 * 100
        for name in ("xrelay_evictions_total", "xrelay_upstream_reconnects_total",
                     "xrelay_upstream_handovers_total"):
            assert value(now, name) == 0
        assert value(now, "xrelay_refused_total", reason="provider_slots") == 0
        for secret in relay.upstream_secrets:
            assert secret not in text
        assert "alicepw" not in text and "wrongpw" not in text

        reader.close()
        await wait_until(lambda: not relay.xr.relay.channels)  # closed, no linger
        _, after = await scrape(relay)
        assert value(after, "xrelay_viewers") == 0
        assert value(after, "xrelay_upstream_bytes_total") >= bytes_in
        # bytes of a finished stream stay counted (a counter never goes down)
        assert value(after, "xrelay_http_response_bytes_total", endpoint="live") >= sent
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_refused_for_lack_of_provider_slots(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        # the demo account allows more: hold the pool at one slot
        relay.xr.relay.slots.set_capacity(1)
        relay.xr.relay.refresh_capacity = lambda: None
        ids = [row["stream_id"] for row in relay.bundle["live_streams"][:2]]
        _, first = await open_stream(f"{relay.url}/live/alice/alicepw/{ids[0]}.ts")
        await first.wait_bytes(188)
        # A request with Range gets the bare 503, a player the "busy" status clip.
        response = await treq.get(f"{relay.url}/live/bob/bobpw/{ids[1]}.ts", headers={"Range": "bytes=0-"})
        assert response.code == 503
        await response.content()
        response, clip = await open_stream(f"{relay.url}/live/bob/bobpw/{ids[1]}.ts")
        assert response.code == 200
        await clip.wait_bytes(188)
        _, now = await scrape(relay)
        assert value(now, "xrelay_refused_total", reason="provider_slots") == 2
        assert value(now, "xrelay_http_refused_total", endpoint="live", reason="unavailable") == 1
        assert value(now, "xrelay_status_clips_total", reason="busy") == 1
        assert value(now, "xrelay_status_clips_total", reason="expired") == 0
        assert value(now, "xrelay_status_clips_playing") == 1
        clip.close()
        first.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_movies_being_watched(tmp_path: Path) -> None:
    # paced: an unpaced movie can end before the scrape
    relay = await start_relay(tmp_path, settings=DemoSettings(vod_bitrate_bps=4_000_000))
    try:
        movie = relay.bundle["vod_streams"][0]
        ext = movie.get("container_extension") or "mp4"
        response, reader = await open_stream(f"{relay.url}/movie/alice/alicepw/{movie['stream_id']}.{ext}")
        assert response.code == 200
        await reader.wait_bytes(64 * 1024)
        _, now = await scrape(relay)
        assert value(now, "xrelay_file_streams") == 1
        assert value(now, "xrelay_file_stream_bytes_open") > 0
        assert value(now, "xrelay_upstream_slots_used") == 1
        reader.close()
    finally:
        await relay.stop()
