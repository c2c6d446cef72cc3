"""Movies and series episodes: ``/movie/USER/PASS/ID.EXT`` and ``/series/USER/PASS/ID.EXT``.

The route has logged the user in; this checks the catalog without contacting
the provider (404 for an unknown movie), then plays the provider's file for
this one client through :class:`~xrelay.media.files.FileRelay` (seeking
included).

Episodes outlive ingests in players' memories, so an episode is playable
when the current generation lists it (the provider's playlist), when it was
ever seen in a series' details (:class:`~xrelay.catalog.episodes.EpisodeMap`,
kept in the data directory across ingests), and otherwise when the provider
plays it: an episode id still unknown is asked of the provider at most once
per *recheck_after* seconds; its answer (media, or 404 / an error page) is
remembered for that long.

*episode_allowed* can refuse an episode given its series id (None when the
series is not known); by default every episode is allowed.  Lineups do not
use it: the stream routes ask :class:`~xrelay.catalog.lineup_service.Lineups`
before this part runs (:mod:`xrelay.web.routes`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.catalog.cache import CatalogCache
from xrelay.core.config import UserConfig
from xrelay.http.errors import HTTPError, NotFound, Unavailable
from xrelay.media.files import FileRelay, NoAnswer
from xrelay.provider.client import ProviderClient

__all__ = ["VodServer", "EpisodePolicy", "allow_every_episode"]

log = Logger()

#: ``episode_allowed(user, series_id)``: may *user* play an episode of that
#: series (None: the episode's series is unknown)?
EpisodePolicy = Callable[[UserConfig, "int | None"], bool]
#: Unknown episode ids whose provider answer is remembered at most.
MAX_REMEMBERED = 10_000


def allow_every_episode(user: UserConfig, series: int | None) -> bool:
    return True


class VodServer:
    """Movies and series episodes."""

    def __init__(self, clock: IReactorTime, catalog: CatalogCache, client: ProviderClient, files: FileRelay, *,
                 recheck_after: float = 21600.0,
                 episode_allowed: EpisodePolicy = allow_every_episode) -> None:
        self.clock = clock
        self.catalog = catalog
        self.client = client
        self.files = files
        self.recheck_after = recheck_after
        self.episode_allowed = episode_allowed
        #: unknown episode id -> (when the provider was asked, whether it played it);
        #: None while the first ask is under way
        self._asked: OrderedDict[int, tuple[float, bool | None]] = OrderedDict()

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
        series = catalog.episode_series(stream_id)
        if not self.episode_allowed(account, series):
            raise NotFound("unknown episode")
        if series is not None or catalog.has("episode", stream_id):
            return self._play(request, account, kind, stream_id, ext)
        return self._ask_provider(request, account, stream_id, ext)

    def _play(self, request: IRequest, account: UserConfig, kind: str, stream_id: int, ext: str) -> Any:
        url = self.client.stream_url(kind, stream_id, ext)
        what = f"{'movie' if kind == 'movie' else 'episode'} {stream_id}"
        return self.files.play(request, account, (kind, stream_id), url, what, ext.lower())

    # -- episodes nobody told xrelay about -------------------------------------------

    def _ask_provider(self, request: IRequest, account: UserConfig, stream_id: int, ext: str) -> Any:
        """Let the provider decide on an unknown episode, once per interval."""
        now = self.clock.seconds()
        asked = self._asked.get(stream_id)
        if asked is not None and now - asked[0] < self.recheck_after:
            if asked[1] is False:
                raise NotFound("unknown episode")
            return self._play(request, account, "series", stream_id, ext)
        self._asked[stream_id] = (now, None)
        self._asked.move_to_end(stream_id)
        while len(self._asked) > MAX_REMEMBERED:
            self._asked.popitem(last=False)
        log.info("episode {episode} is not in the catalog: asking the provider", episode=stream_id)
        d: Deferred[Any] = Deferred.fromCoroutine(self._probe(request, account, stream_id, ext, now))
        return d

    async def _probe(self, request: IRequest, account: UserConfig, stream_id: int, ext: str,
                     when: float) -> Any:
        try:
            answer = await self._play(request, account, "series", stream_id, ext)
        except (Unavailable, NoAnswer):
            self._asked.pop(stream_id, None)  # busy or unreachable: the provider did not decide
            raise
        except HTTPError as e:
            self._asked[stream_id] = (when, False)
            raise NotFound("unknown episode") if e.code in (404, 502) else e
        except BaseException:
            self._asked.pop(stream_id, None)
            raise
        self._asked[stream_id] = (when, True)
        return answer
