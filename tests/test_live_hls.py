"""A live channel's own HLS over real loopback sockets, against the demo
provider: one provider connection per channel whatever format each viewer
asks for, HLS sessions as viewers, providers that serve HLS only."""

from __future__ import annotations

import json
import shutil
import time
from base64 import b64encode
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor, utils
from twisted.internet.task import deferLater

from xrelay.core.config import RelayConfig, UserConfig
from xrelay.demo import hls as demo_hls
from xrelay.demo.provider import DemoSettings
from xrelay.relay.mpegts import PACKET_SIZE, AccessPointScanner, is_aligned, packet_pid

from harness import USERS, start_relay
from hls_player import Playlist, path_of, playlist, segment
from media_helpers import LogCapture, assert_no_secrets, raw_request
from demo_helpers import within
from streamclient import open_stream, wait_until

FAST = RelayConfig(linger=0.3, silence_timeout=2.0, reconnect_bound=5.0, handover_pause=0.1,
                   hls_segment=2.0)
ONE = DemoSettings(max_connections=1)
ADMIN = {"Authorization": "Basic " + b64encode(b"admin:adminpw").decode()}


def ts_url(relay: Any, stream_id: int, user: str = "alice", password: str = "alicepw") -> str:
    return f"{relay.url}/live/{user}/{password}/{stream_id}.ts"


async def status(relay: Any) -> dict[str, Any]:
    answer = await raw_request(relay.port, "/status", headers=ADMIN)
    return json.loads(answer.body)


def channel_row(snapshot: dict[str, Any], stream_id: int) -> dict[str, Any]:
    rows = [c for c in snapshot["channels"] if c["stream_id"] == stream_id]
    assert rows, snapshot
    return rows[0]


def whole_packets(data: bytes | bytearray) -> bytes:
    """The whole packets at the start of what a reader kept."""
    assert len(data) >= PACKET_SIZE
    return bytes(data[: len(data) // PACKET_SIZE * PACKET_SIZE])


def assert_decodable_start(data: bytes) -> None:
    """A segment starts with a PAT, then a PMT and a keyframe, in whole packets."""
    assert is_aligned(data) and packet_pid(data) == 0
    points = AccessPointScanner().scan(data, 0)
    assert any(p.offset == 0 and p.keyframe for p in points), points[:3]


@pytest_twisted.ensureDeferred
async def test_ts_and_hls_viewers_of_one_channel_share_one_provider_connection(tmp_path: Path) -> None:
    """The issue's scenario: a TV plays 1.ts, a phone of another user opens
    1.m3u8, on an account with one connection; then a second HLS user."""
    relay = await start_relay(tmp_path, settings=ONE, relay=FAST)
    stats = relay.provider.stats
    logs = LogCapture().__enter__()
    try:
        response, tv = await open_stream(ts_url(relay, 1))
        assert response.code == 200
        await tv.wait_bytes(100_000)
        phone = await playlist(relay.port, "bob", "bobpw", 1)
        assert phone.status == 200, phone.text
        assert phone.headers[b"content-type"] == b"application/vnd.apple.mpegurl"
        assert phone.headers[b"cache-control"] == b"no-cache"
        assert phone.entries and all(e.url.startswith(f"{relay.url}/hls/bob/") for e in phone.entries)
        assert all("bobpw" not in e.url for e in phone.entries)
        first = await segment(relay.port, phone.entries[-1])
        assert first.status == 200 and first.headers[b"content-type"] == b"video/mp2t"
        assert int(first.headers[b"content-length"]) == len(first.body)
        assert_decodable_start(first.body)
        await tv.wait_more(100_000)  # the TV plays on
        # Two formats, one provider connection, two viewers of one channel.
        assert stats.opened_total("live") == 1 and stats.open_count() == 1 and stats.kicked == 0
        row = channel_row(await status(relay), 1)
        assert sorted(v["format"] for v in row["viewers"]) == ["hls", "ts"]
        assert row["upstream"]["format"] == "ts" and row["hls"]["segments"] >= 1
        # Then two HLS viewers of two users: still one connection.
        tv.close()
        await tv.ended
        laptop = await playlist(relay.port, "alice", "alicepw", 1)
        assert laptop.status == 200 and laptop.entries
        assert (await segment(relay.port, laptop.entries[-1])).status == 200
        again = await playlist(relay.port, "bob", "bobpw", 1)
        assert again.status == 200 and again.media_sequence >= phone.media_sequence
        row = channel_row(await status(relay), 1)
        assert sorted((v["user"], v["format"]) for v in row["viewers"]) == [("alice", "hls"), ("bob", "hls")]
        assert stats.opened_total("live") == 1 and stats.open_count() == 1 and stats.kicked == 0
        assert relay.xr.slots.used == 1
        metrics = (await raw_request(relay.port, "/metrics", headers=ADMIN)).body.decode()
        assert "xrelay_viewers 2.0" in metrics
        assert_no_secrets(relay, first)
        logs.assert_no_secrets(relay)
    finally:
        logs.__exit__()
        await relay.stop()


async def playlists_until(relay: Any, condition: Any, timeout: float, what: str,
                          user: str = "alice", password: str = "alicepw", stream_id: int = 1,
                          seen: list[Playlist] | None = None) -> Playlist:
    """Poll the playlist (as a player does, twice a second) until
    ``condition(playlist)``; every answer goes to ``seen``; fails after
    ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while True:
        answer = await playlist(relay.port, user, password, stream_id)
        if seen is not None:
            seen.append(answer)
        if answer.status == 200 and condition(answer):
            return answer
        if reactor.seconds() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s: {answer.text[-400:]}")
        await deferLater(reactor, 0.5, lambda: None)


@pytest_twisted.ensureDeferred
async def test_segments_start_decodable_numbers_grow_and_a_drop_is_a_discontinuity(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    try:
        first = await playlist(relay.port, "alice", "alicepw", 1)
        assert first.status == 200 and first.target >= 2 and first.entries
        for entry in first.entries:
            assert entry.duration <= first.target + 0.5
            body = (await segment(relay.port, entry)).body
            assert_decodable_start(body)
        # HEAD and byte ranges
        url = path_of(first.entries[0].url)
        head = await raw_request(relay.port, url, method="HEAD")
        part = await raw_request(relay.port, url, headers={"Range": "bytes=188-375"})
        whole = await raw_request(relay.port, url)
        assert head.status == 200 and head.body == b"" and head.headers[b"content-length"] == b"%d" % len(whole.body)
        assert part.status == 206 and part.body == whole.body[188:376]
        m3u8_head = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8", method="HEAD")
        assert m3u8_head.status == 200 and m3u8_head.headers[b"content-type"] == b"application/vnd.apple.mpegurl"
        # The provider drops the stream: xrelay reconnects, the playlist goes
        # on with a discontinuity, its numbers never go back.
        assert relay.provider.drop_streams("live") == 1
        seen: list[Playlist] = [first]
        after = await playlists_until(
            relay, lambda p: any(e.discontinuity and e.sequence > first.last for e in p.entries),
            30, "a discontinuity after the drop", seen=seen)
        marked = next(e for e in after.entries if e.discontinuity and e.sequence > first.last)
        assert_decodable_start((await segment(relay.port, marked)).body)
        later = await playlists_until(relay, lambda p: p.last > marked.sequence, 20,
                                      "segments after the discontinuity", seen=seen)
        assert later.discontinuity_sequence >= first.discontinuity_sequence
        ok = [p for p in seen if p.status == 200]
        for a, b in zip(ok, ok[1:]):
            assert b.media_sequence >= a.media_sequence and b.last >= a.last
            assert b.discontinuity_sequence >= a.discontinuity_sequence
        assert channel_row(await status(relay), 1)["upstream"]["reconnects"] >= 1
        assert relay.provider.stats.opened_total("live") == 2
    finally:
        await relay.stop()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_ffmpeg_plays_the_live_hls_for_20_seconds(tmp_path: Path) -> None:
    """ffmpeg decodes 20 s of xrelay's HLS without an error, starting at the
    live edge, and needs about 20 s of wall time for it (the playlist's
    durations are the stream's)."""
    relay = await start_relay(tmp_path, relay=FAST)
    try:
        started = reactor.seconds()
        out, err, code = await within(utils.getProcessOutputAndValue(
            shutil.which("ffmpeg"), ["-hide_banner", "-nostdin", "-v", "error", "-live_start_index", "-1",
                                     "-i", f"{relay.url}/live/alice/alicepw/1.m3u8", "-t", "20",
                                     "-progress", "pipe:1", "-f", "null", "-"],
            env={"PATH": "/usr/bin:/bin"}), 90, what="ffmpeg reading 20 s")
        wall = reactor.seconds() - started
        assert code == 0 and err.decode().strip() == "", err.decode()[-2000:]
        progress = dict(line.split("=", 1) for line in out.decode().split() if "=" in line)
        decoded = int(progress["out_time_us"]) / 1e6
        assert 19.0 <= decoded <= 20.5, progress
        assert int(progress.get("frame", "0")) > 0
        target = relay.xr.relay.channels[1].hls.target
        # It started at the last segment: at most one segment ahead of live,
        # and never stalled by more than a segment.
        assert decoded - 2 * target <= wall <= decoded + 2 * target, (wall, decoded, target)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_an_idle_hls_session_releases_its_stream_then_the_slot(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=ONE, relay=replace(FAST, hls_segment=1.0))
    xr = relay.xr
    try:
        answer = await playlist(relay.port, "bob", "bobpw", 3)
        assert answer.status == 200
        assert xr.user_streams.count("bob") == 1 and xr.slots.used == 1
        idle = xr.relay.hls.idle_timeout(3)
        assert idle == 3 * xr.relay.channels[3].hls.target
        # No more requests: the session ends after three target durations...
        await wait_until(lambda: xr.user_streams.count("bob") == 0, timeout=idle + 5)
        # ...and the channel, now without viewers, lingers, then frees its slot.
        await wait_until(lambda: xr.slots.used == 0 and not xr.relay.channels, timeout=5)
        await wait_until(lambda: relay.provider.stats.open_count() == 0, timeout=5)
        gone = await segment(relay.port, answer.entries[-1])
        assert gone.status == 404 and b"reload" in gone.body
        # Its numbering goes on if the channel is opened again.
        back = await playlist(relay.port, "bob", "bobpw", 3)
        assert back.status == 200 and back.media_sequence > answer.last
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_ts_viewer_joining_a_lingering_channel_keeps_its_slot(tmp_path: Path) -> None:
    """The race in the issue: a channel with a viewer again is no longer
    lingering, so another client's request cannot take its slot."""
    relay = await start_relay(tmp_path, settings=ONE, relay=replace(FAST, linger=30.0))
    xr = relay.xr
    try:
        _, first = await open_stream(ts_url(relay, 1))
        await first.wait_bytes(50_000)
        first.close()
        await first.ended
        await wait_until(lambda: 1 in xr.relay.channels and xr.relay.channels[1].lingering)
        response, tv = await open_stream(ts_url(relay, 1, "bob", "bobpw"))
        assert response.code == 200
        await tv.wait_bytes(50_000)
        channel = xr.relay.channels[1]
        assert not channel.lingering
        assert channel_row(await status(relay), 1)["state"] != "lingering"
        # Another user's HLS request for another channel finds no slot...
        other = await playlist(relay.port, "alice", "alicepw", 2)
        assert other.status == 503 and "busy" in other.text
        # ...and the TS viewer plays on, well past 52 KB.
        await tv.wait_more(300_000)
        assert xr.relay.channels.get(1) is channel and not channel.closed
        # The same channel's HLS shares the connection instead.
        same = await playlist(relay.port, "alice", "alicepw", 1)
        assert same.status == 200
        await tv.wait_more(100_000)
        stats = relay.provider.stats
        assert stats.opened_total("live") == 1 and stats.kicked == 0 and xr.slots.handovers == 0
        tv.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_hls_sessions_count_for_user_limits_zaps_and_the_admin(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=ONE, relay=FAST)
    xr = relay.xr
    try:
        # bob may hold one stream: his TS stream of the same channel, newer,
        # ends his HLS session, whose next requests are refused.
        hls = await playlist(relay.port, "bob", "bobpw", 1)
        assert hls.status == 200
        response, tv = await open_stream(ts_url(relay, 1, "bob", "bobpw"))
        assert response.code == 200
        await tv.wait_bytes(50_000)
        refused = await playlist(relay.port, "bob", "bobpw", 1)
        stale = await segment(relay.port, hls.entries[-1])
        assert (refused.status, stale.status) == (403, 403)
        assert "more streams than allowed" in refused.text
        assert xr.user_streams.count("bob") == 1
        tv.close()
        await tv.ended
        # alice's HLS of channel 1, then her TS of channel 2 on the full
        # account: a zap, the slot is handed over.
        assert (await playlist(relay.port, "alice", "alicepw", 1)).status == 200
        response, tv2 = await open_stream(ts_url(relay, 2))
        assert response.code == 200
        await tv2.wait_bytes(50_000)
        assert xr.slots.handovers == 1 and 1 not in xr.relay.channels
        assert not xr.relay.hls.sessions.of_channel(1)
        # The admin disconnects her HLS session of channel 2.
        assert (await playlist(relay.port, "alice", "alicepw", 2)).status == 200
        rows = channel_row(xr.overview.relay(), 2)["viewers"]
        (hls_row,) = [r for r in rows if r["format"] == "hls"]
        assert xr.overview.disconnect(hls_row["id"])
        cut = await playlist(relay.port, "alice", "alicepw", 2)
        assert cut.status == 403 and "disconnected by the admin" in cut.text
        await tv2.wait_more(50_000)  # her TS stream is untouched
        tv2.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_channel_the_provider_serves_only_as_hls_feeds_ts_viewers_whole_packets(
        tmp_path: Path) -> None:
    """Channel 1's TS URL answers with its playlist (auto falls back to the
    provider's HLS); channel 5's HLS is encrypted: its .m3u8 is the
    provider's, rewritten and proxied, and its TS is refused with a reason."""
    settings = DemoSettings(max_connections=2, hls_only=(1, 5))
    relay = await start_relay(tmp_path, settings=settings, relay=FAST)
    stats = relay.provider.stats
    xr = relay.xr
    try:
        response, tv = await open_stream(ts_url(relay, 1), keep=1_100_000)
        assert response.code == 200
        await tv.wait_bytes(1_100_000, timeout=30)  # several provider segments, joined
        assert is_aligned(whole_packets(tv.head)) and packet_pid(bytes(tv.head)) == 0
        assert stats.requests["hls_segment"] >= 3 and stats.opened_total("live") == 0
        assert xr.relay.hls_only.keys() == {1}
        row = channel_row(await status(relay), 1)
        assert row["upstream"]["format"] == "hls" and row["upstream"]["state"] == "streaming"
        # HLS viewers of that channel read xrelay's own segments of it.
        phone = await playlist(relay.port, "bob", "bobpw", 1)
        assert phone.status == 200 and phone.entries
        assert_decodable_start((await segment(relay.port, phone.entries[-1])).body)
        await tv.wait_more(300_000)
        # Encrypted at the provider: not carried by the channel.
        # (a Range request: a player that gets the refusal, not the status clip)
        refused = await raw_request(relay.port, "/live/alice/alicepw/5.ts", headers={"Range": "bytes=0-"})
        assert refused.status == 503 and b"5.m3u8" in refused.body and b"encrypted" in refused.body
        proxied = await raw_request(relay.port, "/live/alice/alicepw/5.m3u8")
        assert proxied.status == 200 and b"#EXT-X-KEY:METHOD=AES-128" in proxied.body
        assert b"/L5-" not in proxied.body and 5 in xr.relay.proxied
        assert_no_secrets(relay, refused, proxied)
        tv.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_an_account_without_ts_reads_every_channel_as_hls(tmp_path: Path) -> None:
    """allowed_output_formats lacks "ts" (and TS URLs are refused): the
    channel never asks for TS; a master playlist is followed to its best
    variant (channel 4)."""
    settings = DemoSettings(max_connections=1, hls_only="all", hls_only_answer="refuse")
    relay = await start_relay(tmp_path, settings=settings, relay=FAST)
    stats = relay.provider.stats
    try:
        response, tv = await open_stream(ts_url(relay, 4), keep=600_000)
        assert response.code == 200
        await tv.wait_bytes(600_000, timeout=30)
        assert is_aligned(whole_packets(tv.head))
        assert stats.requests["live"] == 0 and stats.requests["hls_segment"] >= 1
        assert any("/4/v1/" in path for path in stats.segment_fetches)
        assert set(stats.segment_fetches.values()) == {1}  # each fetched once
        tv.close()
    finally:
        await relay.stop()
