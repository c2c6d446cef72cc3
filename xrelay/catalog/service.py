"""The ``catalog`` service: loads the cached catalog at start-up, so xrelay serves at once."""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.store import CacheStore

__all__ = ["CatalogService"]

log = Logger()


class CatalogService(Service):
    """Loads the cached catalog at start-up; a cache that exists but cannot
    be loaded (or prepared) calls *on_unusable* (the composition root starts
    an ingest), rather than leave nothing to serve until the next scheduled
    ingest, hours away."""

    name = "catalog"

    def __init__(self, cache: CatalogCache, store: CacheStore, on_unusable: Callable[[], Any]) -> None:
        self.cache = cache
        self.store = store
        self.on_unusable = on_unusable

    def startService(self) -> None:
        super().startService()
        d = defer.Deferred.fromCoroutine(self.cache.reload())
        d.addCallback(self._loaded)
        d.addErrback(lambda f: log.failure("loading the cached catalog", f))

    def _loaded(self, ok: bool) -> None:
        if ok:
            return
        if self.store.current() is None:
            log.info("no cached catalog yet in {path}; serving once the first ingest completes",
                     path=str(self.store.root))
            return
        log.warn("the cached catalog cannot be loaded; ingesting it again now")
        self.on_unusable()
