"""``GET /metrics``: Prometheus text format, every name prefixed ``xrelay_``.

Three sources, none needing a call from the other modules:

* :class:`RelayCollector` reads the running components at scrape time
  (the relay's snapshot, the catalog, the ingest record kept by
  :class:`~xrelay.ops.overview.Overview`);
* :class:`WebStats` measures the HTTP layer: :meth:`Metrics.instrument`
  gives the :class:`~twisted.web.server.Site` a request class that counts
  requests by endpoint and status, their latency (time to the first byte of
  the response, so that an endless stream is not a 3-hour "latency"),
  refusals (401, 403, 404, 503...) and bytes sent; it also writes the access
  log line of a request whose client left before it finished (a stream),
  which Twisted alone would not log.  Endpoints are named by
  route (``live``, ``player_api``...), never by URL, so no user or password
  ever becomes a label;
* :class:`LimitsCollector` reads the site's refusals by limit and its open
  connections, and the failed-login throttles (by realm, never by address).

Protected by the ``[admin]`` Basic credentials (:mod:`xrelay.http.auth`).
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from twisted.web import server
from twisted.web.iweb import IRequest

from xrelay import __version__
from xrelay.http.limits import LimitedSite
from xrelay.http.throttle import LoginThrottle
from xrelay.ops.overview import Overview

__all__ = ["Metrics", "RelayCollector", "WebStats", "endpoint_of"]

#: The classic text format, which generate_latest writes and every Prometheus reads.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets (seconds) for answers that are mostly served from memory.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_FIRST = {
    "player_api.php": "player_api", "panel_api.php": "panel_api", "get.php": "get_php",
    "xmltv.php": "xmltv", "asset": "asset", "live": "live", "movie": "movie", "series": "series",
    "timeshift": "timeshift", "timeshift.php": "timeshift", "streaming": "timeshift", "hls": "hls",
    "status": "status", "metrics": "metrics", "admin": "admin", "": "index",
    # emulated HDHomeRun tuners, under /hdhr/TOKEN/ or at the root of a device's port
    "hdhr": "hdhr", "discover.json": "hdhr", "lineup.json": "hdhr", "lineup_status.json": "hdhr",
    "lineup.post": "hdhr", "device.xml": "hdhr", "guide.xml": "hdhr", "auto": "hdhr",
}
_TUNER = re.compile(r"^tuner\d+$")
_SHORT_LIVE = re.compile(rb"^/[^/]+/[^/]+/\d+(\.\w+)?$")
_PLAYER_ACTIONS = frozenset({
    "get_live_categories", "get_vod_categories", "get_series_categories", "get_live_streams",
    "get_vod_streams", "get_series", "get_vod_info", "get_series_info", "get_short_epg",
    "get_simple_data_table", "get_epg",
})
#: Why a request was refused, by status code.
REFUSALS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 416: "bad_range", 429: "too_many", 502: "provider_error",
            503: "unavailable", 504: "provider_timeout"}


def endpoint_of(path: bytes) -> str:
    """The route name of a request path (a fixed, small set of values)."""
    path = path.split(b"?", 1)[0]
    first = path.lstrip(b"/").split(b"/", 1)[0].decode("latin-1")
    name = _FIRST.get(first) or ("hdhr" if _TUNER.match(first) else None)
    if name is None:
        name = "live" if _SHORT_LIVE.match(path) else "other"
    if name == "live" and path.endswith(b".m3u8"):
        return "hls"
    return name


class WebStats:
    """Request accounting for one Site."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("xrelay_http_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "code"], registry=registry)
        self.latency = Histogram("xrelay_http_response_start_seconds",
                                 "Time from request to the first byte of the answer, by endpoint",
                                 ["endpoint"], buckets=BUCKETS, registry=registry)
        self.refused = Counter("xrelay_http_refused", "Requests refused, by reason (status code class)",
                               ["endpoint", "reason"], registry=registry)
        self.api_calls = Counter("xrelay_api_calls", "player_api.php calls by action",
                                 ["action"], registry=registry)
        self.open: set[Any] = set()
        #: bytes sent by finished requests, per endpoint
        self.finished_bytes: dict[str, int] = {}
        self.clock = time.monotonic

    def request_class(self) -> type[server.Request]:
        """A Request subclass reporting to these statistics."""
        return type("MeasuredRequest", (MeasuredRequest,), {"stats": self})

    # called by MeasuredRequest

    def started(self, request: "MeasuredRequest") -> None:
        self.open.add(request)
        if request.endpoint == "player_api":
            action = request.args.get(b"action", [b""])[0].decode("latin-1", "replace")
            self.api_calls.labels(action if action in _PLAYER_ACTIONS else ("login" if not action else "other")).inc()

    def first_byte(self, request: "MeasuredRequest") -> None:
        self.latency.labels(request.endpoint).observe(self.clock() - request.started_at)

    def ended(self, request: "MeasuredRequest") -> None:
        if request not in self.open:
            return
        self.open.discard(request)
        code = request.code if request.startedWriting else 0
        self.requests.labels(request.endpoint, str(code) if code else "none").inc()
        reason = REFUSALS.get(code)
        if reason is None and code >= 400:
            reason = "client_error" if code < 500 else "server_error"
        if reason is not None:
            self.refused.labels(request.endpoint, reason).inc()
        self.finished_bytes[request.endpoint] = (
            self.finished_bytes.get(request.endpoint, 0) + (request.sentLength or 0))

    def bytes_sent(self) -> dict[str, int]:
        """Bytes sent per endpoint, finished requests and open ones."""
        out = dict(self.finished_bytes)
        for request in list(self.open):
            out[request.endpoint] = out.get(request.endpoint, 0) + (request.sentLength or 0)
        return out


class MeasuredRequest(server.Request):
    """A Site request that reports to :class:`WebStats`."""

    stats: WebStats
    endpoint = "other"
    started_at = 0.0

    def process(self) -> None:
        self.started_at = self.stats.clock()
        self.endpoint = endpoint_of(self.path or b"/")
        self.stats.started(self)
        self.notifyFinish().addBoth(self._measured_end)
        super().process()

    def write(self, data: bytes) -> None:
        if not self.startedWriting and not self.finished:
            self.stats.first_byte(self)
        server.Request.write(self, data)

    def _measured_end(self, result: Any) -> None:
        self.stats.ended(self)
        if not self.finished:
            # The client left first (a player closing a stream): Twisted logs
            # only finished requests, so write that request's access line here.
            site = getattr(self, "site", None)
            if site is not None:
                try:
                    site.log(self)
                except Exception:
                    pass


class RelayCollector:
    """Reads the components at scrape time."""

    def __init__(self, overview: Overview, web: WebStats | None = None) -> None:
        self.overview = overview
        self.web = web

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ov = self.overview
        info = InfoMetricFamily("xrelay_build", "xrelay version")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("xrelay_start_time_seconds", "When this xrelay started (Unix time)",
                                value=ov.started)
        relay, media = ov.relay(), ov.media()
        yield from self._relay(relay)
        yield from self._media(media)
        yield from self._users(relay, media)
        yield from self._ingest()
        if self.web is not None:
            sent = CounterMetricFamily("xrelay_http_response_bytes", "Bytes sent to clients, by endpoint",
                                       labels=["endpoint"])
            for endpoint, count in sorted(self.web.bytes_sent().items()):
                sent.add_metric([endpoint], count)
            yield sent
            yield GaugeMetricFamily("xrelay_http_open_requests", "Requests being answered now (streams included)",
                                    value=len(self.web.open))

    def _relay(self, snap: dict[str, Any]) -> Iterable[Metric]:
        channels = snap.get("channels", [])
        slots = snap.get("slots", {})
        yield GaugeMetricFamily("xrelay_viewers", "Live viewers connected now (TS and HLS)",
                                value=snap.get("viewers", 0))
        yield GaugeMetricFamily("xrelay_live_hls_viewers", "Live viewers playing a channel's own HLS now",
                                value=sum(1 for c in channels for v in c.get("viewers", [])
                                          if v.get("format") == "hls"))
        yield GaugeMetricFamily("xrelay_channels", "Live channels open now (lingering ones included)",
                                value=len(channels))
        per = GaugeMetricFamily("xrelay_channel_viewers", "Viewers of each open live channel",
                                labels=["stream_id"])
        rate = GaugeMetricFamily("xrelay_channel_bitrate_bits", "Measured bitrate of each open channel",
                                 labels=["stream_id"])
        for c in channels:
            per.add_metric([str(c.get("stream_id"))], len(c.get("viewers", [])))
            bps = c.get("upstream", {}).get("bitrate_bps")
            if bps is not None:
                rate.add_metric([str(c.get("stream_id"))], bps)
        yield per
        yield rate
        yield GaugeMetricFamily("xrelay_upstream_slots_used", "Provider connections in use",
                                value=slots.get("used", 0))
        yield GaugeMetricFamily("xrelay_upstream_slots_allowed", "Provider connections allowed",
                                value=slots.get("allowed", 0))
        yield CounterMetricFamily("xrelay_upstream_handovers", "Provider slots handed over (zaps)",
                                  value=slots.get("handovers", 0))
        yield CounterMetricFamily("xrelay_evictions", "Viewers evicted for falling behind live",
                                  value=snap.get("evictions", 0))
        yield CounterMetricFamily("xrelay_upstream_reconnects", "Upstream connections reopened",
                                  value=snap.get("reconnects", 0))
        refused = CounterMetricFamily("xrelay_refused", "Streams refused or closed by a limit, by reason",
                                      labels=["reason"])
        refused.add_metric(["provider_slots"], slots.get("refused", 0))
        refused.add_metric(["user_limit"], snap.get("closed_for_user_limit", 0))
        yield refused
        clips = snap.get("status_clips") or {}
        served = CounterMetricFamily("xrelay_status_clips", "Status clips played instead of a refusal, by reason",
                                     labels=["reason"])
        for reason, count in sorted((clips.get("served") or {}).items()):
            served.add_metric([reason], count)
        yield served
        yield GaugeMetricFamily("xrelay_status_clips_playing", "Status clips being played now",
                                value=clips.get("playing", 0))
        bytes_in = sum(c.get("upstream", {}).get("bytes", 0) for c in channels)
        closed = self.overview.live.upstream_bytes_closed
        yield CounterMetricFamily("xrelay_upstream_bytes", "Bytes received from the provider for live channels",
                                  value=closed + bytes_in)
        sent = sum(v.get("bytes", 0) for c in channels for v in c.get("viewers", []))
        yield GaugeMetricFamily("xrelay_viewer_bytes_open", "Bytes sent to the viewers connected now", value=sent)
        yield CounterMetricFamily("xrelay_admin_disconnects", "Viewers disconnected from the admin page",
                                  value=self.overview.disconnected)

    def _users(self, relay: dict[str, Any], media: dict[str, Any]) -> Iterable[Metric]:
        users = self.overview.users
        yield GaugeMetricFamily("xrelay_users", "Users in the configuration", value=len(users))
        streams = GaugeMetricFamily("xrelay_user_streams", "Streams open now per user (live and files)",
                                    labels=["user"])
        counts: dict[str, int] = {}
        for channel in relay.get("channels", []):
            for viewer in channel.get("viewers", []):
                counts[viewer.get("user", "")] = counts.get(viewer.get("user", ""), 0) + 1
        for row in media.get("files") or []:
            counts[row.get("user", "")] = counts.get(row.get("user", ""), 0) + 1
        for user in users:
            streams.add_metric([user.username], counts.get(user.username, 0))
        yield streams

    def _media(self, snap: dict[str, Any]) -> Iterable[Metric]:
        files = snap.get("files") or []
        yield GaugeMetricFamily("xrelay_file_streams", "Movies, episodes and catch-up being proxied now",
                                value=len(files))
        yield GaugeMetricFamily("xrelay_file_stream_bytes_open", "Bytes sent by the file streams open now",
                                value=sum(f.get("bytes", 0) for f in files))
        hls = snap.get("hls") or {}
        channels = hls.get("channels") or []
        yield GaugeMetricFamily("xrelay_hls_channels", "Provider HLS channels proxied now", value=len(channels))
        yield GaugeMetricFamily("xrelay_hls_clients", "Clients of proxied provider HLS seen recently",
                                value=sum(len(c.get("clients") or []) for c in channels))
        cache = hls.get("segment_cache") or {}
        yield CounterMetricFamily("xrelay_hls_segment_fetches", "HLS segments fetched from the provider",
                                  value=cache.get("fetches", 0))
        yield CounterMetricFamily("xrelay_hls_segment_hits", "HLS segments served from xrelay's cache",
                                  value=cache.get("hits", 0))

    def _ingest(self) -> Iterable[Metric]:
        ov = self.overview
        yield GaugeMetricFamily("xrelay_ingest_running", "1 while an ingest runs", value=int(ov.ingest_running))
        runs = CounterMetricFamily("xrelay_ingests", "Ingests finished by this process, by outcome and trigger",
                                   labels=["outcome", "trigger"])
        for (outcome, trigger), count in sorted(ov.ingest_counts.items()):
            runs.add_metric([outcome, trigger], count)
        yield runs
        last = ov.last_ingest()
        if last is not None:
            yield GaugeMetricFamily("xrelay_ingest_last_ok", "1 if the last ingest succeeded",
                                    value=int(bool(last.get("ok"))))
            yield GaugeMetricFamily("xrelay_ingest_last_duration_seconds", "Duration of the last ingest",
                                    value=float(last.get("duration") or 0))
            yield GaugeMetricFamily("xrelay_ingest_last_timestamp_seconds", "When the last ingest started",
                                    value=float(last.get("started") or 0))
        success = ov.last_success()
        if success is not None:
            yield GaugeMetricFamily("xrelay_ingest_last_success_timestamp_seconds",
                                    "When the last successful ingest started", value=float(success.get("started") or 0))
        age = ov.cache_age()
        if age is not None:
            yield GaugeMetricFamily("xrelay_catalog_age_seconds", "Age of the catalog being served", value=age)
        items = GaugeMetricFamily("xrelay_catalog_items", "Items in the catalog being served", labels=["kind"])
        for kind, count in sorted(ov.catalog_counts().items()):
            items.add_metric([kind], count)
        yield items


class LimitsCollector:
    """The HTTP limits at scrape time: requests the site refused before
    routing them (:mod:`xrelay.http.limits`), open connections, and each
    failed-login throttle (:mod:`xrelay.http.throttle`)."""

    def __init__(self, throttles: Mapping[str, LoginThrottle]) -> None:
        self.throttles = dict(throttles)
        #: The sites measured (xrelay's port, the HDHomeRun devices' own ports).
        self.sites: list[LimitedSite] = []

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if self.sites:
            refused = CounterMetricFamily(
                "xrelay_http_limit_refusals", "Requests refused by a limit before routing, by reason",
                labels=["reason"])
            totals: dict[str, int] = {}
            open_by_address: dict[str, int] = {}
            for site in self.sites:
                for reason, count in site.stats.items():
                    totals[reason] = totals.get(reason, 0) + count
                for address, count in site.open_connections().items():
                    open_by_address[address] = open_by_address.get(address, 0) + count
            for reason, count in sorted(totals.items()):
                refused.add_metric([reason], count)
            yield refused
            yield GaugeMetricFamily("xrelay_http_connections",
                                    "Open client connections (of the addresses capped per address)",
                                    value=sum(open_by_address.values()))
            yield GaugeMetricFamily("xrelay_http_client_addresses",
                                    "Client addresses with open connections (capped ones)",
                                    value=len(open_by_address))
        if not self.throttles:
            return
        families = {
            "failures": CounterMetricFamily("xrelay_login_failures", "Failed logins (wrong user or password), by realm",
                                            labels=["realm"]),
            "delayed": CounterMetricFamily("xrelay_login_delayed", "Failed logins answered after a delay, by realm",
                                           labels=["realm"]),
            "refused": CounterMetricFamily("xrelay_login_refused",
                                           "Logins refused with 429 during a lockout, by realm", labels=["realm"]),
            "lockouts": CounterMetricFamily("xrelay_login_lockouts", "Lockouts started, by realm",
                                            labels=["realm"]),
        }
        tracked = GaugeMetricFamily("xrelay_login_tracked_addresses",
                                    "Addresses with failed logins remembered, by realm", labels=["realm"])
        locked = GaugeMetricFamily("xrelay_login_locked_addresses", "Addresses locked out now, by realm",
                                   labels=["realm"])
        for realm, throttle in sorted(self.throttles.items()):
            counters = throttle.counters
            for name, family in families.items():
                family.add_metric([realm], getattr(counters, name))
            tracked.add_metric([realm], throttle.tracked())
            locked.add_metric([realm], len(throttle.locked()))
        yield from families.values()
        yield tracked
        yield locked


class Metrics:
    """The ``/metrics`` endpoint.  *throttles*: the failed-login throttles,
    by realm (``users``, ``admin``)."""

    def __init__(self, overview: Overview, throttles: Mapping[str, LoginThrottle] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.web = WebStats(self.registry)
        self.registry.register(RelayCollector(overview, self.web))
        self.limits = LimitsCollector(throttles or {})
        self.registry.register(self.limits)

    def instrument(self, site: server.Site) -> None:
        """Measure every request of *site* (and, for a
        :class:`~xrelay.http.limits.LimitedSite`, its refusals and connections)."""
        site.requestFactory = self.web.request_class()
        if isinstance(site, LimitedSite):
            self.limits.sites.append(site)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def render(self, request: IRequest) -> bytes:
        """The exposition for an admin (the route has checked the login)."""
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        return self.exposition()
