"""The composition root: one :class:`XRelay` builds every component once,
each with its real collaborators, and the daemon's service tree.

Nothing else in xrelay builds components or reads the configuration as a
whole; the parts receive what they use (a config section, the catalog, the
provider client, the shared slot counters, a callable) and never reach
back for more.  Only the entry points (:mod:`xrelay.tap`, :mod:`xrelay.cli`)
import this module.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.logger import Logger

from xrelay.api.assets import AssetProxy
from xrelay.api.player_api import XtreamApi
from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.service import CatalogService
from xrelay.catalog.store import CacheStore
from xrelay.core.config import Config, UserConfig, with_default_backlog
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
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
from xrelay.ops.service import OpsService, close_revoked
from xrelay.ops.signals import SignalService
from xrelay.ops.status import StatusPage
from xrelay.provider.client import ProviderClient
from xrelay.provider.images import ImageFetcher
from xrelay.relay.channels import LiveRelay, RelayService
from xrelay.relay.slots import ProviderSlots, UserStreams, capacity_refresher
from xrelay.http.throttle import LoginThrottle
from xrelay.web.gate import LoginGate
from xrelay.web.guards import LoginThrottles
from xrelay.web.policy import limits_from, throttle_policy_from
from xrelay.web.routes import Surfaces, WebApp
from xrelay.web.site import make_site

__all__ = ["XRelay"]

log = Logger()


class XRelay:
    """Everything one running xrelay is made of."""

    def __init__(self, reactor: Any, config: Config, *,
                 reload_config: Callable[[], Config | None] = lambda: None) -> None:
        self.reactor = reactor
        self.config = config
        self.reload_config = reload_config

        # foundations: secrets, the provider, the catalog on disk, the users
        self.scrubber = Scrubber(config.upstream)
        self.client = ProviderClient(reactor, config.upstream, self.scrubber)
        self.store = CacheStore(config.ingest.data_dir)
        self.users = UserDB(config.users)
        self.cache = CatalogCache(self.store, self.client.get_json, self.scrubber, clock=reactor)

        # ingest
        self.ingester = ProcessIngester(reactor, self.client, self.store, config.ingest, self.scrubber)
        self.ingester.listeners.append(self._after_ingest)
        self.ingest_service = IngestService(reactor, self.ingester, config.ingest.interval)

        # provider connections and user streams, shared by every stream kind
        self.slots = ProviderSlots(reactor, capacity=1, handover_pause=config.relay.handover_pause)
        self.user_streams = UserStreams(reactor)
        refresh_capacity = capacity_refresher(self.slots, config.upstream.max_connections,
                                              lambda: self.cache.account)

        # live relay, movies, series, catch-up, HLS
        self.relay = LiveRelay(reactor, config.relay, self.cache, self.client, self.slots,
                               self.user_streams, refresh_capacity)
        self.files = FileRelay(reactor, self.client, self.scrubber, self.slots, self.user_streams,
                               config.relay.silence_timeout, refresh_capacity)
        self.hls = HlsServer(reactor, self.cache, self.client, self.scrubber, self.users, self.files,
                             linger=config.relay.linger, public_url=config.server.public_url)
        # episode_allowed: where a user's lineup will check an episode's series
        self.vod = VodServer(reactor, self.cache, self.client, self.files,
                             recheck_after=config.ingest.interval)
        self.timeshift = TimeshiftServer(reactor, self.cache, self.client, config.server.timezone,
                                         self.files, self.hls)

        # the Xtream API
        self.image_fetcher = ImageFetcher(reactor, self.client)
        self.assets = AssetProxy(reactor, self.image_fetcher, self.cache.names_asset)
        self.api = XtreamApi(reactor, config.server, self.cache, self.store, self.scrubber, self.assets,
                             active_connections=self.user_streams.count)

        # operations
        self.overview = Overview(self.store, self.ingester, self.cache, self.users, self.relay,
                                 self.files, self.hls)
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
            status=self.status, metrics=self.metrics, admin_page=self.admin,
            throttles=self.throttles))
        self.site = make_site(self.web, self.scrubber, self.metrics, reactor=reactor,
                              limits=limits_from(config.server), body_gate=LoginGate(self.web))

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
        web = strports.service(with_default_backlog(self.config.server.listen), self.site)
        web.setName("web")
        web.setServiceParent(root)
        return root

    async def _after_ingest(self, result: IngestResult) -> None:
        if result.ok:
            await self.cache.reload()

    def reload_users(self) -> None:
        """SIGHUP: take the users of the re-read configuration and close the
        streams of those removed, disabled, expired or with a new password."""
        config = self.reload_config()
        if config is None:
            return
        previous = {u.username: u for u in self.users}
        self.users.replace(config.users)
        log.info("users reloaded: {count} users", count=len(self.users))
        close_revoked(self.users, self.overview, previous)

    def take_users(self, users: tuple[UserConfig, ...]) -> None:
        """Replace the users (tests and tools); streams of revoked users close."""
        previous = {u.username: u for u in self.users}
        self.users.replace(users)
        close_revoked(self.users, self.overview, previous)
