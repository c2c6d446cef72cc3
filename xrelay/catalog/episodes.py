"""Which series each episode belongs to, kept across ingests.

Players remember episode URLs for a long time (TiviMate and Kodi keep
series details; media-server libraries of ``.strm`` files keep episode URLs
for months), longer than one generation lives.  :class:`EpisodeMap` keeps
every episode id xrelay has seen in a ``get_series_info`` answer, with its
series id, in the data directory:

``episode-series.bin``
    the map as of the last compaction: a header, then the episode ids
    (sorted) and their series ids, as two flat arrays of 64-bit ints;
``episode-series.log``
    what was learnt since, one ``EPISODE SERIES`` line per pair, appended
    as details arrive (a line cut by a crash is ignored).

:meth:`EpisodeMap.compact` merges the log into the arrays (after each
catalog reload).  A data directory without the files is filled once from
the cached ``details/series/*.json`` of its generations.  The daemon holds
the arrays (16 bytes per episode) and the pairs learnt since the last
compaction, never a Python object per episode.

Every method but :meth:`series_of` blocks on the disk: call them in a thread.
"""

from __future__ import annotations

import json
import threading
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Any, Iterable

from twisted.logger import Logger

from xrelay.catalog.rows import as_id
from xrelay.catalog.store import write_atomic

__all__ = ["EpisodeMap", "episode_ids_of"]

log = Logger()

MAP_FILE = "episode-series.bin"
LOG_FILE = "episode-series.log"
_MAGIC = b"XREPS001"


def episode_ids_of(detail: Any) -> list[int]:
    """The episode ids of a (normalised) get_series_info answer."""
    episodes = detail.get("episodes") if isinstance(detail, dict) else None
    groups = episodes.values() if isinstance(episodes, dict) else episodes if isinstance(episodes, list) else ()
    ids = []
    for group in groups:
        for episode in group if isinstance(group, list) else ():
            ident = as_id(episode.get("id")) if isinstance(episode, dict) else None
            if ident is not None:
                ids.append(ident)
    return ids


class EpisodeMap:
    """Episode id -> series id, in the data directory (see the module docs)."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir)
        self._episodes = array("q")
        self._series = array("q")
        #: pairs learnt since the last compaction (also in the log)
        self._recent: dict[int, int] = {}
        self._lock = threading.Lock()
        self.loaded = False

    def __len__(self) -> int:
        return len(self._episodes) + sum(1 for e in list(self._recent) if not self._in_base(e))

    # -- lookups (any thread) -----------------------------------------------------------

    def series_of(self, episode: int) -> int | None:
        """The series of *episode*, if it was ever seen in a series' details."""
        found = self._recent.get(episode)
        if found is not None:
            return found
        episodes, series = self._episodes, self._series
        i = bisect_left(episodes, episode)
        return series[i] if i < len(episodes) and episodes[i] == episode else None

    def _in_base(self, episode: int) -> bool:
        i = bisect_left(self._episodes, episode)
        return i < len(self._episodes) and self._episodes[i] == episode

    # -- loading and learning (blocking) --------------------------------------------------

    def load(self) -> None:
        """Read the map and the log; fill a missing map from cached details."""
        base = self.root / MAP_FILE
        with self._lock:
            if base.exists() or (self.root / LOG_FILE).exists():
                self._episodes, self._series = _read_map(base)
                self._recent = _read_log(self.root / LOG_FILE)
            else:
                self._recent = {}
                for series, episodes in _cached_details(self.root):
                    for episode in episodes:
                        self._recent[episode] = series
                if self._recent:
                    log.info("{count} episodes of cached series details remembered",
                             count=len(self._recent))
            self.loaded = True
        if not base.exists() and self._recent:
            self.compact()

    def record(self, series: int, episodes: Iterable[int]) -> None:
        """*episodes* belong to *series* (from its details)."""
        new = [e for e in episodes if self.series_of(e) != series]
        if not new:
            return
        lines = "".join(f"{e} {series}\n" for e in new).encode()
        with self._lock:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                with open(self.root / LOG_FILE, "ab") as f:
                    f.write(lines)
            except OSError as e:
                log.warn("cannot remember the episodes of series {series}: {error}", series=series,
                         error=e.strerror)
            for episode in new:
                self._recent[episode] = series

    def compact(self) -> None:
        """Merge what was learnt into the map file and empty the log."""
        with self._lock:
            if not self._recent and (self.root / MAP_FILE).exists():
                return
            merged = dict(zip(self._episodes, self._series))
            merged.update(self._recent)
            episodes = array("q", sorted(merged))
            series = array("q", (merged[e] for e in episodes))
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                write_atomic(self.root / MAP_FILE, _MAGIC + episodes.tobytes() + series.tobytes())
                with open(self.root / LOG_FILE, "wb"):
                    pass
            except OSError as e:
                log.warn("cannot write the episode map: {error}", error=e.strerror)
                return
            self._episodes, self._series, self._recent = episodes, series, {}


def _read_map(path: Path) -> tuple[array, array]:
    episodes, series = array("q"), array("q")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return episodes, series
    if not data.startswith(_MAGIC) or (len(data) - len(_MAGIC)) % 16:
        log.warn("{path}: not an episode map; starting afresh", path=str(path))
        return episodes, series
    both = array("q")
    both.frombytes(data[len(_MAGIC):])
    half = len(both) // 2
    return both[:half], both[half:]


def _read_log(path: Path) -> dict[int, int]:
    pairs: dict[int, int] = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and line.endswith(b"\n") and parts[0].isdigit() and parts[1].isdigit():
                    pairs[int(parts[0])] = int(parts[1])
    except FileNotFoundError:
        pass
    return pairs


def _cached_details(root: Path) -> Iterable[tuple[int, list[int]]]:
    """``(series, episode ids)`` from every generation's cached series details."""
    for path in sorted((root / "generations").glob("*/details/series/*.json")):
        series = as_id(path.stem)
        if series is None:
            continue
        try:
            detail = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        yield series, episode_ids_of(detail)
