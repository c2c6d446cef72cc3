"""Emulated HDHomeRun tuners against the real daemon and the demo provider.

A media server's session as Plex and Jellyfin run it (discover, lineup
status, lineup, a scan request, device.xml, then tuning), the golden
answer of every endpoint, the tuner and slot rules, the device's guide,
its own port and UDP discovery: all on loopback sockets.
"""

from __future__ import annotations

import gzip
import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer, reactor

from udpclient import FirstReply
from xrelay.app import XRelay
from xrelay.core.config import RelayConfig
from xrelay.core.config import HdhrDevice
from xrelay.demo.provider import DemoProvider, DemoSettings
from xrelay.hdhr.device import SALT_FILE, is_valid_device_id
from xrelay.hdhr.discovery import (
    TAG_BASE_URL,
    TAG_DEVICE_ID,
    TAG_LINEUP_URL,
    TAG_TUNER_COUNT,
    TYPE_DISCOVER_RPY,
    decode_packet,
    discover_request,
)

from demo_helpers import within
from apiclient import fetch
from harness import make_config, start_relay
from streamclient import open_stream, wait_until

#: A known installation salt, so that the DeviceID is known too.
SALT = "00112233445566778899aabbccddeeff"
TOKEN = "living-room-key"
NAME = "Living room"
#: The DeviceID of NAME with SALT (eight hex digits, the last the checksum).
DEVICE_ID = "1FB31C51"
FAST = RelayConfig(linger=0.3, silence_timeout=2.0, reconnect_bound=5.0, handover_pause=0.1)
FOUR_OH_FIVE = ["805 All Tuners In Use"]


def salted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / SALT_FILE).write_text(SALT + "\n")


async def start(tmp_path: Path, *devices: HdhrDevice, **kw: Any) -> Any:
    salted(tmp_path)
    return await start_relay(tmp_path, hdhr=devices or (HdhrDevice(NAME, TOKEN, tuners=3),), **kw)


async def get(url: str, **kw: Any) -> tuple[Any, bytes]:
    response = await treq.get(url, **kw)
    return response, await response.content()


async def get_json(url: str) -> Any:
    response, body = await get(url)
    assert response.code == 200, (url, body)
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    return json.loads(body)


def header(response: Any, name: str) -> list[str] | None:
    return response.headers.getRawHeaders(name)


# -- the session --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_media_server_session_then_two_tuners_and_one_on_a_full_account(tmp_path: Path) -> None:
    relay = await start(tmp_path, settings=DemoSettings(max_connections=2), relay=FAST)
    stats = relay.provider.stats
    base = f"{relay.url}/hdhr/{TOKEN}"
    readers = []
    try:
        assert await get_json(base + "/discover.json") == {
            "FriendlyName": NAME, "Manufacturer": "Silicondust", "ModelNumber": "HDTC-2US",
            "FirmwareName": "hdhomeruntc_atsc", "FirmwareVersion": "20200101",
            "DeviceID": DEVICE_ID, "DeviceAuth": f"xrelay{DEVICE_ID}",
            "BaseURL": base, "LineupURL": f"{base}/lineup.json", "TunerCount": 3,
        }
        assert is_valid_device_id(DEVICE_ID)
        assert await get_json(base + "/lineup_status.json") == {
            "ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable", "SourceList": ["Cable"]}
        lineup = await get_json(base + "/lineup.json")
        rows = relay.bundle["live_streams"]
        assert len(lineup) == len(rows) > 3
        # catalog order, numbered by the provider's num (unique in the demo)
        assert lineup[0] == {"GuideNumber": str(rows[0]["num"]), "GuideName": rows[0]["name"],
                             "URL": f"{base}/auto/v{rows[0]['num']}", "HD": 1}
        assert [e["GuideName"] for e in lineup] == [r["name"] for r in rows]
        assert len({e["GuideNumber"] for e in lineup}) == len(lineup)
        scan = await treq.post(base + "/lineup.post?scan=start&source=Cable")
        assert (scan.code, await scan.content()) == (200, b"{}")
        response, body = await get(base + "/device.xml")
        assert response.code == 200
        assert header(response, "content-type") == ["application/xml; charset=utf-8"]
        ns = {"u": "urn:schemas-upnp-org:device-1-0"}
        root = ET.fromstring(body)
        assert root.findtext("u:URLBase", namespaces=ns) == base
        assert root.findtext("u:device/u:friendlyName", namespaces=ns) == NAME
        assert root.findtext("u:device/u:serialNumber", namespaces=ns) == DEVICE_ID
        assert root.findtext("u:device/u:UDN", namespaces=ns).startswith("uuid:")
        assert stats.opened_total("live") == 0  # nothing so far asked the provider for a stream

        # Two tuners on two channels: two provider connections, the account's two.
        for entry in lineup[:2]:
            response, reader = await open_stream(entry["URL"] + "?transcode=heavy")
            assert response.code == 200 and header(response, "content-type") == ["video/mp2t"]
            readers.append(reader)
        for reader in readers:
            await reader.wait_bytes(20_000)
        assert stats.open_count("live") == 2
        # One more on the full account: 805 at once, never a clip, the provider not asked.
        # (The device has three tuners: this is the account's limit, and a tuner never
        # gives its slot to a sibling tuner by the zap rule.)
        response, body = await get(lineup[2]["URL"])
        assert response.code == 503 and header(response, "x-hdhomerun-error") == FOUR_OH_FIVE
        assert stats.opened_total("live") == 2 and stats.kicked == 0
        # Another user's zap never takes a tuner's slot either (a player: the busy clip).
        response, body = await get(f"{relay.url}/live/alice/alicepw/{lineup[2]['URL'].rsplit('v', 1)[1]}",
                                   headers={"Range": "bytes=0-"})
        assert response.code == 503
        for reader in readers:
            await reader.wait_more(20_000)  # both tuners still streaming
        assert stats.opened_total("live") == 2 and stats.open_count("live") == 2
        assert sum(relay.xr.clips.served.values()) == 0
        snapshot = relay.xr.relay.snapshot()
        assert sorted(v["user"] for c in snapshot["channels"] for v in c["viewers"]) == [f"hdhr:{NAME}"] * 2
    finally:
        for reader in readers:
            reader.close()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_device_never_streams_more_than_its_tuners(tmp_path: Path) -> None:
    relay = await start(tmp_path, HdhrDevice(NAME, TOKEN, tuners=1), relay=FAST,
                        settings=DemoSettings(max_connections=3))
    stats = relay.provider.stats
    base = f"{relay.url}/hdhr/{TOKEN}"
    try:
        assert (await get_json(base + "/discover.json"))["TunerCount"] == 1
        lineup = await get_json(base + "/lineup.json")
        number = lineup[0]["GuideNumber"]
        response, reader = await open_stream(f"{base}/tuner0/v{number}")
        assert response.code == 200
        await reader.wait_bytes(10_000)
        for path in (f"/auto/v{lineup[1]['GuideNumber']}", f"/tuner0/v{lineup[1]['GuideNumber']}"):
            response, _ = await get(base + path)
            assert response.code == 503 and header(response, "x-hdhomerun-error") == FOUR_OH_FIVE
        assert stats.opened_total("live") == 1
        # Unknown tuners, channels and devices.
        for url in (f"{base}/tuner1/v{number}", f"{base}/auto/v999999", f"{base}/auto/vabc",
                    f"{relay.url}/hdhr/not-a-device/discover.json", f"{base}/nothing.json"):
            response, _ = await get(url)
            assert response.code == 404, url
        # HEAD: the headers, no tuner, no provider connection.
        response = await treq.head(f"{base}/auto/v{lineup[2]['GuideNumber']}")
        assert response.code == 200 and header(response, "content-type") == ["video/mp2t"]
        reader.close()
        await reader.ended
        # The tuner is free again once its stream ended.
        await wait_until(lambda: not relay.xr.hdhr.tuners[NAME].busy)
        response, again = await open_stream(f"{base}/auto/v{lineup[1]['GuideNumber']}")
        assert response.code == 200
        await again.wait_bytes(10_000)
        again.close()
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_tuner_takes_a_lingering_channels_slot(tmp_path: Path) -> None:
    relay = await start(tmp_path, HdhrDevice(NAME, TOKEN, tuners=2), settings=DemoSettings(max_connections=1),
                        relay=RelayConfig(linger=60.0, handover_pause=0.1))
    stats = relay.provider.stats
    base = f"{relay.url}/hdhr/{TOKEN}"
    try:
        lineup = await get_json(base + "/lineup.json")
        first = lineup[0]["URL"].rsplit("v", 1)[1]
        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        assert str(relay.bundle["live_streams"][0]["num"]) == first
        _, watching = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
        await watching.wait_bytes(10_000)
        watching.close()
        await watching.ended
        await wait_until(lambda: not relay.xr.relay.channels[stream_id].viewers)  # lingering
        response, tuner = await open_stream(lineup[1]["URL"])
        assert response.code == 200
        await tuner.wait_bytes(10_000)
        assert stream_id not in relay.xr.relay.channels
        assert stats.kicked == 0 and stats.open_count("live") == 1
        # duration= ends a recording by itself.
        tuner.close()
        await tuner.ended
        await wait_until(lambda: not relay.xr.hdhr.tuners[NAME].busy)
        response, timed = await open_stream(lineup[1]["URL"] + "?duration=1")
        assert response.code == 200
        await within(timed.ended, 20)
        assert timed.received > 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_while_the_channel_opens_frees_its_tuner(tmp_path: Path) -> None:
    """The media server gives up while its channel waits out a handover: the
    tuner is free again, and no viewer is left attached to a gone request."""
    relay = await start(tmp_path, HdhrDevice(NAME, TOKEN, tuners=1), settings=DemoSettings(max_connections=1),
                        relay=RelayConfig(linger=60.0, handover_pause=2.0))
    base = f"{relay.url}/hdhr/{TOKEN}"
    live = relay.xr.relay
    try:
        lineup = await get_json(base + "/lineup.json")
        stream_id = relay.bundle["live_streams"][0]["stream_id"]
        _, watching = await open_stream(f"{relay.url}/live/alice/alicepw/{stream_id}.ts")
        await watching.wait_bytes(10_000)
        watching.close()
        await wait_until(lambda: not live.channels[stream_id].viewers)  # lingering
        sock = socket.create_connection(("127.0.0.1", relay.port))
        sock.sendall(f"GET /hdhr/{TOKEN}/auto/v{lineup[1]['GuideNumber']} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{relay.port}\r\n\r\n".encode())
        await wait_until(lambda: live.slots.handovers == 1)  # the handover pause runs
        sock.close()
        await wait_until(lambda: not relay.xr.hdhr.tuners[NAME].busy)
        opened = relay.bundle["live_streams"][1]["stream_id"]
        await wait_until(lambda: opened in live.channels and live.channels[opened].ready is not None
                         and live.channels[opened].ready.done)
        assert not live.channels[opened].viewers
        assert live.user_streams.count(f"hdhr:{NAME}") == 0
    finally:
        await relay.stop()


# -- the guide ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_device_guide_maps_to_its_channels(tmp_path: Path) -> None:
    relay = await start(tmp_path)
    base = f"{relay.url}/hdhr/{TOKEN}"
    try:
        lineup = await get_json(base + "/lineup.json")
        response, body = await get(base + "/guide.xml")
        assert response.code == 200
        assert header(response, "content-type") == ["application/xml; charset=utf-8"]
        assert header(response, "content-encoding") is None
        zipped = await fetch(base + "/guide.xml", headers={"Accept-Encoding": "gzip"})  # not decoded
        assert zipped.header("content-encoding") == "gzip"
        assert gzip.decompress(zipped.body) == body
        guide = ET.fromstring(body)
        numbers = [c.get("id") for c in guide.findall("channel")]
        assert numbers == [e["GuideNumber"] for e in lineup]
        names = {c.get("id"): c.findtext("display-name") for c in guide.findall("channel")}
        assert names == {e["GuideNumber"]: e["GuideName"] for e in lineup}
        # every programme is on a GuideNumber, as xrelay's own guide has it for that channel
        _, full_body = await get(f"{relay.url}/xmltv.php?username=alice&password=alicepw")
        full = ET.fromstring(full_body)
        by_epg: dict[str, list[tuple[str | None, str | None]]] = {}
        for p in full.findall("programme"):
            by_epg.setdefault(p.get("channel", ""), []).append((p.get("start"), p.findtext("title")))
        mine: dict[str, list[tuple[str | None, str | None]]] = {}
        for p in guide.findall("programme"):
            mine.setdefault(p.get("channel", ""), []).append((p.get("start"), p.findtext("title")))
        assert mine and set(mine) <= set(numbers)
        for row in relay.bundle["live_streams"]:
            if row.get("epg_channel_id"):
                assert mine.get(str(row["num"]), []) == by_epg.get(row["epg_channel_id"], [])
        # icons point at xrelay (the marker replaced), never at the provider
        icons = [i.get("src") for i in guide.iter("icon")]
        assert icons and all(src.startswith(relay.url + "/") for src in icons)
        for secret in relay.upstream_secrets:
            assert secret.encode() not in body
    finally:
        await relay.stop()


# -- the device's own port ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_a_device_on_its_own_port_answers_at_the_root(tmp_path: Path) -> None:
    port = free_port()
    relay = await start(tmp_path, HdhrDevice(NAME, TOKEN, tuners=2, port=port), relay=FAST)
    own = f"http://127.0.0.1:{port}"
    try:
        discover = await get_json(own + "/discover.json")
        assert discover["BaseURL"] == own and discover["LineupURL"] == own + "/lineup.json"
        assert discover["DeviceID"] == DEVICE_ID
        lineup = await get_json(own + "/lineup.json")
        assert lineup[0]["URL"] == f"{own}/auto/v{lineup[0]['GuideNumber']}"
        # the same device under xrelay's port, with its own base URL there
        under = await get_json(f"{relay.url}/hdhr/{TOKEN}/discover.json")
        assert under["DeviceID"] == DEVICE_ID and under["BaseURL"] == f"{relay.url}/hdhr/{TOKEN}"
        response, reader = await open_stream(lineup[0]["URL"])
        assert response.code == 200
        await reader.wait_bytes(10_000)
        reader.close()
        _, guide = await get(own + "/guide.xml")
        icons = [i.get("src") for i in ET.fromstring(guide).iter("icon")]
        assert icons and all(src.startswith(relay.url + "/asset/") for src in icons)
        response, _ = await get(own + "/player_api.php?username=alice&password=alicepw")
        assert response.code == 404  # only the device lives there
    finally:
        await relay.stop()


# -- UDP discovery ------------------------------------------------------------------



@pytest_twisted.ensureDeferred
async def test_udp_discovery_is_answered_on_loopback(tmp_path: Path) -> None:
    salted(tmp_path)
    provider = DemoProvider(reactor, DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    devices = (HdhrDevice(NAME, TOKEN, tuners=2, udp_discovery=True),
               HdhrDevice("Quiet", "quiet-device-key"))
    config = make_config(tmp_path / "data", provider, hdhr=devices)
    xr = XRelay(reactor, config, discovery_address=("127.0.0.1", 0))
    service = xr.services()
    service.startService()
    asker = FirstReply()
    listening = reactor.listenUDP(0, asker, interface="127.0.0.1")
    try:
        web = await service.getServiceNamed("web")._waitingForPort
        udp = service.getServiceNamed("hdhr-discovery").listening
        assert udp is not None and udp.getHost().host == "127.0.0.1"
        listening.write(discover_request(), ("127.0.0.1", udp.getHost().port))
        reply = await within(asker.replies, 10)
        kind, items = decode_packet(reply)
        assert kind == TYPE_DISCOVER_RPY
        values = dict(items)
        base = f"http://127.0.0.1:{web.getHost().port}/hdhr/{TOKEN}"
        assert values[TAG_DEVICE_ID] == bytes.fromhex(DEVICE_ID)
        assert values[TAG_TUNER_COUNT] == b"\x02"
        assert values[TAG_BASE_URL] == base.encode()
        assert values[TAG_LINEUP_URL] == f"{base}/lineup.json".encode()
        # only the device that asked for discovery answers
        assert xr.hdhr.discovery_answers("127.0.0.1")[0].device_id == DEVICE_ID
        assert len(xr.hdhr.discovery_answers("127.0.0.1")) == 1
    finally:
        await listening.stopListening()
        await defer.maybeDeferred(service.stopService)
        await xr.client.close()
        await provider.stop()


@pytest_twisted.ensureDeferred
async def test_without_udp_discovery_nothing_listens(tmp_path: Path) -> None:
    salted(tmp_path)
    provider = DemoProvider(reactor, DemoSettings())
    await provider.listen("tcp:0:interface=127.0.0.1")
    config = make_config(tmp_path / "data", provider, hdhr=(HdhrDevice(NAME, TOKEN),))
    xr = XRelay(reactor, config, discovery_address=("127.0.0.1", 0))
    service = xr.services()
    try:
        names = {s.name for s in service}
        assert "hdhr-discovery" not in names and not any(n.startswith("hdhr-port") for n in names)
    finally:
        await xr.client.close()
        await provider.stop()
