"""``xrelay lineup show``: a lineup applied to the current cache, as text.

A dry run while editing the configuration: the lineup's counts and its
first rows (live channels with the numbers the daemon gives them), computed
from the cached generation and the channel numbers in the data directory,
without writing anything there.  Blocking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

from xrelay.catalog.generation import Generation
from xrelay.catalog.lineup_build import WallClock
from xrelay.catalog.numbering import ChannelNumbers
from xrelay.catalog.selection import LISTS, GenerationFacts, compute_selections
from xrelay.core.lineups import LineupConfig

__all__ = ["preview"]

_TITLES = {"live": "live channels", "vod": "movies", "series": "series"}


def preview(generation: Generation, lineups: Mapping[str, LineupConfig], name: str, data_dir: Path,
            rows: int = 20) -> Iterator[str]:
    """The lines ``xrelay lineup show NAME`` prints."""
    lineup = lineups[name]
    numbers = ChannelNumbers(data_dir, WallClock())
    numbers.load(set_aside=False)
    facts = GenerationFacts(generation)
    wanted = {n: lineups[n] for n in [c.name for c in lineup.chain(lineups)]}
    selection = compute_selections(generation, wanted, numbers, facts)[name]
    counts = selection.counts()
    based = f" (narrowing {lineup.extends})" if lineup.extends else ""
    yield (f"lineup {name}{based} in {generation.path.name}: "
           + ", ".join(f"{counts[k]} {_TITLES[k]} in {counts[f'{k}_categories']} categories"
                       for k in ("live", "vod", "series")))
    for kind in ("live", "vod", "series"):
        ks = selection.kinds[kind]
        stream_key, category_key = LISTS[kind]
        template = generation.lists[stream_key]
        categories = generation.lists.get(category_key)
        groups = {}
        if categories is not None:
            for i in range(categories.count):
                row = categories.row(i)
                groups[str(row.get("category_id"))] = str(row.get("category_name") or "")
        shown = ks.rows[:rows]
        yield f"{_TITLES[kind]}: {len(ks.ids)} of {ks.total}" + (f", the first {len(shown)}:" if len(shown) else "")
        for i, r in enumerate(shown):
            row = template.row(r)
            label = lineup.display_name(str(row.get("name") or ""))
            group = groups.get(str(row.get("category_id")), "")
            ident = row.get("series_id" if kind == "series" else "stream_id")
            number = f"{ks.numbers[i]:>6}  " if kind == "live" else ""
            yield f"  {number}{label}  [{group}]  id {ident}"
