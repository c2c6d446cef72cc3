"""JSON parsing that lets the reactor breathe.

``json.loads`` is one C call: it holds the GIL for its whole run, so parsing
a 65 MB catalog in a worker thread still freezes the reactor thread for
most of a second.  :func:`loads` walks the outer containers (a provider's
list answer, the cache's bundle and its lists) in Python and decodes each
element with its own short C call, so the GIL changes hands between rows.
The result is exactly what ``json.loads`` returns.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Generator, Iterator, Protocol, cast

__all__ = ["loads", "iter_rows"]


class _MatchesAlways(Protocol):
    def match(self, string: str, pos: int = ...) -> re.Match[str]: ...


#: Whitespace, possibly none: it matches at every position, never None.
_WS = cast(_MatchesAlways, re.compile(r"[ \t\n\r]*"))

#: Object keys seen so far, so that the 100 000 rows of a list share one
#: copy of each key string (as one json.loads call would) instead of each
#: row carrying its own: that halves the catalog's memory.
_KEYS: dict[str, str] = {}
_MAX_KEYS = 50_000


def _shared_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = _KEYS
    if len(keys) < _MAX_KEYS:
        return {keys.setdefault(k, k): v for k, v in pairs}
    return {keys.get(k, k): v for k, v in pairs}


_decoder = json.JSONDecoder(object_pairs_hook=_shared_keys)

#: Containers this deep or deeper are decoded in one call (rows are small).
_STEP_DEPTH = 2


def loads(data: bytes | str) -> Any:
    """Parse a JSON document, element by element down to depth 2."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if text.startswith("\ufeff"):
        text = text[1:]
    idx = _WS.match(text, 0).end()
    value, idx = _value(text, idx, 0)
    idx = _WS.match(text, idx).end()
    if idx != len(text):
        raise json.JSONDecodeError("Extra data", text, idx)
    return value


def iter_rows(data: bytes | str) -> tuple[str, Iterator[tuple[str | None, Any]]]:
    """A list answer parsed one row at a time: ``("list", (None, element)...)``
    for an array, ``("object", (key, value)...)`` for an object, or the
    type name of anything else with no rows.  Only the text and the row
    being parsed are held; the iterator raises ``ValueError`` where the
    document is malformed or cut off, including after its last row."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    del data
    if text.startswith("\ufeff"):
        text = text[1:]
    idx = _WS.match(text, 0).end()
    opener = text[idx:idx + 1]
    if opener not in ("[", "{"):
        value = loads(text)  # a scalar, or garbage (raises)
        return type(value).__name__, iter(())
    return ("list" if opener == "[" else "object"), _outermost(text, idx + 1, opener == "{")


def _outermost(text: str, idx: int, keyed: bool) -> Iterator[tuple[str | None, Any]]:
    end = yield from _items(text, idx, keyed, 1)
    end = _WS.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)


def _value(text: str, idx: int, depth: int) -> tuple[Any, int]:
    if depth < _STEP_DEPTH and idx < len(text) and text[idx] in "[{":
        keyed = text[idx] == "{"
        out: Any = {} if keyed else []
        items = _items(text, idx + 1, keyed, depth + 1)
        while True:
            try:
                key, value = next(items)
            except StopIteration as done:
                return out, done.value
            if keyed:
                out[key] = value
            else:
                out.append(value)
    return _decoder.raw_decode(text, idx)


#: After this many rows a parsing thread pauses briefly, so that the reactor
#: thread gets the GIL at once instead of sharing it half and half.
_YIELD_EVERY = 2000
_YIELD_FOR = 0.001


def _items(text: str, idx: int, keyed: bool, depth: int) -> Generator[tuple[str | None, Any], None, int]:
    """The items of the array (keys None) or object whose opening bracket
    is just before *idx*, parsed one by one; returns the position after it."""
    closer = "}" if keyed else "]"
    idx = _WS.match(text, idx).end()
    if text.startswith(closer, idx):
        return idx + 1
    count = 0
    while True:
        key = None
        if keyed:
            if not text.startswith('"', idx):
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, idx)
            key, idx = _decoder.raw_decode(text, idx)
            key = _KEYS.get(key, key)
            idx = _WS.match(text, idx).end()
            if not text.startswith(":", idx):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, idx)
            idx = _WS.match(text, idx + 1).end()
        value, idx = _value(text, idx, depth)
        yield key, value
        count += 1
        if count % _YIELD_EVERY == 0:
            time.sleep(_YIELD_FOR)
        idx = _WS.match(text, idx).end()
        if text.startswith(",", idx):
            idx = _WS.match(text, idx + 1).end()
        elif text.startswith(closer, idx):
            return idx + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, idx)
