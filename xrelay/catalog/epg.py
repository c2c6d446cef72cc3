"""The EPG index behind get_short_epg and get_simple_data_table.

Built from a generation's ``guide.xml`` once per ingest, where the ingest
runs (:mod:`xrelay.catalog.prepare`), with a streaming (expat) parse: only
programmes inside a time window around the build time are kept, packed
into flat arrays and one text file (title, description, language per
programme).  The daemon loads the arrays (:meth:`EpgIndex.load`): a 100 MB
guide costs it a few tens of MB and no per-programme Python objects, and a
restart serves the guide at once.

The same pass counts the ``@XRELAY_BASE@`` markers in the guide, which
``xmltv.php`` needs for its Content-Length.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence
from xml.parsers import expat
from zoneinfo import ZoneInfo

from twisted.logger import Logger

from xrelay.catalog.packed import read_arrays, write_arrays, write_json
from xrelay.core.scrub import BASE_MARKER

log = Logger()

__all__ = ["EpgIndex", "build_index", "index_guide", "parse_xmltv_time"]

#: Kept: programmes that end less than this long before the build...
DEFAULT_PAST = 2 * 86400
#: ...and start less than this long after it.
DEFAULT_FUTURE = 3 * 86400
#: Never keep more past than this, whatever the channels' archive depth.
MAX_PAST = 14 * 86400
_MARKER = BASE_MARKER.encode()
_SEP = "\x00"


def parse_xmltv_time(value: str) -> int | None:
    """``20250101070000 +0100`` (offset optional) -> UTC epoch seconds."""
    value = value.strip()
    digits = value[:14]
    if len(digits) < 12 or not (digits.isascii() and digits.isdigit()):
        return None
    try:
        epoch = calendar.timegm((int(digits[0:4]), int(digits[4:6]), int(digits[6:8]),
                                 int(digits[8:10]), int(digits[10:12]),
                                 int(digits[12:14] or 0), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    rest = value[14:].strip()
    if len(rest) == 5 and rest[0] in "+-" and rest[1:].isascii() and rest[1:].isdigit():
        offset = int(rest[1:3]) * 3600 + int(rest[3:5]) * 60
        epoch -= offset if rest[0] == "+" else -offset
    return epoch


@dataclass
class EpgIndex:
    """Programmes per XMLTV channel id, sorted by start."""

    starts: array = field(default_factory=lambda: array("q"))
    stops: array = field(default_factory=lambda: array("q"))
    #: per programme: offset of its text (title NUL desc NUL lang) in ``texts``
    text_at: array = field(default_factory=lambda: array("q", [0]))
    texts: bytes | bytearray = b""
    #: when set, the texts live in this file instead of ``texts``
    text_path: str | None = None
    #: channel id -> (first, end) programme positions
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: base markers in the guide file and its size (for Content-Length)
    markers: int = 0
    size: int = 0
    built_at: float = 0.0

    def __len__(self) -> int:
        return len(self.starts)

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the index beside its texts file in *directory* (blocking);
        returns the manifest entry."""
        if self.text_path is None:
            raise ValueError("only an index whose texts are on disk can be saved")
        # named after the build, like the texts: a manifest always describes
        # files that are whole, whatever a later rebuild does
        stem = Path(self.text_path).stem.replace("epg-texts", "epg")
        ids = list(self.channels)
        table = write_arrays(directory / f"{stem}.idx", {
            "starts": self.starts, "stops": self.stops, "text_at": self.text_at,
            "firsts": array("q", (self.channels[c][0] for c in ids)),
            "ends": array("q", (self.channels[c][1] for c in ids))})
        write_json(directory / f"{stem}-channels.json", ids)
        return {"index": f"{stem}.idx", "arrays": table, "channels": f"{stem}-channels.json",
                "texts": Path(self.text_path).name, "markers": self.markers, "size": self.size,
                "built_at": self.built_at}

    @classmethod
    def load(cls, directory: Path, entry: dict[str, Any]) -> "EpgIndex":
        """The index a manifest *entry* describes (blocking)."""
        a = read_arrays(directory / entry["index"], entry["arrays"])
        with open(directory / entry["channels"], "rb") as f:
            ids = json.loads(f.read())
        if not isinstance(ids, list) or not len(ids) == len(a["firsts"]) == len(a["ends"]):
            raise ValueError(f"{directory / entry['channels']}: does not match the EPG index")
        # built by C loops (no Python step per channel): a big guide's table
        # loads without holding the reactor's GIL for long
        channels = dict(zip(ids, zip(a["firsts"], a["ends"])))
        texts = directory / entry["texts"]
        if texts.stat().st_size != a["text_at"][-1]:
            raise ValueError(f"{texts}: does not match the EPG index")
        return cls(a["starts"], a["stops"], a["text_at"], b"", str(texts), channels,
                   int(entry["markers"]), int(entry["size"]), float(entry["built_at"]))

    def programmes(self, channel_id: str | None) -> range:
        if not channel_id:
            return range(0)
        first, end = self.channels.get(channel_id, (0, 0))
        return range(first, end)

    def text(self, i: int) -> tuple[str, str, str]:
        return self._texts([i])[0]

    def _texts(self, positions: list[int]) -> list[tuple[str, str, str]]:
        """(title, description, lang) of each position, with one read of the
        span they cover (a channel's programmes are contiguous)."""
        if not positions:
            return []
        low, high = self.text_at[min(positions)], self.text_at[max(positions) + 1]
        if self.text_path is None:
            blob = bytes(self.texts[low:high])
        else:
            with open(self.text_path, "rb") as f:
                f.seek(low)
                blob = f.read(high - low)
        out = []
        for i in positions:
            raw = blob[self.text_at[i] - low:self.text_at[i + 1] - low].decode("utf-8", "replace")
            title, desc, lang = (raw.split(_SEP) + ["", "", ""])[:3]
            out.append((title, desc, lang))
        return out

    @property
    def on_disk(self) -> bool:
        return self.text_path is not None

    def listings(self, channel_id: str | None, now: float, tz: ZoneInfo, *, simple: bool,
                 limit: int | None, archive_days: int) -> list[dict[str, Any]]:
        """Rows of get_short_epg (current and next *limit*, default 4) or
        get_simple_data_table (everything kept, with now_playing/has_archive)."""
        positions: Sequence[int] = self.programmes(channel_id)
        if not simple:
            picked = [i for i in positions if self.stops[i] > now]
            positions = picked[: (limit if limit and limit > 0 else 4)]
        elif limit and limit > 0:
            positions = list(positions)[:limit]
        archive_from = now - archive_days * 86400
        rows = []
        positions = list(positions)
        for i, (title, desc, lang) in zip(positions, self._texts(positions)):
            start, stop = self.starts[i], self.stops[i]
            row: dict[str, Any] = {
                "id": str(i + 1),
                "epg_id": "1",
                "title": _b64(title),
                "lang": lang,
                "start": _local(start, tz),
                "end": _local(stop, tz),
                "stop": _local(stop, tz),  # XUI's name for the same (its "end" is an int)
                "description": _b64(desc),
                "channel_id": channel_id,
                "start_timestamp": str(start),
                "stop_timestamp": str(stop),
            }
            if simple:
                row["now_playing"] = 1 if start <= now < stop else 0
                row["has_archive"] = 1 if archive_days > 0 and archive_from <= stop <= now else 0
            rows.append(row)
        return rows


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _local(epoch: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S")


class _Parser:
    """Collects programmes inside [low, high) from a streaming parse, into
    flat arrays in file order (no object per programme)."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.channel_ids: dict[str, int] = {}
        self.chan = array("i")
        self.starts = array("q")
        self.stops = array("q")
        self.text_at = array("q", [0])
        self.texts = bytearray()
        self.current: tuple[int, int, int] | None = None
        self.field: str | None = None
        self.parts: dict[str, list[str]] = {"title": [], "desc": []}
        self.lang = ""
        self.depth = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if name == "programme" and self.depth == 2:
            start = parse_xmltv_time(attrs.get("start", ""))
            stop = parse_xmltv_time(attrs.get("stop", "")) if attrs.get("stop") else None
            channel = attrs.get("channel", "")
            if start is None or not channel:
                return
            if stop is None or stop <= start:
                stop = start + 1800
            if stop >= self.low and start < self.high:
                number = self.channel_ids.setdefault(channel, len(self.channel_ids))
                self.current = (number, start, stop)
                self.parts = {"title": [], "desc": []}
                self.lang = ""
        elif self.current is not None and self.depth == 3 and name in ("title", "desc"):
            if not self.parts[name]:
                self.field = name
                if name == "title":
                    self.lang = attrs.get("lang", "")[:8]

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.field is not None and self.depth == 2:
            self.field = None
        elif name == "programme" and self.depth == 1 and self.current is not None:
            number, start, stop = self.current
            title = "".join(self.parts["title"]).replace(_SEP, " ").strip()
            desc = "".join(self.parts["desc"]).replace(_SEP, " ").strip()
            self.chan.append(number)
            self.starts.append(start)
            self.stops.append(stop)
            self.texts += f"{title}{_SEP}{desc}{_SEP}{self.lang}".encode()
            self.text_at.append(len(self.texts))
            self.current = None

    def chars(self, data: str) -> None:
        if self.field is not None:
            self.parts[self.field].append(data)


def build_index(path: Path | str, now: float | None = None, past: float = DEFAULT_PAST,
                future: float = DEFAULT_FUTURE, text_path: Path | str | None = None) -> EpgIndex:
    """Parse *path* (blocking; run it in a thread).  Raises OSError or
    expat.ExpatError for a missing or broken file.  With *text_path*, the
    titles and descriptions are written there instead of kept in memory."""
    index = _build(path, now, past, future)
    if text_path is not None:
        tmp = f"{text_path}.tmp"
        with open(tmp, "wb") as f:
            f.write(index.texts)
        os.replace(tmp, text_path)
        index.texts, index.text_path = b"", str(text_path)
    return index


def _build(path: Path | str, now: float | None, past: float, future: float) -> EpgIndex:
    now = time.time() if now is None else now
    past = min(max(past, 0), MAX_PAST)
    p = _Parser(now - past, now + future)
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = p.start
    parser.EndElementHandler = p.end
    parser.CharacterDataHandler = p.chars
    markers = size = 0
    carry = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            both = carry + chunk
            markers += both.count(_MARKER) - carry.count(_MARKER)
            carry = both[-(len(_MARKER) - 1):]
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    index = EpgIndex(markers=markers, size=size, built_at=now)
    names = {number: channel for channel, number in p.channel_ids.items()}
    if _grouped_and_sorted(p):
        # the usual guide: each channel's programmes together, in order
        index.starts, index.stops, index.text_at, index.texts = p.starts, p.stops, p.text_at, p.texts
        first = 0
        for i in range(1, len(p.chan) + 1):
            if i == len(p.chan) or p.chan[i] != p.chan[first]:
                index.channels[names[p.chan[first]]] = (first, i)
                first = i
        return index
    n = len(p.starts)
    low = int(now - past) - 86400
    shift = 1 << 36
    keys = [p.chan[i] * shift + (p.starts[i] - low) for i in range(n)]
    order = sorted(range(n), key=keys.__getitem__)
    del keys
    texts = bytearray()
    previous: tuple[int, int | None] = (-1, None)
    first = 0
    for i in order:
        number, start = p.chan[i], p.starts[i]
        if (number, start) == previous:
            continue  # duplicate start time on one channel: keep the first
        if number != previous[0]:
            if previous[0] >= 0:
                index.channels[names[previous[0]]] = (first, len(index.starts))
            first = len(index.starts)
        previous = (number, start)
        index.starts.append(start)
        index.stops.append(p.stops[i])
        texts += p.texts[p.text_at[i]:p.text_at[i + 1]]
        index.text_at.append(len(texts))
    if previous[0] >= 0:
        index.channels[names[previous[0]]] = (first, len(index.starts))
    index.texts = texts
    return index


def _grouped_and_sorted(p: _Parser) -> bool:
    """Programmes grouped by channel, by strictly increasing start?"""
    chan, starts = p.chan, p.starts
    for i in range(1, len(chan)):
        if chan[i] < chan[i - 1] or (chan[i] == chan[i - 1] and starts[i] <= starts[i - 1]):
            return False
    return True


def index_guide(directory: Path, days: int, now: float | None = None) -> EpgIndex:
    """The index of ``directory/guide.xml`` with programmes back *days* days
    (blocking), its texts in ``directory/api/epg-texts-BUILT.bin`` (a new
    name per build: a daemon reading the previous one is never misled)."""
    now = time.time() if now is None else now
    (directory / "api").mkdir(parents=True, exist_ok=True)
    return build_index(directory / "guide.xml", now, days * 86400, DEFAULT_FUTURE,
                       directory / "api" / f"epg-texts-{int(now)}.bin")
