"""Movies and episodes through xrelay, over real sockets against the demo provider."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from harness import start_relay
from media_helpers import LogCapture, assert_no_secrets, poll, raw_request
from xrelay.demo.provider import DemoSettings

LAST_MODIFIED = b"Tue, 14 Nov 2023 22:13:20 GMT"


def first_movie(relay: Any, index: int = 0) -> tuple[int, str]:
    mid = sorted(relay.vod_by_id)[index]
    return mid, relay.vod_by_id[mid]["container_extension"]


def first_episode(relay: Any) -> int:
    return sorted(relay.episode_ids)[0]


@pytest_twisted.ensureDeferred
async def test_range_answers_are_byte_for_byte(tmp_path: Any) -> None:
    relay = await start_relay(tmp_path)
    try:
        mid, ext = first_movie(relay)
        whole = relay.provider.vod_bytes(mid)
        size = len(whole)
        path = f"/movie/alice/alicepw/{mid}.{ext}"
        answers = []

        full = await raw_request(relay.port, path)
        answers.append(full)
        assert full.status == 200
        assert full.headers[b"content-length"] == b"%d" % size
        assert full.headers[b"accept-ranges"] == b"bytes"
        assert full.headers[b"last-modified"] == LAST_MODIFIED
        assert full.headers[b"content-type"] in (b"video/mp4", b"video/x-matroska", b"video/mp2t")
        assert full.body == whole

        cases = {
            "bytes=0-1023": (0, 1023),
            "bytes=1000000-1999999": (1000000, 1999999),
            "bytes=-5000": (size - 5000, size - 1),
            f"bytes={size - 10}-": (size - 10, size - 1),
            f"bytes=100-{size + 500}": (100, size - 1),
        }
        for spec, (a, b) in cases.items():
            answer = await raw_request(relay.port, path, headers={"Range": spec})
            answers.append(answer)
            assert answer.status == 206, spec
            assert answer.headers[b"content-range"] == b"bytes %d-%d/%d" % (a, b, size), spec
            assert answer.headers[b"content-length"] == b"%d" % (b - a + 1), spec
            assert answer.headers[b"last-modified"] == LAST_MODIFIED
            assert answer.body == whole[a : b + 1], spec

        past = await raw_request(relay.port, path, headers={"Range": f"bytes={size}-"})
        answers.append(past)
        assert past.status == 416
        assert past.headers[b"content-range"] == b"bytes */%d" % size
        assert past.body == b""

        same = await raw_request(relay.port, path, headers={"Range": "bytes=10-19",
                                                            "If-Range": LAST_MODIFIED.decode()})
        changed = await raw_request(relay.port, path, headers={"Range": "bytes=10-19",
                                                               "If-Range": "Mon, 01 Jan 2024 00:00:00 GMT"})
        answers += [same, changed]
        assert same.status == 206 and same.body == whole[10:20]
        assert changed.status == 200 and changed.body == whole

        head = await raw_request(relay.port, path, method="HEAD", headers={"Range": "bytes=0-99"})
        answers.append(head)
        assert head.status == 206 and head.headers[b"content-length"] == b"100"
        assert head.body == b""

        # The demo provider answers every stream URL with a 302 to another
        # path: its Location (and Server, ETag host...) never reach the client.
        assert relay.provider.stats.requests["redirect"] > 0
        assert_no_secrets(relay, *answers)
        await poll(lambda: not relay.xr.vod.files.playbacks)
        assert relay.xr.vod.files.slots.used == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_series_episode_plays_with_range(tmp_path: Any) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        ep = first_episode(relay)
        whole = relay.provider.vod_bytes(ep)
        answer = await raw_request(relay.port, f"/series/bob/bobpw/{ep}.mp4",
                                   headers={"Range": "bytes=500-1499"})
        assert answer.status == 206
        assert answer.body == whole[500:1500]
        assert relay.provider.stats.requests["series"] == 1
        assert_no_secrets(relay, answer)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_refusals_never_contact_the_provider(tmp_path: Any) -> None:
    relay = await start_relay(tmp_path)
    try:
        mid, ext = first_movie(relay)
        stats = relay.provider.stats
        before = (stats.requests["movie"], stats.requests["series"])
        cases = [
            (f"/movie/alice/wrong/{mid}.{ext}", 401),
            (f"/movie/nobody/x/{mid}.{ext}", 401),
            (f"/movie/carol/carolpw/{mid}.{ext}", 403),
            (f"/movie/dave/davepw/{mid}.{ext}", 403),
            ("/movie/alice/alicepw/999999.mp4", 404),
            ("/movie/alice/alicepw/1.ts", 404),  # a live channel id, not a movie
            ("/movie/alice/alicepw/abc.mp4", 404),
            ("/series/alice/wrong/999999.mp4", 401),
        ]
        for path, code in cases:
            answer = await raw_request(relay.port, path)
            assert answer.status == code, path
            assert_no_secrets(relay, answer)
        assert (stats.requests["movie"], stats.requests["series"]) == before
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_episode_known_only_from_cached_series_details(tmp_path: Any) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        cache = relay.xr.cache
        series_id = sorted(relay.series_by_id)[0]
        detail = await cache.details("series", series_id)
        ep = int(next(iter(detail["episodes"].values()))[0]["id"])
        cache.current.episodes.remove(ep)  # as if the provider's playlist missed it
        assert not cache.has("episode", ep)
        answer = await raw_request(relay.port, f"/series/alice/alicepw/{ep}.mp4",
                                   headers={"Range": "bytes=0-99"})
        assert answer.status == 206 and len(answer.body) == 100
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_seek_during_playback_hands_the_slot_over(tmp_path: Any) -> None:
    """A 1-connection account: the seek's request arrives while the first is
    still streaming; the provider must never see two connections."""
    settings = DemoSettings(max_connections=1, vod_bitrate_bps=4_000_000)
    relay = await start_relay(tmp_path, settings=settings)
    logs = LogCapture().__enter__()
    try:
        mid, ext = first_movie(relay)
        whole = relay.provider.vod_bytes(mid)
        path = f"/movie/alice/alicepw/{mid}.{ext}"
        stats = relay.provider.stats
        first = await raw_request(relay.port, path, wait="head")
        assert first.status == 200
        await poll(lambda: len(first.data) > 50_000)
        assert not first.lost

        seek = await raw_request(relay.port, path, headers={"Range": "bytes=2000000-2099999"})
        assert seek.status == 206
        assert seek.body == whole[2000000:2100000]
        await first.closed  # the old request was closed by xrelay
        assert stats.kicked == 0, "the provider saw more connections than allowed"
        assert relay.xr.vod.files.slots.handovers == 1
        assert stats.opened_total("vod") == 2

        # Another user cannot take the only slot while alice plays.
        playing = await raw_request(relay.port, path, wait="head")
        assert playing.status == 200
        before = stats.requests["movie"]
        other, _ = first_movie(relay, 1)
        refused = await raw_request(relay.port, f"/movie/bob/bobpw/{other}.mp4")
        assert refused.status == 503 and b"busy" in refused.body
        assert stats.requests["movie"] == before
        playing.stop()
        await poll(lambda: relay.xr.vod.files.slots.used == 0)
        await stats.wait_for(lambda: stats.open_count() == 0)
        assert stats.kicked == 0
        assert_no_secrets(relay, first, seek, playing, refused)
        logs.assert_no_secrets(relay)
    finally:
        logs.__exit__()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_user_limit_closes_the_users_oldest_stream(tmp_path: Any) -> None:
    settings = DemoSettings(max_connections=3, vod_bitrate_bps=4_000_000, redirect_streams=False)
    relay = await start_relay(tmp_path, settings=settings)
    try:
        a, ext_a = first_movie(relay, 0)
        b, ext_b = first_movie(relay, 1)
        first = await raw_request(relay.port, f"/movie/bob/bobpw/{a}.{ext_a}", wait="head")
        assert first.status == 200
        second = await raw_request(relay.port, f"/movie/bob/bobpw/{b}.{ext_b}", wait="head")
        assert second.status == 200
        await first.closed  # bob may hold one stream: the oldest goes
        assert not second.lost
        streams = relay.xr.vod.files.user_streams
        assert streams.count("bob") == 1
        second.stop()
        await poll(lambda: streams.count("bob") == 0 and relay.xr.vod.files.slots.used == 0)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_slow_client_slows_only_its_own_upstream(tmp_path: Any) -> None:
    size = 48 * 1024 * 1024
    settings = DemoSettings(vod_size=size, redirect_streams=False)
    relay = await start_relay(tmp_path, settings=settings)
    try:
        mid, ext = first_movie(relay)
        path = f"/movie/alice/alicepw/{mid}.{ext}"
        files = relay.xr.vod.files
        stalled = await raw_request(relay.port, path, read=False, wait=None)

        def stalled_proxy() -> Any:
            for pb in files.playbacks:
                if pb.proxy is not None:
                    return pb.proxy
            return None

        await poll(lambda: stalled_proxy() is not None and stalled_proxy().paused)
        proxy = stalled_proxy()
        held = proxy.bytes
        # Another client reads the same movie to the end meanwhile.
        fast = await raw_request(relay.port, path, headers={"Range": f"bytes=0-{size // 2 - 1}"})
        assert fast.status == 206 and len(fast.body) == size // 2
        assert proxy.paused and not proxy.detached
        # The stalled client's upstream was paused: bounded by socket buffers.
        assert proxy.bytes < size // 4, proxy.bytes
        assert proxy.bytes - held < 1024 * 1024
        stalled.stop()
        await poll(lambda: not files.playbacks)
        stats = relay.provider.stats
        await stats.wait_for(lambda: stats.open_count() == 0)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_movies_share_the_live_relays_slots(tmp_path: Any) -> None:
    """Live channels and movies draw on one pool: the same client switching
    from a live channel to a movie hands the channel's slot over."""
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1, redirect_streams=False))
    try:
        files = relay.xr.vod.files
        if getattr(relay.xr.relay, "slots", None) is None:
            pytest.skip("the live relay is not wired in this build")
        assert files.slots is relay.xr.relay.slots
        assert files.user_streams is relay.xr.relay.user_streams
        live = await raw_request(relay.port, "/live/bob/bobpw/3.ts", wait="head")
        assert live.status == 200
        mid, ext = first_movie(relay)
        movie = await raw_request(relay.port, f"/movie/bob/bobpw/{mid}.{ext}",
                                  headers={"Range": "bytes=0-999"})
        assert movie.status == 206 and len(movie.body) == 1000
        await live.closed
        stats = relay.provider.stats
        assert stats.kicked == 0
        await poll(lambda: files.slots.used == 0)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_movie_hands_its_slot_to_the_same_clients_live_channel(tmp_path: Any) -> None:
    """The other direction: a player leaves a movie for a live channel (opening
    the channel first). Another user asking at capacity gets 503 at once."""
    relay = await start_relay(tmp_path, settings=DemoSettings(max_connections=1, redirect_streams=False))
    try:
        if getattr(relay.xr.relay, "slots", None) is None:
            pytest.skip("the live relay is not wired in this build")
        mid, ext = first_movie(relay)
        movie = await raw_request(relay.port, f"/movie/alice/alicepw/{mid}.{ext}", wait="head")
        assert movie.status == 200
        # (with Range: a player without it gets the "busy" status clip instead)
        other = await raw_request(relay.port, "/live/bob/bobpw/3.ts", wait="head",
                                  headers={"Range": "bytes=0-"})
        assert other.status == 503
        live = await raw_request(relay.port, "/live/alice/alicepw/3.ts", wait="head")
        assert live.status == 200
        await movie.closed
        assert relay.provider.stats.kicked == 0
        live.stop()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_provider_drop_mid_movie_cuts_the_client_and_frees_the_slot(tmp_path: Any) -> None:
    """The provider stops after 300 kB (it drops the connection, or, when its
    socket was full, goes silent): the player sees a short body, the slot is
    freed."""
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        relay.xr.vod.files.silence_timeout = 1.0
        relay.provider.faults.vod = "drop_after_bytes:300000"
        mid, ext = first_movie(relay)
        size = len(relay.provider.vod_bytes(mid))
        answer = await raw_request(relay.port, f"/movie/alice/alicepw/{mid}.{ext}")
        assert answer.status == 200
        assert answer.headers[b"content-length"] == b"%d" % size
        assert 0 < len(answer.body) <= 300000  # the player sees a short body
        files = relay.xr.vod.files
        await poll(lambda: not files.playbacks and files.slots.used == 0)
        assert files.user_streams.count("alice") == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_provider_headers_that_could_leak_are_never_passed(tmp_path: Any) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        streams = relay.provider.streams
        original = streams.file_entry
        origin = relay.provider.url

        def noisy_file_entry(request: Any, *args: Any) -> Any:
            request.setHeader(b"set-cookie", b"session=abc; Path=/")
            request.setHeader(b"x-origin", f"{origin}/movie".encode())
            request.setHeader(b"link", f"<{origin}/next>; rel=next".encode())
            set_header = request.setHeader

            def leaky_etag(name: bytes, value: bytes) -> None:  # a passed header, leaking
                set_header(name, f'"{origin}"'.encode() if name.lower() == b"etag" else value)

            request.setHeader = leaky_etag
            return original(request, *args)

        streams.file_entry = noisy_file_entry
        mid, ext = first_movie(relay)
        answer = await raw_request(relay.port, f"/movie/alice/alicepw/{mid}.{ext}",
                                   headers={"Range": "bytes=0-99"})
        assert answer.status == 206 and len(answer.body) == 100
        for name in (b"set-cookie", b"x-origin", b"link", b"etag", b"location"):
            assert name not in answer.headers
        assert answer.headers[b"server"] != b"" and b"Twisted" in answer.headers[b"server"]
        assert_no_secrets(relay, answer)
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_client_leaving_while_the_provider_thinks_frees_everything(tmp_path: Any) -> None:
    from twisted.web.server import NOT_DONE_YET

    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        hanging: list[Any] = []

        def hang(request: Any, *args: Any) -> Any:
            hanging.append(request)
            return NOT_DONE_YET  # headers never come

        relay.provider.streams.file_entry = hang
        mid, ext = first_movie(relay)
        files = relay.xr.vod.files
        client = await raw_request(relay.port, f"/movie/alice/alicepw/{mid}.{ext}", wait=None)
        await poll(lambda: len(hanging) == 1)
        assert files.slots.used == 1 and files.user_streams.count("alice") == 1
        gone: list[Any] = []
        hanging[0].notifyFinish().addBoth(gone.append)
        client.stop()
        await poll(lambda: gone and files.slots.used == 0 and not files.playbacks)
        assert files.user_streams.count("alice") == 0
    finally:
        await relay.stop()


class _EchoingPanel:
    """A provider that answers every stream URL with 200 and a body echoing
    the request, as some panels' error pages do."""

    def __init__(self, content_type: bytes, body: bytes) -> None:
        self.content_type = content_type
        self.body = body

    def resource(self) -> Any:
        from twisted.web.resource import Resource

        panel = self

        class Echo(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                request.setHeader(b"content-type", panel.content_type)
                host = request.getHeader(b"host") or b""
                return panel.body.replace(b"PATH", request.uri).replace(b"HOST", host)

        return Echo()


@pytest.mark.parametrize("content_type, body", [
    (b"text/html", b"<html>error for PATH on HOST</html>"),
    (b"video/mp2t", b"<html>error for PATH on HOST</html>"),
    (b"application/octet-stream", b"#EXTM3U\n#EXTINF:10,\nhttp://HOSTPATH.ts\n"),
    (b"video/mp4", b"\x00\x00\x00\x18ftypmp42 then PATH"),
])
@pytest_twisted.ensureDeferred
async def test_a_provider_page_echoing_its_secrets_never_reaches_the_player(
        tmp_path: Any, content_type: bytes, body: bytes) -> None:
    from twisted.internet import reactor
    from twisted.web.server import Site

    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    panel = _EchoingPanel(content_type, body)
    port = reactor.listenTCP(0, Site(panel.resource()), interface="127.0.0.1")
    try:
        secrets = (relay.provider.settings.username, relay.provider.settings.password,
                   f"127.0.0.1:{port.getHost().port}")
        relay.xr.client.set_origin(f"http://127.0.0.1:{port.getHost().port}")
        mid, ext = first_movie(relay)
        answer = await raw_request(relay.port, f"/movie/alice/alicepw/{mid}.{ext}")
        for secret in secrets:
            assert secret.encode() not in bytes(answer.data), answer.data[:300]
    finally:
        await port.stopListening()
        await relay.stop()
