"""The provider images a generation names: what ``/asset/`` may fetch.

The ingest rewrites every provider-hosted image URL (logos, posters,
backdrops, guide icons) to ``@XRELAY_BASE@/asset/PATH`` (:meth:`Scrubber.url
<xrelay.core.scrub.Scrubber.url>`, :meth:`Scrubber.bytes_
<xrelay.core.scrub.Scrubber.bytes_>`).  :class:`AssetNames` collects those
paths while the generation is prepared, from the encoded list rows and the
guide, and keeps them as a sorted array of 64-bit keys
(``api/assets.idx``): the daemon answers ``/asset/PATH`` only for a path of
that array (or of an item's details, fetched later), so the proxy never
fetches an arbitrary path of the provider's host.

A path's key is a hash of its percent-decoded form, so a client that
encodes a space or a non-ASCII letter differently still finds it.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

from xrelay.catalog.packed import read_arrays, write_arrays
from xrelay.core.scrub import ASSET_PREFIX, BASE_MARKER

__all__ = ["asset_key", "AssetNames", "AssetIndex", "asset_paths_in_json", "asset_paths_in_xml",
           "asset_keys_in_files"]

_MARKER = (BASE_MARKER + ASSET_PREFIX + "/").encode()
#: An asset URL inside a JSON string (up to its closing quote).
_IN_JSON = re.compile(re.escape(_MARKER) + rb'((?:[^"\\]|\\.)*)"')
#: An asset URL inside XML or M3U text (an attribute value, XML-escaped).
_IN_XML = re.compile(re.escape(_MARKER) + rb'([^"\'<>\s]*)')


def asset_key(path: str) -> int:
    """The key of an asset path (what follows ``/asset/``, query included)."""
    digest = hashlib.blake2b(unquote(path).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def asset_paths_in_json(data: bytes) -> Iterable[str]:
    """The asset paths named in encoded JSON."""
    if _MARKER not in data:
        return
    for match in _IN_JSON.finditer(data):
        try:
            yield json.loads(b'"' + match.group(1) + b'"')
        except ValueError:
            continue


def asset_paths_in_xml(data: bytes) -> Iterable[str]:
    """The asset paths named in XML (the guide) or M3U text."""
    if _MARKER not in data:
        return
    for match in _IN_XML.finditer(data):
        yield html.unescape(match.group(1).decode("utf-8", "replace"))


class AssetNames:
    """The asset keys of a generation, collected while it is prepared (blocking)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()

    def add_json(self, data: bytes) -> None:
        for path in asset_paths_in_json(data):
            self.keys.add(asset_key(path))

    def add_xml_file(self, path: Path, chunk: int = 1 << 20) -> None:
        """Every asset of a (large) XML file, read in chunks."""
        overlap = 4096  # longer than any URL worth keeping
        carry = b""
        try:
            with open(path, "rb") as f:
                while True:
                    data = f.read(chunk)
                    text = carry + data
                    # a URL starting in the last bytes may be cut: read it with the next chunk
                    safe = max(0, len(text) - overlap) if data else len(text)
                    if _MARKER in text:
                        for match in _IN_XML.finditer(text):
                            if match.start() >= safe:
                                break
                            found = html.unescape(match.group(1).decode("utf-8", "replace"))
                            self.keys.add(asset_key(found))
                    carry = text[safe:]
                    if not data:
                        break
        except FileNotFoundError:
            return

    def save(self, path: Path) -> dict[str, Any]:
        """Write the sorted keys; the manifest's entry."""
        keys = array("q", sorted(self.keys))
        return {"index": path.name, "arrays": write_arrays(path, {"keys": keys})}


def asset_keys_in_files(directory: Path) -> set[int]:
    """The asset keys named by the JSON files under *directory* (a
    generation's ``details/``; blocking)."""
    keys: set[int] = set()
    for path in sorted(directory.glob("*/*.json")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        keys.update(asset_key(found) for found in asset_paths_in_json(data))
    return keys


class AssetIndex:
    """A generation's asset keys, loaded (a sorted array)."""

    def __init__(self, keys: array | None = None) -> None:
        self.keys = keys if keys is not None else array("q")

    @classmethod
    def load(cls, api: Path, entry: dict[str, Any]) -> "AssetIndex":
        return cls(read_arrays(api / entry["index"], entry["arrays"])["keys"])

    def __len__(self) -> int:
        return len(self.keys)

    def names(self, path: str) -> bool:
        key = asset_key(path)
        i = bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key
