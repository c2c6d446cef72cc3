"""The composition root: one :class:`XRelay` builds every component once,
each with its real collaborators, and the daemon's service tree.

Nothing else in xrelay builds components or reads the configuration as a
whole; the parts receive what they use (a config section, the catalog, the
provider client, the shared slot counters, a callable) and never reach
back for more.  Only the entry points (:mod:`xrelay.tap`, :mod:`xrelay.cli`)
import this module.
"""

from __future__ import annotations

from typing import Callable

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger

from xrelay.api.assets import AssetProxy
from xrelay.api.player_api import XtreamApi
from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.lineup_service import Lineups
from xrelay.catalog.service import CatalogService
from xrelay.catalog.store import CacheStore
from xrelay.core.config import Config, ConfigError, UserConfig, with_default_backlog
from xrelay.core.reactor import IReactor
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.hdhr.channels import CatalogChannels, ChannelsFor, LineupTuners
from xrelay.hdhr.device import device_ids, load_salt
from xrelay.hdhr.discovery import DISCOVER_PORT, DiscoveryProtocol
from xrelay.hdhr.guide import DeviceGuides
from xrelay.hdhr.server import HdhrServer
from xrelay.hdhr.service import DiscoveryService, RecordingEndpoint, device_endpoint
from xrelay.ingest.ingester import IngestResult, IngestService
from xrelay.ingest.worker import ProcessIngester
from xrelay.media.files import FileRelay
from xrelay.media.hls_proxy import HlsServer
from xrelay.media.service import MediaService
from xrelay.media.timeshift import TimeshiftServer
from xrelay.media.vod import VodServer
from xrelay.ops.admin import AdminPage
from xrelay.ops.metrics import Metrics
from xrelay.ops.overview import Overview
from xrelay.ops.service import OpsService, close_outside_lineups, close_revoked
from xrelay.ops.signals import SignalService
from xrelay.ops.status import StatusPage
from xrelay.provider.client import ProviderClient
from xrelay.provider.images import ImageFetcher
from xrelay.relay.channels import LiveRelay, RelayService
from xrelay.relay.clips import Clip, ClipError, StatusClips, load_clips
from xrelay.relay.slots import ProviderSlots, UserStreams, capacity_refresher
from xrelay.http.throttle import LoginThrottle
from xrelay.web.gate import LoginGate
from xrelay.web.guards import LoginThrottles
from xrelay.web.hdhr_routes import device_port_resource
from xrelay.web.policy import limits_from, throttle_policy_from
from xrelay.web.routes import Surfaces, WebApp
from xrelay.web.site import make_site, site_for

__all__ = ["XRelay"]

log = Logger()


class XRelay:
    """Everything one running xrelay is made of."""

    def __init__(self, reactor: IReactor, config: Config, *,
                 reload_config: Callable[[], Config | None] = lambda: None,
                 discovery_address: tuple[str, int] = ("", DISCOVER_PORT)) -> None:
        self.reactor = reactor
        self.config = config
        self.reload_config = reload_config
        #: Where HDHomeRun UDP discovery listens (interface, port), if a device wants it.
        self.discovery_address = discovery_address

        # foundations: secrets, the provider, the catalog on disk, the users
        self.scrubber = Scrubber(config.upstream)
        self.client = ProviderClient(reactor, config.upstream, self.scrubber)
        self.store = CacheStore(config.ingest.data_dir)
        self.users = UserDB(config.users)
        self.cache = CatalogCache(self.store, self.client.get_json, self.scrubber, clock=reactor)
        # lineups: each user's part of the catalog, decided in one place
        self.lineups = Lineups(reactor, self.cache, config.ingest.data_dir, config.lineups)

        # ingest
        self.ingester = ProcessIngester(reactor, self.client, self.store, config.ingest, self.scrubber)
        self.ingester.listeners.append(self._after_ingest)
        self.ingest_service = IngestService(reactor, self.ingester, config.ingest.interval)

        # provider connections and user streams, shared by every stream kind
        self.slots = ProviderSlots(reactor, capacity=1, handover_pause=config.relay.handover_pause)
        self.user_streams = UserStreams(reactor)
        refresh_capacity = capacity_refresher(self.slots, config.upstream.max_connections,
                                              lambda: self.cache.account)

        # movies, series, catch-up, the provider's HLS rewritten; live channels
        self.clips = StatusClips(reactor, _status_clips(config), limit=config.relay.status_clip_seconds)
        self.files = FileRelay(reactor, self.client, self.scrubber, self.slots, self.user_streams,
                               config.relay.silence_timeout, refresh_capacity)
        self.hls = HlsServer(reactor, self.cache, self.client, self.scrubber, self.users, self.files,
                             linger=config.relay.linger, public_url=config.server.public_url)
        self.relay = LiveRelay(reactor, config.relay, self.cache, self.client, self.slots,
                               self.user_streams, refresh_capacity, clips=self.clips,
                               hls_user_token=self.hls.tokens.user_token,
                               public_url=config.server.public_url)
        # (a user's lineup is checked by the stream routes before any of these runs)
        self.vod = VodServer(reactor, self.cache, self.client, self.files,
                             recheck_after=config.ingest.interval)
        self.timeshift = TimeshiftServer(reactor, self.cache, self.client, config.server.timezone,
                                         self.files, self.hls)

        # the Xtream API
        self.image_fetcher = ImageFetcher(reactor, self.client)
        self.assets = AssetProxy(reactor, self.image_fetcher, self.cache.names_asset)
        self.api = XtreamApi(reactor, config.server, self.cache, self.store, self.scrubber, self.assets,
                             self.lineups, active_connections=self.user_streams.count)
        self.cache.listeners.append(self.lineups.catalog_reloaded)  # after the API's: views take seconds

        # emulated HDHomeRun tuners: a device's lineup (its numbers are the
        # GuideNumbers), or the whole live catalog
        self.catalog_channels = CatalogChannels()
        if config.hdhr:
            self.cache.listeners.append(self.catalog_channels.reloaded)
        self.lineup_tuners = LineupTuners(self.catalog_channels, self.lineups, self.cache,
                                          {d.lineup for d in config.hdhr if d.lineup is not None})
        if self.lineup_tuners.wanted:
            self.lineups.listeners.append(self.lineup_tuners.views_changed)
        channels_for: ChannelsFor = self.lineup_tuners
        salt = load_salt(config.ingest.data_dir) if config.hdhr else b""
        self.web_endpoint: RecordingEndpoint | None = None

        def provider_connections() -> int:
            refresh_capacity()
            return self.slots.capacity

        self.hdhr = HdhrServer(reactor, config.hdhr, device_ids(config.hdhr, salt), channels_for,
                               self.relay, DeviceGuides(self.cache),
                               provider_connections=provider_connections,
                               public_url=config.server.public_url, web_port=self._web_port)

        # operations
        self.overview = Overview(self.store, self.ingester, self.cache, self.users, self.relay,
                                 self.files, self.hls, self.lineups)
        self.lineups.listeners.append(
            lambda lineups: close_outside_lineups(self.user_streams, self.users, lineups))
        self.ingester.listeners.append(self.overview.on_ingest)
        self.status = StatusPage(self.overview)
        # failed logins, per client address (xrelay.web.guards)
        policy = throttle_policy_from(config.server)
        self.throttles = LoginThrottles(users=LoginThrottle(reactor, policy, "player login"),
                                        admin=LoginThrottle(reactor, policy, "admin login"))
        self.metrics = Metrics(self.overview, {"users": self.throttles.users,
                                               "admin": self.throttles.admin})
        self.admin = AdminPage(self.overview, self.ingest_service.trigger)

        # the HTTP front
        self.web = WebApp(Surfaces(
            users=self.users, admin=config.admin, scrubber=self.scrubber, api=self.api,
            relay=self.relay, hls=self.hls, vod=self.vod, timeshift=self.timeshift,
            status=self.status, metrics=self.metrics, admin_page=self.admin, hdhr=self.hdhr, lineups=self.lineups,
            throttles=self.throttles))
        self.limits = limits_from(config.server)
        self.site = make_site(self.web, self.scrubber, self.metrics, reactor=reactor,
                              limits=self.limits, body_gate=LoginGate(self.web),
                              access_log=config.log.access)

    def services(self, root: MultiService | None = None) -> MultiService:
        """The daemon's named services (added to *root*), started in this
        order and stopped in reverse: the listening port last, so that it
        closes first."""
        root = MultiService() if root is None else root
        for service in (
            CatalogService(self.cache, self.store, lambda: self.ingest_service.trigger("unusable cache")),
            RelayService(self.relay),
            MediaService(self.files, self.hls),
            OpsService(self.reactor, self.config, self.users, self.overview, self.client.close),
            self.ingest_service,
            SignalService(self.reactor, self.reload_users, self.ingest_service.trigger),
        ):
            service.setServiceParent(root)
        self._hdhr_services(root)
        web = strports.service(with_default_backlog(self.config.server.listen), self.site)
        self.web_endpoint = RecordingEndpoint(web.endpoint)
        web.endpoint = self.web_endpoint
        web.setName("web")
        web.setServiceParent(root)
        return root

    def _hdhr_services(self, root: MultiService) -> None:
        """The devices' own ports and UDP discovery, for the devices that want them."""
        for device in self.config.hdhr:
            if device.port is None:
                continue
            site = site_for(device_port_resource(self.hdhr, device), self.scrubber, self.metrics,
                            reactor=self.reactor, limits=self.limits, access_log=self.config.log.access)
            endpoint = with_default_backlog(device_endpoint(self.config.server.listen, device.port))
            service = strports.service(endpoint, site)
            service.setName(f"hdhr-port-{device.port}")
            service.setServiceParent(root)
        if any(device.udp_discovery for device in self.config.hdhr):
            interface, port = self.discovery_address
            DiscoveryService(self.reactor, DiscoveryProtocol(self.hdhr.discovery_answers, self.reactor),
                             port=port, interface=interface).setServiceParent(root)

    def _web_port(self) -> int | None:
        return self.web_endpoint.port if self.web_endpoint is not None else None

    async def _after_ingest(self, result: IngestResult) -> None:
        if result.ok:
            await self.cache.reload()

    def reload_users(self) -> None:
        """SIGHUP: take the users and lineups of the re-read configuration;
        close the streams of users removed, disabled, expired or with a new
        password, and (once the lineups are applied) those now outside a
        user's lineup."""
        config = self.reload_config()
        if config is None:
            return
        previous = {u.username: u for u in self.users}
        self.users.replace(config.users)
        log.info("users reloaded: {count} users", count=len(self.users))
        close_revoked(self.users, self.overview, previous)
        defer.Deferred.fromCoroutine(self.lineups.configure(config.lineups)).addErrback(
            lambda f: log.failure("applying the reloaded lineups", f))

    def take_users(self, users: tuple[UserConfig, ...]) -> None:
        """Replace the users (tests and tools); streams of revoked users close."""
        previous = {u.username: u for u in self.users}
        self.users.replace(users)
        close_revoked(self.users, self.overview, previous)
        close_outside_lineups(self.user_streams, self.users, self.lineups)


def _status_clips(config: Config) -> dict[str, Clip]:
    """The status clips (blocking: read once at start-up)."""
    try:
        return load_clips(config.relay.status_clips_dir)
    except ClipError as e:
        raise ConfigError(f"{config.source}: relay.status_clips_dir: {e}") from None
