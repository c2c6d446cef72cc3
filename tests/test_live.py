"""The live relay over real loopback sockets, against the demo provider."""

from __future__ import annotations

import json
import shutil
import socket
from base64 import b64encode
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor, utils

from xrelay.core.config import RelayConfig, UserConfig
from xrelay.demo.provider import DemoSettings
from xrelay.relay.mpegts import PACKET_SIZE, is_aligned, packet_pid

from harness import USERS, start_relay
from streamclient import open_stream, wait_until

#: A user with room for many streams (the harness's alice may hold two).
MANY = USERS + (UserConfig(username="tv", password="tvpw", max_connections=100),)

FAST = RelayConfig(linger=0.3, max_behind=10.0, silence_timeout=2.0, reconnect_bound=5.0,
                   handover_pause=0.1)


def live_ids(relay) -> list[int]:
    return sorted(relay.live_by_id)


def url(relay, stream_id: int, user: str = "alice", password: str = "alicepw",
        form: str = "live") -> str:
    if form == "live":
        return f"{relay.url}/live/{user}/{password}/{stream_id}.ts"
    if form == "noext":
        return f"{relay.url}/live/{user}/{password}/{stream_id}"
    return f"{relay.url}/{user}/{password}/{stream_id}"


def assert_starts_aligned(head: bytes) -> None:
    whole = len(head) // PACKET_SIZE * PACKET_SIZE
    assert whole >= PACKET_SIZE
    assert is_aligned(head[:whole])


async def stop_all(readers) -> None:
    for reader in readers:
        reader.close()
    for reader in readers:
        await reader.ended


@pytest_twisted.ensureDeferred
async def test_many_clients_share_one_upstream_connection(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST, users=MANY)
    stats = relay.provider.stats
    try:
        channel = live_ids(relay)[0]
        readers = []
        for i, form in enumerate(["live", "noext", "short", "live", "live"]):
            response, reader = await open_stream(url(relay, channel, "tv", "tvpw", form=form))
            if i == 0:  # let the channel run past a keyframe (one per second)
                await reader.wait_bytes(300_000)
            assert response.code == 200
            assert response.headers.getRawHeaders(b"content-type") == [b"video/mp2t"]
            readers.append(reader)
        for reader in readers:
            await reader.wait_bytes(64 * 1024)
        assert stats.opened_total("live") == 1
        assert stats.open_count("live") == 1
        for reader in readers:
            assert_starts_aligned(bytes(reader.head))
        # Every viewer starts at a PAT (then PMT + keyframe): the first one at
        # the channel's first keyframe, later ones at the latest.
        for reader in readers:
            assert packet_pid(reader.head) == 0
        await stop_all(readers)
        # The channel lingers, then closes its upstream.
        assert stats.open_count("live") == 1
        await stats.wait_for(lambda: stats.open_count("live") == 0)
        assert relay.xr.relay.channels == {}
        assert relay.xr.relay.slots.used == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_credentials_and_unknown_ids_never_reach_the_provider(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    stats = relay.provider.stats
    try:
        channel = live_ids(relay)[0]
        cases = [
            (url(relay, channel, "alice", "nope"), 401),
            (url(relay, channel, "nobody", "x"), 401),
            (url(relay, channel, "carol", "carolpw"), 403),  # disabled
            (url(relay, channel, "dave", "davepw"), 403),  # expired (a Range request: no status clip)
            (url(relay, 999999), 404),
            (f"{relay.url}/live/alice/alicepw/abc.ts", 404),
        ]
        for target, code in cases:
            response = await treq.get(target, headers={"Range": "bytes=0-"})
            assert response.code == code, target
            body = await response.text()
            for secret in relay.upstream_secrets:
                assert secret not in body
        assert stats.requests["live"] == 0 and stats.opened_total("live") == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_stalled_client_is_evicted_and_does_not_slow_the_others(tmp_path: Path) -> None:
    rate = 4_000_000
    relay = await start_relay(
        tmp_path, settings=DemoSettings(bitrate_bps=rate),
        relay=RelayConfig(linger=0.3, max_behind=1.0, silence_timeout=5.0))
    try:
        channel = live_ids(relay)[0]
        _, healthy = await open_stream(url(relay, channel))
        await healthy.wait_bytes(100_000)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", relay.port))
        stalled.sendall(f"GET /live/alice/alicepw/{channel}.ts HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        live = relay.xr.relay
        await wait_until(lambda: live.evictions == 1, timeout=10)
        before = healthy.received
        await healthy.wait_more(rate // 8)  # one more second of stream
        assert healthy.received > before
        # It kept up with the live edge (a measure in bytes, not in wall-clock time).
        viewer = live.snapshot()["channels"][0]["viewers"][0]
        assert not viewer["paused"] and viewer["behind_seconds"] < 0.5, viewer
        assert live.channels[channel].fanout.viewers and len(live.channels[channel].viewers) == 1
        stalled.close()
        healthy.close()
        await healthy.ended
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_upstream_drop_reconnects_with_clients_connected(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    stats = relay.provider.stats
    try:
        channel = live_ids(relay)[0]
        relay.provider.faults.live = "drop_after_bytes:200000"
        readers = [(await open_stream(url(relay, channel)))[1] for _ in range(2)]
        await stats.wait_for(lambda: stats.opened_total("live") >= 2)
        relay.provider.faults.live = None
        for reader in readers:
            await reader.wait_bytes(300_000)
            assert reader.reason is None
        snapshot = relay.xr.relay.snapshot()
        assert snapshot["reconnects"] >= 1
        assert snapshot["channels"][0]["upstream"]["redirected"] is True
        await stop_all(readers)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_silent_upstream_is_reopened(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=RelayConfig(linger=0.3, silence_timeout=0.5,
                                                          reconnect_bound=5.0))
    stats = relay.provider.stats
    try:
        channel = live_ids(relay)[0]
        _, reader = await open_stream(url(relay, channel))
        await reader.wait_bytes(10_000)
        relay.provider.faults.live = "silent"
        # Cut the current provider connection: the reconnect gets a silent body.
        stats.open_streams[0].abort()
        await stats.wait_for(lambda: stats.opened_total("live") >= 2)
        relay.provider.faults.live = None
        await stats.wait_for(lambda: stats.opened_total("live") >= 3)
        await reader.wait_more(50_000)
        assert reader.reason is None  # the viewer stayed connected throughout
        upstream = relay.xr.relay.snapshot()["channels"][0]["upstream"]
        assert upstream["reconnects"] >= 2 and upstream["last_error"] == "no data for 0.5 s", upstream
        reader.close()
        await reader.ended
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_account_limit_one_zap_handover_and_503(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1), relay=FAST)
    stats = relay.provider.stats
    try:
        a, b = live_ids(relay)[:2]
        assert relay.xr.relay.slots.capacity == 1
        _, on_a = await open_stream(url(relay, a))
        await on_a.wait_bytes(20_000)
        # Another user: refused at once, the provider is not asked (a player
        # gets the "busy" status clip; with Range, the bare 503).
        response = await treq.get(url(relay, b, "bob", "bobpw"), headers={"Range": "bytes=0-"})
        assert response.code == 503
        assert "busy" in await response.text()
        response, clip = await open_stream(url(relay, b, "bob", "bobpw"))
        assert response.code == 200 and response.headers.getRawHeaders("content-type") == ["video/mp2t"]
        await clip.wait_bytes(188)
        clip.close()
        await clip.ended
        assert relay.xr.clips.served["busy"] == 1
        assert stats.opened_total("live") == 1
        # The same user from the same address zaps: A is closed, B opens.
        _, on_b = await open_stream(url(relay, b))
        await on_b.wait_bytes(20_000)
        await on_a.ended
        assert stats.kicked == 0  # never more than one provider connection
        assert stats.opened_total("live") == 2 and stats.open_count("live") == 1
        on_b.close()
        await on_b.ended
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_account_limit_two_lingering_channel_gives_its_slot_up(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=2),
                              relay=RelayConfig(linger=60.0, handover_pause=0.1), users=MANY)
    stats = relay.provider.stats
    try:
        a, b, c = live_ids(relay)[:3]
        _, on_a = await open_stream(url(relay, a))
        _, on_b = await open_stream(url(relay, b, "bob", "bobpw"))
        await on_a.wait_bytes(10_000)
        await on_b.wait_bytes(10_000)
        # A third channel for a third user: refused (both channels watched).
        response = await treq.get(url(relay, c, "tv", "tvpw"), headers={"Range": "bytes=0-"})
        assert response.code == 503
        # alice leaves A; it lingers (60 s) but gives its slot up at once.
        on_a.close()
        await on_a.ended
        await wait_until(lambda: not relay.xr.relay.channels[a].viewers)
        assert stats.open_count("live") == 2
        _, on_c = await open_stream(url(relay, c, "tv", "tvpw"))
        await on_c.wait_bytes(10_000)
        assert a not in relay.xr.relay.channels
        assert stats.kicked == 0 and stats.open_count("live") == 2
        on_b.close()
        on_c.close()
        await on_b.ended
        await on_c.ended
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_per_user_limit_closes_the_oldest_stream(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=4), relay=FAST)
    try:
        a, b = live_ids(relay)[:2]
        # bob may hold one stream.
        _, first = await open_stream(url(relay, a, "bob", "bobpw"))
        await first.wait_bytes(10_000)
        _, second = await open_stream(url(relay, b, "bob", "bobpw"))
        await second.wait_bytes(10_000)
        await first.ended
        assert second.reason is None
        assert relay.xr.relay.user_streams.count("bob") == 1
        # alice may hold two, even on the same channel.
        readers = [(await open_stream(url(relay, a)))[1] for _ in range(3)]
        await readers[0].ended
        for reader in readers[1:]:
            await reader.wait_bytes(10_000)
        assert relay.xr.relay.user_streams.count("alice") == 2
        await stop_all([second] + readers[1:])
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_status_lists_channels_and_viewers(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    try:
        channel = live_ids(relay)[0]
        _, reader = await open_stream(url(relay, channel))
        await reader.wait_bytes(10_000)
        assert (await treq.get(relay.url + "/status")).code == 401
        bad = b64encode(b"admin:wrong").decode()
        assert (await treq.get(relay.url + "/status", headers={"Authorization": f"Basic {bad}"})).code == 401
        good = b64encode(b"admin:adminpw").decode()
        response = await treq.get(relay.url + "/status", headers={"Authorization": f"Basic {good}"})
        assert response.code == 200
        text = await response.text()
        for secret in relay.upstream_secrets:
            assert secret not in text
        status = json.loads(text)
        assert status["slots"]["used"] == 1 and status["slots"]["allowed"] == 2
        (row,) = status["channels"]
        assert row["stream_id"] == channel and row["upstream"]["state"] == "streaming"
        (viewer,) = row["viewers"]
        assert viewer["user"] == "alice" and viewer["address"] == "127.0.0.1"
        assert viewer["bytes"] > 0 and viewer["started"] > 0
        assert status["evictions"] == 0
        reader.close()
        await reader.ended
    finally:
        await relay.stop()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
@pytest_twisted.ensureDeferred
async def test_ffprobe_reads_the_relayed_stream(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, relay=FAST)
    try:
        channel = live_ids(relay)[0]
        _, warm = await open_stream(url(relay, channel))  # join a running channel
        await warm.wait_bytes(200_000)
        out, err, code = await utils.getProcessOutputAndValue(
            shutil.which("ffprobe"),
            ["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
             "-read_intervals", "%+1", url(relay, channel)],
        )
        assert code == 0, err
        assert b"h264" in out and b"aac" in out
        # It joined at PAT/PMT + keyframe: no undecodable start.
        assert b"non-existing PPS" not in err and b"decode_slice_header error" not in err, err
        warm.close()
        await warm.ended
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_channel_whose_viewer_left_while_it_opened_closes(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1),
                              relay=RelayConfig(linger=0.2, handover_pause=0.5))
    stats = relay.provider.stats
    try:
        a, b = live_ids(relay)[:2]
        _, on_a = await open_stream(url(relay, a))
        await on_a.wait_bytes(10_000)
        # A zap to B waits out the handover pause; the player gives up meanwhile.
        waiting = treq.get(url(relay, b), unbuffered=True)
        await on_a.ended  # A was closed for the handover
        waiting.addErrback(lambda failure: None)
        waiting.cancel()
        await stats.wait_for(lambda: stats.opened_total("live") == 2).addTimeout(10, reactor)
        # B opened for nobody: it lingers, then closes and frees the slot.
        await stats.wait_for(lambda: stats.open_count("live") == 0).addTimeout(10, reactor)
        await wait_until(lambda: relay.xr.relay.slots.used == 0)
        assert relay.xr.relay.channels == {}
    finally:
        await relay.stop()
