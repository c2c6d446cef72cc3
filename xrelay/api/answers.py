"""Precomputed JSON answers for the player_api.php list actions.

Each list (categories, live streams, movies, series) is serialised once per
ingest, where the catalog is (:mod:`xrelay.catalog.prepare`), into a template file
``GENERATION/api/KEY.json`` that still holds the ``@XRELAY_BASE@`` marker;
the daemon loads only each row's offset, marker count and the rows of each
category (:class:`~xrelay.catalog.list_template.ListTemplate`).  Small lists are
also kept in memory.

Answers:

* the full list, gzip: compressed once per base URL in a thread and kept;
* the full list, uncompressed: the marker replaced once per base URL in a
  thread and kept; a list too big for the cache is streamed from the
  template file with the marker replaced on the way (:class:`StreamAnswer`;
  its length is known);
* category slices and ``limit``: cut from the file in a thread and kept.

What is kept is kept in one byte-bounded LRU cache (:class:`AnswerCache`)
that the whole catalog's answers and every lineup's share, and is written
from memory to each client as it is (:class:`~xrelay.http.body.MemoryBody`).
"""

from __future__ import annotations

import gzip
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from xrelay.http.body import MarkerStream
from xrelay.core.deferreds import Shared
from xrelay.catalog.list_template import GZIP_LEVEL, MARKER, ListTemplate, dumps
from xrelay.catalog.lists import ID_KEYS, LIST_KEYS

__all__ = ["AnswerCache", "ListAnswers", "StreamAnswer", "dumps"]

log = Logger()

#: Byte budget of the answer cache (full lists, gzip and not, and slices):
#: the 50 000-channel list is 17 MB uncompressed, 1.1 MB gzip.
CACHE_BUDGET = 96 * 1024 * 1024


class AnswerCache:
    """Answers kept in memory, least recently used first out, within *budget*
    bytes; an answer bigger than half the budget is not kept."""

    def __init__(self, budget: int = CACHE_BUDGET) -> None:
        self.budget = budget
        self._entries: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self.size = 0

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def fits(self, size: int) -> bool:
        return size <= self.budget // 2

    def put(self, key: tuple[Any, ...], body: bytes) -> bytes:
        if not self.fits(len(body)):
            return body
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._entries[key] = body
        self.size += len(body)
        while self.size > self.budget and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted)
        return body

    def drop(self, owner: object) -> None:
        """Forget the answers whose key starts with *owner*."""
        for key in [k for k in self._entries if k[0] is owner]:
            self.size -= len(self._entries.pop(key))


@dataclass
class StreamAnswer:
    """A full list to stream from its template file."""

    path: str
    length: int
    replacements: list[tuple[bytes, bytes]]

    def source(self) -> MarkerStream:
        return MarkerStream([self.path], self.replacements)


class ListAnswers:
    """The list answers of the current catalog, per base URL."""

    def __init__(self, cache: AnswerCache | None = None, *, budget: int = CACHE_BUDGET) -> None:
        self.templates: dict[str, ListTemplate] = {}
        self.generation = 0
        #: shared with the other lineups' answers (a cache of its own if None)
        self.cache = cache if cache is not None else AnswerCache(budget)
        self._building: dict[tuple[Any, ...], Shared[bytes]] = {}
        #: bases seen recently: their gzip answers are rebuilt after a reload
        self.recent_bases: OrderedDict[bytes, None] = OrderedDict()

    @property
    def ready(self) -> bool:
        return bool(self.templates)

    def adopt(self, templates: dict[str, ListTemplate]) -> None:
        """Serve *templates* (a new catalog's) from now on."""
        self.templates = templates
        self.generation += 1
        self.cache.drop(self)
        self._building.clear()
        log.info("API answers ready: {sizes}",
                 sizes=", ".join(f"{k} {t.size // 1024} KiB" for k, t in templates.items()))

    async def warm(self) -> None:
        """Compress the full answers again for the base URLs seen recently,
        so that their clients never wait after a reload (one at a time)."""
        generation = self.generation
        for base in list(self.recent_bases):
            for key in ("live_streams", "vod_streams", "series"):
                if generation != self.generation:
                    return
                try:
                    await self.answer(key, base, gz=True)
                except Exception:
                    log.failure("precomputing {key}", key=key)

    def kept(self, key: str, base: bytes, category: int | None = None,
             limit: int | None = None, gz: bool = False) -> bytes | None:
        """The body :meth:`answer` would give, if it is in memory now (most
        requests); else None."""
        template = self.templates.get(key)
        if template is None:
            return None
        if limit is not None and limit >= template.count:
            limit = None
        if category is None and limit is None:
            self._seen(base)
        return self.cache.get((self, self.generation, key, base, category, limit, gz))

    def _seen(self, base: bytes) -> None:
        self.recent_bases[base] = None
        self.recent_bases.move_to_end(base)
        while len(self.recent_bases) > 4:
            self.recent_bases.popitem(last=False)

    def answer(self, key: str, base: bytes, category: int | None = None,
               limit: int | None = None, gz: bool = False) -> defer.Deferred[bytes] | defer.Deferred[StreamAnswer]:
        """The body for one list request: bytes (gzip-compressed if *gz*),
        or a :class:`StreamAnswer` for a big uncompressed full list."""
        template = self.templates.get(key)
        if template is None:
            return defer.succeed(b"[]" if not gz else gzip.compress(b"[]", mtime=0))
        if limit is not None and limit >= template.count:
            limit = None
        full = category is None and limit is None
        if full and not gz and template.data is None and not self.cache.fits(template.length_for(base)):
            return defer.succeed(StreamAnswer(template.path, template.length_for(base),  # type: ignore[arg-type]
                                              [(MARKER, base)]))
        if full:
            self._seen(base)
        ck = (self, self.generation, key, base, category, limit, gz)
        hit = self.cache.get(ck)
        if hit is not None:
            return defer.succeed(hit)
        if template.data is not None and not gz and template.size < 64 * 1024:
            # small (categories...): cheaper inline than a thread hop
            body = template.full(base) if full else template.slice(base, category, limit)
            return defer.succeed(self.cache.put(ck, body))
        shared = self._building.get(ck)
        if shared is None:
            generation = self.generation

            def build() -> bytes:
                if full:
                    return template.full_gzip(base) if gz else template.full(base)
                body = template.slice(base, category, limit)
                return gzip.compress(body, GZIP_LEVEL, mtime=0) if gz else body

            d = threads.deferToThread(build)

            def built(body: bytes) -> bytes:
                self._building.pop(ck, None)
                if generation == self.generation:
                    self.cache.put(ck, body)
                return body

            def failed(f: Any) -> Any:
                self._building.pop(ck, None)
                return f

            d.addCallbacks(built, failed)
            shared = self._building[ck] = Shared(d)
        return shared.wait()
