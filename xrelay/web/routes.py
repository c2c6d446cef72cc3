"""The HTTP front: every URL xrelay serves, in one Klein route table.

Each route checks the login with a guard (:mod:`xrelay.web.guards`), reads
its typed path arguments (:class:`StreamRef` for ``ID.EXT``) and hands the
request to the part that owns it: the API, the live relay, movies, HLS,
catch-up, the admin pages.  A part that cannot serve raises an
:class:`~xrelay.http.errors.HTTPError`; :func:`xrelay.web.answers.error_answer` is the one
place that turns it into the answer.  Streaming answers are returned as
resources (or Deferreds) that keep their producers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.routing import BaseConverter, Map

from xrelay.api.player_api import XtreamApi
from xrelay.catalog.lineup_service import Lineups
from xrelay.core.config import AdminConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.http import errors
from xrelay.hdhr.server import HdhrServer
from xrelay.http.request import PATH_ARGS
from xrelay.media.hls_proxy import HlsServer
from xrelay.media.timeshift import TimeshiftServer
from xrelay.media.vod import VodServer
from xrelay.ops.admin import AdminPage
from xrelay.ops.metrics import Metrics
from xrelay.ops.status import StatusPage
from xrelay.relay.channels import LiveRelay
from xrelay.web.answers import ANSWERED_ERRORS, error_answer
from xrelay.web.guards import AccountExpired, LoginThrottles, admin_only, login, user_login
from xrelay.web.hdhr_routes import DeviceRoutes

__all__ = ["WebApp", "Surfaces", "StreamRef", "stream_ref"]

log = Logger()

ANY = ["GET", "POST", "HEAD"]
READ = ["GET", "HEAD"]
#: ``L<ID>-<SEQUENCE>.ts``: a segment of a live channel's HLS (xrelay.relay.hls_viewers).
LIVE_SEGMENT = re.compile(r"L([0-9]{1,11})-([0-9]{1,15})\.ts")


@dataclass(frozen=True)
class StreamRef:
    """A stream's last path segment: ``1000.ts`` is ``StreamRef(1000, "ts")``;
    without an extension the container is MPEG-TS."""

    ident: int
    ext: str


#: A stream's last path segment: a numeric id with an optional extension.
STREAM = r"[0-9]{1,11}(?:\.[A-Za-z0-9]{1,8})?"
_STREAM = re.compile(STREAM)


def _stream(value: str) -> StreamRef:
    ident, dot, ext = value.partition(".")
    return StreamRef(int(ident), ext.lower() if dot else "ts")


def stream_ref(value: str) -> StreamRef | None:
    """The :class:`StreamRef` of a path segment, or None if it names no stream."""
    return _stream(value) if _STREAM.fullmatch(value) else None


class StreamConverter(BaseConverter):
    """``<stream:name>``: a numeric id with an optional extension."""

    regex = STREAM

    def to_python(self, value: str) -> StreamRef:
        return _stream(value)

    def to_url(self, value: StreamRef) -> str:
        return f"{value.ident}.{value.ext}"


@dataclass(frozen=True)
class Surfaces:
    """Everything the routes hand requests to."""

    users: UserDB
    admin: AdminConfig | None
    scrubber: Scrubber
    api: XtreamApi
    relay: LiveRelay
    hls: HlsServer
    vod: VodServer
    timeshift: TimeshiftServer
    status: StatusPage
    metrics: Metrics
    admin_page: AdminPage
    lineups: Lineups
    hdhr: HdhrServer
    #: Failed logins per client address (the guards' throttles).
    throttles: LoginThrottles


def _route_map() -> Klein:
    app = Klein()
    url_map: Map = app.url_map
    url_map.converters["stream"] = StreamConverter
    return app


class WebApp:
    """The route table (its guards need ``users``, ``admin``, ``scrubber`` and ``throttles``)."""

    app = _route_map()

    def __init__(self, surfaces: Surfaces) -> None:
        self.parts = surfaces
        self.users = surfaces.users
        self.admin = surfaces.admin
        self.scrubber = surfaces.scrubber
        self.throttles = surfaces.throttles

    # -- Xtream API ---------------------------------------------------------------

    @app.route("/player_api.php", methods=ANY)
    @user_login("json")
    def player_api(self, request: IRequest, account: UserConfig) -> Any:
        return self.parts.api.player_api(request, account)

    @app.route("/panel_api.php", methods=ANY)
    @user_login("json")
    def panel_api(self, request: IRequest, account: UserConfig) -> Any:
        return self.parts.api.panel_api(request, account)

    @app.route("/get.php", methods=ANY)
    @user_login("json")
    def get_php(self, request: IRequest, account: UserConfig) -> Any:
        return self.parts.api.get_php(request, account)

    @app.route("/xmltv.php", methods=ANY)
    @user_login("json")
    def xmltv(self, request: IRequest, account: UserConfig) -> Any:
        return self.parts.api.xmltv(request, account)

    # XUI's path aliases (XC_VM nginx.conf): the same answers, credentials in the path.

    @app.route("/player_api/<user>/<password>", methods=ANY)
    @app.route("/player_api/<user>/<password>/<action>", methods=ANY)
    @user_login("json")
    def player_api_path(self, request: IRequest, account: UserConfig, action: str | None = None) -> Any:
        _path_args(request, account, action=action)
        return self.parts.api.player_api(request, account)

    @app.route("/playlist/<user>/<password>", methods=ANY)
    @app.route("/playlist/<user>/<password>/<kind>", methods=ANY)
    @user_login("json")
    def playlist_path(self, request: IRequest, account: UserConfig, kind: str | None = None) -> Any:
        _path_args(request, account, type=kind)
        return self.parts.api.get_php(request, account)

    @app.route("/epg/<user>/<password>", methods=READ)
    @app.route("/epg/<user>/<password>/<any(gz):variant>", methods=READ)
    @user_login("json")
    def epg_path(self, request: IRequest, account: UserConfig, variant: str | None = None) -> Any:
        _path_args(request, account, gzip="1" if variant else None)
        return self.parts.api.xmltv(request, account)

    @app.route("/asset/", branch=True, methods=READ)
    def asset(self, request: IRequest) -> Any:
        return self.parts.api.asset(request)

    # -- live channels ------------------------------------------------------------

    @app.route("/live/<user>/<password>/<stream:stream>", methods=READ)
    @app.route("/<user>/<password>/<stream:stream>", methods=READ)
    def live(self, request: IRequest, user: str, password: str, stream: StreamRef) -> Any:
        try:
            account = login(self, request, user, password, "text")
        except AccountExpired as refusal:  # a player gets a clip that says so
            clip = self.parts.relay.expired_clip(request, refusal.account, stream.ident, stream.ext)
            if clip is None:
                raise
            return clip
        if isinstance(account, Deferred):
            return account  # a failed login, refused after the throttle's delay
        if stream.ext == "m3u8":
            # The channel's own HLS; the provider's, rewritten, only for
            # channels whose provider HLS the channel cannot carry.
            return self._in_lineup(account, "live", stream.ident, "unknown stream",
                                   lambda: self.parts.relay.serve_hls(
                                       request, account, stream.ident,
                                       proxy=lambda: self.parts.hls.playlist(request, account, stream.ident)))
        return self._in_lineup(account, "live", stream.ident, "unknown stream",
                               lambda: self.parts.relay.serve(request, account, stream.ident, stream.ext))

    # -- movies and series episodes -------------------------------------------------

    @app.route("/movie/<user>/<password>/<stream:stream>", methods=READ)
    @user_login("text")
    def movie(self, request: IRequest, account: UserConfig, stream: StreamRef) -> Any:
        return self._in_lineup(account, "vod", stream.ident, _unknown(stream, "unknown movie"),
                               lambda: self.parts.vod.serve(request, account, "movie", stream.ident, stream.ext))

    @app.route("/series/<user>/<password>/<stream:stream>", methods=READ)
    @user_login("text")
    def series(self, request: IRequest, account: UserConfig, stream: StreamRef) -> Any:
        return self._in_lineup(account, "episode", stream.ident, _unknown(stream, "unknown episode"),
                               lambda: self.parts.vod.serve(request, account, "series", stream.ident, stream.ext))

    # -- catch-up ---------------------------------------------------------------------

    @app.route("/timeshift/<user>/<password>/<duration>/<start>/<stream>", methods=READ)
    @user_login("text")
    def timeshift(self, request: IRequest, account: UserConfig, duration: str, start: str,
                  stream: str) -> Any:
        return self._catch_up(account, stream,
                              lambda: self.parts.timeshift.serve(request, account, duration, start, stream))

    @app.route("/timeshifts/<user>/<password>/<duration>/<stream>/<start>", methods=READ)
    @user_login("text")
    def timeshifts(self, request: IRequest, account: UserConfig, duration: str, stream: str,
                   start: str) -> Any:
        """The alternate order some panels use: ``.../DURATION/ID/START.EXT``."""
        start, dot, ext = start.rpartition(".")
        if not dot:
            start, ext = ext, "ts"
        return self._catch_up(account, stream, lambda: self.parts.timeshift.serve(
            request, account, duration, start, f"{stream}.{ext}"))

    @app.route("/streaming/timeshift.php", methods=READ)
    @app.route("/timeshift.php", methods=READ)
    @user_login("text")
    def timeshift_php(self, request: IRequest, account: UserConfig) -> Any:
        args = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace")
                for k, v in (request.args or {}).items() if v}
        stream = args.get("stream", "")
        if "." not in stream and args.get("extension"):
            stream = f"{stream}.{args['extension']}"
        return self._catch_up(account, stream, lambda: self.parts.timeshift.serve(
            request, account, args.get("duration", ""), args.get("start", ""), stream))

    # -- HLS playlists and segments (authorised by the user token in the path) -------------

    @app.route("/hls/<user>/<user_token>/<name>", methods=READ)
    def hls(self, request: IRequest, user: str, user_token: str, name: str) -> Any:
        account = self.parts.hls.authorise(user, user_token)
        live = LIVE_SEGMENT.fullmatch(name)
        if live is not None:  # a segment of a live channel's own HLS
            return self._in_lineup(account, "live", int(live[1]), "expired: reload the playlist",
                                   lambda: self.parts.relay.serve_segment(request, account, int(live[1]),
                                                                          int(live[2])))
        target = self.parts.hls.stream_of(name)
        if target is None:
            return self.parts.hls.resource(request, user, user_token, name)
        return self._in_lineup(account, target[0], target[1], "expired: reload the playlist",
                               lambda: self.parts.hls.resource(request, user, user_token, name))

    # -- lineups: the one check every stream passes -------------------------------------------

    def _in_lineup(self, account: UserConfig, kind: str, ident: int, unknown: str,
                   serve: Callable[[], Any]) -> Any:
        """*serve* the stream if *account*'s lineup holds it; else answer
        as for an unknown id (*unknown*), without contacting the provider."""
        if not self.parts.lineups.may_play(account, kind, ident):
            raise errors.NotFound(unknown)
        return serve()

    def _catch_up(self, account: UserConfig, stream: str, serve: Callable[[], Any]) -> Any:
        """Catch-up of ``ID.EXT``: a well-formed request for a channel outside
        the lineup is answered like one for an unknown channel."""
        ident, _, ext = (stream or "").partition(".")
        if ident.isascii() and ident.isdigit() and len(ident) <= 11 and (ext or "ts").lower() in ("ts", "m3u8"):
            return self._in_lineup(account, "live", int(ident), "unknown channel", serve)
        return serve()

    # -- emulated HDHomeRun tuners (the token in the path is the device's key) -------------

    @app.route("/hdhr/<token>/", branch=True, methods=ANY)
    def hdhr(self, request: IRequest, token: str) -> Any:
        return DeviceRoutes(self.parts.hdhr, self.parts.hdhr.at_path(request, token)).app.resource()

    # -- operations -------------------------------------------------------------------------

    @app.route("/status", methods=["GET"])
    @admin_only
    def status(self, request: IRequest) -> Any:
        return self.parts.status.render(request)

    @app.route("/metrics", methods=["GET"])
    @admin_only
    def metrics(self, request: IRequest) -> Any:
        return self.parts.metrics.render(request)

    @app.route("/admin", methods=["GET"])
    @app.route("/admin/", methods=["GET"])
    @admin_only
    def admin_page(self, request: IRequest) -> Any:
        return self.parts.admin_page.page_html(request)

    @app.route("/admin/live", methods=["GET"])
    @admin_only
    def admin_live(self, request: IRequest) -> Any:
        return self.parts.admin_page.live_html(request)

    @app.route("/admin/state.json", methods=["GET"])
    @admin_only
    def admin_state(self, request: IRequest) -> Any:
        return self.parts.admin_page.state_json(request)

    @app.route("/admin/static/<name>", methods=["GET"])
    @admin_only
    def admin_static(self, request: IRequest, name: str) -> Any:
        return self.parts.admin_page.static_file(request, name)

    @app.route("/admin/ingest", methods=["POST"])
    @admin_only
    def admin_ingest(self, request: IRequest) -> Any:
        return self.parts.admin_page.ingest(request)

    @app.route("/admin/disconnect", methods=["POST"])
    @admin_only
    def admin_disconnect(self, request: IRequest) -> Any:
        return self.parts.admin_page.disconnect(request)

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"xrelay: point your IPTV player at this address (Xtream Codes login).\n"

    # -- errors: the one place they become answers -----------------------------------------

    @app.handle_errors(*ANSWERED_ERRORS)
    def error(self, request: IRequest, failure: Failure) -> bytes:
        return error_answer(request, failure)


def _unknown(stream: StreamRef, message: str) -> str:
    """What a movie or episode route answers for an unknown id: an
    extension it refuses first says "unknown stream"."""
    return message if len(stream.ext) <= 5 else "unknown stream"


def _path_args(request: IRequest, account: UserConfig, **values: str | None) -> None:
    """Parameters a path alias gives (they win over the query and the body)."""
    given = {"username": account.username, "password": account.password, **values}
    setattr(request, PATH_ARGS, {k: v for k, v in given.items() if v is not None})
