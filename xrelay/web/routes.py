"""The HTTP front: every route xrelay serves, in one table.

Each route hands the request to the component that owns it (the API, the
live relay, movies, HLS, catch-up, the admin pages); this module only knows
the URL forms.  Components live on the :class:`~xrelay.app.XRelay` object.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from xrelay.http.request import PATH_ARGS

from xrelay.app import XRelay

__all__ = ["WebApp", "make_site", "public_base", "text_error"]

log = Logger()

ANY = ["GET", "POST", "HEAD"]


def text_error(request: IRequest, code: int, message: str) -> bytes:
    """A short plain-text error answer."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (message.rstrip("\n") + "\n").encode()


def public_base(request: IRequest, public_url: str | None) -> str:
    """xrelay's base URL as the client should use it: ``scheme://host:port``.

    From ``[server] public_url`` when set, otherwise from the request's Host
    header (the port is always explicit, as panels do).  A Host header
    without a port means the client used its scheme's default port (a port
    forward or a reverse proxy in front of xrelay), and a reverse proxy's
    ``X-Forwarded-Proto`` gives the scheme the client used.
    """
    if public_url:
        return public_url
    scheme = "https" if request.isSecure() else "http"
    forwarded = (request.getHeader(b"x-forwarded-proto") or b"").split(b",")[0].strip().lower()
    if forwarded in (b"http", b"https"):
        scheme = forwarded.decode()
    host = request.getHeader(b"host")
    if host:
        text = host.decode("latin-1").strip()
        if _HOST_RE.fullmatch(text):
            if not _PORT_RE.search(text):
                text = f"{text}:{443 if scheme == 'https' else 80}"
            return f"{scheme}://{text}"
    addr = request.getHost()
    hostname = getattr(addr, "host", "localhost")
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{getattr(addr, 'port', 80)}"


_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", re.ASCII)
_PORT_RE = re.compile(r":\d{1,5}$", re.ASCII)


class WebApp:
    """The route table."""

    app = Klein()

    def __init__(self, xr: XRelay) -> None:
        self.xr = xr

    def _missing(self, request: IRequest, what: str) -> bytes:
        return text_error(request, 501, f"{what} is not available in this build")

    # -- Xtream API (xrelay.api.player_api) ----------------------------------------------

    @app.route("/player_api.php", methods=ANY)
    def player_api(self, request: IRequest) -> Any:
        if self.xr.api is None:
            return self._missing(request, "player_api.php")
        return self.xr.api.player_api(request)

    @app.route("/panel_api.php", methods=ANY)
    def panel_api(self, request: IRequest) -> Any:
        if self.xr.api is None:
            return self._missing(request, "panel_api.php")
        return self.xr.api.panel_api(request)

    @app.route("/get.php", methods=ANY)
    def get_php(self, request: IRequest) -> Any:
        if self.xr.api is None:
            return self._missing(request, "get.php")
        return self.xr.api.get_php(request)

    @app.route("/xmltv.php", methods=ANY)
    def xmltv(self, request: IRequest) -> Any:
        if self.xr.api is None:
            return self._missing(request, "xmltv.php")
        return self.xr.api.xmltv(request)

    # XUI's path aliases (XC_VM nginx.conf): the same answers, credentials in the path.

    @app.route("/player_api/<user>/<password>", methods=ANY)
    @app.route("/player_api/<user>/<password>/<action>", methods=ANY)
    def player_api_path(self, request: IRequest, user: str, password: str, action: str | None = None) -> Any:
        _path_args(request, username=user, password=password, action=action)
        return self.player_api(request)

    @app.route("/playlist/<user>/<password>", methods=ANY)
    @app.route("/playlist/<user>/<password>/<kind>", methods=ANY)
    def playlist_path(self, request: IRequest, user: str, password: str, kind: str | None = None) -> Any:
        _path_args(request, username=user, password=password, type=kind)
        return self.get_php(request)

    @app.route("/epg/<user>/<password>", methods=["GET", "HEAD"])
    @app.route("/epg/<user>/<password>/<variant>", methods=["GET", "HEAD"])
    def epg_path(self, request: IRequest, user: str, password: str, variant: str | None = None) -> Any:
        if variant not in (None, "gz"):
            return text_error(request, 404, "not found")
        _path_args(request, username=user, password=password, gzip="1" if variant else None)
        return self.xmltv(request)

    @app.route("/asset/", branch=True, methods=["GET", "HEAD"])
    def asset(self, request: IRequest) -> Any:
        if self.xr.api is None or not hasattr(self.xr.api, "asset"):
            return self._missing(request, "the image proxy")
        return self.xr.api.asset(request)

    # -- live relay (xrelay.relay.channels) -------------------------------------------------

    @app.route("/live/<user>/<password>/<stream>", methods=["GET", "HEAD"])
    def live(self, request: IRequest, user: str, password: str, stream: str) -> Any:
        stream_id, ext = split_stream(stream)
        if ext == "m3u8":
            if self.xr.hls is None:
                return self._missing(request, "HLS")
            return self.xr.hls.playlist(request, user, password, stream_id)
        if self.xr.relay is None:
            return self._missing(request, "the live relay")
        return self.xr.relay.serve(request, user, password, stream_id, ext)

    @app.route("/<user>/<password>/<stream>", methods=["GET", "HEAD"])
    def live_short(self, request: IRequest, user: str, password: str, stream: str) -> Any:
        return self.live(request, user, password, stream)

    # -- movies and series episodes (xrelay.media.vod) ----------------------------------

    @app.route("/movie/<user>/<password>/<stream>", methods=["GET", "HEAD"])
    def movie(self, request: IRequest, user: str, password: str, stream: str) -> Any:
        if self.xr.vod is None:
            return self._missing(request, "movies")
        stream_id, ext = split_stream(stream)
        return self.xr.vod.serve(request, "movie", user, password, stream_id, ext)

    @app.route("/series/<user>/<password>/<stream>", methods=["GET", "HEAD"])
    def series(self, request: IRequest, user: str, password: str, stream: str) -> Any:
        if self.xr.vod is None:
            return self._missing(request, "series")
        stream_id, ext = split_stream(stream)
        return self.xr.vod.serve(request, "series", user, password, stream_id, ext)

    # -- catch-up (xrelay.media.timeshift) ------------------------------------------------

    @app.route("/timeshift/<user>/<password>/<duration>/<start>/<stream>", methods=["GET", "HEAD"])
    def timeshift(self, request: IRequest, user: str, password: str, duration: str,
                  start: str, stream: str) -> Any:
        if self.xr.timeshift is None:
            return self._missing(request, "catch-up")
        return self.xr.timeshift.serve_path(request, user, password, duration, start, stream)

    @app.route("/timeshifts/<user>/<password>/<duration>/<stream>/<start>", methods=["GET", "HEAD"])
    def timeshifts(self, request: IRequest, user: str, password: str, duration: str,
                   stream: str, start: str) -> Any:
        """The alternate order some panels use: ``.../DURATION/ID/START.EXT``."""
        start, dot, ext = start.rpartition(".")
        if not dot:
            start, ext = ext, "ts"
        return self.timeshift(request, user, password, duration, start, f"{stream}.{ext}")

    @app.route("/streaming/timeshift.php", methods=["GET", "HEAD"])
    @app.route("/timeshift.php", methods=["GET", "HEAD"])
    def timeshift_php(self, request: IRequest) -> Any:
        if self.xr.timeshift is None:
            return self._missing(request, "catch-up")
        return self.xr.timeshift.serve_query(request)

    # -- HLS segments (xrelay.media.hls_proxy) ------------------------------------------------

    @app.route("/hls/", branch=True, methods=["GET", "HEAD"])
    def hls(self, request: IRequest) -> Any:
        if self.xr.hls is None:
            return self._missing(request, "HLS")
        return self.xr.hls.resource(request)

    # -- operations (xrelay.ops.status, xrelay.ops.metrics, xrelay.ops.admin) -----------------

    @app.route("/status", methods=["GET"])
    def status(self, request: IRequest) -> Any:
        if self.xr.status is None:
            return self._missing(request, "/status")
        return self.xr.status.render(request)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> Any:
        if self.xr.metrics is None:
            return self._missing(request, "/metrics")
        return self.xr.metrics.render(request)

    @app.route("/admin/", methods=["GET"])
    @app.route("/admin", branch=True, methods=["GET", "POST"])
    def admin(self, request: IRequest) -> Any:
        if self.xr.admin is None:
            return self._missing(request, "/admin")
        return self.xr.admin.resource(request)

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"xrelay: point your IPTV player at this address (Xtream Codes login).\n"

    # -- errors ----------------------------------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Any) -> bytes:
        return text_error(request, 404, "not found")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: IRequest, failure: Any) -> bytes:
        return text_error(request, 405, "method not allowed")


def _path_args(request: IRequest, **values: str | None) -> None:
    setattr(request, PATH_ARGS, {k: v for k, v in values.items() if v is not None})


def split_stream(segment: str) -> tuple[int | None, str]:
    """``"123.ts"`` -> ``(123, "ts")``; ``"123"`` -> ``(123, "ts")``; junk -> ``(None, ext)``."""
    ident, dot, ext = segment.partition(".")
    ext = ext.lower() if dot else "ts"
    return (int(ident) if ident.isascii() and ident.isdigit() and len(ident) < 12 else None), ext


#: ``/KIND/USER/SECRET/...``: the secret is a user's password, or for ``/hls/`` the
#: user's token (an HMAC of name and password that logs in to the HLS segments).
_SECRET_PATH = re.compile(r"^/(live|movie|series|timeshifts?|player_api|playlist|epg|hls)/([^/]+)/([^/]+)(?=/|$)")
_SECRET_SHORT = re.compile(r"^/([^/?]+)/([^/?]+)/([^/?]+)$")
_SECRET_QUERY = re.compile(r"(password=)[^&]*", re.I)


def redact_uri(uri: str) -> str:
    """A request URI safe to log: users' passwords and HLS tokens masked."""
    # The router decodes %2F into a separator, so the log must read it as one.
    uri = re.sub(r"%2[fF]", "/", uri)
    uri = _SECRET_QUERY.sub(r"\1***", uri)
    path, sep, query = uri.partition("?")
    if _SECRET_PATH.match(path):
        path = _SECRET_PATH.sub(lambda m: f"/{m.group(1)}/{m.group(2)}/***", path)
    else:
        path = _SECRET_SHORT.sub(lambda m: f"/{m.group(1)}/***/{m.group(3)}", path)
    return path + sep + query


def _access_log_line(timestamp: str, request: Any) -> str:
    uri = redact_uri(request.uri.decode("latin-1", "replace"))
    return (f'{request.getClientAddress().host if hasattr(request.getClientAddress(), "host") else "-"} '
            f'"{request.method.decode("latin-1")} {quote(uri, safe="/:?=&%*.-_~+,;@[]")}" '
            f'{request.code} {request.sentLength or "-"}')


class _HostGuard(Resource):
    """Answers 400 to a malformed Host header before routing (the router
    would fail on it with a 500)."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def render(self, request: IRequest) -> Any:
        host = request.getHeader(b"host")
        if host is not None and (len(host) > 255 or not _HOST_RE.fullmatch(host.decode("latin-1"))):
            return text_error(request, 400, "bad Host header")
        return self.inner.render(request)


def make_site(xr: XRelay) -> Site:
    def access_log_line(timestamp: str, request: Any) -> str:
        # Someone may try the provider's own credentials on xrelay: even then
        # they must not be written to the log.
        return xr.scrubber.text(_access_log_line(timestamp, request))

    site = Site(_HostGuard(WebApp(xr).app.resource()), logFormatter=access_log_line)
    site.displayTracebacks = False
    if xr.metrics is not None and hasattr(xr.metrics, "instrument"):
        xr.metrics.instrument(site)  # request counts and latency by endpoint
    return site
