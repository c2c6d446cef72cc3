"""Building the lineups' views of a generation (in a child process).

:func:`build_views` is what the daemon runs, in a fresh child process
(:func:`xrelay.catalog.prepare.run_in_child`), after each generation is
loaded and after each configuration reload: it applies every lineup to the
generation (:func:`~xrelay.catalog.selection.compute_selections`, with the
stable channel numbers of the data directory), then writes, for each lineup
whose view is not there yet, its directory (:mod:`xrelay.catalog.lineup_view`):

* each list with the lineup's rows, in its order, ``num`` set to the
  lineup's channel number, names as its ``rename`` rules show them (a list
  the lineup leaves whole and in order is the generation's own);
* get.php's templates rendered from those rows (``tvg-chno`` is the number)
  and from the episodes of the series it holds;
* panel_api.php's categories and channels;
* the guide of its channels (:mod:`xrelay.catalog.guide_filter`);
* the allowed ids and the numbers, as arrays.

Seconds of work for a 50k/100k/10k catalog, none of it on the daemon's
reactor thread nor under its GIL.  Each view is written under a temporary
name and renamed into place whole.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from array import array
from pathlib import Path
from typing import Any, Iterator, Mapping
from xml.parsers import expat

from twisted.logger import Logger

from xrelay.catalog.episode_series import playlist_series
from xrelay.catalog.generation import Generation, load_generation
from xrelay.catalog.guide_filter import GuideElements, index_elements, write_guide
from xrelay.catalog.list_template import ListTemplate, dumps
from xrelay.catalog.lineup_view import (VIEW_FORMAT, VIEW_MANIFEST, VIEWS, list_identity, load_view,
                                        view_dirname)
from xrelay.catalog.lists import ID_KEYS, panel_channel
from xrelay.catalog.m3u_templates import STYLES, write_templates
from xrelay.catalog.numbering import FILE_NAME as NUMBERS_FILE, ChannelNumbers
from xrelay.catalog.packed import write_json, write_arrays
from xrelay.catalog.row_facts import STREAM_LISTS, RowFacts, load_facts, save_facts
from xrelay.catalog.store import fsync_dir
from xrelay.catalog.selection import LISTS, GenerationFacts, KindSelection, Selection, compute_selections
from xrelay.core.lineups import LineupConfig

__all__ = ["build_views", "build_views_niced", "find_views", "WallClock", "NICENESS"]

log = Logger()

#: What get.php's templates read of each row (the rest is left out of memory).
_LIVE_FIELDS = ("stream_id", "name", "num", "tv_archive", "tv_archive_duration", "epg_channel_id",
                "stream_icon", "category_id")
_VOD_FIELDS = ("stream_id", "name", "container_extension", "stream_icon", "category_id")
#: playlist kind of each list kind
_PLAYLIST_KIND = {"live": "live", "vod": "movie", "series": "series"}
#: What the last build of a generation's views left, beside them.
INDEX = "index.json"
#: How much lower the build's child process runs than the daemon: on a box with
#: two cores, the reactor's thread gets the CPU first while views are built.
NICENESS = 10


class WallClock:
    """The clock channel numbers are retired by, in a process without a reactor."""

    def seconds(self) -> float:
        return time.time()


class _Rows:
    """Rows handed to :meth:`ListTemplate.build` already encoded (read once)."""

    def __init__(self, pairs: Iterator[tuple[dict[str, Any], bytes]]) -> None:
        self._pairs = pairs

    def pairs(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        return self._pairs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (row for row, _ in self._pairs)


class _Catalog:
    """What every lineup of one build reads of the generation, read once."""

    def __init__(self, generation: Generation, facts: GenerationFacts) -> None:
        self.generation = generation
        self.facts = facts
        self._data: dict[str, bytes] = {}
        self._categories: dict[str, list[dict[str, Any]]] = {}
        self._guide: GuideElements | None | bool = False
        self._episodes: list[dict[str, Any]] | None = None
        self._series_of: dict[int, int] | None = None

    def data(self, key: str) -> bytes:
        """A list file's bytes (one list at a time is kept)."""
        if key not in self._data:
            self._data.clear()
            template = self.generation.lists[key]
            if template.data is not None:
                self._data[key] = template.data
            else:
                with open(template.path, "rb") as f:  # type: ignore[arg-type]
                    self._data[key] = f.read()
        return self._data[key]

    def rows(self, key: str, indexes: array) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Rows *indexes* of list *key*, decoded, with their bytes."""
        template = self.generation.lists[key]
        data, offsets = self.data(key), template.offsets
        for r in indexes:
            raw = data[offsets[r]:offsets[r + 1] - 1]
            yield json.loads(raw), raw

    def categories(self, key: str) -> list[dict[str, Any]]:
        """A category list's rows."""
        if key not in self._categories:
            template = self.generation.lists.get(key)
            self._categories[key] = [template.row(i) for i in range(template.count)] if template else []
        return self._categories[key]

    def guide(self) -> GuideElements | None:
        if self._guide is False:
            path = self.generation.path / "guide.xml"
            try:
                self._guide = index_elements(path)
            except (OSError, expat.ExpatError) as e:
                log.warn("lineups: cannot index the guide ({error}); lineup guides will be empty",
                         error=str(e))
                self._guide = None
        return self._guide if isinstance(self._guide, GuideElements) else None

    def episodes(self) -> list[dict[str, Any]]:
        """The playlist's episodes (id, name, logo, group, ext)."""
        if self._episodes is None:
            entry = self.generation.manifest.get("episode_rows")
            self._episodes = []
            if entry is not None:
                template = ListTemplate.load(self.generation.path / "api", entry)
                self._episodes = [template.row(i) for i in range(template.count)]
        return self._episodes

    def series_of(self) -> dict[int, int]:
        """Episode id -> series id, as the playlist's names tell."""
        if self._series_of is None:
            template = self.generation.lists["series"]
            ids = array("q", bytes(8 * template.count))
            for ident, row in zip(template.sorted_ids, template.rows_by_id):
                ids[row] = ident
            categories = [[] for _ in range(template.count)]  # type: list[list[int]]
            for cid, rows in template.by_category.items():
                for r in rows:
                    categories[r].append(cid)
            names = {int(c["category_id"]): str(c.get("category_name") or "")
                     for c in self.categories("series_categories") if str(c.get("category_id", "")).isdigit()}
            self._series_of = playlist_series(
                ((int(e["id"]), str(e.get("name") or ""), str(e.get("group") or "")) for e in self.episodes()),
                self.facts("series").names, ids, categories, names)
        return self._series_of


class _SavingFacts(GenerationFacts):
    """Row facts read from the generation's saved ones, or scanned and then saved."""

    def __init__(self, generation: Generation) -> None:
        super().__init__(generation)
        self.scanned = False

    def __call__(self, key: str) -> RowFacts:
        if key not in self._facts:
            api = self.generation.path / "api"
            facts = load_facts(api, self.generation.manifest, key)
            if facts is None:
                facts = RowFacts.scan(self.generation.lists[key])
                self.scanned = True
            self._facts[key] = facts
        return self._facts[key]

    def save(self) -> None:
        if self.scanned:
            save_facts(self.generation.path / "api", {key: self(key) for key in STREAM_LISTS})


def build_views(generation: str, lineups: Mapping[str, LineupConfig], data_dir: str,
                keep: list[str]) -> dict[str, Any]:
    """Every lineup's view of *generation*, written where missing; channel
    numbers kept in *data_dir*.  Other views of the generation are removed,
    but those in *keep* (being served).  Returns ``views`` (lineup -> its
    directory), how many were ``written``, the ``seconds`` taken and this
    process's ``peak_mb``.  Blocking: run in a child process."""
    started = time.monotonic()
    gen = load_generation(Path(generation))
    numbers = ChannelNumbers(Path(data_dir), WallClock())
    numbers.load()
    facts = _SavingFacts(gen)
    selections = compute_selections(gen, lineups, numbers, facts)
    numbers.save()
    facts.save()
    root = gen.path / "api" / VIEWS
    root.mkdir(exist_ok=True)
    catalog = _Catalog(gen, facts)
    out: dict[str, str] = {}
    written = 0
    for name, selection in selections.items():
        directory = root / view_dirname(lineups[name], lineups, numbers)
        try:
            load_view(directory, gen)
        except (OSError, ValueError):
            shutil.rmtree(directory, ignore_errors=True)
            _write_view(directory, gen, lineups[name], selection, catalog)
            written += 1
        out[name] = str(directory)
    kept = set(out.values()) | set(keep)
    for old in root.iterdir():
        if str(old) not in kept and old.name != INDEX:
            shutil.rmtree(old, ignore_errors=True)
    write_json(root / INDEX, {"numbers": _stat(numbers.path), "views": {
        name: {"fingerprint": lineups[name].fingerprint(lineups), "dir": Path(d).name} for name, d in out.items()}})
    return {"views": out, "written": written, "seconds": round(time.monotonic() - started, 2),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def build_views_niced(generation: str, lineups: Mapping[str, LineupConfig], data_dir: str,
                      keep: list[str]) -> dict[str, Any]:
    """:func:`build_views` at a lower priority (for the child process only:
    the niceness stays with the process)."""
    os.nice(NICENESS)
    return build_views(generation, lineups, data_dir, keep)


def find_views(generation: Generation, lineups: Mapping[str, LineupConfig],
               data_dir: Path) -> dict[str, str] | None:
    """The directories of every lineup's view of *generation* when the last
    build left them all there for the current rules, and the channel numbers
    have not changed since, else None (blocking, but cheap: a small index
    and a ``stat``, never the numbers themselves)."""
    root = generation.path / "api" / VIEWS
    try:
        with open(root / INDEX, "rb") as f:
            index = json.loads(f.read())
        if index["numbers"] != _stat(data_dir / NUMBERS_FILE):
            return None
        out = {}
        for name, lineup in lineups.items():
            entry = index["views"][name]
            directory = root / entry["dir"]
            if entry["fingerprint"] != lineup.fingerprint(lineups) or not (directory / VIEW_MANIFEST).is_file():
                return None
            out[name] = str(directory)
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stat(path: Path) -> list[int] | None:
    """What tells a file changed: its modification time and size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _write_view(directory: Path, gen: Generation, lineup: LineupConfig, selection: Selection,
                catalog: _Catalog) -> None:
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest: dict[str, Any] = {"format": VIEW_FORMAT, "lineup": lineup.name, "lists_from": list_identity(gen),
                                "lists": {}, "playlists": [], "panel": "panel.json", "index": "view.idx"}
    arrays: dict[str, array] = {}
    panel_categories: dict[str, list[dict[str, Any]]] = {}
    live = _Extras()
    for kind in ("live", "vod", "series"):
        stream_key, category_key = LISTS[kind]
        ks = selection.kinds[kind]
        arrays[kind] = array("q", ks.ids)
        categories = catalog.categories(category_key)
        listed = [categories[i] for i in ks.categories]
        panel_categories[_PLAYLIST_KIND[kind]] = listed
        if len(listed) == len(categories):
            manifest["lists"][category_key] = "base"
        else:
            template = ListTemplate.build(listed, tmp / f"{category_key}.json")
            manifest["lists"][category_key] = template.save_index(tmp / f"{category_key}.idx")
        whole = kind != "live" and ks.complete and not lineup.rename and _in_order(ks)
        if whole:
            manifest["lists"][stream_key] = "base"
            if kind == "vod":
                manifest["playlists"] += _base_playlists(gen, "movie")
            continue
        extras = live if kind == "live" else _Extras()
        rows = _view_rows(catalog, stream_key, kind, lineup, ks, extras)
        template = ListTemplate.build(_Rows(rows), tmp / f"{stream_key}.json", ID_KEYS[stream_key])
        manifest["lists"][stream_key] = template.save_index(tmp / f"{stream_key}.idx")
        if kind != "series":
            part = {stream_key: extras.slim, category_key: categories}
            manifest["playlists"] += _templates(part, tmp, _PLAYLIST_KIND[kind])
            extras.slim = []
    arrays["numbers"] = array("i", selection.kinds["live"].id_numbers)
    episodes_total = len(catalog.generation.episodes)
    series = selection.kinds["series"]
    if series.complete:
        arrays["episode"] = array("q")
        episode_count = episodes_total
        if lineup.rename:
            manifest["playlists"] += _templates({"episodes": _renamed_episodes(catalog.episodes(), lineup)},
                                                tmp, "series")
        else:
            manifest["playlists"] += _base_playlists(gen, "series")
    else:
        series_of = catalog.series_of() if len(series.ids) else {}
        allowed = array("q", sorted(e for e, s in series_of.items() if series.allows(s)))
        arrays["episode"] = allowed
        episode_count = len(allowed)
        kept = set(allowed)
        manifest["playlists"] += _templates(
            {"episodes": _renamed_episodes([e for e in catalog.episodes() if e.get("id") in kept], lineup)},
            tmp, "series")
    manifest["guide"] = _guide(tmp, catalog, selection.kinds["live"], live.epg_ids)
    with open(tmp / "panel.json", "wb") as f:
        f.write(b'"categories":' + dumps(panel_categories) + b',"available_channels":{')
        f.write(b",".join(live.channels))
        f.write(b"}")
    write_json(tmp / "channels.json", live.tuner)
    manifest["arrays"] = write_arrays(tmp / "view.idx", arrays)
    manifest["complete"] = {"live": selection.kinds["live"].complete, "vod": selection.kinds["vod"].complete,
                            "series": series.complete, "episode": series.complete}
    manifest["counts"] = {**selection.counts(), "episodes": episode_count}
    write_json(tmp / VIEW_MANIFEST, manifest)
    for name in os.listdir(tmp):  # on disk before it is named: a power cut leaves no half view
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)
    os.rename(tmp, directory)
    fsync_dir(directory.parent)


def _in_order(ks: KindSelection) -> bool:
    """Are the rows served the list's own, in its order?"""
    return len(ks.rows) == ks.total and all(r == i for i, r in enumerate(ks.rows))


class _Extras:
    """What the playlists, the panel, the tuner list and the guide read of
    the rows as they go by."""

    def __init__(self) -> None:
        self.slim: list[dict[str, Any]] = []
        #: panel_api's available_channels entries, encoded
        self.channels: list[bytes] = []
        #: [number, id, name, EPG id, logo] per live channel
        self.tuner: list[list[Any]] = []
        self.epg_ids: set[str] = set()


def _view_rows(catalog: _Catalog, key: str, kind: str, lineup: LineupConfig, ks: KindSelection,
               extras: _Extras) -> Iterator[tuple[dict[str, Any], bytes]]:
    """The lineup's rows of list *key*, patched (number, display name) and
    encoded; *extras* gathered meanwhile."""
    fields = _LIVE_FIELDS if kind == "live" else _VOD_FIELDS
    groups = {c.get("category_id"): c.get("category_name", "") for c in catalog.categories(LISTS[kind][1])}
    for i, (row, raw) in enumerate(catalog.rows(key, ks.rows)):
        changed = False
        name = row.get("name")
        if lineup.rename and isinstance(name, str):
            shown = lineup.display_name(name)
            if shown != name:
                row["name"], changed = shown, True
        if kind == "live":
            row["num"], changed = ks.numbers[i], True
            extras.channels.append(dumps(str(row.get("stream_id"))) + b":" + dumps(panel_channel(row, groups)))
            epg = str(row.get("epg_channel_id") or "")
            extras.tuner.append([row["num"], row.get("stream_id"), row.get("name") or "", epg,
                                 row.get("stream_icon") or ""])
            if epg:
                extras.epg_ids.add(epg)
        if kind != "series":
            extras.slim.append({f: row.get(f) for f in fields})
        yield row, dumps(row) if changed else raw


def _renamed_episodes(episodes: list[dict[str, Any]], lineup: LineupConfig) -> list[dict[str, Any]]:
    if not lineup.rename:
        return episodes
    return [{**e, "name": lineup.display_name(str(e.get("name") or ""))} for e in episodes]


def _templates(part: dict[str, Any], directory: Path, kind: str) -> list[dict[str, Any]]:
    """get.php's templates of one kind (the rows are read once per style)."""
    out: list[dict[str, Any]] = []
    for style in STYLES:
        out += write_templates(part, directory, (kind,), (style,)).manifest()
    return out


def _base_playlists(gen: Generation, kind: str) -> list[dict[str, Any]]:
    return [{"style": style, "kind": kind, "base": True} for style in STYLES
            if (style, kind) in gen.playlists.files]


def _guide(directory: Path, catalog: _Catalog, live: KindSelection, epg_ids: set[str]) -> Any:
    """The lineup's guide: the generation's when every channel is in."""
    if live.complete:
        return "base"
    elements = catalog.guide()
    dest = directory / "guide.xml"
    if elements is None:
        dest.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>\n<tv generator-info-name="xrelay"></tv>\n')
        return {"file": dest.name, "size": dest.stat().st_size, "markers": 0}
    size, markers = write_guide(elements, epg_ids, dest)
    return {"file": dest.name, "size": size, "markers": markers}
