"""The provider's HLS rewritten and proxied (channels xrelay cannot carry in its own
channel hub, and catch-up): playlist rewriting, shared segments, tokens, slots."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from dataclasses import replace
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from harness import start_relay
from media_helpers import LogCapture, assert_no_secrets, poll, raw_request
from xrelay.core.config import RelayConfig
from xrelay.demo import hls as demo_hls
from xrelay.demo.provider import DemoSettings
from xrelay.media.hls_proxy import byte_range
from xrelay.media.segment_cache import SegmentCache, TokenMap
from xrelay.media.hls_rewrite import rewrite_playlist
from xrelay.provider.client import ProviderError

# -- rewriting (unit) -------------------------------------------------------------

PROVIDER_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:4
#EXT-X-KEY:METHOD=AES-128,URI="https://cdn.example:8443/keys/k1.bin?token=abc",IV=0x01
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.0,
seg_1.ts
#EXTINF:4.0,
/hls/TOKEN/7/seg_2.ts
#EXTINF:4.0,
http://other.example/path/seg_3.ts?x=1
#EXT-X-SESSION-DATA:DATA-ID="com.example",VALUE="http://provider.example:8080/u/p/"
"""

MASTER = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=1000000
v0/index
#EXT-X-STREAM-INF:BANDWIDTH=2000000
/live/v1/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="iframes.m3u8"
"""


def test_rewrite_resolves_absolute_relative_and_host_relative_uris() -> None:
    seen: list[tuple[str, str]] = []

    def make_uri(url: str, kind: str) -> str:
        seen.append((url, kind))
        return f"http://relay/hls/u/t/{len(seen)}.x"

    base = "http://provider.example:8080/hls/TOKEN/7/index.m3u8"
    leaks = lambda text: ["host"] if "provider.example" in text else []  # noqa: E731
    out = rewrite_playlist(PROVIDER_PLAYLIST, base, make_uri, leaks)
    assert seen == [
        ("https://cdn.example:8443/keys/k1.bin?token=abc", "key"),
        ("http://provider.example:8080/hls/TOKEN/7/init.mp4", "segment"),
        ("http://provider.example:8080/hls/TOKEN/7/seg_1.ts", "segment"),
        ("http://provider.example:8080/hls/TOKEN/7/seg_2.ts", "segment"),
        ("http://other.example/path/seg_3.ts?x=1", "segment"),
    ]
    assert '#EXT-X-KEY:METHOD=AES-128,URI="http://relay/hls/u/t/1.x",IV=0x01' in out
    assert '#EXT-X-MAP:URI="http://relay/hls/u/t/2.x"' in out
    assert "provider.example" not in out and "cdn.example" not in out and "TOKEN" not in out
    assert "SESSION-DATA" not in out  # a tag still naming the provider is dropped
    assert out.count("#EXTINF") == 3


def test_rewrite_marks_variants_and_renditions_as_playlists() -> None:
    seen: list[tuple[str, str]] = []
    rewrite_playlist(MASTER, "http://p/live/master.m3u8",
                     lambda url, kind: seen.append((url, kind)) or "x")
    assert seen == [
        ("http://p/live/audio/en.m3u8", "playlist"),
        ("http://p/live/v0/index", "playlist"),
        ("http://p/live/v1/index.m3u8", "playlist"),
        ("http://p/live/iframes.m3u8", "playlist"),
    ]


# -- the segment cache and tokens (unit) ---------------------------------------------


def test_segment_cache_shares_one_fetch_and_expires() -> None:
    clock = Clock()
    cache = SegmentCache(clock, max_bytes=100, ttl=10)
    pending: list[Deferred[tuple[bytes, bytes]]] = []

    def fetch() -> Deferred[tuple[bytes, bytes]]:
        d: Deferred[tuple[bytes, bytes]] = Deferred()
        pending.append(d)
        return d

    waiters = [cache.get("u1", fetch) for _ in range(5)]
    waiters[0].cancel()  # one client leaves: the others still get the data
    assert len(pending) == 1
    pending[0].callback((b"x" * 40, b"video/mp2t"))
    for w in waiters[1:]:
        assert w.result.data == b"x" * 40
    waiters[0].addErrback(lambda f: f.trap(defer.CancelledError))
    assert cache.get("u1", fetch).result.data == b"x" * 40 and len(pending) == 1
    clock.advance(11)
    cache.get("u1", fetch)
    assert len(pending) == 2


def test_segment_cache_is_bounded_and_does_not_keep_failures() -> None:
    clock = Clock()
    cache = SegmentCache(clock, max_bytes=100, ttl=60)
    for n in range(5):
        cache.get(f"u{n}", lambda: defer.succeed((b"y" * 40, b"video/mp2t")))
    assert cache.size <= 100 and list(cache.entries) == ["u3", "u4"]
    failed = cache.get("bad", lambda: defer.fail(ProviderError("HLS segment: HTTP 404")))
    failed.addErrback(lambda f: f.trap(ProviderError))
    assert "bad" not in cache.entries and "bad" not in cache.inflight
    big = cache.get("big", lambda: defer.succeed((b"z" * 500, b"video/mp2t")))
    assert big.result.data == b"z" * 500 and "big" not in cache.entries


def test_tokens_are_opaque_stable_and_expire() -> None:
    clock = Clock()
    tokens = TokenMap(clock, lifetime=30)
    channel: Any = object()
    url = "http://provider.example/hls/secret/1/seg_5.ts"
    t = tokens.token(url, "segment", channel)
    assert t == tokens.token(url, "segment", channel)
    assert "secret" not in t and len(t) == 32
    assert tokens.get(t).url == url
    clock.advance(31)
    assert tokens.get(t) is None
    assert tokens.user_token("alice", "pw1") != tokens.user_token("alice", "pw2")


def test_byte_range_of_cached_segments() -> None:
    assert byte_range(None, 10) is None
    assert byte_range(b"bytes=0-3", 10) == (0, 3)
    assert byte_range(b"bytes=-3", 10) == (7, 9)
    assert byte_range(b"bytes=5-", 10) == (5, 9)
    assert byte_range(b"bytes=5-100", 10) == (5, 9)
    assert byte_range(b"bytes=10-", 10) is False and byte_range(b"bytes=-0", 10) is False
    for ignored in (b"bytes=0-1,3-4", b"items=1-2", b"bytes=5-2", b"bytes=-"):
        assert byte_range(ignored, 10) is None


# -- over real sockets ---------------------------------------------------------------

async def start_proxying(tmp_path: Any, **kw: Any) -> Any:
    """xrelay with every live channel's ``.m3u8`` on the rewrite-and-proxy
    path. xrelay takes that path by itself only for a channel whose provider
    HLS its channel hub cannot carry (encrypted or fMP4 segments: see
    tests/test_live_hls.py); these tests check the path on every URI style."""
    relay = await start_relay(tmp_path, **kw)
    relay.xr.relay.proxied.update({sid: "proxied by the test" for sid in relay.live_by_id})
    return relay


URI_RE = re.compile(r'(?:URI=")?(http://127\.0\.0\.1:\d+/hls/[^"\s]+)')


def uris(playlist: bytes) -> list[str]:
    return URI_RE.findall(playlist.decode())


def media_sequence(playlist: bytes) -> int:
    return int(re.search(rb"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist).group(1))


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def fetch_all_segments(relay: Any, playlist: bytes) -> list[Any]:
    return list(await defer.gatherResults([
        defer.ensureDeferred(raw_request(relay.port, path_of(u)))
        for u in uris(playlist) if u.endswith(".ts")]))


@pytest_twisted.ensureDeferred
async def test_every_uri_style_is_rewritten_and_served(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path, settings=DemoSettings(max_connections=5))
    logs = LogCapture().__enter__()
    try:
        provider = relay.provider
        answers = []
        for sid in range(1, 6):
            style = demo_hls.style(sid)
            entry = await raw_request(relay.port, f"/live/alice/alicepw/{sid}.m3u8")
            answers.append(entry)
            assert entry.status == 200, (style, entry.body)
            assert entry.headers[b"content-type"] == b"application/vnd.apple.mpegurl"
            found = uris(entry.body)
            lines = [l for l in entry.body.decode().splitlines() if l and not l.startswith("#")]
            assert lines and all(l.startswith(f"{relay.url}/hls/alice/") for l in lines), style
            media = [entry]
            if style == "master":
                assert len(found) == 2 and all(u.endswith(".m3u8") for u in found)
                media = [await raw_request(relay.port, path_of(u)) for u in found]
                answers += media
            for playlist in media:
                first = media_sequence(playlist.body)
                token = provider.token("hls", sid)
                key = demo_hls.key_for(token, sid) if style == "key" else None
                segments = await fetch_all_segments(relay, playlist.body)
                answers += segments
                assert len(segments) == demo_hls.WINDOW
                for n, seg in enumerate(segments, first):
                    assert seg.status == 200
                    assert seg.headers[b"content-type"] == b"video/mp2t"
                    assert seg.body == demo_hls.segment_bytes(n, key), (style, n)
                if style == "key":
                    key_uri = re.search(r'URI="([^"]+)"', playlist.body.decode()).group(1)
                    got = await raw_request(relay.port, path_of(key_uri))
                    answers.append(got)
                    assert got.status == 200 and got.body == key
        assert_no_secrets(relay, *answers)
        logs.assert_no_secrets(relay)
    finally:
        logs.__exit__()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_many_clients_one_fetch_per_segment(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path)
    try:
        stats = relay.provider.stats
        clients = 8
        playlists = await defer.gatherResults([
            defer.ensureDeferred(raw_request(relay.port, "/live/alice/alicepw/3.m3u8"))
            for _ in range(clients)])
        assert all(p.status == 200 for p in playlists)
        assert stats.requests["hls_playlist"] == 1  # one fetch served all eight
        results = await defer.gatherResults([
            defer.ensureDeferred(fetch_all_segments(relay, p.body)) for p in playlists])
        assert all(s.status == 200 for r in results for s in r)
        assert len(stats.segment_fetches) >= demo_hls.WINDOW
        assert set(stats.segment_fetches.values()) == {1}, stats.segment_fetches
        assert relay.xr.hls.segments.hits >= (clients - 1) * demo_hls.WINDOW
        assert relay.xr.vod.files.slots.used == 1  # one HLS channel, one slot
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_the_final_url_of_a_redirect_is_kept(tmp_path: Any, monkeypatch: Any) -> None:
    import xrelay.media.hls_proxy

    monkeypatch.setattr(xrelay.media.hls_proxy, "PLAYLIST_TTL", 0.0)
    relay = await start_proxying(tmp_path)
    try:
        stats = relay.provider.stats
        for _ in range(3):
            answer = await raw_request(relay.port, "/live/bob/bobpw/2.m3u8")
            assert answer.status == 200
        assert stats.requests["hls_entry"] == 1  # the redirecting URL, asked once
        assert stats.requests["hls_playlist"] == 3
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_segment_urls_need_the_users_token(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path)
    try:
        entry = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8")
        url = path_of(uris(entry.body)[0])
        _, _, user, token, name = url.split("/")
        forged = await raw_request(relay.port, f"/hls/{user}/{'0' * len(token)}/{name}")
        other = await raw_request(relay.port, f"/hls/bob/{token}/{name}")
        unknown = await raw_request(relay.port, f"/hls/{user}/{token}/{'f' * 32}.ts")
        junk = await raw_request(relay.port, "/hls/x")
        assert (forged.status, other.status, unknown.status, junk.status) == (401, 401, 404, 404)
        before = relay.provider.stats.requests["hls_segment"]
        ok = await raw_request(relay.port, url)
        assert ok.status == 200
        assert relay.provider.stats.requests["hls_segment"] == before + 1
        refused = [await raw_request(relay.port, p) for p in (
            "/live/alice/wrong/1.m3u8", "/live/carol/carolpw/1.m3u8", "/live/alice/alicepw/999.m3u8")]
        assert [r.status for r in refused] == [401, 403, 404]
        assert_no_secrets(relay, entry, forged, other, unknown, ok, *refused)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_hls_channel_holds_one_slot_and_releases_it_after_linger(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path, settings=DemoSettings(max_connections=1),
                              relay=replace(RelayConfig(), linger=0.3))
    try:
        files = relay.xr.vod.files
        relay.xr.hls.linger_targets = 0.0
        mid = sorted(relay.vod_by_id)[0]
        first = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8")
        assert first.status == 200 and files.slots.used == 1
        again = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8")
        assert again.status == 200 and files.slots.used == 1
        # Another user: no slot left for another channel or a movie.
        busy = await raw_request(relay.port, "/live/bob/bobpw/2.m3u8")
        movie = await raw_request(relay.port, f"/movie/bob/bobpw/{mid}.mp4")
        assert (busy.status, movie.status) == (503, 503)
        # Once nobody asks for a while, the slot is free again.
        await poll(lambda: files.slots.used == 0)
        assert not relay.xr.hls.channels
        later = await raw_request(relay.port, "/live/bob/bobpw/2.m3u8")
        assert later.status == 200
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_same_client_zap_from_hls_to_a_movie_hands_the_slot_over(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path, settings=DemoSettings(max_connections=1, redirect_streams=False))
    try:
        files = relay.xr.vod.files
        entry = await raw_request(relay.port, "/live/bob/bobpw/1.m3u8")
        assert entry.status == 200
        mid = sorted(relay.vod_by_id)[0]
        movie = await raw_request(relay.port, f"/movie/bob/bobpw/{mid}.mp4",
                                  headers={"Range": "bytes=0-99"})
        assert movie.status == 206
        assert files.slots.handovers == 1
        assert not relay.xr.hls.channels
        stale = await raw_request(relay.port, path_of(uris(entry.body)[0]))
        assert stale.status == 404 and b"reload" in stale.body
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_hls_catch_up_playlist_is_rewritten(tmp_path: Any) -> None:
    """A catch-up .m3u8 (a VOD playlist of parts whose paths carry the
    provider's credentials) is rewritten like live HLS."""
    relay = await start_proxying(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        sid = next(s for s, r in sorted(relay.live_by_id.items()) if r["tv_archive"])
        seen: list[tuple[str, str]] = []

        def fake_timeshift(request: Any, parts: list[str]) -> bytes:
            user, password, duration, start, name = parts
            seen.append((start, name))
            if name.endswith(".m3u8"):
                request.setHeader(b"content-type", b"application/x-mpegurl")
                return ("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:60\n"
                        f"#EXTINF:60,\n/timeshift/{user}/{password}/{duration}/{start}/{sid}_0_100.ts\n"
                        "#EXTINF:60,\npart_1.ts\n#EXT-X-ENDLIST\n").encode()
            request.setHeader(b"content-type", b"video/mp2t")
            return f"segment {name}".encode()

        relay.provider.streams.timeshift_path = fake_timeshift
        start = time.strftime("%Y-%m-%d:%H-%M", time.gmtime(time.time() - 3600))
        answer = await raw_request(relay.port, f"/timeshift/alice/alicepw/30/{start}/{sid}.m3u8")
        assert answer.status == 200, answer.body
        assert b"#EXT-X-ENDLIST" in answer.body
        parts = [await raw_request(relay.port, path_of(u)) for u in uris(answer.body)]
        assert [p.body for p in parts] == [f"segment {sid}_0_100.ts".encode(), b"segment part_1.ts"]
        # xrelay advertises UTC; the demo provider lives in Europe/London.
        provider_start = datetime.strptime(start, "%Y-%m-%d:%H-%M").replace(
            tzinfo=timezone.utc).astimezone(ZoneInfo("Europe/London")).strftime("%Y-%m-%d:%H-%M")
        assert seen == [(provider_start, f"{sid}.m3u8"), (provider_start, f"{sid}_0_100.ts"),
                        (provider_start, "part_1.ts")]
        assert_no_secrets(relay, answer, *parts)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_hls_catch_up_refuses_an_answer_that_is_not_a_playlist(tmp_path: Any) -> None:
    """The demo answers catch-up .m3u8 with a TS body: xrelay refuses to pass
    a non-playlist through (502) rather than leak anything."""
    relay = await start_proxying(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        sid = next(s for s, r in sorted(relay.live_by_id.items()) if r["tv_archive"])
        start = time.strftime("%Y-%m-%d:%H-%M", time.gmtime(time.time() - 3600))
        answer = await raw_request(relay.port, f"/timeshift/alice/alicepw/30/{start}/{sid}.m3u8")
        assert answer.status == 502
        assert relay.provider.stats.timeshift[-1].stream_id == sid
        assert_no_secrets(relay, answer)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_user_limit_closes_an_hls_session(tmp_path: Any) -> None:
    """bob may hold one stream: opening a movie ends his HLS session (its next
    requests get 403, like panels' hls_end) and frees the channel's slot."""
    relay = await start_proxying(tmp_path, settings=DemoSettings(max_connections=3, redirect_streams=False),
                              relay=replace(RelayConfig(), linger=0.3))
    try:
        relay.xr.hls.linger_targets = 0.0
        files = relay.xr.vod.files
        entry = await raw_request(relay.port, "/live/bob/bobpw/1.m3u8")
        assert entry.status == 200 and files.user_streams.count("bob") == 1
        mid = sorted(relay.vod_by_id)[0]
        movie = await raw_request(relay.port, f"/movie/bob/bobpw/{mid}.mp4",
                                  headers={"Range": "bytes=0-99"})
        assert movie.status == 206
        segment = await raw_request(relay.port, path_of(uris(entry.body)[0]))
        again = await raw_request(relay.port, "/live/bob/bobpw/1.m3u8")
        assert (segment.status, again.status) == (403, 403)
        assert b"more streams than allowed" in again.body
        # The revoked client's requests do not keep the channel's slot.
        await poll(lambda: not relay.xr.hls.channels and files.slots.used == 0)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_segments_answer_byte_ranges(tmp_path: Any) -> None:
    """Players of EXT-X-BYTERANGE playlists ask parts of one segment URL."""
    relay = await start_proxying(tmp_path)
    try:
        entry = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8")
        first = media_sequence(entry.body)
        url = path_of(uris(entry.body)[0])
        whole = demo_hls.segment_bytes(first)
        part = await raw_request(relay.port, url, headers={"Range": "bytes=188-375"})
        tail = await raw_request(relay.port, url, headers={"Range": "bytes=-188"})
        past = await raw_request(relay.port, url, headers={"Range": f"bytes={len(whole)}-"})
        assert part.status == 206 and part.body == whole[188:376]
        assert part.headers[b"content-range"] == b"bytes 188-375/%d" % len(whole)
        assert tail.status == 206 and tail.body == whole[-188:]
        assert past.status == 416
        assert sum(relay.provider.stats.segment_fetches.values()) == 1  # one fetch for all three
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_provider_failures_never_leak_into_answers(tmp_path: Any) -> None:
    relay = await start_proxying(tmp_path)
    try:
        origin = relay.provider.url
        user, password, _ = relay.upstream_secrets
        entry = await raw_request(relay.port, "/live/alice/alicepw/1.m3u8")
        assert entry.status == 200
        page = (f"<html><body>error at {origin}/hls/{user}/{password}/1/seg.ts</body></html>").encode()

        def failing(request: Any, *args: Any) -> bytes:
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"x-debug", origin.encode())
            return page

        relay.provider.streams.hls = failing
        relay.xr.hls.segments.clear()
        segment = await raw_request(relay.port, path_of(uris(entry.body)[-1]))
        playlist = await raw_request(relay.port, "/live/bob/bobpw/2.m3u8")
        assert (segment.status, playlist.status) == (502, 502)
        assert b"x-debug" not in segment.headers and b"x-debug" not in playlist.headers
        assert_no_secrets(relay, segment, playlist)
    finally:
        await relay.stop()
