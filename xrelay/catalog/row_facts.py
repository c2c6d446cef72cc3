"""Each row's name and adult flag, for lineups to match against.

A prepared generation keeps, per list, row offsets, ids and category rows
(:mod:`xrelay.catalog.list_template`), and the live channels' names, but
not the movies' and series' names nor anyone's ``is_adult`` flag.  Lineups
need them while their selection is computed, and only then:
:class:`RowFacts` holds them for one list.

They come from ``GENERATION/api/facts-KEY.txt`` (the names, one a line)
and ``facts-KEY.idx``
(described by ``facts.json``) when the generation has them: written by
:func:`save_facts` (at prepare time, or once afterwards by
:func:`write_generation_facts` in a child process).  Otherwise
:meth:`RowFacts.scan` reads them from the list file itself, a block of
rows at a time (about 0.6 s for a 50k/100k/10k catalog: not for the
reactor's thread).  Everything here blocks.
"""

from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.packed import read_arrays, write_arrays, write_json
from xrelay.catalog.prepare import MANIFEST

__all__ = ["RowFacts", "FactsCollector", "load_facts", "save_facts", "write_generation_facts",
           "FACTS", "STREAM_LISTS"]

#: The index of the facts files in ``GENERATION/api/``.
FACTS = "facts.json"
#: The lists lineups filter.
STREAM_LISTS = ("live_streams", "vod_streams", "series")
#: Rows decoded per json.loads call while scanning a list file.
SCAN_BLOCK = 1000


def is_adult(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


@dataclass
class RowFacts:
    """The names and adult flags of one list's rows, in row order."""

    names: list[str]
    adult: bytearray

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def collect(cls, rows: Iterable[dict[str, Any]]) -> "RowFacts":
        collector = FactsCollector()
        for row in rows:
            collector.add(row)
        return collector.facts

    @classmethod
    def scan(cls, template: ListTemplate) -> "RowFacts":
        """The facts of a list read from its prepared file (blocking)."""
        collector = FactsCollector()
        count = template.count
        if count == 0:
            return collector.facts
        data = template.data
        fd = os.open(template.path, os.O_RDONLY) if data is None else -1  # type: ignore[arg-type]
        try:
            for a in range(0, count, SCAN_BLOCK):
                b = min(count, a + SCAN_BLOCK)
                start, end = template.offsets[a], template.offsets[b] - 1
                raw = data[start:end] if data is not None else os.pread(fd, end - start, start)
                for row in json.loads(b"[" + raw + b"]"):
                    collector.add(row)
        finally:
            if fd >= 0:
                os.close(fd)
        if len(collector.facts) != count:
            raise ValueError(f"{template.path}: {len(collector.facts)} rows, the index says {count}")
        return collector.facts


class FactsCollector:
    """Facts gathered one row at a time (a list being prepared)."""

    def __init__(self) -> None:
        self.facts = RowFacts([], bytearray())

    def add(self, row: dict[str, Any]) -> None:
        name = row.get("name")
        self.facts.names.append(name if isinstance(name, str) else "")
        self.facts.adult.append(1 if is_adult(row.get("is_adult")) else 0)


def _list_identity(manifest: dict[str, Any], key: str) -> list[Any]:
    entry = manifest["lists"][key]
    return [entry["data"], entry["size"], entry["count"]]


def save_facts(api: Path, facts: dict[str, RowFacts]) -> None:
    """Write *facts* (list key -> facts) beside a prepared generation's
    files, then ``facts.json`` naming the lists they were read from."""
    with open(api / MANIFEST, "rb") as f:
        manifest = json.loads(f.read())
    index: dict[str, Any] = {}
    for key, value in facts.items():
        table = write_arrays(api / f"facts-{key}.idx", {"adult": array("B", value.adult)})
        with open(api / f"facts-{key}.txt.tmp", "wb") as f:  # read back in two C calls, not one per name
            f.write("\n".join(name.replace("\n", " ") for name in value.names).encode())
        os.replace(api / f"facts-{key}.txt.tmp", api / f"facts-{key}.txt")
        index[key] = {"list": _list_identity(manifest, key), "arrays": table}
    write_json(api / FACTS, index)


def load_facts(api: Path, manifest: dict[str, Any], key: str) -> RowFacts | None:
    """The saved facts of list *key*, or None when there are none for this
    very list (another generation's, or never written)."""
    try:
        with open(api / FACTS, "rb") as f:
            entry = json.loads(f.read())[key]
        if entry["list"] != _list_identity(manifest, key):
            return None
        adult = read_arrays(api / f"facts-{key}.idx", entry["arrays"])["adult"]
        with open(api / f"facts-{key}.txt", "rb") as f:
            names = _lines(f.read().decode()) if len(adult) else []
        if len(names) != len(adult) or len(names) != manifest["lists"][key]["count"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return RowFacts(names, bytearray(adult))


def _lines(text: str, pieces: int = 16) -> list[str]:
    """``text.split("\\n")`` in a few pieces (a few ms of GIL each)."""
    out: list[str] = []
    step = max(1, len(text) // pieces)
    start = 0
    while (cut := text.find("\n", start + step)) >= 0:
        out.extend(text[start:cut].split("\n"))
        start = cut + 1
    out.extend(text[start:].split("\n"))
    return out


def write_generation_facts(generation: str) -> None:
    """Scan a prepared generation's stream lists and save their facts (for
    a child process: :func:`xrelay.catalog.prepare.run_in_child`)."""
    api = Path(generation) / "api"
    with open(api / MANIFEST, "rb") as f:
        manifest = json.loads(f.read())
    facts = {key: RowFacts.scan(ListTemplate.load(api, manifest["lists"][key])) for key in STREAM_LISTS}
    save_facts(api, facts)
