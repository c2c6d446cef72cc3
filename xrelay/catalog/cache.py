"""The current catalog, and item details fetched once.

:class:`CatalogCache` holds the current generation as prepared for serving
(:class:`~xrelay.catalog.generation.Generation`: lookups by id, the API's templates,
the EPG index), never the catalog as Python objects.  It reloads after each
successful ingest and tells its listeners (the API adopts the new answers
then).  Movie and series details are not in the bundle: the first request
for one asks the provider, and the answer is kept on disk beside the bundle
until the next ingest, so the provider is asked at most once per item per
ingest interval.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from xrelay.catalog import rows as catalog_rows
from xrelay.catalog.assets import asset_key, asset_keys_in_files, asset_paths_in_json
from xrelay.catalog.episodes import EpisodeMap, episode_ids_of
from xrelay.core.deferreds import Shared
from xrelay.catalog.generation import Generation, LiveChannel, NotPrepared, load_generation
from xrelay.catalog.prepare import prepare_existing, refresh_epg, run_in_child
from xrelay.core.scrub import Scrubber
from xrelay.catalog.store import CacheStore

__all__ = ["CatalogCache", "DetailsUnavailable", "FetchJson"]

log = Logger()

#: An EPG index built longer ago than this (a daemon started long after the
#: last ingest) is built again around the present time.
EPG_MAX_AGE = 86400.0

_DETAILS = {
    # kind: (provider action, id parameter, normaliser)
    "vod": ("get_vod_info", "vod_id", catalog_rows.normalise_vod_info),
    "series": ("get_series_info", "series_id", catalog_rows.normalise_series_info),
}


#: ``fetch_json(action, **params)``: one provider API answer, parsed
#: (:meth:`xrelay.provider.client.ProviderClient.get_json`).
FetchJson = Callable[..., Awaitable[Any]]


class DetailsUnavailable(Exception):
    """The provider gave no usable details for an item."""


class CatalogCache:
    def __init__(self, store: CacheStore, fetch_json: FetchJson | None,
                 scrubber: Scrubber | None = None, clock: IReactorTime | None = None,
                 episodes: EpisodeMap | None = None) -> None:
        self.clock = clock
        self.store = store
        #: Episode -> series, kept across ingests (learnt from series details).
        self.episodes = episodes if episodes is not None else EpisodeMap(store.root)
        self.fetch_json = fetch_json
        self.scrubber = scrubber
        self.current: Generation | None = None
        self.listeners: list[Callable[["CatalogCache"], Any]] = []
        self._inflight: dict[tuple[str, str, int], Shared[Any]] = {}
        self._sequence = 0
        #: generations whose EPG index this process tried to build again
        self._epg_refreshed: set[Path] = set()
        #: asset keys named by the details served since the last reload
        self._detail_assets: set[int] = set()

    @property
    def loaded(self) -> bool:
        return self.current is not None

    @property
    def generation(self) -> Path | None:
        return self.current.path if self.current is not None else None

    @property
    def account(self) -> dict[str, Any]:
        return self.current.account if self.current is not None else {}

    @property
    def generated_at(self) -> int:
        return self.current.generated_at if self.current is not None else 0

    def has(self, kind: str, ident: int) -> bool:
        """Is *ident* a ``live`` channel, ``vod`` movie, ``series`` or ``episode``?"""
        return self.current is not None and self.current.has(kind, ident)

    def live(self, ident: int) -> LiveChannel | None:
        return self.current.live(ident) if self.current is not None else None

    def episode_series(self, ident: int) -> int | None:
        """The series an episode belongs to, if its series' details were
        ever fetched (this generation or an earlier one)."""
        return self.episodes.series_of(ident)

    def names_asset(self, path: str) -> bool:
        """Does the catalog (its lists, its guide, the details served) name
        the provider image ``/asset/PATH``?"""
        if self.current is None:
            return False
        return self.current.assets.names(path) or asset_key(path) in self._detail_assets

    def _note_assets(self, data: bytes) -> None:
        for path in asset_paths_in_json(data):
            self._detail_assets.add(asset_key(path))

    async def row(self, kind: str, ident: int) -> dict[str, Any] | None:
        """An item's list row (read from the list file in a thread)."""
        current = self.current
        if current is None or not current.has(kind, ident):
            return None
        return await threads.deferToThread(current.row, kind, ident)

    async def reload(self) -> bool:
        """Load the current generation (off the reactor thread).  One made by
        an older xrelay is prepared first, in a child process."""
        self._sequence += 1
        sequence = self._sequence
        path = await threads.deferToThread(self.store.current)
        if path is None:
            return False
        try:
            loaded = await threads.deferToThread(load_generation, path)
        except Exception as e:  # written by an older xrelay, or damaged: prepare it again
            if isinstance(e, NotPrepared):
                log.info("preparing the cached catalog for serving ({why})", why=str(e))
            else:
                log.warn("the cached catalog's prepared files are unusable ({why}); preparing them again",
                         why=str(e))
            try:
                await threads.deferToThread(run_in_child, prepare_existing, str(path))
                loaded = await threads.deferToThread(load_generation, path)
            except Exception as e2:
                log.error("cannot load the cache: {error}", error=str(e2))
                return False
        detail_assets = await threads.deferToThread(asset_keys_in_files, loaded.path / "details")
        await threads.deferToThread(self._keep_episodes)
        if sequence != self._sequence:
            return False  # a newer generation is being loaded
        try:
            await threads.deferToThread(self.store.mark_served, loaded.path)
        except OSError as e:
            log.warn("cannot record the generation being served: {error}", error=e.strerror)
        self.current = loaded
        self._inflight.clear()
        self._detail_assets = detail_assets
        log.info("catalog loaded: {live} live, {vod} movies, {series} series",
                 live=loaded.count("live"), vod=loaded.count("vod"), series=loaded.count("series"))
        for listener in list(self.listeners):
            try:
                await defer.maybeDeferred(listener, self)
            except Exception:
                log.failure("catalog listener failed")
        stale = loaded.epg.built_at and time.time() - loaded.epg.built_at > EPG_MAX_AGE
        if stale and loaded.path not in self._epg_refreshed:
            self._epg_refreshed.add(loaded.path)
            defer.Deferred.fromCoroutine(self._refresh_epg(loaded)).addErrback(
                lambda f: log.failure("refreshing the EPG index", f))
        return True

    def _keep_episodes(self) -> None:
        """Load the episode map once, then fold in what was learnt (blocking)."""
        try:
            if not self.episodes.loaded:
                self.episodes.load()
            else:
                self.episodes.compact()
        except OSError as e:
            log.warn("cannot read the episode map: {error}", error=e.strerror)

    async def _refresh_epg(self, stale: Generation) -> None:
        log.info("the EPG index is from {hours:.0f} h ago: indexing the guide again",
                 hours=(time.time() - stale.epg.built_at) / 3600)
        if not await threads.deferToThread(run_in_child, refresh_epg, str(stale.path)):
            log.warn("the guide could not be indexed again; keeping the index of the last ingest")
            return
        if self.current is stale:
            await self.reload()

    async def details(self, kind: str, ident: int) -> dict[str, Any] | None:
        """get_vod_info / get_series_info for a known item, fetched once.

        Returns None for an id that is not in the catalog (without asking
        the provider); raises the provider's error (or DetailsUnavailable) when it fails.
        """
        generation = self.generation
        row = await self.row(kind, ident)
        if row is None or generation is None:
            return None
        cached = await threads.deferToThread(self.store.read_detail, generation, kind, ident)
        if cached is not None:
            try:
                detail: dict[str, Any] = json.loads(cached)
            except ValueError:
                pass
            else:
                self._note_assets(cached)
                return detail
        key = (str(generation), kind, ident)
        shared = self._inflight.get(key)
        if shared is None:
            d = defer.Deferred.fromCoroutine(self._fetch(generation, kind, ident, row))
            # Stored first, then forgotten when done: a fetch that fails at
            # once (synchronously) is forgotten at once, never kept forever.
            shared = self._inflight[key] = Shared(d)
            d.addBoth(lambda r: (self._inflight.pop(key, None), r)[1])
        return await shared.wait()

    async def _fetch(self, generation: Path, kind: str, ident: int, row: dict[str, Any]) -> dict[str, Any]:
        if self.fetch_json is None:
            raise DetailsUnavailable(f"{kind} {ident}: no provider configured")
        action, param, normalise = _DETAILS[kind]
        raw = await self.fetch_json(action, timeout=30, **{param: ident})
        if isinstance(raw, dict) and isinstance(raw.get("user_info"), dict):
            raise DetailsUnavailable(f"{action}: the provider answered with the account object")

        def prepare() -> tuple[dict[str, Any], bytes]:
            detail = self.scrubber.tree(normalise(raw, row)) if self.scrubber else normalise(raw, row)
            if kind == "series":
                self.episodes.record(ident, episode_ids_of(detail))
            return detail, catalog_rows.encode_row(detail)

        detail, data = await threads.deferToThread(prepare)
        self._note_assets(data)
        try:
            await threads.deferToThread(self.store.write_detail, generation, kind, ident, data)
        except OSError as e:
            log.warn("cannot cache {kind} {ident} details: {error}", kind=kind, ident=ident,
                     error=e.strerror)
        return detail
