"""Which series an episode belongs to, so that a lineup can allow or refuse it.

A lineup selects series; the episodes a player plays (``/series/U/P/ID.EXT``)
carry only their own id.  Two sources tell an episode's series:

* the series' details, once a player opened it: exact, kept by
  :class:`~xrelay.catalog.episodes.EpisodeMap` and asked at play time;
* the provider's playlist, whose episode entries are named
  ``SERIES S01 E02`` in the group of the series' category:
  :func:`playlist_series` reads the series name off the episode's name and
  takes the series of that name (in a category of that group when several
  share it).  An episode it cannot place belongs to no series.  A lineup's
  view lists the episodes so placed in its series (its get.php playlist).

An episode of no known series is refused to a lineup that does not hold
every series (:meth:`xrelay.catalog.lineup_view.LineupView.allows_episode`).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

__all__ = ["series_name_of", "playlist_series"]

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
