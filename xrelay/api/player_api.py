"""The Xtream-compatible API: player_api.php, panel_api.php, get.php, xmltv.php.

Everything is answered from the cached catalog; only an item's details
(get_vod_info / get_series_info) are fetched from the provider, once per
ingest (:meth:`xrelay.catalog.cache.CatalogCache.details`).  What can be prepared
is prepared by each ingest, beside its bundle (:mod:`xrelay.catalog.prepare`): the
JSON lists (:mod:`xrelay.api.answers`), the playlist templates
(:mod:`xrelay.api.get_php`) and the EPG index (:mod:`xrelay.catalog.epg`); the
daemon loads their indexes and streams the files.

Field types follow the Xtream field checklist (docs/xtream-api.md).  The
routes log the user in (:mod:`xrelay.web.guards`); failed logins get HTTP 401
with ``{"user_info":{"auth":0}}`` on every endpoint.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.catalog import rows as catalog_rows
from xrelay.api.answers import AnswerCache, ListAnswers, StreamAnswer, dumps
from xrelay.catalog.lists import LIST_KEYS
from xrelay.http.body import DIRECT_FROM, MemoryBody, ThreadedBody
from xrelay.api.get_php import serve_playlist
from xrelay.catalog.m3u_templates import PlaylistTemplates
from xrelay.http.request import (ACTION_ALIASES, accepts_gzip, category_arg, ident_arg,
                          limit_arg, request_args)
from xrelay.api.xmltv import GuideServer
from xrelay.api.assets import AssetProxy
from xrelay.api.lineup_answers import LineupAnswers, LineupOffer
from xrelay.catalog.lineup_service import Lineups
from xrelay.catalog.epg import EpgIndex
from xrelay.core.scrub import BASE_MARKER
from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.store import CacheStore
from xrelay.core.config import ServerConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.http.errors import Unavailable
from xrelay.http.request import public_base

__all__ = ["XtreamApi", "minimal_details"]

log = Logger()

#: Shown as exp_date to users without one (2037-12-31: safe for 32-bit clients).
FAR_FUTURE = 2145830400
#: Longest wait for the cached catalog at start-up before answering anyway, seconds.
STARTUP_WAIT = 30.0


class XtreamApi:
    """The component behind the API routes: every answer for a logged-in user."""

    def __init__(self, reactor: IReactorTime, server: ServerConfig, catalog: CatalogCache, store: CacheStore,
                 scrubber: Scrubber, assets: AssetProxy, lineups: Lineups,
                 active_connections: Callable[[str], int] = lambda username: 0) -> None:
        self.reactor = reactor
        self.server = server
        self.catalog = catalog
        self.scrubber = scrubber
        self.active_connections_of = active_connections
        #: every list answer kept in memory, the lineups' too, within one budget
        self.answer_cache = AnswerCache()
        self.answers = ListAnswers(self.answer_cache)
        self.playlists: PlaylistTemplates | None = None
        self.epg = EpgIndex()
        self.guide = GuideServer()
        self.assets = assets
        #: what each user may see (:meth:`_offer`); each lineup's answers
        self.lineups = lineups
        self.lineup_answers = LineupAnswers(self.answer_cache)
        lineups.listeners.append(lambda lineups: self.lineup_answers.adopt(lineups.views))
        self._panel: tuple[Any, bytes] | None = None
        self._reloading: defer.Deferred[None] | None = None
        self._ready_waiters: list[defer.Deferred[None]] = []
        try:  # at wiring time, before serving: is there a catalog to load?
            self._cached_on_disk = store.current() is not None
        except OSError:
            self._cached_on_disk = False
        self._generation: Any = None
        try:
            self.tz = ZoneInfo(server.timezone)
            self.tz_name = server.timezone
        except Exception:
            self.tz, self.tz_name = ZoneInfo("UTC"), "UTC"
        catalog.listeners.append(self.catalog_reloaded)

    # -- precomputing ---------------------------------------------------------

    async def catalog_reloaded(self, cache: CatalogCache) -> None:
        """The cache changed: prepare every answer again (in threads)."""
        d = defer.Deferred.fromCoroutine(self._prepare(cache))
        self._reloading = d
        try:
            await d
        finally:
            if self._reloading is d:
                self._reloading = None

    async def _prepare(self, cache: Any) -> None:
        """Adopt the new generation's prepared answers (written by the ingest)."""
        started = time.monotonic()
        current = cache.current
        self.answers.adopt(current.lists)
        self.playlists = current.playlists
        self.epg = current.epg
        self._panel = None
        self._generation = current.path
        self._release_waiters()
        await self.guide.reloaded(current.path, current.epg)
        log.info("API ready in {seconds:.2f} s: {programmes} programmes in the EPG index",
                 seconds=time.monotonic() - started, programmes=len(current.epg))
        # not awaited: the reload (and the ingest waiting on it) is done
        defer.Deferred.fromCoroutine(self.answers.warm()).addErrback(
            lambda f: log.failure("warming the API answers", f))

    def _release_waiters(self) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    async def _ready(self) -> None:
        """Wait (a bounded time) for the first precomputation when one is
        running or a cached catalog is about to load at start-up, rather
        than answer empty lists."""
        if self._generation is not None:
            return  # lists and playlists of a catalog are ready
        if self._reloading is None and not (self._cached_on_disk and not self.catalog.loaded):
            return  # nothing cached yet: the first ingest may take minutes
        waiter: defer.Deferred[None] = defer.Deferred()
        self._ready_waiters.append(waiter)
        timer = self.reactor.callLater(STARTUP_WAIT, lambda: None if waiter.called else waiter.callback(None))
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
            if waiter in self._ready_waiters:
                self._ready_waiters.remove(waiter)

    # -- common pieces --------------------------------------------------------------

    def base(self, request: IRequest) -> str:
        return public_base(request, self.server.public_url).rstrip("/")

    def json(self, request: IRequest, body: bytes, gz: bool = False) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if gz:
            request.setHeader(b"content-encoding", b"gzip")
            request.setHeader(b"vary", b"Accept-Encoding")
        request.setHeader(b"content-length", str(len(body)).encode())
        return body

    def active_connections(self, username: str) -> int:
        try:
            return int(self.active_connections_of(username))
        except Exception:
            log.failure("active_connections failed")
            return 0

    def account(self, request: IRequest, user: Any, args: dict[str, str]) -> dict[str, Any]:
        """The user_info / server_info object."""
        base = self.base(request)
        parts = urlsplit(base)
        scheme = parts.scheme or "http"
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            port = 80
        account = self.catalog.account
        exp = user.exp_date or account.get("exp_date") or FAR_FUTURE
        created = account.get("created_at") or self.catalog.generated_at or 0
        now = time.time()
        return {
            "user_info": {
                "username": args.get("username", ""),
                "password": args.get("password", ""),
                "message": "",
                "auth": 1,
                "status": "Active",
                "exp_date": str(int(exp)),
                "is_trial": "0",
                "active_cons": str(self.active_connections(user.username)),
                "created_at": str(int(created)),
                "max_connections": str(int(user.max_connections or 0)),
                "allowed_output_formats": ["m3u8", "ts"],
            },
            "server_info": {
                "url": _bare_host(parts.hostname),
                "port": str(port),
                "https_port": str(port if scheme == "https" else 443),
                "server_protocol": scheme,
                "rtmp_port": "1935",
                "timezone": self.tz_name,
                "timestamp_now": int(now),
                "time_now": datetime.fromtimestamp(now, self.tz).strftime("%Y-%m-%d %H:%M:%S"),
                "process": True,
            },
        }

    # -- player_api.php / panel_api.php --------------------------------------------

    def player_api(self, request: IRequest, user: UserConfig) -> Any:
        kept = self._kept_list(request, user)
        if kept is not None:
            return kept
        return defer.Deferred.fromCoroutine(self._player_api(request, user, panel=False))

    def _kept_list(self, request: IRequest, user: UserConfig) -> Any:
        """A list answer that is in memory, answered at once (most list
        requests): what :meth:`_player_api` answers, without its waits.
        None when there is anything to wait for."""
        if self._generation is None:
            return None
        args = request_args(request)
        action = args.get("action", "").strip()
        action = ACTION_ALIASES.get(action, action)
        if action not in LIST_KEYS:
            return None
        if user.lineup is None:
            answers = self.answers
        else:
            view = self.lineups.views.get(user.lineup)
            if view is None:
                return None
            answers = self.lineup_answers.offer(view).answers
        gz = accepts_gzip(request)
        category = category_arg(args.get("category_id")) if action.endswith(("streams", "series")) else None
        body = answers.kept(LIST_KEYS[action], self.base(request).encode(), category,
                            limit_arg(args.get("limit")), gz)
        return None if body is None else self._list_answer(request, body, gz)

    def _list_answer(self, request: IRequest, body: bytes, gz: bool) -> Any:
        """Answer a prepared list: bytes for Klein to write, or (a big one)
        a Deferred that fires once it is written from memory."""
        self.json(request, body, gz)
        if len(body) >= DIRECT_FROM and request.method != b"HEAD":
            return MemoryBody(request, body).start()
        return body

    def panel_api(self, request: IRequest, user: UserConfig) -> Any:
        return defer.Deferred.fromCoroutine(self._player_api(request, user, panel=True))

    async def _player_api(self, request: IRequest, user: UserConfig, panel: bool) -> bytes | None:
        args = request_args(request)
        action = args.get("action", "").strip()
        action = ACTION_ALIASES.get(action, action)
        if action in LIST_KEYS:
            await self._ready()
            offer = await self._offer(user)
            answers = offer.answers if offer is not None else self.answers
            gz = accepts_gzip(request)
            category = category_arg(args.get("category_id")) if action.endswith(("streams", "series")) else None
            body = await answers.answer(LIST_KEYS[action], self.base(request).encode(),
                                        category, limit_arg(args.get("limit")), gz)
            if isinstance(body, StreamAnswer):
                self.json(request, b"")
                request.setHeader(b"content-length", str(body.length).encode())
                if request.method == b"HEAD":
                    return b""
                source = body.source()
                await ThreadedBody(request, source, source.close).start()
                return None
            answer = self._list_answer(request, body, gz)
            if isinstance(answer, defer.Deferred):
                await answer
                return None
            return answer
        if action == "get_vod_info":
            return self.json(request, await self._details(request, user, "vod", args.get("vod_id")))
        if action == "get_series_info":
            return self.json(request, await self._details(request, user, "series", args.get("series_id")))
        if action in ("get_short_epg", "get_simple_data_table"):
            return self.json(request, await self._epg(user, args, simple=action == "get_simple_data_table"))
        account = dumps(self.account(request, user, args))
        if panel:
            await self._ready()
            offer = await self._offer(user)
            extra = await (self._panel_extra(self.base(request)) if offer is None
                           else self._lineup_panel(offer, self.base(request)))
            account = account[:-1] + b"," + extra + b"}"
        return self.json(request, account)

    async def _offer(self, user: UserConfig) -> LineupOffer | None:
        """The answers of *user*'s lineup (None: the whole catalog's)."""
        view = await self.lineups.wait_view(user)
        return self.lineup_answers.offer(view) if view is not None else None

    def _allowed(self, user: UserConfig, kind: str, ident: int | None) -> bool:
        """May *user* see item *ident* (one outside its lineup is answered
        like an unknown id)?"""
        return ident is not None and self.lineups.may_play(user, kind, ident)

    async def _details(self, request: IRequest, user: UserConfig, kind: str, value: str | None) -> bytes:
        ident = ident_arg(value)
        cache = self.catalog
        if user.lineup is not None:
            await self._offer(user)  # its view, or 503
            if not self._allowed(user, kind, ident):
                ident = None
        row = await cache.row(kind, ident) if ident is not None else None
        if ident is None or row is None:
            # unknown id: answered here, the provider is not asked
            return b'{"info":{},"movie_data":{}}' if kind == "vod" else b'{"seasons":[],"info":{},"episodes":{}}'
        detail = None
        try:
            detail = await cache.details(kind, ident)
        except defer.CancelledError:
            raise
        except Exception as e:
            log.warn("{kind} {ident} details unavailable, answering from the list: {error}",
                     kind=kind, ident=ident, error=self.scrubber.text(str(e)))
        if detail is None:
            detail = minimal_details(kind, row)
        return dumps(detail).replace(BASE_MARKER.encode(), self.base(request).encode())

    async def _epg(self, user: UserConfig, args: dict[str, str], simple: bool) -> bytes:
        ident = ident_arg(args.get("stream_id"))
        if user.lineup is not None:
            await self._offer(user)
            if not self._allowed(user, "live", ident):
                ident = None
        channel = self.catalog.live(ident) if ident is not None else None
        if channel is None or not channel.epg_channel_id:
            return b'{"epg_listings":[]}'
        index = self.epg
        if not index.programmes(channel.epg_channel_id):
            return b'{"epg_listings":[]}'
        days = channel.archive_days if channel.tv_archive else 0
        listings = functools.partial(index.listings, channel.epg_channel_id, time.time(), self.tz,
                                     simple=simple, limit=limit_arg(args.get("limit")), archive_days=days)
        if index.on_disk:  # the texts are read from disk: not on the reactor thread
            rows = await threads.deferToThread(listings)
        else:
            rows = listings()
        return dumps({"epg_listings": rows})

    async def _panel_extra(self, base: str) -> bytes:
        """``"categories":{...},"available_channels":{...}`` for panel_api.php."""
        key = (self.answers.generation, base)
        current = self.catalog.current
        if current is None:
            return b'"categories":{"live":[],"movie":[],"series":[]},"available_channels":{}'
        if self._panel is None or self._panel[0] != key:
            body = await threads.deferToThread(current.panel_path.read_bytes)
            self._panel = (key, body.replace(BASE_MARKER.encode(), base.encode()))
        return self._panel[1]

    async def _lineup_panel(self, offer: LineupOffer, base: str) -> bytes:
        """panel_api.php's extra fields for a lineup's users."""
        if offer.panel is None or offer.panel[0] != base:
            body = await threads.deferToThread(offer.view.panel_path.read_bytes)
            offer.panel = (base, body.replace(BASE_MARKER.encode(), base.encode()))
        return offer.panel[1]

    # -- get.php -------------------------------------------------------------------

    def get_php(self, request: IRequest, user: UserConfig) -> Any:
        return defer.Deferred.fromCoroutine(self._get_php(request, user))

    async def _get_php(self, request: IRequest, user: UserConfig) -> Any:
        args = request_args(request)
        await self._ready()
        offer = await self._offer(user)
        playlists = offer.view.playlists if offer is not None else self.playlists
        if playlists is None:
            raise Unavailable("the catalog is not loaded yet", retry_after=30)
        return await serve_playlist(request, playlists, args, self.base(request))

    # -- xmltv.php, /asset/ ------------------------------------------------------------

    def xmltv(self, request: IRequest, user: UserConfig) -> Any:
        args = request_args(request)
        as_file = (args.get("gzip") or "").strip().lower() in ("1", "true", "yes")
        view = self.lineups.view_for(user)
        offer = self.lineup_answers.offer(view) if view is not None else None
        guide = offer.guide if offer is not None and offer.guide is not None else self.guide
        return guide.serve(request, self.base(request), as_file)

    def asset(self, request: IRequest) -> Any:
        return self.assets.render(request)


def _bare_host(hostname: str | None) -> str:
    """server_info.url: a bare host, IPv6 literals in brackets."""
    if not hostname:
        return "localhost"
    return f"[{hostname}]" if ":" in hostname else hostname


def minimal_details(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A well-typed details answer built from the list row alone."""
    if kind == "vod":
        detail = catalog_rows.normalise_vod_info({}, row)
        info = detail["info"]
        info["name"] = row.get("name", "")
        info["movie_image"] = info["cover_big"] = row.get("stream_icon") or ""
        if isinstance(row.get("rating"), (int, float)):
            info["rating"] = row["rating"]
        return detail
    return catalog_rows.normalise_series_info({}, row)
