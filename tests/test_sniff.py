"""Tests for xrelay.media.sniff: media or error page, and the type to send."""

from __future__ import annotations

import random

import pytest

from xrelay.media.sniff import SNIFF_BYTES, Sniffer, classify, container_of, media_type

rng = random.Random(14)


def noise(size: int) -> bytes:
    return rng.randbytes(size)


def ts_packets(count: int, size: int = 188, prefix: int = 0) -> bytes:
    packet = b"\x00" * prefix + b"\x47\x40\x00\x10" + bytes(size - prefix - 4)
    return b"".join(packet[:prefix] + b"\x47" + noise(size - prefix - 1) if i else packet
                    for i in range(count))


MEDIA_HEADS = {
    "mpegts": ts_packets(12),
    "m2ts": ts_packets(12, 192, 4),
    "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + noise(2000),
    "matroska": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + noise(2000),
    "avi": b"RIFF\x00\x10\x00\x00AVI LIST" + noise(2000),
    "flv": b"FLV\x01\x05\x00\x00\x00\x09" + noise(2000),
    "mpeg": b"\x00\x00\x01\xba\x44\x00\x04\x00" + noise(2000),
    "asf": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + noise(2000),
    "ogg": b"OggS\x00\x02" + noise(2000),
    "mp3": b"ID3\x04\x00\x00" + noise(2000),
    "aac": b"\xff\xf1\x50\x80" + noise(2000),
}


@pytest.mark.parametrize("container", sorted(MEDIA_HEADS))
def test_containers_are_media_whatever_the_provider_calls_them(container: str) -> None:
    verdict = classify(200, MEDIA_HEADS[container], content_type=b"text/vnd.trolltech.linguist")
    assert verdict is not None and verdict.media and verdict.container == container


def test_transport_stream_from_the_middle_of_a_file() -> None:
    stream = ts_packets(40)
    verdict = classify(206, stream[1000:3000], content_type=b"text/html")
    assert verdict is not None and verdict.media and verdict.container == "mpegts"


def test_ranged_answer_from_the_middle_of_a_binary_file_is_media() -> None:
    for first in (b"<", b"{", b"[", b"#"):  # a page's first byte, by chance
        verdict = classify(206, first + noise(4000), content_type=b"video/mp4")
        assert verdict is not None and verdict.media, first


@pytest.mark.parametrize("body,reason", [
    (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
    (b"  \r\n<?xml version='1.0'?><error/>", "HTML"),
    (b'{"user_info":{"auth":0}}', "JSON"),
    (b"[]", "JSON"),
    (b"#EXTM3U\n#EXTINF:-1,Movie\nhttp://x/y.ts\n", "playlist"),
    (b"\xef\xbb\xbf#EXTM3U\n", "playlist"),
    (b"Your subscription has expired.", "text"),
    ("Abonnement expiré, contactez le revendeur".encode(), "text"),
    (b"", "empty body"),
])
def test_error_pages_are_not_media(body: bytes, reason: str) -> None:
    verdict = classify(200, body, final=True, content_type=b"video/mp2t")
    assert verdict is not None and not verdict.media and verdict.reason == reason


def test_body_naming_the_provider_is_a_page() -> None:
    def leaks(text: str) -> list[str]:
        return ["host"] if "provider.example" in text else []

    verdict = classify(200, MEDIA_HEADS["mpegts"][:500] + b"provider.example", leaks=leaks)
    assert verdict is not None and not verdict.media and verdict.reason == "names the provider"
    assert classify(200, MEDIA_HEADS["mpegts"], leaks=leaks) is not None


def test_status_decides_first() -> None:
    verdict = classify(404, MEDIA_HEADS["mp4"])
    assert verdict is not None and not verdict.media and verdict.reason == "HTTP 404"


def test_unknown_binary_is_media_unless_called_a_page() -> None:
    data = noise(SNIFF_BYTES)
    verdict = classify(200, data, content_type=b"application/octet-stream")
    assert verdict is not None and verdict.media and verdict.container is None
    gzipped_page = b"\x1f\x8b\x08\x00" + noise(600)
    verdict = classify(200, gzipped_page, final=True, content_type=b"text/html; charset=utf-8")
    assert verdict is not None and not verdict.media


def test_more_bytes_are_awaited_until_a_decision() -> None:
    assert classify(200, b"\x47\x40\x00\x10" + bytes(100)) is None     # a TS packet, not yet three
    assert classify(200, b"\x00\x00\x00") is None                         # maybe a box size
    assert classify(200, b"<html>") is None                               # maybe more text
    assert classify(200, b"<html>", final=True) is not None
    assert classify(200, noise(SNIFF_BYTES + 10)) is not None             # never past SNIFF_BYTES


def test_sniffer_collects_chunks() -> None:
    stream = MEDIA_HEADS["mpegts"]
    sniffer = Sniffer(200, b"text/vnd.trolltech.linguist")
    verdicts = [sniffer.feed(stream[i:i + 100]) for i in range(0, 600, 100)]
    assert verdicts[:3] == [None, None, None]
    assert verdicts[-1] is not None and verdicts[-1].media
    assert sniffer.head == stream[:len(sniffer.head)] and len(sniffer.head) >= 400
    page = Sniffer(200, b"text/html")
    assert page.feed(b"<html>gone") is None
    assert page.finish().reason == "HTML"
    assert Sniffer(200).finish().reason == "empty body"


def test_text_is_never_taken_for_a_transport_stream() -> None:
    text = (b"G" + b"x" * 187) * 10  # a 'G' every 188 bytes
    verdict = classify(200, text, final=True)
    assert verdict is not None and not verdict.media


def test_container_of_short_heads() -> None:
    assert container_of(b"") is None
    assert container_of(b"\x1a\x45\xdf\xa3") == "matroska"
    assert container_of(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert container_of(b"\x00\x00\x00\x04ftypmp42") is None  # impossible box size


@pytest.mark.parametrize("ext,provider,container,expected", [
    ("ts", b"text/vnd.trolltech.linguist", "mpegts", b"video/mp2t"),
    ("mkv", b"application/octet-stream", "matroska", b"video/x-matroska"),
    ("mkv", b"text/plain", None, b"video/x-matroska"),
    ("mp4", b"video/mp4", "mp4", b"video/mp4"),
    ("mp4", b"video/mp4", "mpegts", b"video/mp2t"),          # the provider's type is wrong
    ("mp4", b"application/octet-stream", "mpegts", b"video/mp2t"),  # and so is the extension
    ("avi", b"video/x-msvideo; name=x", None, b"video/x-msvideo; name=x"),
    ("mov", b"video/quicktime", "mp4", b"video/quicktime"),
    ("xyz", None, None, b"application/octet-stream"),
    ("xyz", b"", "flv", b"video/x-flv"),
    ("", b"video/webm", None, b"video/webm"),
])
def test_media_type(ext: str, provider: bytes | None, container: str | None, expected: bytes) -> None:
    assert media_type(ext, provider, container) == expected
