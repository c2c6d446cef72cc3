"""Precomputed JSON answers for the player_api.php list actions.

When the catalog reloads, each list (categories, live streams, movies,
series) is serialised once, in a thread, row by row into one template
(:class:`ListTemplate`) that still holds the ``@XRELAY_BASE@`` marker, with
each row's offset and the rows of each category.  An answer for a given
base URL (and category, limit, gzip) is cut from the template in a thread
and kept in a small byte-bounded LRU cache, so the full get_live_streams
answer for a client's base is a dictionary hit: no JSON encoding, no copy.
"""

from __future__ import annotations

import gzip
import json
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable

from twisted.internet import defer, threads
from twisted.logger import Logger

from .deferutil import Shared
from .scrub import BASE_MARKER

__all__ = ["ListTemplate", "ListAnswers", "LIST_KEYS", "dumps"]

log = Logger()

MARKER = BASE_MARKER.encode()

#: player_api action -> bundle key
LIST_KEYS = {
    "get_live_categories": "live_categories",
    "get_vod_categories": "vod_categories",
    "get_series_categories": "series_categories",
    "get_live_streams": "live_streams",
    "get_vod_streams": "vod_streams",
    "get_series": "series",
}
#: gzip level of cached answers (built in a thread, once per base).
GZIP_LEVEL = 6
#: Answers smaller than this are not worth compressing.
GZIP_MIN = 1024
#: Byte budget of the per-base answer cache.
CACHE_BUDGET = 160 * 1024 * 1024


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class ListTemplate:
    """One list serialised: ``[row0,row1,...]`` with markers left in."""

    data: bytes
    #: offsets[i] = where row i starts; offsets[n] = where "]" is (+1 for the comma)
    offsets: array
    #: markers[i] = base markers before row i
    markers: array
    by_category: dict[int, array] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def build(cls, rows: Iterable[dict[str, Any]]) -> "ListTemplate":
        parts: list[bytes] = []
        offsets = array("q")
        markers = array("q")
        by_category: dict[int, list[int]] = {}
        pos, marks = 1, 0
        for i, row in enumerate(rows):
            encoded = dumps(row)
            offsets.append(pos)
            markers.append(marks)
            parts.append(encoded)
            pos += len(encoded) + 1
            marks += encoded.count(MARKER)
            for cid in _categories(row):
                by_category.setdefault(cid, []).append(i)
        offsets.append(pos)
        markers.append(marks)
        data = b"[" + b",".join(parts) + b"]"
        return cls(data, offsets, markers, {k: array("i", v) for k, v in by_category.items()})

    def render(self, base: bytes, category: int | None = None, limit: int | None = None) -> bytes:
        """The answer for *base* (blocking: run in a thread for big lists)."""
        if category is None and limit is None:
            return self.data.replace(MARKER, base) if self.markers[-1] else self.data
        if category is None:
            indexes: Iterable[int] = range(min(limit or 0, self.count))
        else:
            picked = self.by_category.get(category, array("i"))
            indexes = picked[:limit] if limit is not None else picked
        view = memoryview(self.data)
        rows = [view[self.offsets[i]:self.offsets[i + 1] - 1] for i in indexes]
        out = b"[" + b",".join(rows) + b"]"
        return out.replace(MARKER, base) if MARKER in out else out


def _categories(row: dict[str, Any]) -> list[int]:
    cats = row.get("category_ids")
    if isinstance(cats, list) and cats:
        return [c for c in cats if isinstance(c, int)]
    cid = row.get("category_id")
    if isinstance(cid, str) and cid.isdigit():
        return [int(cid)]
    return []


def build_templates(bundle: dict[str, Any]) -> dict[str, ListTemplate]:
    """Every list's template (blocking)."""
    return {key: ListTemplate.build(bundle.get(key, [])) for key in LIST_KEYS.values()}


class ListAnswers:
    """The list answers of the current catalog, per base URL."""

    def __init__(self, budget: int = CACHE_BUDGET) -> None:
        self.templates: dict[str, ListTemplate] = {}
        self.generation = 0
        self.budget = budget
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._building: dict[tuple[Any, ...], Shared[bytes]] = {}
        #: bases seen recently: their full answers are rebuilt after a reload
        self.recent_bases: OrderedDict[bytes, None] = OrderedDict()

    @property
    def ready(self) -> bool:
        return bool(self.templates)

    async def reload(self, bundle: dict[str, Any]) -> None:
        templates = await threads.deferToThread(build_templates, bundle)
        self.templates = templates
        self.generation += 1
        self._cache.clear()
        self._size = 0
        self._building.clear()
        log.info("API answers precomputed: {sizes}",
                 sizes=", ".join(f"{k} {len(t.data) // 1024} KiB" for k, t in templates.items()))
        for base in list(self.recent_bases):
            for key in ("live_streams", "vod_streams", "series"):
                for gz in (True, False):
                    try:
                        await self.answer(key, base, gz=gz)
                    except Exception:
                        log.failure("precomputing {key}", key=key)

    def answer(self, key: str, base: bytes, category: int | None = None,
               limit: int | None = None, gz: bool = False) -> defer.Deferred[bytes]:
        """The JSON body (gzip-compressed if *gz*) for one list request."""
        template = self.templates.get(key)
        if template is None:
            return defer.succeed(b"[]" if not gz else gzip.compress(b"[]"))
        self.recent_bases[base] = None
        self.recent_bases.move_to_end(base)
        while len(self.recent_bases) > 4:
            self.recent_bases.popitem(last=False)
        ck = (self.generation, key, base, category, limit, gz)
        hit = self._cache.get(ck)
        if hit is not None:
            self._cache.move_to_end(ck)
            return defer.succeed(hit)
        if len(template.data) < 64 * 1024 and not gz:
            # small (categories, small slices): cheaper inline than a thread hop
            return defer.succeed(self._store(ck, template.render(base, category, limit)))
        shared = self._building.get(ck)
        if shared is None:
            generation = self.generation

            def build() -> bytes:
                body = template.render(base, category, limit)
                if gz:
                    body = gzip.compress(body, GZIP_LEVEL, mtime=0)
                return body

            d = threads.deferToThread(build)

            def built(body: bytes) -> bytes:
                self._building.pop(ck, None)
                if generation == self.generation:
                    self._store(ck, body)
                return body

            def failed(f: Any) -> Any:
                self._building.pop(ck, None)
                return f

            d.addCallbacks(built, failed)
            shared = self._building[ck] = Shared(d)
        return shared.wait()

    def _store(self, key: tuple[Any, ...], body: bytes) -> bytes:
        if len(body) > self.budget:
            return body
        self._cache[key] = body
        self._size += len(body)
        while self._size > self.budget and self._cache:
            _, old = self._cache.popitem(last=False)
            self._size -= len(old)
        return body
