"""What the admin sees: one read-only view over the running components.

:class:`Overview` reads the live state at the moment it is asked (the
relay's ``snapshot()``, the catalog, the ingests) so that no other module
has to report anything: ``/metrics`` and ``/admin`` both read it.  It also
keeps the record of the last ingests in memory (seeded from
``ingests.json`` at start-up, then fed by the ingester), gives each live
viewer a short opaque id, and closes viewers on the admin's request or when
their user is removed by a reload.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections import Counter, deque
from typing import Any, Iterator

from twisted.internet import defer, threads
from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.lineup_service import Lineups
from xrelay.catalog.store import CacheStore
from xrelay.core.users import UserDB
from xrelay.ingest.ingester import Ingester, IngestResult
from xrelay.media.files import FileRelay
from xrelay.media.hls_proxy import HlsServer
from xrelay.relay.channels import LiveRelay
from xrelay.relay.fanout import Viewer
from xrelay.relay.hls_sessions import HlsSession

__all__ = ["Overview", "INGEST_HISTORY"]

log = Logger()

#: How many past ingests the admin page shows.
INGEST_HISTORY = 10

class Overview:
    def __init__(self, store: CacheStore, ingester: Ingester, catalog: CatalogCache, users: UserDB,
                 relay: LiveRelay, files: FileRelay, hls: HlsServer, lineups: Lineups) -> None:
        self.store = store
        self.ingester = ingester
        self.catalog = catalog
        self.users = users
        self.live = relay
        self.files = files
        self.hls = hls
        self.lineups = lineups
        self.started = time.time()
        self.ingests: deque[dict[str, Any]] = deque(maxlen=INGEST_HISTORY)
        #: ``(outcome, trigger) -> count`` of the ingests run by this process.
        self.ingest_counts: Counter[tuple[str, str]] = Counter()
        self.disconnected = 0
        self._ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._serial = itertools.count(1)

    # -- ingests --------------------------------------------------------------

    def load_history(self) -> defer.Deferred[None]:
        """Seed the ingest record from the data directory (in a thread)."""
        d = threads.deferToThread(self.store.history)

        def loaded(entries: list[dict[str, Any]]) -> None:
            older = [e for e in entries if isinstance(e, dict)][-INGEST_HISTORY:]
            current = list(self.ingests)
            self.ingests.clear()
            self.ingests.extend(older + current)

        loading = d.addCallback(loaded)
        loading.addErrback(lambda f: log.failure("cannot read the ingest history", f))
        return loading

    def on_ingest(self, result: IngestResult) -> None:
        """Ingester listener: remember one finished ingest."""
        self.ingests.append(result.as_record())
        self.ingest_counts["ok" if result.ok else "failed", result.trigger] += 1

    @property
    def ingest_running(self) -> bool:
        return self.ingester.running is not None

    def last_ingest(self) -> dict[str, Any] | None:
        return self.ingests[-1] if self.ingests else None

    def last_success(self) -> dict[str, Any] | None:
        for entry in reversed(self.ingests):
            if entry.get("ok"):
                return entry
        return None

    def cache_age(self) -> float | None:
        """Seconds since the current catalog was written (None: no catalog)."""
        generation = self.catalog.generation
        if generation is None:
            return None
        try:
            return max(0.0, time.time() - (generation / "bundle.json").stat().st_mtime)
        except OSError:
            return None

    def catalog_counts(self) -> dict[str, int]:
        current = self.catalog.current
        counts = current.counts if current is not None else {}
        return {k: v for k, v in counts.items() if isinstance(v, int)}

    # -- live relay -----------------------------------------------------------

    def relay(self) -> dict[str, Any]:
        """The relay's snapshot, each viewer with an ``id`` for the admin."""
        relay = self.live
        snap = relay.snapshot()
        channels = {c.stream_id: c for c in relay.channels.values()}
        for row in snap.get("channels", []):
            channel = channels.get(row.get("stream_id"))
            live = channel.viewer_objects() if channel is not None else []
            rows = row.get("viewers", [])
            if len(live) == len(rows):
                for viewer, vrow in zip(live, rows):
                    vrow["id"] = self.viewer_id(viewer)
                    seconds = vrow.get("seconds") or 0
                    vrow["rate_bps"] = round(8 * vrow.get("bytes", 0) / seconds) if seconds > 0 else None
        return snap

    def media(self) -> dict[str, Any]:
        """Movies, episodes and catch-up being proxied, and HLS channels
        (no provider URL), each proxied file with an ``id``."""
        snap: dict[str, Any] = {"files": self.files.snapshot(), "hls": self.hls.snapshot()}
        rows = snap["files"]
        playbacks = self._playbacks()
        if len(playbacks) == len(rows):
            for playback, row in zip(playbacks, rows):
                row["id"] = self.viewer_id(playback)
                seconds = row.get("seconds") or 0
                row["rate_bps"] = round(8 * row.get("bytes", 0) / seconds) if seconds > 0 else None
        return snap

    def _playbacks(self) -> list[Any]:
        return sorted(self.files.playbacks, key=lambda p: p.started)

    def viewer_id(self, viewer: Any) -> str:
        ident = self._ids.get(viewer)
        if ident is None:
            ident = self._ids[viewer] = f"v{next(self._serial)}"
        return ident

    def iter_viewers(self) -> Iterator[Any]:
        """Every live viewer: TS viewers and HLS sessions."""
        for channel in list(self.live.channels.values()):
            yield from channel.viewer_objects()

    def _close(self, viewer: Any, reason: str) -> None:
        if isinstance(viewer, (Viewer, HlsSession)):
            self.live.close_viewer(viewer, reason)
        else:
            viewer.close(reason)

    def disconnect(self, viewer_id: str, reason: str = "disconnected by the admin") -> bool:
        """Close one viewer's stream cleanly.  False if no such viewer."""
        for viewer in list(self.iter_viewers()) + self._playbacks():
            if self._ids.get(viewer) == viewer_id:
                log.info("admin disconnects {viewer} ({viewer_id})", viewer=f"{viewer.user}@{viewer.address}",
                         viewer_id=viewer_id, event="viewer_disconnected")
                self.disconnected += 1
                self._close(viewer, reason)
                return True
        return False

    def close_streams_of(self, usernames: set[str], reason: str) -> int:
        """Close every live stream of these users; how many were closed."""
        closed = 0
        playbacks = self._playbacks()
        for viewer in list(self.iter_viewers()) + playbacks:
            if viewer.user in usernames:
                self._close(viewer, reason)
                closed += 1
        return closed

    # -- lineups ---------------------------------------------------------------

    def lineup_state(self) -> dict[str, Any]:
        """Each lineup's counts (None while its view is being built) and
        each user's lineup (None: the whole catalog)."""
        c = self.catalog_counts()
        whole = {"live": c.get("live_streams", 0), "vod": c.get("vod_streams", 0), "series": c.get("series", 0)}
        return {
            "lineups": {name: self.lineups.counts(name) for name in self.lineups.config},
            "users": [{"user": u.username, "lineup": u.lineup,
                       "counts": self.lineups.counts(u.lineup) if u.lineup is not None else whole}
                      for u in self.users],
        }

    # -- everything, for the admin page -----------------------------------------

    def state(self) -> dict[str, Any]:
        now = time.time()
        last = self.last_ingest()
        return {
            "time": now,
            "started": self.started,
            "uptime": now - self.started,
            "relay": self.relay(),
            "media": self.media(),
            "lineups": self.lineup_state(),
            "ingest": {
                "running": self.ingest_running,
                "last": last,
                "history": list(reversed(self.ingests)),
                "cache_age": self.cache_age(),
                "catalog": self.catalog_counts(),
            },
        }

