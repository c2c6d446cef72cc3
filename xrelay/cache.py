"""The current catalog in memory, and item details fetched once.

:class:`CatalogCache` holds the bundle of the current generation with
indexes by id.  It reloads after each successful ingest and tells its
listeners (the API precomputes its answers then).  Movie and series details
are not in the bundle: the first request for one asks the provider, and
the answer is kept on disk beside the bundle until the next ingest, so the
provider is asked at most once per item per ingest interval.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, threads
from twisted.logger import Logger

from . import catalog
from .deferutil import Shared
from .provider import ProviderClient, ProviderError
from .scrub import Scrubber
from .store import CacheStore

__all__ = ["CatalogCache"]

log = Logger()

#: Seconds after a reload before the previous catalog is taken apart.
DISPOSE_DELAY = 5.0

_DETAILS = {
    # kind: (index attribute, provider action, id parameter, normaliser)
    "vod": ("vod_by_id", "get_vod_info", "vod_id", catalog.normalise_vod_info),
    "series": ("series_by_id", "get_series_info", "series_id", catalog.normalise_series_info),
}


class CatalogCache:
    def __init__(self, store: CacheStore, client: ProviderClient | None,
                 scrubber: Scrubber | None = None, clock: Any = None) -> None:
        self.clock = clock
        self.store = store
        self.client = client
        self.scrubber = scrubber or (client.scrubber if client else None)
        self.generation: Path | None = None
        self.bundle: dict[str, Any] = {}
        self.live_by_id: dict[int, dict[str, Any]] = {}
        self.vod_by_id: dict[int, dict[str, Any]] = {}
        self.series_by_id: dict[int, dict[str, Any]] = {}
        self.episode_ids: set[int] = set()
        self.listeners: list[Callable[["CatalogCache"], Any]] = []
        self._inflight: dict[tuple[str, str, int], Shared[Any]] = {}

    @property
    def loaded(self) -> bool:
        return self.generation is not None

    @property
    def account(self) -> dict[str, Any]:
        return self.bundle.get("account", {})

    async def reload(self) -> bool:
        """Load the current generation (off the reactor thread)."""
        try:
            loaded = await threads.deferToThread(self._load)
        except (OSError, ValueError) as e:
            log.error("cannot load the cache: {error}", error=str(e))
            return False
        if loaded is None:
            return False
        old = (self.bundle, self.live_by_id, self.vod_by_id, self.series_by_id, self.episode_ids)
        (self.generation, self.bundle, self.live_by_id, self.vod_by_id,
         self.series_by_id, self.episode_ids) = loaded
        self._inflight.clear()
        # The catalog is a million long-lived objects with no reference
        # cycles: keep the cyclic collector's full passes (hundreds of ms on
        # the reactor thread) off them.  Reference counting still frees them.
        gc.freeze()
        log.info("catalog loaded: {live} live, {vod} movies, {series} series",
                 live=len(self.live_by_id), vod=len(self.vod_by_id), series=len(self.series_by_id))
        for listener in list(self.listeners):
            try:
                await defer.maybeDeferred(listener, self)
            except Exception:
                log.failure("catalog listener failed")
        if self.clock is not None and old[0]:
            # Freeing the previous catalog's million objects in one go would
            # stall the reactor for half a second.  Once every user of it has
            # moved on (the listeners above, then a grace period for requests
            # in flight), take it apart row by row in a thread, so that the
            # GIL changes hands between rows.
            self.clock.callLater(DISPOSE_DELAY, lambda: threads.deferToThread(_dispose, old).addErrback(
                lambda f: log.failure("freeing the previous catalog", f)))
        return True

    def _load(self) -> tuple[Any, ...] | None:
        found = self.store.load_bundle()
        if found is None:
            return None
        generation, bundle = found
        return (
            generation,
            bundle,
            {s["stream_id"]: s for s in bundle.get("live_streams", [])},
            {s["stream_id"]: s for s in bundle.get("vod_streams", [])},
            {s["series_id"]: s for s in bundle.get("series", [])},
            {int(e["id"]) for e in bundle.get("episodes", [])},
        )

    def stream(self, kind: str, ident: int) -> dict[str, Any] | None:
        """The catalog row of a live channel (``live``) or movie (``movie``)."""
        return (self.live_by_id if kind == "live" else self.vod_by_id).get(ident)

    async def details(self, kind: str, ident: int) -> dict[str, Any] | None:
        """get_vod_info / get_series_info for a known item, fetched once.

        Returns None for an id that is not in the catalog (without asking
        the provider); raises ProviderError when the provider fails.
        """
        index_name, action, param, normalise = _DETAILS[kind]
        row = getattr(self, index_name).get(ident)
        generation = self.generation
        if row is None or generation is None:
            return None
        cached = await threads.deferToThread(self.store.read_detail, generation, kind, ident)
        if cached is not None:
            try:
                return json.loads(cached)
            except ValueError:
                pass
        key = (str(generation), kind, ident)
        if key not in self._inflight:
            d = defer.Deferred.fromCoroutine(self._fetch(generation, kind, ident, row))
            d.addBoth(lambda r: (self._inflight.pop(key, None), r)[1])
            self._inflight[key] = Shared(d)
        return await self._inflight[key].wait()

    async def _fetch(self, generation: Path, kind: str, ident: int, row: dict[str, Any]) -> dict[str, Any]:
        if self.client is None:
            raise ProviderError(f"{kind} {ident}: no provider configured")
        _, action, param, normalise = _DETAILS[kind]
        raw = await self.client.get_json(action, timeout=30, **{param: ident})
        if isinstance(raw, dict) and isinstance(raw.get("user_info"), dict):
            raise ProviderError(f"{action}: the provider answered with the account object")

        def prepare() -> tuple[dict[str, Any], bytes]:
            detail = self.scrubber.tree(normalise(raw, row)) if self.scrubber else normalise(raw, row)
            return detail, json.dumps(detail, separators=(",", ":"), ensure_ascii=False).encode()

        detail, data = await threads.deferToThread(prepare)
        try:
            await threads.deferToThread(self.store.write_detail, generation, kind, ident, data)
        except OSError as e:
            log.warn("cannot cache {kind} {ident} details: {error}", kind=kind, ident=ident,
                     error=e.strerror)
        return detail


def _dispose(parts: tuple[Any, ...]) -> None:
    """Drop references one at a time (indexes first, then the lists), then
    hand the freed memory back to the system."""
    containers = list(parts[1:]) + [parts[0]]
    for container in containers:
        if isinstance(container, dict):
            while container:
                _, value = container.popitem()
                if isinstance(value, list):
                    while value:
                        value.pop()
        elif isinstance(container, (set, list)):
            while container:
                container.pop()
    _trim_heap()


def _trim_heap() -> None:
    """Return free heap pages to the system (glibc); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
