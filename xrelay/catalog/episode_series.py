"""Which series an episode belongs to, so that a lineup can allow or refuse it.

A lineup selects series; the episodes a player plays (``/series/U/P/ID.EXT``)
carry only their own id.  Two sources tell an episode's series:

* the cached details (``GENERATION/details/series/ID.json``, the
  ``get_series_info`` answers fetched when a player opened a series): exact,
  and there for every series a user of a lineup could browse to;
* the provider's playlist, whose episode entries are named
  ``SERIES S01 E02`` in the group of the series' category:
  :func:`playlist_series` reads the series name off the episode's name and
  takes the series of that name (in a category of that group when several
  share it).  An episode it cannot place belongs to no series.

An episode of no known series is refused to a lineup that does not hold
every series (:meth:`xrelay.catalog.lineup_view.LineupView.allows_episode`).
:class:`DetailsEpisodes` keeps the first source up to date in the daemon.
Reading files blocks: the daemon does it in a thread.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

__all__ = ["series_name_of", "playlist_series", "episodes_in_details", "DetailsEpisodes"]

#: ``Name S01E02``, ``Name - S1 E2``, ``Name S01.E02 Title``...
_EPISODE = re.compile(r"^(?P<series>.*?)[\s._:|-]*\bS\d{1,4}\s*[._ -]?\s*E\d{1,5}(?!\d)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def _norm(name: str) -> str:
    return _SPACES.sub(" ", name).strip().casefold()


def series_name_of(episode_name: str) -> str | None:
    """The series name in an episode's playlist name, normalised, or None."""
    match = _EPISODE.match(episode_name or "")
    if match is None:
        return None
    name = _norm(match.group("series"))
    return name or None


def playlist_series(episodes: Iterable[tuple[int, str, str]], series_names: Sequence[str],
                    series_ids: Sequence[int], series_categories: Sequence[Sequence[int]],
                    category_names: Mapping[int, str]) -> dict[int, int]:
    """Episode id -> series id, for the playlist's *episodes* (id, name,
    group) whose series can be told: the one series of that name, or the
    one of that name in a category named like the episode's group."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(series_names):
        by_name.setdefault(_norm(name), []).append(i)
    group_of = {cid: _norm(name) for cid, name in category_names.items()}
    out: dict[int, int] = {}
    for ident, name, group in episodes:
        key = series_name_of(name)
        rows = by_name.get(key) if key is not None else None
        if not rows:
            continue
        if len(rows) > 1:
            wanted = _norm(group)
            rows = [r for r in rows if any(group_of.get(c) == wanted for c in series_categories[r])]
            if len(rows) != 1:
                continue
        out[ident] = series_ids[rows[0]]
    return out


def episodes_in_details(directory: Path | str) -> dict[int, int]:
    """Episode id -> series id, read from cached ``get_series_info`` answers
    (``details/series/SERIES_ID.json``; blocking)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext != "json" or not stem.isdigit():
            continue
        try:
            with open(os.path.join(directory, name), "rb") as f:
                detail = json.loads(f.read())
        except (OSError, ValueError):
            continue
        for ident in _episode_ids(detail):
            out[ident] = int(stem)
    return out


def _episode_ids(detail: Any) -> Iterable[int]:
    episodes = detail.get("episodes") if isinstance(detail, dict) else None
    groups = episodes.values() if isinstance(episodes, dict) else episodes if isinstance(episodes, list) else ()
    for group in groups:
        for episode in group if isinstance(group, list) else ():
            try:
                yield int(episode.get("id"))
            except (TypeError, ValueError, AttributeError):
                continue


#: Runs a blocking call off the reactor's thread (``threads.deferToThread``).
InThread = Callable[..., Awaitable[Any]]


class DetailsEpisodes:
    """The episode -> series map of a generation's cached details, read
    again (in a thread) when asked about an episode it does not know, at
    most once per *every* seconds."""

    def __init__(self, clock: Any, in_thread: InThread, every: float = 10.0) -> None:
        self.clock = clock
        self.in_thread = in_thread
        self.every = every
        self.generation: Path | None = None
        self.series_of: dict[int, int] = {}
        self._read_at = float("-inf")

    def learn(self, generation: Path, series: int, detail: Any) -> None:
        """A series' details just fetched: its episodes are known at once."""
        if generation != self.generation:
            self.generation, self.series_of, self._read_at = generation, {}, float("-inf")
        for ident in _episode_ids(detail):
            self.series_of[ident] = series

    def known(self, generation: Path | None, episode: int) -> int | None:
        """The series of *episode* as last read (no disk access)."""
        return self.series_of.get(episode) if generation == self.generation else None

    async def lookup(self, generation: Path | None, episode: int) -> int | None:
        """The series of *episode*, reading the details again if needed."""
        if generation is None:
            return None
        if generation != self.generation:
            self.generation, self.series_of, self._read_at = generation, {}, float("-inf")
        series = self.series_of.get(episode)
        now = self.clock.seconds()
        if series is None and now - self._read_at >= self.every:
            self._read_at = now
            found = await self.in_thread(episodes_in_details, generation / "details" / "series")
            if generation == self.generation:
                self.series_of.update(found)
            series = found.get(episode)
        return series
