"""A lineup's guide: the cached XMLTV guide cut down to some channels.

The guide a generation keeps (``guide.xml``) is the provider's, scrubbed,
its times in UTC.  A lineup that holds only some live channels serves only
their ``<channel>`` and ``<programme>`` elements.  Rather than parse and
write the XML again, :func:`index_elements` reads the guide once (expat,
streaming) and notes where each top-level element starts and which channel
it belongs to; :func:`write_guide` then copies the byte ranges of the kept
elements, as they are, after the guide's head (``<?xml ...?><tv ...>``) and
before its tail (``</tv>``).  One index serves every lineup of a build.

Each top-level element owns the bytes up to the next one (the whitespace
between them included), so the copy is well-formed XMLTV whatever the
provider's layout.  Everything here blocks: it runs in the lineup build's
child process.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection
from xml.parsers import expat

from xrelay.core.scrub import BASE_MARKER

__all__ = ["GuideElements", "index_elements", "write_guide"]

_MARKER = BASE_MARKER.encode()
#: Bytes read per step.
CHUNK = 1 << 20


@dataclass
class GuideElements:
    """Where the top-level elements of a guide file are, and whose they are."""

    path: str
    size: int
    #: offset of each top-level element's ``<``
    starts: array = field(default_factory=lambda: array("q"))
    #: per element: an index into ``channels`` (-1: an element of no channel)
    keys: array = field(default_factory=lambda: array("i"))
    #: offset of the closing ``</tv>``
    tail: int = 0
    channels: list[str] = field(default_factory=list)

    @property
    def head(self) -> int:
        """Where the first element starts (the head is everything before)."""
        return self.starts[0] if self.starts else self.tail

    def span(self, i: int) -> tuple[int, int]:
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.tail
        return self.starts[i], end


def index_elements(path: Path | str) -> GuideElements:
    """Index *path*'s top-level elements (blocking).  Raises
    ``expat.ExpatError`` on a file that is not well-formed."""
    size = os.path.getsize(path)
    out = GuideElements(str(path), size, tail=size)
    numbers: dict[str, int] = {}
    depth = 0
    parser = expat.ParserCreate()

    def key_of(channel: Any) -> int:
        if not isinstance(channel, str):
            return -1
        number = numbers.get(channel)
        if number is None:
            number = numbers[channel] = len(out.channels)
            out.channels.append(channel)
        return number

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        if depth == 1:
            out.starts.append(parser.CurrentByteIndex)
            if name == "channel":
                out.keys.append(key_of(attrs.get("id")))
            elif name == "programme":
                out.keys.append(key_of(attrs.get("channel")))
            else:
                out.keys.append(-1)
        depth += 1

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        if depth == 0:
            out.tail = parser.CurrentByteIndex

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return out


def write_guide(elements: GuideElements, channels: Collection[str], dest: Path) -> tuple[int, int]:
    """Write the guide with only the elements of *channels* (and those of
    no channel) to *dest*; returns its size and ``@XRELAY_BASE@`` count."""
    number = {c: i for i, c in enumerate(elements.channels)}
    wanted = {number[c] for c in channels if c in number}
    ranges: list[list[int]] = [[0, elements.head]]
    for i, key in enumerate(elements.keys):
        if key < 0 or key in wanted:
            a, b = elements.span(i)
            if ranges[-1][1] == a:
                ranges[-1][1] = b
            else:
                ranges.append([a, b])
    if ranges[-1][1] == elements.tail:
        ranges[-1][1] = elements.size
    else:
        ranges.append([elements.tail, elements.size])
    size = markers = 0
    carry = b""
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(elements.path, os.O_RDONLY)
    try:
        with open(tmp, "wb") as out:
            for a, b in ranges:
                while a < b:
                    chunk = os.pread(fd, min(CHUNK, b - a), a)
                    if not chunk:
                        raise OSError(f"{elements.path}: shorter than indexed")
                    a += len(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    seen = carry + chunk
                    markers += seen.count(_MARKER)
                    carry = seen[-(len(_MARKER) - 1):]
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return size, markers
