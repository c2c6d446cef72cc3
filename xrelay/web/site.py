"""The Site that serves xrelay's routes: limits, Host check, access log, metrics.

The access log never holds a user's password or the provider's secrets:
paths and queries are masked (:func:`redact_uri`) and the line goes through
the scrubber.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from xrelay.core.scrub import Scrubber
from xrelay.http.errors import text_error
from xrelay.http.limits import BodyGate, LimitedSite, Limits
from xrelay.http.request import valid_host
from xrelay.ops.logs import premasked
from xrelay.ops.metrics import Metrics
from xrelay.web.hot_routes import HotRoutes
from xrelay.web.routes import WebApp

__all__ = ["AccessLoggedSite", "make_site", "redact_uri", "site_for"]

#: The access log: one line per request, emitted masked (:func:`premasked`).
access_log = Logger(namespace="xrelay.web.access")


#: ``/KIND/USER/SECRET/...``: the secret is a user's password, or for ``/hls/`` the
#: user's token (an HMAC of name and password that logs in to the HLS segments).
_SECRET_PATH = re.compile(r"^/(live|movie|series|timeshifts?|player_api|playlist|epg|hls)/([^/]+)/([^/]+)(?=/|$)")
_SECRET_SHORT = re.compile(r"^/([^/?]+)/([^/?]+)/([^/?]+)$")
_SECRET_QUERY = re.compile(r"(password=)[^&]*", re.I)
#: ``/hdhr/TOKEN/...``: the token is an emulated tuner's key.
_HDHR_PATH = re.compile(r"^/hdhr/[^/?]+")


def redact_uri(uri: str) -> str:
    """A request URI safe to log: users' passwords and HLS tokens masked."""
    # The router decodes %2F into a separator, so the log must read it as one.
    uri = re.sub(r"%2[fF]", "/", uri)
    uri = _SECRET_QUERY.sub(r"\1***", uri)
    path, sep, query = uri.partition("?")
    if _HDHR_PATH.match(path):
        path = _HDHR_PATH.sub("/hdhr/***", path)
    elif _SECRET_PATH.match(path):
        path = _SECRET_PATH.sub(lambda m: f"/{m.group(1)}/{m.group(2)}/***", path)
    else:
        path = _SECRET_SHORT.sub(lambda m: f"/{m.group(1)}/***/{m.group(3)}", path)
    return path + sep + query


def _access_log_line(request: Any) -> str:
    uri = redact_uri(request.uri.decode("latin-1", "replace"))
    return (f'{request.getClientAddress().host if hasattr(request.getClientAddress(), "host") else "-"} '
            f'"{request.method.decode("latin-1")} {quote(uri, safe="/:?=&%*.-_~+,;@[]")}" '
            f'{request.code} {request.sentLength or "-"}')


class AccessLoggedSite(LimitedSite):
    """A :class:`LimitedSite` whose access-log lines (client, method and
    masked URI, status, bytes; masked again by *scrub*) go to xrelay's log
    as events of their own."""

    def __init__(self, resource: IResource, limits: Limits | None, *, reactor: IReactorTime,
                 body_gate: BodyGate | None, scrub: Scrubber, access_log: bool = True) -> None:
        super().__init__(resource, limits, reactor=reactor, body_gate=body_gate)
        self.scrub = scrub
        #: ``[log] access``: False logs no request
        self.access_log = access_log

    def log(self, request: Any) -> None:
        if not self.access_log:
            return
        # Someone may try the provider's own credentials on xrelay: even then
        # they must not be written to the log.
        line = self.scrub.text(_access_log_line(request))
        decoded = unquote(line)
        if decoded != line and self.scrub.text(decoded) != decoded:
            line = self.scrub.text(decoded)  # a secret spelled with percent-escapes
        access_log.info("{line}", **premasked(line))


class _HostGuard(Resource):
    """Answers 400 to a malformed Host header before routing (the router
    would fail on it with a 500)."""

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner

    def render(self, request: IRequest) -> Any:
        host = request.getHeader(b"host")
        if host is not None and not valid_host(host):
            return text_error(request, 400, "bad Host header")
        return self.inner.render(request)


def make_site(web: WebApp, scrubber: Scrubber, metrics: Metrics, *, reactor: IReactorTime,
              limits: Limits | None = None, body_gate: BodyGate | None = None,
              access_log: bool = True) -> LimitedSite:
    """The Site serving *web*'s routes (see :func:`site_for`), the live and
    HLS URLs dispatched without the router (:mod:`xrelay.web.hot_routes`);
    *body_gate* answers a request whose login is refused before its body is
    read (:mod:`xrelay.web.gate`)."""
    return site_for(HotRoutes(web, web.app.resource()), scrubber, metrics, reactor=reactor, limits=limits,
                    body_gate=body_gate, access_log=access_log)


def site_for(resource: Resource, scrubber: Scrubber, metrics: Metrics, *, reactor: IReactorTime,
             limits: Limits | None = None, body_gate: BodyGate | None = None,
             access_log: bool = True) -> LimitedSite:
    """A Site serving *resource* (xrelay's routes, a device's own port), with
    the access log, request metrics and :class:`~xrelay.http.limits.Limits`
    (``[server]``'s, see :mod:`xrelay.web.policy`)."""
    site = AccessLoggedSite(_HostGuard(resource), limits, reactor=reactor, body_gate=body_gate,
                            scrub=scrubber, access_log=access_log)
    site.displayTracebacks = False
    metrics.instrument(site)  # request counts and latency by endpoint, refusals, connections
    return site
