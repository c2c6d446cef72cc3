"""How long lineup selections take on the benchmark catalog.

Prepares a generation of the demo catalog (50k live, 100k movies, 10k
series by default; ``--live`` etc. to change) in a temporary directory,
then times: the row facts (scanned from the list files, then read back
once saved), and :func:`xrelay.catalog.selection.compute_selections` for
four lineups (everything, a country subset with favourites and renames, a
kids' lineup extending it, a 400-channel tuner lineup), alone and together,
with stable numbers kept in a file.

    python bench/lineup_selections.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from big_catalog import add_catalog_options
from xrelay.catalog import rows
from xrelay.catalog.generation import load_generation
from xrelay.core.lineups import parse_lineups
from xrelay.catalog.numbering import ChannelNumbers
from xrelay.catalog.prepare import prepare
from xrelay.catalog.row_facts import STREAM_LISTS, RowFacts, write_generation_facts
from xrelay.catalog.selection import GenerationFacts, compute_selections
from xrelay.demo.catalog import Context, DemoCatalog

LINEUPS: dict[str, Any] = {
    "all": {},
    "country": {"adult": "hide", "live": {"include_categories": ["UK*", "US*"], "favourites": ["re:news 1\\d$"]},
                "vod": {"include_streams": ["re:alpha", "The Nova*"]}, "series": {"exclude_categories": ["*Sport*"]},
                "rename": [{"pattern": "^(UK|US): ", "replace": ""}]},
    "kids": {"extends": "country", "live": {"include_categories": ["*Kids*"], "exclude_streams": ["re:harbour"]},
             "vod": {"exclude_streams": ["*zürich*"]}, "series": {"enabled": False}},
    "tuner": {"adult": "hide", "live": {"include_streams": [f"id:{i}" for i in range(1, 4001, 10)]},
              "vod": {"enabled": False}, "series": {"enabled": False}, "number_from": 100},
}


def build(directory: Path, args: argparse.Namespace) -> None:
    demo = DemoCatalog(live=args.live, vod=args.vod, series=args.series, quirky=True)
    ctx = Context("http://provider.invalid", "u", "p")
    (directory / "guide.xml").write_text('<?xml version="1.0"?>\n<tv></tv>\n')
    prepare({
        "generated_at": 1, "account": {}, "counts": {}, "episodes": [],
        **{f"{k}_categories": rows.normalise_categories(demo.categories(k)) for k in ("live", "vod", "series")},
        "live_streams": rows.normalise_live(demo.list_rows("live", ctx)),
        "vod_streams": rows.normalise_vod(demo.list_rows("vod", ctx)),
        "series": rows.normalise_series(demo.list_rows("series", ctx)),
    }, directory)


def timed(label: str, fn: Any, *args: Any) -> Any:
    started = time.perf_counter()
    out = fn(*args)
    print(f"{label:<44} {time.perf_counter() - started:7.3f} s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_catalog_options(ap)
    args = ap.parse_args()
    lineups = parse_lineups(LINEUPS, [], "bench")
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "generation"
        gen.mkdir()
        timed("prepare the generation", build, gen, args)
        generation = timed("load_generation", load_generation, gen)
        for key in STREAM_LISTS:
            timed(f"scan facts of {key}", RowFacts.scan, generation.lists[key])
        timed("write the facts (what a child would do)", write_generation_facts, str(gen))
        facts = GenerationFacts(generation)
        timed("read the saved facts", lambda: [facts(k) for k in STREAM_LISTS])
        clock = Clock()
        clock.advance(1_700_000_000)
        numbers = ChannelNumbers(Path(tmp) / "data", clock)
        numbers.load()
        for run in ("first numbering", "numbers kept"):
            for name, lineup in lineups.items():
                chain = {n: lineups[n] for n in (lineup.extends, name) if n is not None}
                timed(f"{run}: {'+'.join(chain)}", compute_selections, generation, chain, numbers, facts)
            selections = timed(f"{run}: all four", compute_selections, generation, lineups, numbers, facts)
            timed(f"{run}: save the numbers", numbers.save)
            clock.advance(6 * 3600)
        for name, selection in selections.items():
            print(name, selection.counts())


if __name__ == "__main__":
    main()
