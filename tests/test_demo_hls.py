"""The demo provider's HLS playlists on a fixed clock."""

from __future__ import annotations

from xrelay.demo import hls

BASE, PREFIX = "http://provider.test:8080", "/hls/TOKEN/7"


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_window_slides_with_the_clock() -> None:
    first = hls.media_playlist(BASE, PREFIX, 2, now=100.0)
    later = hls.media_playlist(BASE, PREFIX, 2, now=102.5)
    assert "#EXT-X-MEDIA-SEQUENCE:45" in first and "#EXT-X-MEDIA-SEQUENCE:46" in later
    assert uris(first) == [f"{PREFIX}/seg_{n}.ts" for n in range(45, 51)]
    assert uris(later)[:-1] == uris(first)[1:]
    assert hls.segment_exists(50, 100.0) and not hls.segment_exists(51, 100.0)


def test_window_never_lists_future_segments() -> None:
    assert uris(hls.media_playlist(BASE, PREFIX, 3, now=3.0)) == ["seg_0.ts", "seg_1.ts"]


def test_uri_styles_by_channel() -> None:
    assert [hls.style(i) for i in range(1, 7)] == [
        "absolute", "host_relative", "relative", "master", "key", "absolute"]
    assert uris(hls.media_playlist(BASE, PREFIX, 1, 100.0))[0] == f"{BASE}{PREFIX}/seg_45.ts"
    assert uris(hls.media_playlist(BASE, PREFIX, 3, 100.0))[0] == "seg_45.ts"
    keyed = hls.media_playlist(BASE, PREFIX, 5, 100.0)
    assert f'#EXT-X-KEY:METHOD=AES-128,URI="{BASE}{PREFIX}/key.bin"' in keyed
    assert uris(hls.master_playlist(PREFIX)) == ["v0/index.m3u8", f"{PREFIX}/v1/index.m3u8"]
    assert uris(hls.media_playlist(BASE, PREFIX, 4, 100.0, "v0"))[0] == "seg_45.ts"
    assert uris(hls.media_playlist(BASE, PREFIX, 4, 100.0, "v1"))[0] == f"{PREFIX}/v1/seg_45.ts"
    assert hls.entry_name(4) == "master.m3u8" and hls.entry_name(5) == "index.m3u8"


def test_encrypted_segment_differs_and_pads() -> None:
    key = hls.key_for("TOKEN", 5)
    plain, encrypted = hls.segment_bytes(45), hls.segment_bytes(45, key)
    assert len(key) == 16
    assert len(encrypted) == (len(plain) // 16 + 1) * 16 and encrypted[:188] != plain[:188]
