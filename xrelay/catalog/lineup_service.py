"""The lineups of the configuration, applied to the generation being served.

:class:`Lineups` is the one place that decides what a user may see and
play: :meth:`Lineups.view_for` gives the API the view a user is served from
(None: the whole catalog), and :meth:`Lineups.may_play` answers every
stream route before it calls the part that serves the stream (the provider
is never contacted for what a user may not play).

Views are computed when a generation is loaded (:meth:`Lineups.catalog_reloaded`) and when
the configuration is re-read (:meth:`Lineups.configure`), one build at a
time: views already on disk for the same rules and numbers are loaded as
they are, others are built by :func:`~xrelay.catalog.lineup_build.build_views`
in a child process.  Until a lineup's first view is loaded its users are
answered 503; afterwards a new view replaces the old one at once, and the
listeners (the API, the stream closer) are told.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Hashable, Mapping

from twisted.internet import defer, threads
from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.generation import Generation
from xrelay.catalog.lineup_build import build_views_niced, find_views
from xrelay.catalog.lineup_view import LineupChannel, LineupView, load_view
from xrelay.catalog.prepare import run_in_child
from xrelay.core.config import UserConfig
from xrelay.core.lineups import LineupConfig
from xrelay.http.errors import Unavailable

__all__ = ["Lineups", "stream_of_key", "NOT_READY"]

log = Logger()

#: What a lineup user is told while the lineup's first view is being built.
NOT_READY = "the catalog is not loaded yet, try again soon"

#: ``build(generation, lineups, data_dir, keep)`` -> what :func:`build_views` returns.
Build = Callable[[str, dict[str, LineupConfig], str, list[str]], Awaitable[dict[str, Any]]]
InThread = Callable[..., Awaitable[Any]]


def build_in_child(generation: str, lineups: dict[str, LineupConfig], data_dir: str,
                   keep: list[str]) -> Awaitable[dict[str, Any]]:
    """Build the views in a fresh child process, at a lower priority than
    the daemon (waited for in a thread)."""
    return threads.deferToThread(run_in_child, build_views_niced, generation, lineups, data_dir, keep)


def stream_of_key(key: Hashable) -> tuple[str, int] | None:
    """What a user stream's key (``("live", 12)``, ``("hls", 12)``,
    ``("timeshift", 12, ...)``, ``("movie", 5)``, ``("series", 7)``) plays:
    ``(kind, id)`` as :meth:`Lineups.may_play` asks, or None."""
    if not isinstance(key, tuple) or len(key) < 2 or not isinstance(key[1], int):
        return None
    kind = {"live": "live", "hls": "live", "timeshift": "live", "movie": "vod", "series": "episode"}.get(key[0])
    return (kind, key[1]) if kind is not None else None


class Lineups:
    """Each lineup's view of the current generation, and the decisions."""

    def __init__(self, clock: Any, cache: CatalogCache, data_dir: Path,
                 lineups: Mapping[str, LineupConfig], *, build: Build = build_in_child,
                 in_thread: InThread = threads.deferToThread) -> None:
        self.clock = clock
        self.cache = cache
        self.data_dir = data_dir
        self.config: dict[str, LineupConfig] = dict(lineups)
        self.build = build
        self.in_thread = in_thread
        #: lineup -> its view of the generation being served
        self.views: dict[str, LineupView] = {}
        #: called with this object after each change of ``views``
        self.listeners: list[Callable[[Lineups], Any]] = []
        self.builds = 0
        self._lock = defer.DeferredLock()
        self._waiters: list[defer.Deferred[None]] = []

    # -- keeping the views current -------------------------------------------------------

    async def catalog_reloaded(self, cache: Any) -> None:
        """A cache listener (added after the API's, so that the whole
        catalog is served before the lineups' views are built)."""
        await self.refresh()

    async def configure(self, lineups: Mapping[str, LineupConfig]) -> None:
        """The configuration was re-read (SIGHUP): apply its lineups."""
        self.config = dict(lineups)
        await self.refresh()

    def refresh(self) -> defer.Deferred[None]:
        """Load or build the views of the current generation (one refresh at a time)."""
        return self._lock.run(lambda: defer.Deferred.fromCoroutine(self._refresh()))

    async def _refresh(self) -> None:
        current, config = self.cache.current, self.config
        if current is None:
            return
        views: dict[str, LineupView] | None = {}
        if config:
            views = await self._load(current, config)
            if views is None:
                views = await self._build(current, config)
        if views is None:
            return  # the previous views stay
        self.views = views
        for listener in list(self.listeners):
            try:
                await defer.maybeDeferred(listener, self)
            except Exception:
                log.failure("lineup listener failed")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    async def _load(self, current: Generation, config: dict[str, LineupConfig]) -> dict[str, LineupView] | None:
        """The views already on disk, when every one is there."""
        try:
            found = await self.in_thread(find_views, current, config, self.data_dir)
            return None if found is None else await self._adopt(found, current)
        except (OSError, ValueError) as e:
            log.info("lineups: building the views again ({why})", why=str(e))
            return None

    async def _adopt(self, found: Mapping[str, str], current: Generation) -> dict[str, LineupView]:
        """The views in the directories *found*: those served already stay
        the same objects (their answers keep their caches), the others are
        loaded."""
        served = {str(view.directory): view for view in self.views.values()}
        new = {name: d for name, d in found.items() if d not in served}
        loaded = await self.in_thread(_load_all, new, current) if new else {}
        return {name: loaded[name] if name in loaded else served[d] for name, d in found.items()}

    async def _build(self, current: Generation, config: dict[str, LineupConfig]) -> dict[str, LineupView] | None:
        started = time.monotonic()
        keep = [str(v.directory) for v in self.views.values()]
        try:
            built = await self.build(str(current.path), config, str(self.data_dir), keep)
            views = await self._adopt(built["views"], current)
        except Exception as e:
            log.error("lineups: cannot build the views ({error}); the previous ones stay", error=str(e))
            return None
        self.builds += 1
        log.info("lineups: {count} views ready in {seconds:.1f} s ({written} written by a process that "
                 "used at most {mb} MB): {summary}", count=len(views), seconds=time.monotonic() - started,
                 written=built.get("written"), mb=built.get("peak_mb"),
                 summary="; ".join(f"{name} {_summary(view)}" for name, view in views.items()))
        return views

    # -- what a user sees ---------------------------------------------------------------------

    def view_for(self, user: UserConfig) -> LineupView | None:
        """The view *user* is served from; None: the whole catalog.  Raises
        503 while the user's lineup has no view yet."""
        if user.lineup is None:
            return None
        view = self.views.get(user.lineup)
        if view is None:
            raise Unavailable(NOT_READY, retry_after=10)
        return view

    async def wait_view(self, user: UserConfig, timeout: float = 30.0) -> LineupView | None:
        """:meth:`view_for`, waiting up to *timeout* seconds for the first view."""
        if user.lineup is None or user.lineup in self.views or self.cache.current is None:
            return self.view_for(user)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        def give_up() -> None:
            if not waiter.called:
                waiter.callback(None)

        timer = self.clock.callLater(timeout, give_up)
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return self.view_for(user)

    def may_play(self, user: UserConfig, kind: str, ident: int) -> bool:
        """May *user* see and play item *ident* of *kind* (``live``,
        ``vod``, ``series``, ``episode``: allowed with its series, as the
        playlist or the series' details tell)?  Raises 503 while the user's
        lineup has no view yet."""
        view = self.view_for(user)
        if view is None:
            return True
        if kind != "episode":
            return view.allows(kind, ident)
        return view.allows_episode(ident, self.cache.episode_series(ident))

    def may_keep(self, user: UserConfig, kind: str, ident: int) -> bool:
        """May *user* go on playing what it plays (after a change)?  Decided
        from what is known now; an episode of unknown series is kept."""
        if user.lineup is None:
            return True
        view = self.views.get(user.lineup)
        if view is None:
            return True
        if kind != "episode":
            return view.allows(kind, ident)
        series = self.cache.episode_series(ident)
        return view.allows_episode(ident, series) or series is None

    # -- for operations and the tuner ---------------------------------------------------------

    def counts(self, lineup: str) -> dict[str, int] | None:
        view = self.views.get(lineup)
        return dict(view.counts) if view is not None else None

    async def channel_list(self, lineup: str) -> list[LineupChannel]:
        """A lineup's live channels in its order: (number, stream id, name,
        EPG id, logo) each, for a tuner's GuideNumber and GuideName (read
        in a thread).  Raises KeyError for a lineup that has no view (yet)."""
        view = self.views.get(lineup)
        if view is None:
            raise KeyError(lineup)
        channels: list[LineupChannel] = await self.in_thread(view.channels)
        return channels


def _load_all(found: Mapping[str, str], generation: Generation) -> dict[str, LineupView]:
    return {name: load_view(Path(directory), generation) for name, directory in found.items()}


def _summary(view: LineupView) -> str:
    c = view.counts
    return f"{c.get('live', 0)} live, {c.get('vod', 0)} movies, {c.get('series', 0)} series"
