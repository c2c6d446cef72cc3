"""HlsUpstream on a Clock: a provider's live HLS read into a channel's buffer."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from xrelay.relay.fanout import Fanout
from xrelay.relay.hls_upstream import HlsNotCarried, HlsUpstream, parse_playlist
from xrelay.relay.mpegts import PACKET_SIZE, is_aligned
from xrelay.relay.upstream import State, UpstreamError

BASE = "http://provider.test/hls/T/7/"


def ts(tag: int, packets: int = 20) -> bytes:
    """Whole TS packets whose payload says which segment they are."""
    return (b"\x47\x01\x00\x10" + bytes([tag]) * (PACKET_SIZE - 4)) * packets


def media(first: int, count: int, *, target: int = 2, extra: str = "", marks: dict[int, str] | None = None,
          end: bool = False) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
             f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    if extra:
        lines.append(extra)
    for n in range(first, first + count):
        if marks and n in marks:
            lines.append(marks[n])
        lines += [f"#EXTINF:{target}.000,", f"seg_{n}.ts"]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


class FakeTransport:
    def stopProducing(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class FakeResponse:
    def __init__(self, code: int, body: bytes, url: str) -> None:
        self.code = code
        self.body = body
        self.headers = Headers()
        self.request = type("R", (), {"absoluteURI": url.encode()})()

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(FakeTransport())
        if self.body:
            protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


class FakeProvider:
    """URL -> answer; every request is recorded."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes, str]] = {}
        self.asked: list[str] = []
        self.hold: set[str] = set()
        self.pending: list[Deferred[Any]] = []

    def playlist(self, url: str, text: str, final: str | None = None) -> None:
        self.answers[url] = (200, text.encode(), final or url)

    def segment(self, n: int, data: bytes | None = None) -> None:
        self.answers[f"{BASE}seg_{n}.ts"] = (200, data if data is not None else ts(n % 256), "")

    def open(self, url: str) -> Deferred[Any]:
        self.asked.append(url)
        if url in self.hold:
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            return d
        code, body, final = self.answers.get(url, (404, b"", url))
        return succeed(FakeResponse(code, body, final or url))


def segments_asked(provider: FakeProvider) -> list[int]:
    return [int(u.rsplit("_", 1)[1][:-3]) for u in provider.asked if u.endswith(".ts")]


def make(provider: FakeProvider, clock: Clock, **kw: Any) -> tuple[HlsUpstream, Fanout, list[str]]:
    fanout = Fanout("7", clock)
    resets: list[str] = []
    fanout.on_reset.append(resets.append)
    up = HlsUpstream(clock, provider.open, BASE + "index.m3u8", fanout, name="7", **kw)
    return up, fanout, resets


def test_parse_media_and_master_playlists() -> None:
    text = media(40, 3, marks={41: "#EXT-X-DISCONTINUITY"})
    playlist = parse_playlist(text, BASE + "index.m3u8")
    assert playlist.target == 2 and not playlist.is_master and not playlist.not_carried
    assert [(s.sequence, s.url, s.discontinuity) for s in playlist.segments] == [
        (40, BASE + "seg_40.ts", False), (41, BASE + "seg_41.ts", True), (42, BASE + "seg_42.ts", False)]
    master = parse_playlist('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="a,b"\nlow/index.m3u8\n'
                            "#EXT-X-STREAM-INF:BANDWIDTH=2400000\n/hls/hi.m3u8\n", BASE + "master.m3u8")
    assert master.is_master
    assert master.variants == ((800000, BASE + "low/index.m3u8"), (2400000, "http://provider.test/hls/hi.m3u8"))
    keyed = parse_playlist(media(1, 2, extra='#EXT-X-KEY:METHOD=AES-128,URI="k.bin"'), BASE)
    assert "encrypted" in keyed.not_carried
    assert parse_playlist(media(1, 2, extra='#EXT-X-KEY:METHOD=NONE'), BASE).not_carried == ""
    assert "fMP4" in parse_playlist(media(1, 2, extra='#EXT-X-MAP:URI="init.mp4"'), BASE).not_carried
    with pytest.raises(UpstreamError):
        parse_playlist("<html>busy</html>", BASE)


def test_follows_the_live_edge_and_feeds_whole_segments_in_order() -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", media(10, 6))
    for n in range(10, 20):
        provider.segment(n)
    up, fanout, resets = make(provider, clock)
    chunks: list[bytes] = []
    fanout.ring.observers.append(lambda chunk, points: chunks.append(chunk.data))
    started = up.start()
    assert started.called and up.state is State.STREAMING
    # a first load starts three segments before the live edge
    assert segments_asked(provider) == [13, 14, 15]
    assert resets == ["the provider's HLS began"]
    provider.playlist(BASE + "index.m3u8", media(11, 6))
    clock.advance(1.9)
    assert segments_asked(provider) == [13, 14, 15]
    clock.advance(0.2)  # a target duration after the previous load began
    assert segments_asked(provider) == [13, 14, 15, 16]
    data = b"".join(chunks)
    assert data == ts(13) + ts(14) + ts(15) + ts(16) and is_aligned(data)
    assert up.segments_fetched == 4 and up.bytes_in == len(data)
    # nothing new: reloaded after half a target duration
    clock.advance(2.0)
    loads = provider.asked.count(BASE + "index.m3u8")
    clock.advance(1.0)
    assert provider.asked.count(BASE + "index.m3u8") == loads + 1
    assert resets == ["the provider's HLS began"]
    up.stop()


def test_a_master_playlist_is_followed_to_its_best_variant() -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n"
                      "#EXT-X-STREAM-INF:BANDWIDTH=9000\nhigh.m3u8\n")
    provider.playlist(BASE + "high.m3u8", media(1, 3))
    for n in range(1, 5):
        provider.segment(n)
    up, _, _ = make(provider, clock)
    assert up.start().called
    provider.playlist(BASE + "high.m3u8", media(2, 3))
    clock.advance(2.0)
    playlists = [u for u in provider.asked if u.endswith(".m3u8")]
    assert playlists == [BASE + "index.m3u8", BASE + "high.m3u8", BASE + "high.m3u8"]
    assert segments_asked(provider) == [1, 2, 3, 4]
    up.stop()


@pytest.mark.parametrize("extra, data, reason", [
    ('#EXT-X-KEY:METHOD=AES-128,URI="key.bin"', None, "encrypted"),
    ('#EXT-X-MAP:URI="init.mp4"', None, "fMP4"),
    ("", b"\x00\x00\x00\x18ftypiso6" * 100, "not MPEG-TS"),
])
def test_what_the_hub_cannot_carry_fails_the_start(extra: str, data: bytes | None, reason: str) -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", media(1, 3, extra=extra))
    for n in range(1, 4):
        provider.segment(n, data)
    up, _, _ = make(provider, clock)
    failures: list[Failure] = []
    up.start().addErrback(failures.append)
    assert failures and failures[0].check(HlsNotCarried) and reason in str(failures[0].value)
    assert up.state is State.FAILED
    clock.advance(60)
    assert len(provider.asked) <= 4  # it stopped asking


def test_gaps_and_discontinuities_reset_the_buffer() -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", media(1, 3))
    for n in range(1, 12):
        provider.segment(n)
    up, _, resets = make(provider, clock)
    up.start()
    provider.playlist(BASE + "index.m3u8", media(6, 3))  # 4 and 5 are gone
    clock.advance(2.0)
    assert segments_asked(provider)[-3:] == [6, 7, 8] and up.segments_missed == 2
    assert resets[-1] == "segments of the provider's HLS were missed"
    provider.playlist(BASE + "index.m3u8", media(7, 3, marks={9: "#EXT-X-DISCONTINUITY"}))
    clock.advance(2.0)
    assert resets[-1] == "the provider's HLS has a discontinuity" and len(resets) == 3
    provider.playlist(BASE + "index.m3u8", media(1, 3))  # the provider restarted its numbering
    clock.advance(2.0)
    assert resets[-1] == "the provider's HLS began" and len(resets) == 4
    up.stop()


def test_a_stalled_playlist_is_reloaded_then_given_up() -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", media(1, 3))
    for n in range(1, 4):
        provider.segment(n)
    gave_up: list[str] = []
    up, _, _ = make(provider, clock, silence_timeout=5.0, reconnect_bound=10.0,
                    on_give_up=gave_up.append)
    up.start()
    clock.pump([1.0] * 8)  # no new segment for 8 s (> silence, > 3 targets)
    assert up.reconnects == 1 and "did not advance" in up.last_error
    del provider.answers[BASE + "index.m3u8"]  # now it answers 404
    clock.pump([1.0] * 15)
    assert gave_up and "404" in gave_up[0] and up.state is State.FAILED


def test_paused_fetches_nothing_and_stop_cancels_a_request() -> None:
    clock, provider = Clock(), FakeProvider()
    provider.playlist(BASE + "index.m3u8", media(1, 3))
    for n in range(1, 6):
        provider.segment(n)
    up, fanout, _ = make(provider, clock)
    up.start()
    up.pauseProducing()
    provider.playlist(BASE + "index.m3u8", media(3, 3))
    asked = len(provider.asked)
    clock.pump([1.0] * 10)
    assert len(provider.asked) == asked
    provider.hold.add(f"{BASE}seg_4.ts")
    up.resumeProducing()
    clock.advance(0)
    assert provider.pending and not provider.pending[0].called
    stopped = up.stop()
    assert stopped.called and provider.pending[0].called  # cancelled
    assert up.state is State.STOPPED
