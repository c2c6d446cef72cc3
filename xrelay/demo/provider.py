"""The demo Xtream provider: a real HTTP server behaving like a panel.

``DemoProvider(reactor, DemoSettings(...))`` serves, for its one account:

* ``/player_api.php`` (GET or POST; ``panel_api.php`` too), ``/get.php`` and
  ``/xmltv.php``: see :mod:`xrelay.demo.panel`.
* live TS at ``/live/U/P/ID.ts``, ``/live/U/P/ID`` and ``/U/P/ID``: endless,
  paced, packet-aligned (see :mod:`xrelay.demo.streams`); HLS at
  ``/live/U/P/ID.m3u8`` (see :mod:`xrelay.demo.hls`); movies and episodes
  with Range at ``/movie/U/P/ID.EXT`` and ``/series/U/P/ID.EXT``; catch-up
  at ``/timeshift/U/P/DURATION/START/ID.ts`` and
  ``/streaming/timeshift.php``; icons at ``/images/...``.
  Stream URLs answer 401 on bad credentials and 404 on unknown ids.  With
  ``redirect_streams`` live/movie/series URLs first answer 302 to
  ``/stream/KIND/TOKEN/ID.EXT`` like XUI panels.

``provider.stats`` counts everything (:mod:`xrelay.demo.stats`); the
account's ``max_connections`` is enforced on stream bodies by cutting the
oldest.  ``provider.faults`` injects failures (:mod:`xrelay.demo.faults`).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request as HTTPRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from .catalog import Context, DemoCatalog
from .faults import DemoFaults
from .panel import PanelHandlers
from .sample import icon_png
from .settings import DemoSettings
from .stats import DemoStats
from .streams import StreamHandlers

log = Logger()


class _TrackedChannel(HTTPChannel):
    site: _DemoSite  # set by the site that builds it
    transport: ITCPTransport | None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.channels.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.channels.discard(self)
        super().connectionLost(reason)


class _DemoSite(Site):
    protocol = _TrackedChannel  # type: ignore[assignment]  # Site takes any HTTPChannel class

    def __init__(self, resource: IResource, **kw: Any) -> None:
        super().__init__(resource, **kw)
        self.channels: set[_TrackedChannel] = set()
        self.noisy = False

    def log(self, request: HTTPRequest) -> None:
        """No access log: benchmarks make thousands of requests."""


def _ip_address(addr: IAddress) -> IPv4Address | IPv6Address:
    """*addr*, the address of a TCP port or connection (the provider serves on TCP)."""
    if not isinstance(addr, (IPv4Address, IPv6Address)):
        raise RuntimeError(f"the demo provider serves on TCP, not on {addr}")
    return addr


class DemoProvider:
    """See the module docstring."""

    def __init__(self, reactor: IReactorTime, settings: DemoSettings | None = None) -> None:
        self.reactor = reactor
        self.settings = settings or DemoSettings()
        self.catalog = self.settings.catalog()
        self.tz = ZoneInfo(self.settings.timezone)
        self.stats = DemoStats(max_connections=self.settings.max_connections, clock=reactor)
        self.faults = DemoFaults()
        self.streams = StreamHandlers(self)
        self.panel = PanelHandlers(self)
        self._port: IListeningPort | None = None
        self._site: _DemoSite | None = None
        self._root = _Root(self)
        self._secret = hashlib.sha256(
            f"{self.settings.password}:{self.settings.seed}".encode()
        ).hexdigest()

    # ----- public API ----------------------------------------------------
    def set_catalog(self, catalog: DemoCatalog) -> None:
        """Serve *catalog* from now on (a provider whose lineup changed
        between two ingests); answers cached for the old one are dropped."""
        self.catalog = catalog
        self.panel.forget()

    def resource(self) -> IResource:
        return self._root

    def listen(self, endpoint_description: str = "tcp:0:interface=127.0.0.1"
               ) -> Deferred[IListeningPort]:
        self._site = _DemoSite(self._root)
        d = serverFromString(self.reactor, endpoint_description).listen(self._site)

        def listening(port: IListeningPort) -> IListeningPort:
            self._port = port
            # No address here: in ``--demo`` mode this lands in xrelay's log,
            # which must never show the provider's host (CLI users get it on stdout).
            log.info("demo provider listening")
            return port

        return d.addCallback(listening)

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the demo provider is not listening")
        addr = _ip_address(self._port.getHost())
        host = addr.host if addr.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{addr.port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo provider is not listening")
        return _ip_address(self._port.getHost()).port

    def stop(self) -> Deferred[None]:
        """Stop listening and cut every open connection."""
        port, self._port = self._port, None
        d = succeed(None) if port is None else (port.stopListening() or succeed(None))
        if self._site is not None:
            for channel in list(self._site.channels):
                if channel.transport is not None:
                    channel.transport.abortConnection()
        return d

    def drop_streams(self, kind: str | None = None) -> int:
        """Cut every open stream body (of ``kind``: live, vod, timeshift), as
        a provider restart would; returns how many were cut."""
        victims = [c for c in self.stats.open_streams if kind is None or c.kind == kind]
        for conn in victims:
            conn.abort()
        return len(victims)

    def token(self, kind: str, stream_id: int) -> str:
        """The opaque path token of redirected stream URLs (no credentials)."""
        raw = f"{self._secret}:{kind}:{stream_id}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def vod_bytes(self, stream_id: int) -> bytes:
        """The exact body of a movie or episode (for byte-for-byte checks).

        Every movie and episode serves the same file: the sample repeated to
        ``settings.vod_size`` bytes."""
        return self.streams.file_body()

    # ----- helpers for the handlers --------------------------------------
    def hls_only(self, stream_id: int) -> bool:
        """Does this channel refuse MPEG-TS (see ``DemoSettings.hls_only``)?"""
        only = self.settings.hls_only
        return only == "all" or (not isinstance(only, str) and stream_id in only)

    def output_formats(self) -> list[str]:
        """The account's ``allowed_output_formats``."""
        return ["m3u8"] if self.settings.hls_only == "all" else ["m3u8", "ts", "rtmp"]

    def check(self, username: str | None, password: str | None) -> bool:
        return username == self.settings.username and password == self.settings.password

    def context(self, request: Request) -> tuple[Context, str, str, str]:
        """(render context, host, port, scheme) from the request's Host."""
        host = request.getRequestHostname().decode("idna")
        port = str(_ip_address(request.getHost()).port)
        raw_host = request.getHeader(b"host")
        if raw_host and b":" in raw_host.rsplit(b"]", 1)[-1]:
            port = raw_host.rsplit(b":", 1)[1].decode()
        scheme = "https" if request.isSecure() else "http"
        shown = f"[{host}]" if ":" in host else host
        ctx = Context(f"{scheme}://{shown}:{port}", self.settings.username,
                      self.settings.password)
        return ctx, host, port, scheme

class DemoProviderService(Service):
    """The provider as a twistd service: listens on start, stops on stop.

    ``ready`` fires with the provider once it listens (``provider.url`` is
    then known), for code that must point a client at it.
    """

    def __init__(self, provider: DemoProvider,
                 endpoint_description: str = "tcp:0:interface=127.0.0.1") -> None:
        self.provider = provider
        self.endpoint_description = endpoint_description
        self.ready: Deferred[DemoProvider] = Deferred()

    def startService(self) -> None:
        super().startService()
        d = self.provider.listen(self.endpoint_description).addCallback(lambda _: self.provider)
        d.chainDeferred(self.ready)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.provider.stop()


def _args(request: Request) -> dict[str, str]:
    out = {}
    for k, v in (request.args or {}).items():
        if v:
            out[k.decode("utf-8", "replace")] = v[0].decode("utf-8", "replace")
    return out


class _Root(Resource):
    """Dispatches every path; a leaf, so twisted.web hands it the whole path."""

    isLeaf = True

    def __init__(self, provider: DemoProvider) -> None:
        super().__init__()
        self.p = provider

    def render(self, request: Request) -> object:
        segments = [unquote(s) for s in request.path.decode("latin-1").split("/")[1:]]
        args = _args(request)
        p, s, panel = self.p, self.p.streams, self.p.panel
        head = segments[0] if segments else ""
        n = len(segments)
        if head in ("player_api.php", "panel_api.php") and n == 1:
            return panel.player_api(request, args)
        if head == "get.php" and n == 1:
            return panel.get_php(request, args)
        if head == "xmltv.php" and n == 1:
            return panel.xmltv(request, args)
        if head == "images":
            p.stats.request("image")
            request.setHeader(b"content-type", b"image/png")
            return icon_png()
        if head == "live" and n == 4:
            return s.live_entry(request, segments[1], segments[2], segments[3])
        if head in ("movie", "series") and n == 4:
            return s.file_entry(request, head, segments[1], segments[2], segments[3])
        if head == "timeshift" and n == 6:
            return s.timeshift_path(request, segments[1:])
        if segments[:2] == ["streaming", "timeshift.php"] and n == 2:
            return s.timeshift_query(request, args)
        if head == "stream" and n == 4:
            return s.redirected(request, segments[1], segments[2], segments[3])
        if head == "hls" and n >= 4:
            return s.hls(request, segments[1], segments[2], segments[3:])
        if n == 3 and segments[2].split(".")[0].isdigit():
            return s.live_entry(request, segments[0], segments[1], segments[2])
        p.stats.request("not_found")
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/html")
        return b"<html><head><title>404 Not Found</title></head><body><center>" \
               b"<h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>"
