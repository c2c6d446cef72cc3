"""What an HDHomeRun device's channels cost on the benchmark catalog.

Prepares a generation of the demo catalog (50k live channels by default;
movies and series kept small, they play no part) in a temporary directory,
then times the numbering of the whole live catalog (what a device without a
lineup serves: run in a thread once per generation), one ``lineup.json``
answer for it (in a thread too), and a tune's lookup by GuideNumber, and
measures the memory the numbered lineup keeps.

    python bench/hdhr_lineup.py [--live 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from big_catalog import add_catalog_options
from lineup_selections import build
from xrelay.catalog.generation import load_generation
from xrelay.hdhr import answers
from xrelay.hdhr.channels import catalog_lineup


def timed(label: str, fn: Any, *args: Any, repeat: int = 1) -> Any:
    started = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
    print(f"{label:<52} {(time.perf_counter() - started) / repeat * 1000:9.2f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_catalog_options(ap)
    ap.set_defaults(vod=100, series=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "generation"
        gen.mkdir()
        build(gen, args)
        generation = load_generation(gen)
        lineup = timed("number the whole live catalog (thread)", catalog_lineup, generation)
        tracemalloc.start()  # the rows read are freed: the lineup keeps its arrays only
        again = catalog_lineup(generation)
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del again
        print(f"{'memory the numbered lineup keeps (peak)':<52} {kept / 1e6:9.2f} MB"
              f" ({peak / 1e6:.1f} MB, {len(lineup)} channels)")
        base = "http://192.168.1.10:8080/hdhr/key"

        def answer() -> bytes:
            return answers.encode(answers.lineup([(c.number, c.name) for c in lineup], base,
                                                 device_name="bench"))

        body = timed("lineup.json for the whole catalog (thread)", answer)
        print(f"{'lineup.json size':<52} {len(body) / 1e6:9.2f} MB")
        numbers = [c.number for c in lineup][:: max(1, len(lineup) // 1000)]
        timed(f"find {len(numbers)} GuideNumbers (tunes)", lambda: [lineup.find(n) for n in numbers])


if __name__ == "__main__":
    main()
