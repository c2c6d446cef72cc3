"""Status clips from the real daemon: who gets one, who never does.

A player's live ``.ts`` request that xrelay cannot serve gets ``200
video/mp2t`` and a short looping clip saying why, for a bounded time; a
clip holds no provider slot.  HDHomeRun tuners, HLS, movies, series,
catch-up, ``Range`` requests and users with ``status_clips = false`` keep
the plain refusal.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from xrelay.app import XRelay
from xrelay.core.config import ConfigError, RelayConfig, UserConfig, parse_config
from xrelay.core.config import HdhrDevice
from xrelay.demo.provider import DemoProvider, DemoSettings
from xrelay.relay.clips import load_clips

from demo_helpers import within
from harness import USERS, make_config, start_relay
from streamclient import open_stream

#: erin does her own failover: no clips for her.
CLIPLESS = UserConfig(username="erin", password="erinpw", max_connections=2, status_clips=False)
FAST = RelayConfig(linger=0.3, silence_timeout=2.0, reconnect_bound=5.0, handover_pause=0.1)


def live_url(relay: Any, stream_id: int, user: str = "bob", password: str = "bobpw", ext: str = "ts") -> str:
    return f"{relay.url}/live/{user}/{password}/{stream_id}.{ext}"


async def hold_the_only_slot(relay: Any) -> tuple[int, Any]:
    """alice watches the first channel: the account's one connection is taken."""
    ids = sorted(relay.live_by_id)
    _, reader = await open_stream(live_url(relay, ids[0], "alice", "alicepw"))
    await reader.wait_bytes(10_000)
    return ids[1], reader


def ffprobe_frames(path: Path) -> dict[str, list[int]]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "frame=pts,media_type", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""
    pts: dict[str, list[int]] = {}
    for line in filter(None, result.stdout.splitlines()):
        kind, value = line.split(",")[:2]
        pts.setdefault(kind, []).append(int(value))
    return pts


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
@pytest_twisted.ensureDeferred
async def test_a_busy_player_gets_a_bounded_clip_that_decodes_across_loops(tmp_path: Path) -> None:
    period = load_clips()["busy"].duration
    seconds = 2.2 * period  # two wraps
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1),
                              relay=replace(FAST, status_clip_seconds=seconds))
    stats = relay.provider.stats
    try:
        other, holder = await hold_the_only_slot(relay)
        response, clip = await open_stream(live_url(relay, other), keep=4 * 1024 * 1024)
        assert response.code == 200 and response.headers.getRawHeaders("content-type") == ["video/mp2t"]
        await clip.wait_bytes(188)
        # A clip holds no provider slot and no stream of its user.
        assert relay.xr.slots.used == 1 and relay.xr.user_streams.count("bob") == 0
        assert relay.xr.clips.playing == 1 and relay.xr.clips.served["busy"] == 1
        await within(clip.ended, seconds + 20)  # it ends by itself
        assert stats.opened_total("live") == 1
        path = tmp_path / "busy.ts"
        path.write_bytes(bytes(clip.head))
        assert clip.received == len(clip.head)
        pts = ffprobe_frames(path)
        assert set(pts) == {"video", "audio"}
        for kind, values in pts.items():
            assert all(b > a for a, b in zip(values, values[1:])), f"{kind} timestamps go backwards"
        assert pts["video"][-1] - pts["video"][0] > 2 * period * 90_000 - 2 * 3600
        await holder.wait_more(10_000)  # alice never noticed
        holder.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_an_expired_account_gets_the_expired_clip(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    try:
        sid = sorted(relay.live_by_id)[0]
        for url in (live_url(relay, sid, "dave", "davepw"), f"{relay.url}/dave/davepw/{sid}"):
            response, clip = await open_stream(url)
            assert response.code == 200 and response.headers.getRawHeaders("content-type") == ["video/mp2t"]
            await clip.wait_bytes(188)
            clip.close()
            await clip.ended
        assert relay.xr.clips.served["expired"] == 2
        # the plain refusal: with Range, for HLS, a wrong password, an unknown channel, a movie
        movie = sorted(relay.vod_by_id)[0]
        for url, headers, code in (
                (live_url(relay, sid, "dave", "davepw"), {"Range": "bytes=0-"}, 403),
                (live_url(relay, sid, "dave", "davepw", "m3u8"), {}, 403),
                (live_url(relay, sid, "dave", "nope"), {}, 401),
                (live_url(relay, 999_999, "dave", "davepw"), {}, 403),
                (f"{relay.url}/movie/dave/davepw/{movie}.mp4", {}, 403)):
            response = await treq.get(url, headers=headers)
            assert response.code == code, url
            await response.content()
        assert relay.xr.clips.served["expired"] == 2
        assert relay.provider.stats.opened_total() == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_channel_the_provider_fails_gets_the_unavailable_clip(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST, users=USERS + (CLIPLESS,))
    try:
        relay.provider.faults.live = "refuse"
        sid = sorted(relay.live_by_id)[0]
        response, clip = await open_stream(live_url(relay, sid))
        assert response.code == 200 and response.headers.getRawHeaders("content-type") == ["video/mp2t"]
        await clip.wait_bytes(188)
        clip.close()
        assert relay.xr.clips.served["unavailable"] == 1
        # without clips: the plain 503
        response = await treq.get(live_url(relay, sid, "erin", "erinpw"))
        assert response.code == 503 and b"did not deliver" in await response.content()
        assert relay.xr.slots.used == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_never_a_clip_for_tuners_hls_files_catch_up_range_or_a_user_without_clips(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1), relay=FAST,
                              users=USERS + (CLIPLESS,), hdhr=(HdhrDevice("Tuner", "tuner-key-1"),))
    try:
        other, holder = await hold_the_only_slot(relay)
        archive = next(sid for sid, row in sorted(relay.live_by_id.items()) if row["tv_archive"])
        start = datetime.fromtimestamp(int(time.time()) // 60 * 60 - 1800, timezone.utc)
        movie = sorted(relay.vod_by_id)[0]
        episode = sorted(relay.episode_ids)[0]
        number = relay.bundle["live_streams"][1]["num"]
        refused = {
            "tuner": f"{relay.url}/hdhr/tuner-key-1/auto/v{number}",
            "hls": live_url(relay, other, ext="m3u8"),
            "movie": f"{relay.url}/movie/bob/bobpw/{movie}.{relay.vod_by_id[movie]['container_extension']}",
            "series": f"{relay.url}/series/bob/bobpw/{episode}.mp4",
            "catch-up": f"{relay.url}/timeshift/bob/bobpw/30/{start:%Y-%m-%d:%H-%M}/{archive}.ts",
            "clips off": live_url(relay, other, "erin", "erinpw"),
        }
        for form, url in refused.items():
            response = await treq.get(url)
            body = await response.content()
            assert response.code == 503, (form, response.code, body[:80])
            assert response.headers.getRawHeaders("content-type") != ["video/mp2t"], form
        response = await treq.get(live_url(relay, other), headers={"Range": "bytes=0-"})
        assert response.code == 503
        await response.content()
        assert sum(relay.xr.clips.served.values()) == 0
        holder.close()
    finally:
        await relay.stop()


def test_the_clip_settings_in_the_configuration(tmp_path: Path) -> None:
    document = {"upstream": {"url": "http://provider.example", "username": "pu", "password": "pp"},
                "relay": {"status_clip_seconds": 5, "status_clips_dir": str(tmp_path)},
                "users": [{"username": "tv", "password": "tvpw", "status_clips": False},
                          {"username": "tab", "password": "tabpw"}]}
    config = parse_config(document, "<test>", environ={})
    assert config.relay.status_clip_seconds == 5.0 and config.relay.status_clips_dir == tmp_path
    assert [u.status_clips for u in config.users] == [False, True]
    assert parse_config({"upstream": document["upstream"]}, "<test>", environ={}).relay.status_clips_dir is None


@pytest_twisted.ensureDeferred
async def test_a_broken_replacement_clip_stops_start_up_naming_it(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "busy.ts").write_bytes(b"\x47" + b"\x00" * 100)
    provider = DemoProvider(reactor, DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    try:
        config = make_config(tmp_path / "data", provider,
                             relay=RelayConfig(status_clips_dir=clips))
        with pytest.raises(ConfigError, match=r"relay.status_clips_dir: .*busy.ts: not whole 188-byte"):
            XRelay(reactor, config)
    finally:
        await provider.stop()
