"""The demo provider's streams over real loopback sockets: live TS, the
connection limit, Range, catch-up and HLS."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from typing import AsyncIterator
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.utils import getProcessOutputAndValue

from xrelay.demo import hls
from xrelay.demo.provider import DemoProvider
from xrelay.demo.sample import TS_PACKET, sample_clip

from demo_helpers import (
    open_stream, read_stream, start_provider, within,
)

USER, PASS = "provider-user", "provider-pass"
LIVE = f"/live/{USER}/{PASS}"


@pytest_twisted.async_yield_fixture
async def provider() -> AsyncIterator[DemoProvider]:
    p = await start_provider(reactor, live=10, vod=5, series=1, vod_size=1_000_000)
    yield p
    await p.stop()


def assert_packets(data: bytes) -> None:
    assert data, "no data"
    bad = [i for i in range(0, len(data) - TS_PACKET + 1, TS_PACKET) if data[i] != 0x47]
    assert not bad, f"sync byte missing at {bad[:5]}"


# ----- live --------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_live_redirects_then_streams_whole_packets(provider: DemoProvider) -> None:
    response = await treq.get(f"{provider.url}{LIVE}/3.ts", allow_redirects=False)
    assert response.code == 302
    location = response.headers.getRawHeaders("location")[0]
    assert location.startswith(f"{provider.url}/stream/live/") and location.endswith("/3.ts")
    assert USER not in location and PASS not in location
    for path in (f"{LIVE}/3.ts", f"{LIVE}/3", f"/{USER}/{PASS}/3"):
        data = await read_stream(provider.url + path, 40 * TS_PACKET * 7)
        assert len(data) == 40 * TS_PACKET * 7
        assert_packets(data)
    assert provider.stats.opened[("live", 3)] == 3
    assert provider.stats.requests["redirect"] == 4
    await within(provider.stats.wait_for(lambda: provider.stats.open_count() == 0))


@pytest_twisted.ensureDeferred
async def test_live_is_paced_at_the_sample_bitrate(provider: DemoProvider) -> None:
    clip = sample_clip()
    started = reactor.seconds()
    want = int(clip.bitrate_bps / 8 * 1.5)  # 1.5 s of stream
    data = await read_stream(f"{provider.url}{LIVE}/1.ts", want)
    elapsed = reactor.seconds() - started
    assert len(data) == want
    assert elapsed >= 1.2, f"1.5 s of stream arrived in {elapsed:.2f} s"


@pytest_twisted.ensureDeferred
async def test_unknown_live_id_is_404(provider: DemoProvider) -> None:
    for path in (f"{LIVE}/99.ts", f"{LIVE}/99.m3u8", f"{LIVE}/6.exe"):
        response = await treq.get(provider.url + path)
        await response.content()
        assert response.code == 404, path
    assert provider.stats.opened_total() == 0


@pytest_twisted.ensureDeferred
async def test_max_connections_cuts_the_oldest(provider: DemoProvider) -> None:
    stats = provider.stats
    readers = []
    for channel in (1, 2, 3):
        _, reader = await open_stream(f"{provider.url}{LIVE}/{channel}.ts")
        readers.append(reader)
        await within(stats.wait_for(lambda: stats.opened_total("live") == channel))
    await within(readers[0].done)  # the oldest connection was cut
    assert stats.kicked == 1 and stats.kicked_connections[0].stream_id == 1
    assert [c.stream_id for c in stats.open_streams] == [2, 3]
    assert not readers[1].done.called and not readers[2].done.called
    for reader in readers[1:]:
        reader.stop()
    await within(stats.wait_for(lambda: stats.open_count() == 0))


@pytest_twisted.ensureDeferred
async def test_unlimited_account_cuts_nobody() -> None:
    p = await start_provider(reactor, max_connections=0, redirect_streams=False)
    try:
        readers = [(await open_stream(f"{p.url}{LIVE}/1.ts"))[1] for _ in range(4)]
        await within(p.stats.wait_for(lambda: p.stats.open_count("live", 1) == 4))
        assert p.stats.kicked == 0 and p.stats.requests["redirect"] == 0
        for reader in readers:
            reader.stop()
        await within(p.stats.wait_for(lambda: p.stats.open_count() == 0))
    finally:
        await p.stop()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
@pytest_twisted.ensureDeferred
async def test_ffprobe_reads_the_live_stream() -> None:
    # 8 Mbit/s repeats the clip's bytes faster, so ffprobe has its seconds sooner.
    p = await start_provider(reactor, bitrate_bps=8_000_000)
    try:
        out, err, code = await getProcessOutputAndValue(
            shutil.which("ffprobe"),  # type: ignore[arg-type]
            ["-v", "error", "-rw_timeout", "10000000", "-show_entries",
             "stream=codec_name,width,height", "-of", "json", f"{p.url}{LIVE}/2.ts"],
            reactor=reactor,
        )
    finally:
        await p.stop()
    assert code == 0, err
    streams = json.loads(out)["streams"]
    assert {s["codec_name"] for s in streams} == {"h264", "aac"}
    assert any(s.get("width") == 640 and s.get("height") == 360 for s in streams)


# ----- movies, episodes: Range --------------------------------------------
@pytest_twisted.ensureDeferred
async def test_vod_range_answers_are_byte_exact(provider: DemoProvider) -> None:
    body = provider.vod_bytes(11)
    size = len(body)
    url = f"{provider.url}/movie/{USER}/{PASS}/11.mp4"
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=500000-500999": (500_000, 500_999),
        "bytes=-1000": (size - 1000, size - 1),
        "bytes=999000-": (999_000, size - 1),
        "bytes=999990-2000000": (999_990, size - 1),
    }
    for header, (first, last) in cases.items():
        response = await treq.get(url, headers={"Range": header})
        data = await response.content()
        assert response.code == 206, header
        assert response.headers.getRawHeaders("content-range") == [f"bytes {first}-{last}/{size}"]
        assert response.length == last - first + 1  # treq hides Content-Length
        assert data == body[first : last + 1], header
    response = await treq.get(url, headers={"Range": f"bytes={size}-"})
    await response.content()
    assert response.code == 416
    assert response.headers.getRawHeaders("content-range") == [f"bytes */{size}"]
    response = await treq.get(url)
    assert await response.content() == body and response.code == 200
    assert response.headers.getRawHeaders("accept-ranges") == ["bytes"]
    assert response.headers.getRawHeaders("content-type") == ["video/mp4"]


@pytest_twisted.ensureDeferred
async def test_if_range_and_content_types(provider: DemoProvider) -> None:
    url = f"{provider.url}/movie/{USER}/{PASS}/12.mkv"
    first = await treq.get(url, headers={"Range": "bytes=0-9"})
    await first.content()
    assert first.headers.getRawHeaders("content-type") == ["video/x-matroska"]
    modified = first.headers.getRawHeaders("last-modified")[0]
    same = await treq.get(url, headers={"Range": "bytes=10-19", "If-Range": modified})
    assert same.code == 206 and len(await same.content()) == 10
    stale = await treq.get(url, headers={"Range": "bytes=10-19",
                                         "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert stale.code == 200 and len(await stale.content()) == 1_000_000
    episode = await treq.get(f"{provider.url}/series/{USER}/{PASS}/16.ts",
                             headers={"Range": "bytes=0-187"})
    assert episode.headers.getRawHeaders("content-type") == ["video/mp2t"]
    assert (await episode.content())[0] == 0x47
    missing = await treq.get(f"{provider.url}/movie/{USER}/{PASS}/3.mp4")  # a live id
    await missing.content()
    assert missing.code == 404
    assert provider.stats.opened_total("vod") == 4


@pytest_twisted.ensureDeferred
async def test_paced_vod_is_still_byte_exact() -> None:
    p = await start_provider(reactor, live=10, vod=3, vod_size=300_000,
                             vod_bitrate_bps=20_000_000)
    try:
        url = f"{p.url}/movie/{USER}/{PASS}/11.ts"
        response = await treq.get(url, headers={"Range": "bytes=1000-"})
        assert response.code == 206
        assert await response.content() == p.vod_bytes(11)[1000:]
        assert p.stats.opened[("vod", 11)] == 1
    finally:
        await p.stop()


# ----- catch-up ------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_timeshift_both_forms_are_recorded(provider: DemoProvider) -> None:
    london = ZoneInfo("Europe/London")
    summer = int(datetime(2026, 7, 1, 20, 0, tzinfo=london).timestamp())
    response = await treq.get(f"{provider.url}/timeshift/{USER}/{PASS}/90/2026-07-01:20-00/6.ts")
    data = await response.content()
    assert response.code == 200 and data[0] == 0x47
    assert response.headers.getRawHeaders("content-type") == ["video/mp2t"]
    response = await treq.get(f"{provider.url}/streaming/timeshift.php", params={
        "username": USER, "password": PASS, "stream": "1", "start": "2026-01-15:08-30",
        "duration": "30"})
    await response.content()
    assert response.code == 200
    first, second = provider.stats.timeshift
    assert (first.stream_id, first.duration, first.form) == (6, 90, "path")
    assert first.start_utc == summer and summer % 86400 == 19 * 3600  # BST is UTC+1
    assert (second.stream_id, second.start, second.form) == (1, "2026-01-15:08-30", "query")
    assert second.start_utc is not None and second.start_utc % 86400 == 8 * 3600 + 1800
    response = await treq.get(f"{provider.url}/timeshift/{USER}/{PASS}/60/2026-07-01:20-00/2.ts")
    await response.content()
    assert response.code == 404  # channel 2 has no archive
    assert len(provider.stats.timeshift) == 3


# ----- HLS ------------------------------------------------------------------
async def fetch_playlist(url: str) -> tuple[str, list[str]]:
    """(final URL, URIs of a playlist) after redirects."""
    response = await treq.get(url)
    assert response.code == 200, url
    text = (await response.content()).decode()
    assert text.startswith("#EXTM3U")
    final = response.request.absoluteURI.decode()
    return final, [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest_twisted.ensureDeferred
async def test_hls_uri_forms_and_segment_counts(provider: DemoProvider) -> None:
    seen_forms = set()
    for channel in (1, 2, 3):
        final, uris = await fetch_playlist(f"{provider.url}{LIVE}/{channel}.m3u8")
        assert USER not in final and PASS not in final
        assert len(uris) == hls.WINDOW
        first = uris[0]
        seen_forms.add("absolute" if first.startswith("http://") else
                       "host_relative" if first.startswith("/") else "relative")
        segment_url = urljoin(final, uris[-1])
        for _ in range(3):
            response = await treq.get(segment_url)
            data = await response.content()
            assert response.code == 200 and data[0] == 0x47
            assert_packets(data)
        path = segment_url[len(provider.url):]
        assert provider.stats.segment_fetches[path] == 3
    assert seen_forms == {"absolute", "host_relative", "relative"}
    assert provider.stats.opened_total("hls_segment") == 9


@pytest_twisted.ensureDeferred
async def test_hls_master_playlist(provider: DemoProvider) -> None:
    final, variants = await fetch_playlist(f"{provider.url}{LIVE}/4.m3u8")
    assert final.endswith("/4/master.m3u8")
    assert variants[0] == "v0/index.m3u8" and variants[1].startswith("/hls/")
    for variant in variants:
        media, segments = await fetch_playlist(urljoin(final, variant))
        response = await treq.get(urljoin(media, segments[0]))
        assert response.code == 200 and (await response.content())[0] == 0x47


@pytest_twisted.ensureDeferred
async def test_hls_key_decrypts_segments(provider: DemoProvider) -> None:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    response = await treq.get(f"{provider.url}{LIVE}/5.m3u8")
    text = (await response.content()).decode()
    final = response.request.absoluteURI.decode()
    key_line = next(line for line in text.splitlines() if line.startswith("#EXT-X-KEY"))
    key_uri = key_line.split('URI="')[1].split('"')[0]
    assert key_uri.startswith(provider.url)
    sequence = int(next(line for line in text.splitlines()
                        if line.startswith("#EXT-X-MEDIA-SEQUENCE")).split(":")[1])
    first_segment = next(line for line in text.splitlines() if line and line[0] != "#")
    key = await (await treq.get(key_uri)).content()
    encrypted = await (await treq.get(urljoin(final, first_segment))).content()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(sequence.to_bytes(16, "big"))).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(encrypted) + decryptor.finalize()) + unpadder.finalize()
    assert_packets(plain)
    assert provider.stats.requests["hls_key"] == 1


@pytest_twisted.ensureDeferred
async def test_hls_bad_token_is_refused(provider: DemoProvider) -> None:
    response = await treq.get(f"{provider.url}/hls/{'0' * 32}/1/index.m3u8")
    await response.content()
    assert response.code == 403


class _StalledClient(Protocol):
    """Sends one GET, then never reads again."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(f"GET {self.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.transport.pauseProducing()  # stop reading: the socket buffers fill up

    def connectionLost(self, reason: object = None) -> None:
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_stalled_live_reader_pauses_then_is_dropped() -> None:
    p = await start_provider(reactor, bitrate_bps=40_000_000, live_max_lag=1.0,
                             redirect_streams=False)
    try:
        client = _StalledClient(f"{LIVE}/1.ts")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", p.port), client)
        await within(p.stats.wait_for(lambda: p.stats.dropped_slow == 1))
        assert p.stats.open_count() == 0 and p.stats.kicked == 0
        client.transport.resumeProducing()  # read again: the connection is gone
        await within(client.lost)
    finally:
        await p.stop()
