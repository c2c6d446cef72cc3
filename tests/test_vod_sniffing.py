"""Movies decided by their first bytes, not by the provider's Content-Type
(xrelay.media.files with xrelay.media.sniffed), over real sockets: a panel
on loopback answers every stream URL with the body and type a test sets."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from harness import start_relay
from media_helpers import poll, raw_request
from xrelay.demo.provider import DemoSettings

TROLLTECH = b"text/vnd.trolltech.linguist"  # what Python's mimetypes calls .ts


def ts_packets(count: int) -> bytes:
    return b"".join(bytes([0x47, 0x40 | (i % 2), 0x11, 0x10]) + os.urandom(184) for i in range(count))


MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + os.urandom(6000)
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + os.urandom(6000)


class Panel(Resource):
    """Every stream URL: *status*, *content_type* and *body* (a Range is
    answered 206 from the middle: the bytes of no container's start)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.status, self.content_type, self.body = 200, b"video/mp4", MP4
        self.silent = False
        self.requests = 0

    def render_GET(self, request: Any) -> Any:
        self.requests += 1
        request.setHeader(b"content-type", self.content_type)
        if self.silent:
            request.setHeader(b"content-length", b"1000")
            request.write(b"")  # headers out, then nothing
            return NOT_DONE_YET
        if request.getHeader(b"range"):
            middle = os.urandom(5000)
            request.setResponseCode(206)
            request.setHeader(b"content-range", b"bytes 1000-5999/100000")
            return middle
        request.setResponseCode(self.status)
        return self.body


@pytest_twisted.async_yield_fixture(scope="module")
async def setup(tmp_path_factory):
    relay = await start_relay(tmp_path_factory.mktemp("sniff"), settings=DemoSettings(redirect_streams=False))
    panel = Panel()
    port = reactor.listenTCP(0, Site(panel), interface="127.0.0.1")
    relay.xr.client.set_origin(f"http://127.0.0.1:{port.getHost().port}")
    yield relay, panel
    await port.stopListening()
    await relay.stop()


def movie(relay: Any) -> int:
    return sorted(relay.vod_by_id)[0]


async def play(relay: Any, ext: str, **kw: Any) -> Any:
    answer = await raw_request(relay.port, f"/movie/alice/alicepw/{movie(relay)}.{ext}", **kw)
    files = relay.xr.files
    await poll(lambda: files.slots.used == 0 and not files.playbacks)  # every slot given back
    return answer


@pytest.mark.parametrize("ext, provider_type, body, sent_type", [
    ("mkv", TROLLTECH, MKV, b"video/x-matroska"),                     # a wrong type
    ("ts", TROLLTECH, ts_packets(40), b"video/mp2t"),
    ("ts", b"application/octet-stream", ts_packets(40), b"video/mp2t"),  # a generic one
    ("mp4", b"application/octet-stream", ts_packets(40), b"video/mp2t"),  # the container wins
    ("mp4", b"video/quicktime", MP4, b"video/quicktime"),               # a fitting type is kept
    ("avi", b"text/plain", b"RIFF\x00\x10\x00\x00AVI LIST" + os.urandom(3000), b"video/x-msvideo"),
    ("ts", TROLLTECH, ts_packets(4), b"video/mp2t"),                    # shorter than the sniff
])
@pytest_twisted.ensureDeferred
async def test_media_is_recognised_by_its_bytes(setup, ext, provider_type, body, sent_type) -> None:
    relay, panel = setup
    panel.status, panel.content_type, panel.body = 200, provider_type, body
    answer = await play(relay, ext)
    assert answer.status == 200
    assert answer.headers[b"content-type"] == sent_type
    assert answer.body == body


@pytest.mark.parametrize("provider_type, body", [
    (b"video/mp4", b"<html><body>Access denied</body></html>" + b" " * 3000),
    (b"video/mp2t", b'{"user_info":{"auth":0}}'),
    (b"application/octet-stream", b"#EXTM3U\n#EXTINF:-1,x\nhttp://elsewhere/1.ts\n"),
    (TROLLTECH, b"Your line has expired. Please renew.\n"),
    (b"video/mp4", b""),
])
@pytest_twisted.ensureDeferred
async def test_error_pages_stay_blocked(setup, provider_type, body) -> None:
    relay, panel = setup
    panel.status, panel.content_type, panel.body = 200, provider_type, body
    answer = await play(relay, "mp4")
    assert answer.status == 502
    assert body[:20] not in answer.body or not body


@pytest_twisted.ensureDeferred
async def test_a_ranged_answer_from_the_middle_passes(setup) -> None:
    relay, panel = setup
    panel.content_type = b"video/mp4"
    answer = await play(relay, "mp4", headers={"Range": "bytes=1000-5999"})
    assert answer.status == 206 and len(answer.body) == 5000
    assert answer.headers[b"content-range"] == b"bytes 1000-5999/100000"
    assert answer.headers[b"content-type"] == b"video/mp4"


@pytest_twisted.ensureDeferred
async def test_head_sniffs_and_sends_no_body(setup) -> None:
    relay, panel = setup
    panel.status, panel.content_type, panel.body = 200, TROLLTECH, MKV
    answer = await play(relay, "mkv", method="HEAD")
    assert answer.status == 200 and answer.headers[b"content-type"] == b"video/x-matroska"
    assert answer.body == b""


@pytest_twisted.ensureDeferred
async def test_a_provider_silent_after_its_headers_is_a_502(setup) -> None:
    relay, panel = setup
    files = relay.xr.files
    saved, files.silence_timeout = files.silence_timeout, 0.3
    panel.silent = True
    try:
        answer = await play(relay, "mp4")
        assert answer.status == 502 and b"sent nothing" in answer.body
    finally:
        panel.silent = False
        files.silence_timeout = saved
