"""Catch-up (timeshift) through the relay.

Both URL forms players use are served:

* ``/timeshift/USER/PASS/DURATION/START/ID.ts`` (path form), and
* ``/streaming/timeshift.php?username=&password=&stream=ID&start=START&duration=MIN``
  (query form; ``/timeshift.php`` too).

START arrives in whatever form the player sends (docs/xtream-api.md,
"Catch-up"): ``YYYY-MM-DD:HH-MM`` and its variants, ``YYYYMMDD-HH``, ISO 8601, or a
10/13-digit UNIX epoch (TiviMate).  Wall-clock forms are read in the
timezone xrelay advertises to its clients (``[server] timezone``, served as
``server_info.timezone``); epochs and ISO times with an offset are absolute.
The moment is then written in the provider's own timezone (its
``server_info.timezone``), as panels read START with their local clock, and
the provider's path-form URL is built with its credentials.

Only channels whose catalog row has ``tv_archive`` 1 are accepted, and only
for a START inside their ``tv_archive_duration`` days (404 otherwise); a
START or DURATION that cannot be read answers 400.  ``.ts`` answers are
proxied per client exactly like movies (Range, slots, back-pressure);
``.m3u8`` answers are rewritten like live HLS playlists.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.catalog.cache import CatalogCache
from xrelay.core.config import UserConfig
from xrelay.http.errors import HTTPError, NotFound, Unavailable
from xrelay.media.files import FileRelay
from xrelay.media.hls_proxy import HlsServer
from xrelay.provider.client import ProviderClient

__all__ = ["TimeshiftServer", "parse_start", "provider_start", "zone"]

log = Logger()

#: Wall-clock START forms (read in xrelay's advertised timezone).
_FORMATS = (
    "%Y-%m-%d:%H-%M", "%Y-%m-%d:%H-%M-%S", "%Y-%m-%d_%H-%M", "%Y-%m-%d_%H-%M-%S",
    "%Y-%m-%d:%H:%M", "%Y-%m-%d:%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
    "%Y-%m-%d-%H-%M", "%Y%m%d-%H", "%Y%m%d%H%M%S", "%Y%m%d%H%M",
)
#: The START form panels read (``Y-m-d:H-i``).
PROVIDER_FORMAT = "%Y-%m-%d:%H-%M"
#: Longest catch-up accepted, minutes.
MAX_DURATION = 24 * 60
#: A START this far in the future is still accepted (clock skew), seconds.
FUTURE_SLACK = 300
#: Extra depth allowed beyond tv_archive_duration days (panels round), seconds.
WINDOW_SLACK = 3600


def zone(name: str | None) -> Any:
    """A tzinfo for a timezone name; UTC when empty or unknown."""
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warn("unknown timezone {name}, using UTC", name=name)
        return timezone.utc


def parse_start(text: str, local: Any) -> datetime | None:
    """The moment START names (an aware datetime), or None if unreadable.

    Wall-clock forms are read in ``local``; epochs (10 or 13 digits) are UTC.
    """
    text = (text or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) in (10, 13):
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        return datetime.fromtimestamp(seconds, timezone.utc)
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=local)
        except ValueError:
            continue
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", text):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=local)
    return None


def provider_start(moment: datetime, provider_tz: Any) -> str:
    """START as the provider's panel reads it: its local ``Y-m-d:H-i``."""
    return moment.astimezone(provider_tz).strftime(PROVIDER_FORMAT)


class TimeshiftServer:
    """Catch-up: a past programme of a channel with an archive, as a file or as HLS."""

    def __init__(self, clock: IReactorTime, catalog: CatalogCache, client: ProviderClient, timezone: str,
                 files: FileRelay, hls: HlsServer) -> None:
        self.clock = clock
        self.catalog = catalog
        self.client = client
        self.timezone = timezone
        self.files = files
        self.hls = hls

    def serve(self, request: IRequest, account: UserConfig, duration: str, start: str,
              stream: str) -> Any:
        """A logged-in user's catch-up request: *duration* minutes from
        *start* of *stream* (``ID.EXT``, ``ts`` or ``m3u8``)."""
        ident, _, ext = (stream or "").partition(".")
        ext = (ext or "ts").lower()
        if not (ident.isascii() and ident.isdigit()) or len(ident) > 11 or ext not in ("ts", "m3u8"):
            raise NotFound("unknown stream")
        stream_id = int(ident)
        cache = self.catalog
        if not cache.loaded:
            raise Unavailable("the catalog is not loaded yet, try again soon", retry_after=10)
        channel = cache.live(stream_id)
        if channel is None:
            raise NotFound("unknown channel")
        if not channel.tv_archive:
            raise NotFound("this channel has no catch-up")
        try:
            minutes = int(str(duration).strip())
        except ValueError:
            minutes = 0
        if not 0 < minutes <= MAX_DURATION:
            raise HTTPError(400, f"bad duration {duration!r}: minutes, 1 to {MAX_DURATION}")
        moment = parse_start(start, zone(self.timezone))
        if moment is None:
            raise HTTPError(400, f"bad start {start!r}: use YYYY-MM-DD:HH-MM or a UNIX time")
        now = self.clock.seconds()
        at = moment.timestamp()
        days = channel.archive_days
        if at > now + FUTURE_SLACK:
            raise NotFound("that programme has not started yet")
        if days and at < now - days * 86400 - WINDOW_SLACK:
            raise NotFound(f"outside this channel's {days}-day archive")
        local = provider_start(moment, zone(cache.account.get("timezone")))
        url = self.client.timeshift_url(minutes, local, stream_id, ext)
        what = f"catch-up {stream_id} at {local}"
        log.info("{what} for {user} ({minutes} min)", what=what, user=account.username,
                 minutes=minutes)
        if ext == "m3u8":
            return self.hls.remote_playlist(request, account, ("timeshift", stream_id, local), url)
        return self.files.play(request, account, ("timeshift", stream_id), url, what)

