"""The composition root: one :class:`XRelay` holds every component.

Components are built here once and handed to whatever needs them; nothing
imports the global reactor or reads the configuration on its own.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.core.config import Config
from xrelay.ingest.ingester import IngestResult
from xrelay.ingest.worker import ProcessIngester
from xrelay.provider.client import ProviderClient
from xrelay.core.scrub import Scrubber
from xrelay.catalog.store import CacheStore
from xrelay.core.users import UserDB

__all__ = ["XRelay"]

log = Logger()


class XRelay:
    """Everything one running xrelay is made of."""

    def __init__(self, reactor: Any, config: Config) -> None:
        self.reactor = reactor
        self.config = config
        self.scrubber = Scrubber(config.upstream)
        self.client = ProviderClient(reactor, config.upstream, self.scrubber)
        self.store = CacheStore(config.ingest.data_dir)
        self.users = UserDB(config.users)
        self.cache = CatalogCache(self.store, self.client, self.scrubber, clock=reactor)
        self.ingester = ProcessIngester(reactor, self.client, self.store, config.ingest, self.scrubber)
        self.ingester.listeners.append(self._after_ingest)
        # Set by the feature modules as they are wired in (see xrelay.tap):
        self.api: Any = None
        self.relay: Any = None
        self.vod: Any = None
        self.hls: Any = None
        self.timeshift: Any = None
        self.admin: Any = None
        self.metrics: Any = None
        self.status: Any = None
        self.ingest_service: Any = None
        #: Called with the previous ``{username: UserConfig}`` after a reload.
        self.user_listeners: list[Any] = []

    async def _after_ingest(self, result: IngestResult) -> None:
        if result.ok:
            await self.cache.reload()

    def reload_users(self, config: Config) -> None:
        """Take the users of a re-read configuration (SIGHUP)."""
        previous = {u.username: u for u in self.users}
        self.users.replace(config.users)
        log.info("users reloaded: {count} users", count=len(self.users))
        for listener in list(self.user_listeners):
            try:
                listener(previous)
            except Exception:
                log.failure("user reload listener failed")
