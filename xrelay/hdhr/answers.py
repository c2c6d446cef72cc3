"""What an emulated HDHomeRun device answers: pure builders.

``discover.json``, ``lineup.json``, ``lineup_status.json``, the answer to
``POST lineup.post`` and ``device.xml``, built from the device's name and
DeviceID, its lineup (ordered ``(GuideNumber, name)`` pairs) and its base URL
(``scheme://host:port/hdhr/TOKEN``, or ``scheme://host:port`` on a device's
own port; no trailing slash). Plus the device's XMLTV guide, whose channel
ids are the GuideNumbers so that Plex and Jellyfin map guide and channels
on their own: :func:`guide_channel_map` and :func:`write_device_guide`.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from typing import IO, Any, Iterable, NamedTuple, Sequence
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from twisted.logger import Logger

__all__ = [
    "FIRMWARE_NAME",
    "FIRMWARE_VERSION",
    "GuideEntry",
    "LINEUP_POST_ANSWER",
    "MANUFACTURER",
    "MODEL_NUMBER",
    "PLEX_CHANNEL_LIMIT",
    "device_auth",
    "device_xml",
    "discover",
    "encode",
    "guide_channel_map",
    "lineup",
    "lineup_status",
    "stream_path",
    "udn",
    "warn_if_too_big",
    "write_device_guide",
]

log = Logger()

MANUFACTURER = "Silicondust"
#: A network tuner model; Jellyfin sends ``transcode=`` to models named
#: "hdtc", which the stream route ignores.
MODEL_NUMBER = "HDTC-2US"
FIRMWARE_NAME = "hdhomeruntc_atsc"
FIRMWARE_VERSION = "20200101"
#: Plex handles about this many channels per tuner device.
PLEX_CHANNEL_LIMIT = 480
#: ``POST lineup.post`` (a scan request): 200 with a small body, never empty.
LINEUP_POST_ANSWER = b"{}"

_UDN_NAMESPACE = uuid.UUID("6f1b3c2e-8d4a-5e7f-9a0b-1c2d3e4f5a6b")
_SD_RE = re.compile(r"(?<![A-Za-z0-9])SD(?![A-Za-z0-9])")
_warned: set[tuple[str, int]] = set()


def encode(value: Any) -> bytes:
    """A JSON answer body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def device_auth(device_id: str) -> str:
    """A fixed DeviceAuth string (never the token: media servers log it)."""
    return f"xrelay{device_id}"


def discover(*, name: str, device_id: str, base_url: str, tuner_count: int) -> dict[str, Any]:
    """``discover.json``; ``TunerCount`` is a JSON integer."""
    return {
        "FriendlyName": name,
        "Manufacturer": MANUFACTURER,
        "ModelNumber": MODEL_NUMBER,
        "FirmwareName": FIRMWARE_NAME,
        "FirmwareVersion": FIRMWARE_VERSION,
        "DeviceID": device_id,
        "DeviceAuth": device_auth(device_id),
        "BaseURL": base_url,
        "LineupURL": f"{base_url}/lineup.json",
        "TunerCount": int(tuner_count),
    }


def stream_path(number: str, tuner: int | None = None) -> str:
    """The path of a channel's stream under the base URL: ``/auto/v101``."""
    where = "auto" if tuner is None else f"tuner{tuner}"
    return f"/{where}/v{quote(number, safe='.-_~')}"


def lineup(channels: Sequence[tuple[str, str]], base_url: str, *,
           device_name: str = "", warn: bool = True) -> list[dict[str, Any]]:
    """``lineup.json``: one entry per ``(GuideNumber, name)``, in that order.

    GuideNumbers must be unique (a media server keys channels by them).
    Above :data:`PLEX_CHANNEL_LIMIT` channels a warning is logged, once per
    device and size (unless *warn* is false: built in a thread, the caller
    calls :func:`warn_if_too_big` on the reactor's).
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, name in channels:
        number = str(number)
        if number in seen:
            raise ValueError(f"GuideNumber {number!r} appears twice")
        seen.add(number)
        out.append({
            "GuideNumber": number,
            "GuideName": name,
            "URL": base_url + stream_path(number),
            "HD": 0 if _SD_RE.search(name) else 1,
        })
    if warn:
        warn_if_too_big(device_name, len(out))
    return out


def warn_if_too_big(device_name: str, count: int) -> None:
    """Log, once per device and size, a lineup bigger than Plex handles."""
    if count > PLEX_CHANNEL_LIMIT and (device_name, count) not in _warned:
        _warned.add((device_name, count))
        log.warn("HDHomeRun device {device!r} lists {count} channels; Plex handles about"
                 " {limit} per device: give it a smaller lineup",
                 device=device_name, count=count, limit=PLEX_CHANNEL_LIMIT)


def lineup_status() -> dict[str, Any]:
    """``lineup_status.json``: never scanning, a scan possible, cable."""
    return {"ScanInProgress": 0, "ScanPossible": 1, "Source": "Cable", "SourceList": ["Cable"]}


def udn(device_id: str) -> str:
    """The device's UPnP UDN, stable because the DeviceID is."""
    return f"uuid:{uuid.uuid5(_UDN_NAMESPACE, 'hdhomerun:' + device_id.upper())}"


def device_xml(*, name: str, device_id: str, base_url: str) -> bytes:
    """``device.xml``: a UPnP root device description."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">\n'
        "  <specVersion><major>1</major><minor>0</minor></specVersion>\n"
        f"  <URLBase>{escape(base_url)}</URLBase>\n"
        "  <device>\n"
        "    <deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>\n"
        f"    <friendlyName>{escape(name)}</friendlyName>\n"
        f"    <manufacturer>{MANUFACTURER}</manufacturer>\n"
        f"    <modelName>{MODEL_NUMBER}</modelName>\n"
        f"    <modelNumber>{MODEL_NUMBER}</modelNumber>\n"
        f"    <serialNumber>{escape(device_id)}</serialNumber>\n"
        f"    <UDN>{udn(device_id)}</UDN>\n"
        "  </device>\n"
        "</root>\n"
    ).encode()


# -- the device's guide ------------------------------------------------------


class GuideEntry(NamedTuple):
    """One lineup channel as the device's guide sees it."""

    number: str  # GuideNumber: the guide's channel id
    name: str
    epg_id: str | None  # the channel's id in xrelay's guide (epg_channel_id)
    icon: str | None = None


def guide_channel_map(entries: Iterable[GuideEntry]) -> dict[str, tuple[str, ...]]:
    """xrelay's guide channel id -> the GuideNumbers showing it, in lineup order.

    One guide channel may be shown by several lineup channels (an HD and an
    SD stream of the same station): its programmes are listed for each.
    """
    out: dict[str, list[str]] = {}
    for entry in entries:
        if entry.epg_id:
            out.setdefault(entry.epg_id, []).append(entry.number)
    return {k: tuple(v) for k, v in out.items()}


def write_device_guide(source: str | IO[bytes], out: IO[bytes], entries: Sequence[GuideEntry]) -> int:
    """Write the device's XMLTV guide to ``out`` from xrelay's guide ``source``.

    One ``<channel>`` per lineup entry, its id the GuideNumber; every
    programme of a mapped guide channel once per GuideNumber showing it;
    nothing else. Streams the source (memory stays flat); blocking: run it
    in a thread, once per catalog generation and device. Text is copied
    as is (``@XRELAY_BASE@`` markers included). Returns the number of
    programmes written.
    """
    mapping = guide_channel_map(entries)
    out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n'
              b'<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
              b'<tv generator-info-name="xrelay">\n')
    for entry in entries:
        out.write(_channel_element(entry))
    written = 0
    root: ET.Element | None = None
    for event, elem in ET.iterparse(source, events=("start", "end")):
        if root is None:
            root = elem
            continue
        if event != "end" or elem.tag != "programme":
            continue
        numbers = mapping.get(elem.get("channel", ""), ())
        elem.tail = None
        for number in numbers:
            elem.set("channel", number)
            out.write(b"  " + ET.tostring(elem, encoding="utf-8", xml_declaration=False) + b"\n")
            written += 1
        root.clear()
    out.write(b"</tv>\n")
    return written


def _channel_element(entry: GuideEntry) -> bytes:
    lines = [f"  <channel id={quoteattr(entry.number)}>",
             f"    <display-name>{escape(entry.name)}</display-name>",
             f"    <display-name>{escape(entry.number)}</display-name>"]
    if entry.icon:
        lines.append(f"    <icon src={quoteattr(entry.icon)}/>")
    lines.append("  </channel>\n")
    return "\n".join(lines).encode()
