"""Golden answers of an emulated HDHomeRun device, and its guide."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any, cast

import pytest
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher

from xrelay.hdhr import answers
from xrelay.hdhr.answers import (
    LINEUP_POST_ANSWER,
    GuideEntry,
    device_xml,
    discover,
    encode,
    guide_channel_map,
    lineup,
    lineup_status,
    stream_path,
    udn,
    write_device_guide,
)
from xrelay.hdhr.device import is_valid_device_id

BASE = "http://192.168.1.10:8080/hdhr/plex-key-1"
DEVICE_ID = "10439EFD"


def test_discover_json() -> None:
    body = discover(name="xrelay Plex", device_id=DEVICE_ID, base_url=BASE, tuner_count=2)
    assert json.loads(encode(body)) == {
        "FriendlyName": "xrelay Plex",
        "Manufacturer": "Silicondust",
        "ModelNumber": "HDTC-2US",
        "FirmwareName": "hdhomeruntc_atsc",
        "FirmwareVersion": "20200101",
        "DeviceID": "10439EFD",
        "DeviceAuth": "xrelay10439EFD",
        "BaseURL": "http://192.168.1.10:8080/hdhr/plex-key-1",
        "LineupURL": "http://192.168.1.10:8080/hdhr/plex-key-1/lineup.json",
        "TunerCount": 2,
    }
    assert b'"TunerCount":2' in encode(body)  # an integer, not "2"
    assert is_valid_device_id(body["DeviceID"])
    assert "plex-key-1" not in body["DeviceAuth"]


def test_lineup_json() -> None:
    body = lineup([("101", "News HD"), ("102", "Kids SD"), ("5.1", "Été & Co")], BASE)
    assert body == [
        {"GuideNumber": "101", "GuideName": "News HD", "URL": f"{BASE}/auto/v101", "HD": 1},
        {"GuideNumber": "102", "GuideName": "Kids SD", "URL": f"{BASE}/auto/v102", "HD": 0},
        {"GuideNumber": "5.1", "GuideName": "Été & Co", "URL": f"{BASE}/auto/v5.1", "HD": 1},
    ]
    assert json.loads(encode(body).decode("utf-8")) == body
    assert lineup([], BASE) == []


def test_lineup_keeps_the_order_and_refuses_duplicate_numbers() -> None:
    order = [(str(n), f"ch {n}") for n in (300, 2, 41)]
    assert [c["GuideNumber"] for c in lineup(order, BASE)] == ["300", "2", "41"]
    with pytest.raises(ValueError, match="'2' appears twice"):
        lineup([("2", "a"), ("2", "b")], BASE)


def test_stream_paths() -> None:
    assert stream_path("101") == "/auto/v101"
    assert stream_path("101", tuner=1) == "/tuner1/v101"
    assert stream_path("a b") == "/auto/va%20b"


def test_a_big_lineup_is_logged_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers, "_warned", set())
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        small = [(str(n), f"ch {n}") for n in range(480)]
        lineup(small, BASE, device_name="Plex")
        assert not [e for e in events if e.get("log_level") == LogLevel.warn]
        big = [(str(n), f"ch {n}") for n in range(481)]
        lineup(big, BASE, device_name="Plex")
        lineup(big, BASE, device_name="Plex")
    finally:
        globalLogPublisher.removeObserver(observer)
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1 and warnings[0]["count"] == 481


def test_lineup_status_and_lineup_post() -> None:
    assert encode(lineup_status()) == (
        b'{"ScanInProgress":0,"ScanPossible":1,"Source":"Cable","SourceList":["Cable"]}'
    )
    assert json.loads(LINEUP_POST_ANSWER) == {}


def test_device_xml() -> None:
    body = device_xml(name="Tuner <1> & co", device_id=DEVICE_ID, base_url=BASE)
    assert body == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">\n'
        "  <specVersion><major>1</major><minor>0</minor></specVersion>\n"
        "  <URLBase>http://192.168.1.10:8080/hdhr/plex-key-1</URLBase>\n"
        "  <device>\n"
        "    <deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>\n"
        "    <friendlyName>Tuner &lt;1&gt; &amp; co</friendlyName>\n"
        "    <manufacturer>Silicondust</manufacturer>\n"
        "    <modelName>HDTC-2US</modelName>\n"
        "    <modelNumber>HDTC-2US</modelNumber>\n"
        "    <serialNumber>10439EFD</serialNumber>\n"
        f"    <UDN>{udn(DEVICE_ID)}</UDN>\n"
        "  </device>\n"
        "</root>\n"
    ).encode()
    ET.fromstring(body)  # well-formed


def test_the_udn_is_stable_and_follows_the_device_id() -> None:
    assert udn("10439EFD") == udn("10439efd")
    assert udn("10439EFD") != udn("1A2B3C4D")
    # Pinned: a changed UDN is a new device for a UPnP client.
    assert udn("10439EFD") == "uuid:842e9593-73e6-541f-9a35-fffee7693dc1"


# -- the guide -------------------------------------------------------------

GUIDE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv generator-info-name="provider">
  <channel id="news.uk"><display-name>News</display-name><icon src="@XRELAY_BASE@/img/1.png"/></channel>
  <channel id="kids.uk"><display-name>Kids</display-name></channel>
  <channel id="other.uk"><display-name>Other</display-name></channel>
  <programme start="20260101060000 +0000" stop="20260101070000 +0000" channel="news.uk">
    <title lang="en">Morning &amp; news</title><desc>Headlines</desc>
  </programme>
  <programme start="20260101060000 +0000" stop="20260101063000 +0000" channel="other.uk">
    <title>Not in the lineup</title>
  </programme>
  <programme start="20260101063000 +0000" stop="20260101070000 +0000" channel="kids.uk">
    <title>Cartoons</title>
  </programme>
</tv>
"""

ENTRIES = [
    GuideEntry("101", "News HD", "news.uk", "@XRELAY_BASE@/img/1.png"),
    GuideEntry("102", "News SD", "news.uk"),
    GuideEntry("103", "Kids", "kids.uk"),
    GuideEntry("104", "No guide", None),
]


def test_the_guide_map_lists_every_number_of_a_guide_channel() -> None:
    assert guide_channel_map(ENTRIES) == {"news.uk": ("101", "102"), "kids.uk": ("103",)}


def test_the_device_guide_uses_guide_numbers_as_channel_ids() -> None:
    out = io.BytesIO()
    assert write_device_guide(io.BytesIO(GUIDE), out, ENTRIES) == 3
    text = out.getvalue()
    tv = ET.fromstring(text)
    channels = tv.findall("channel")
    assert [c.get("id") for c in channels] == ["101", "102", "103", "104"]
    assert [[d.text for d in c.findall("display-name")] for c in channels] == [
        ["News HD", "101"], ["News SD", "102"], ["Kids", "103"], ["No guide", "104"]]
    assert channels[0].find("icon").get("src") == "@XRELAY_BASE@/img/1.png"  # type: ignore[union-attr]
    programmes = [(p.get("channel"), p.findtext("title")) for p in tv.findall("programme")]
    assert programmes == [("101", "Morning & news"), ("102", "Morning & news"), ("103", "Cartoons")]
    assert tv.findall("programme")[0].find("title").get("lang") == "en"  # type: ignore[union-attr]
    # Every programme's channel is a channel of the device.
    ids = {c.get("id") for c in channels}
    assert all(p.get("channel") in ids for p in tv.findall("programme"))
    assert b"Not in the lineup" not in text


def test_the_device_guide_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "guide.xml"
    path.write_bytes(GUIDE)
    out = io.BytesIO()
    assert write_device_guide(str(path), out, ENTRIES[2:]) == 1
    assert ET.fromstring(out.getvalue()).find("programme").get("channel") == "103"  # type: ignore[union-attr]
