"""Movies and series episodes: ``/movie/USER/PASS/ID.EXT`` and ``/series/USER/PASS/ID.EXT``.

The route has logged the user in; this checks the catalog without contacting
the provider (404 for an unknown id), then plays the provider's file for
this one client through :class:`~xrelay.media.files.FileRelay` (seeking
included).
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from xrelay.catalog.cache import CatalogCache
from xrelay.core.config import UserConfig
from xrelay.http.errors import NotFound, Unavailable
from xrelay.media.files import FileRelay
from xrelay.provider.client import ProviderClient

__all__ = ["VodServer"]


class VodServer:
    """Movies and series episodes."""

    def __init__(self, clock: IReactorTime, catalog: CatalogCache, client: ProviderClient, files: FileRelay) -> None:
        self.clock = clock
        self.catalog = catalog
        self.client = client
        self.files = files
        self._detail_episodes: set[int] = set()
        self._scanned: tuple[Any, float] = (None, 0.0)

    def serve(self, request: IRequest, account: UserConfig, kind: str, stream_id: int, ext: str) -> Any:
        """A logged-in user's request for a movie (*kind* ``movie``) or an episode (``series``)."""
        if not ext.isalnum() or len(ext) > 5:
            raise NotFound("unknown stream")
        catalog = self.catalog
        if not catalog.loaded:
            raise Unavailable("the catalog is not loaded yet, try again soon", retry_after=10)
        if kind == "movie":
            if not catalog.has("vod", stream_id):
                raise NotFound("unknown movie")
            return self._play(request, account, kind, stream_id, ext)
        if catalog.has("episode", stream_id):
            return self._play(request, account, kind, stream_id, ext)
        return Deferred.fromCoroutine(self._episode_from_details(request, account, stream_id, ext))

    def _play(self, request: IRequest, account: UserConfig, kind: str, stream_id: int, ext: str) -> Any:
        url = self.client.stream_url(kind, stream_id, ext)
        what = f"{'movie' if kind == 'movie' else 'episode'} {stream_id}"
        return self.files.play(request, account, (kind, stream_id), url, what, ext.lower())

    async def _episode_from_details(self, request: IRequest, account: UserConfig, stream_id: int,
                                    ext: str) -> Any:
        """Episodes missing from the playlist but listed in a cached
        get_series_info answer are playable too."""
        if stream_id not in self._detail_episodes:
            await self._scan_details()
        if stream_id not in self._detail_episodes:
            raise NotFound("unknown episode")
        return await self._play(request, account, "series", stream_id, ext)

    async def _scan_details(self) -> None:
        generation = self.catalog.generation
        now = self.clock.seconds()
        last_generation, last_time = self._scanned
        if generation is None or (generation == last_generation and now - last_time < 10):
            return
        self._scanned = (generation, now)
        found = await threads.deferToThread(_episode_ids_in_details, generation / "details" / "series")
        if generation != last_generation:
            self._detail_episodes = set()
        self._detail_episodes |= found


def _episode_ids_in_details(directory: Any) -> set[int]:
    ids: set[int] = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return ids
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                detail = json.load(f)
        except (OSError, ValueError):
            continue
        episodes = detail.get("episodes") if isinstance(detail, dict) else None
        for group in (episodes or {}).values() if isinstance(episodes, dict) else ():
            for ep in group if isinstance(group, list) else ():
                try:
                    ids.add(int(ep.get("id")))
                except (TypeError, ValueError, AttributeError):
                    continue
    return ids
