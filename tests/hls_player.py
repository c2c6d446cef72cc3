"""A minimal HLS player for the tests: reads xrelay's live playlists and segments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from media_helpers import RawResponse, raw_request


@dataclass(frozen=True)
class Entry:
    sequence: int
    url: str
    duration: float
    discontinuity: bool


@dataclass
class Playlist:
    status: int
    text: str
    headers: dict[bytes, bytes]
    target: int = 0
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    entries: list[Entry] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.entries[-1].sequence if self.entries else self.media_sequence - 1


def parse(answer: RawResponse) -> Playlist:
    text = answer.body.decode("utf-8", "replace")
    out = Playlist(answer.status, text, answer.headers)
    if answer.status != 200:
        return out
    sequence = 0
    duration = 0.0
    discontinuity = False
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            out.target = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            out.media_sequence = sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            out.discontinuity_sequence = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].rstrip(","))
        elif line and not line.startswith("#"):
            out.entries.append(Entry(sequence, line, duration, discontinuity))
            sequence += 1
            discontinuity = False
    return out


def path_of(url: str) -> str:
    """``/hls/...`` of an absolute xrelay URL."""
    return "/" + url.split("/", 3)[3]


SEGMENT_NAME = re.compile(r"/hls/[^/]+/[^/]+/L(\d+)-(\d+)\.ts$")


async def playlist(port: int, user: str, password: str, stream_id: int, **kw: Any) -> Playlist:
    return parse(await raw_request(port, f"/live/{user}/{password}/{stream_id}.m3u8", **kw))


async def segment(port: int, entry: Entry, **kw: Any) -> RawResponse:
    return await raw_request(port, path_of(entry.url), **kw)
