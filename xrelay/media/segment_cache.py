"""HLS bookkeeping: opaque URL tokens and the shared segment cache.

:class:`TokenMap` turns provider URLs into opaque tokens (an HMAC under a
per-process key) and back, forgetting them a while after the last playlist
that named them; it also makes the per-user tokens of ``/hls/`` URLs.
:class:`SegmentCache` keeps recently fetched segments and keys for every
client of a channel, bounded in bytes, with one fetch per URL at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from xrelay.core.deferreds import Shared

__all__ = ["Cached", "SegmentCache", "TokenEntry", "TokenMap"]


@dataclass
class TokenEntry:
    url: str
    kind: str
    channel: Any  # the HlsChannel that named it
    expires: float


class TokenMap:
    """Opaque tokens for provider URLs, valid ``lifetime`` seconds after the
    last playlist that named them."""

    def __init__(self, clock: IReactorTime, key: bytes | None = None, lifetime: float = 120.0,
                 max_entries: int = 50_000) -> None:
        self.clock = clock
        self.key = key or os.urandom(32)
        self.lifetime = lifetime
        self.max_entries = max_entries
        self.entries: OrderedDict[str, TokenEntry] = OrderedDict()

    def _mac(self, *parts: str) -> str:
        data = "\0".join(parts).encode("utf-8", "surrogateescape")
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()[:32]

    def token(self, url: str, kind: str, channel: Any) -> str:
        token = self._mac("url", url)
        expires = self.clock.seconds() + self.lifetime
        entry = self.entries.pop(token, None)
        if entry is None or entry.channel is not channel:
            entry = TokenEntry(url, kind, channel, expires)
        entry.expires = expires
        self.entries[token] = entry  # most recently named last
        self._prune()
        return token

    def get(self, token: str) -> TokenEntry | None:
        entry = self.entries.get(token)
        if entry is None:
            return None
        if entry.expires < self.clock.seconds():
            del self.entries[token]
            return None
        return entry

    def _prune(self) -> None:
        now = self.clock.seconds()
        while self.entries:
            token, entry = next(iter(self.entries.items()))
            if entry.expires >= now and len(self.entries) <= self.max_entries:
                break
            del self.entries[token]

    def user_token(self, username: str, password: str) -> str:
        return self._mac("user", username, password)[:24]



@dataclass
class Cached:
    data: bytes
    content_type: bytes
    expires: float


class SegmentCache:
    """Recently fetched segments and keys, shared by every client.

    At most ``max_bytes`` of data are kept (oldest evicted first), each for
    ``ttl`` seconds; concurrent requests for one URL share one fetch.
    """

    def __init__(self, clock: IReactorTime, max_bytes: int = 64 * 1024 * 1024, ttl: float = 30.0) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.size = 0
        self.entries: OrderedDict[str, Cached] = OrderedDict()
        self.inflight: dict[str, Shared[Cached]] = {}
        self.fetches = 0
        self.hits = 0

    def get(self, url: str, fetch: Callable[[], Deferred[tuple[bytes, bytes]]]) -> Deferred[Cached]:
        now = self.clock.seconds()
        cached = self.entries.get(url)
        if cached is not None and cached.expires >= now:
            self.hits += 1
            return succeed(cached)
        shared = self.inflight.get(url)
        if shared is None:
            self.fetches += 1
            d = fetch().addCallback(lambda result: self._store(url, *result))
            d.addBoth(lambda result: (self.inflight.pop(url, None), result)[1])
            shared = Shared(d)
            if not shared.done:
                self.inflight[url] = shared
        else:
            self.hits += 1
        return shared.wait()

    def _store(self, url: str, data: bytes, content_type: bytes) -> Cached:
        entry = Cached(data, content_type, self.clock.seconds() + self.ttl)
        if len(data) > self.max_bytes:
            return entry  # served, not kept
        old = self.entries.pop(url, None)
        if old is not None:
            self.size -= len(old.data)
        self.entries[url] = entry
        self.size += len(data)
        self._evict()
        return entry

    def _evict(self) -> None:
        now = self.clock.seconds()
        for url in [u for u, e in self.entries.items() if e.expires < now]:
            self.size -= len(self.entries.pop(url).data)
        while self.size > self.max_bytes and self.entries:
            _, entry = self.entries.popitem(last=False)
            self.size -= len(entry.data)

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0
