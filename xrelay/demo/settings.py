"""The demo provider's settings: its account, catalog sizes and streaming behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import DemoCatalog

__all__ = ["DemoSettings"]


@dataclass
class DemoSettings:
    """The demo account, catalog sizes and streaming behaviour."""

    username: str = "provider-user"
    password: str = "provider-pass"
    #: The account limit, enforced on stream bodies; change it at runtime
    #: through ``provider.stats.max_connections``.  0 = unlimited.
    max_connections: int = 2
    #: Catalog sizes (see :class:`xrelay.demo.catalog.DemoCatalog`): live
    #: channels, movies, series, seasons per series, episodes per season,
    #: hours of guide around now, and the seed of the made-up names.
    live: int = 20
    vod: int = 30
    series: int = 6
    seasons: int = 2
    episodes: int = 4
    epg_hours: int = 12
    seed: int = 1
    #: Serve the real-panel oddities listed in :mod:`xrelay.demo.catalog`.
    quirky: bool = False
    #: None paces live channels at the sample's own bitrate (about 1 Mbit/s);
    #: otherwise the looped clip's bytes are sent at this rate.
    bitrate_bps: float | None = None
    #: server_info.timezone: EPG times and catch-up START are in this zone.
    timezone: str = "Europe/London"
    #: Answer live/movie/series URLs with a 302 first, like XUI panels.
    redirect_streams: bool = True
    #: Size of every movie/episode file, bytes (the sample repeated).
    vod_size: int = 4 * 1024 * 1024
    #: None sends files as fast as the reader takes them.
    vod_bitrate_bps: float | None = None
    #: Seconds between two writes of a paced live body.
    live_tick: float = 0.02
    #: A live reader this many seconds behind is cut.
    live_max_lag: float = 30.0

    def catalog(self) -> DemoCatalog:
        return DemoCatalog(self.live, self.vod, self.series, self.seasons, self.episodes,
                           self.epg_hours, self.seed, self.quirky)
