"""What the daemon serves, written beside each generation's bundle.

The ingest hands each list, as soon as it has it, to a :class:`Preparer`
on its staging directory (in the ingest's child process), before the
generation is committed; :func:`prepare` does the same for a whole
bundle.  So the daemon never holds the catalog as Python objects: it loads
a manifest and flat arrays (:mod:`xrelay.catalog.generation`), in milliseconds,
with a few bytes per row, and a restart serves at once.

``GENERATION/api/``::

    manifest.json          written last: format, account, counts, and what
                           each file below holds (sizes, array tables)
    KEY.json, KEY.idx      each player_api list (@XRELAY_BASE@ left in) and
                           its index: row offsets, markers, ids, categories
    live.idx, live.json    per live channel, in list order: catch-up flag
                           and days; name and EPG channel id
    episodes.idx           the episode ids, sorted
    episode_rows.json/.idx the playlist's episodes (id, name, group...), for lineups
    assets.idx             the provider images the generation names (what /asset/ serves)
    STYLE-KIND.m3u         get.php templates
    panel.json             panel_api.php's categories and available_channels
    epg-T.idx, epg-T-channels.json, epg-texts-T.bin   the EPG index built at T

A generation written by an older xrelay has no manifest: the daemon runs
:func:`prepare_existing` on it in a child process (:func:`run_in_child`).
Everything here blocks: run it in a thread or a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from array import array
from pathlib import Path
from typing import Any, Iterable
from xml.parsers import expat

from twisted.logger import Logger

from xrelay.catalog.assets import AssetNames
from xrelay.catalog.lists import ID_KEYS, LIST_KEYS, panel_channel
from xrelay.catalog.m3u_templates import write_templates
from xrelay.catalog.rows import as_id, encode_row as _dumps
from xrelay.catalog.epg import EpgIndex, index_guide
from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.packed import write_arrays, write_json
from xrelay.catalog.m3u import render_m3u
from xrelay.core.scrub import BASE_MARKER, PASS_MARKER, USER_MARKER
from xrelay.catalog.store import fsync_dir, write_atomic

__all__ = ["Preparer", "BundleWriter", "prepare", "prepare_existing", "refresh_epg", "run_in_child",
           "PREPARED_FORMAT", "MANIFEST", "ORDER"]

log = Logger()

#: Bumped whenever the files or the manifest change shape: a generation
#: prepared by another version is prepared again.
PREPARED_FORMAT = 3
MANIFEST = "manifest.json"


class Preparer:
    """Writes a generation's files list by list, as the ingest gets them,
    so that no more than one list is ever held: the ingest of a
    50k/100k/10k catalog stays within a few hundred MB.

    Call :meth:`add` for each list in :data:`ORDER` (categories first: the
    other lists' files name their groups), :meth:`add_episodes`, then
    :meth:`finish` once ``guide.xml`` is in place.  With *write_bundle*,
    ``bundle.json``, ``live.m3u`` and ``full.m3u`` are written too (an
    ingest); without, only ``api/`` (a generation that has them already).
    """

    def __init__(self, directory: Path, generated_at: int, account: dict[str, Any],
                 write_bundle: bool = True) -> None:
        self.directory = directory
        self.api = directory / "api"
        self.api.mkdir(parents=True, exist_ok=True)
        try:
            (self.api / MANIFEST).unlink()  # being rewritten: not valid until the end
        except FileNotFoundError:
            pass
        self.manifest: dict[str, Any] = {
            "format": PREPARED_FORMAT, "generated_at": int(generated_at or 0), "account": account,
            "lists": {}, "playlists": [], "panel": "panel.json", "archive_days": 1,
        }
        self.categories: dict[str, Iterable[dict[str, Any]]] = {}
        self.assets = AssetNames()
        self.bundle: BundleWriter | None = None
        if write_bundle:
            self.bundle = BundleWriter(directory / "bundle.json")
            self.bundle.value("format", BUNDLE_FORMAT)
            self.bundle.value("generated_at", int(generated_at or 0))
            self.bundle.value("account", account)

    def add(self, key: str, rows: Iterable[dict[str, Any]]) -> None:
        """One normalised, scrubbed list (blocking): a list of rows, or
        :class:`~xrelay.catalog.rows.EncodedRows` (sized, iterated more than once)."""
        if self.bundle is not None:
            self.bundle.rows(key, rows)
        self._assets(rows)
        if key.endswith("_categories"):
            self.categories[key] = rows
        if key in LIST_KEYS.values():
            template = ListTemplate.build(rows, self.api / f"{key}.json", ID_KEYS.get(key))
            self.manifest["lists"][key] = template.save_index(self.api / f"{key}.idx")
        if key == "live_streams":
            self._live(rows)
        kind = {"live_streams": "live", "vod_streams": "movie"}.get(key)
        if kind is not None:
            groups = "live_categories" if kind == "live" else "vod_categories"
            self._playlists(kind, {key: rows, groups: self.categories.get(groups, [])})

    def add_episodes(self, episodes: list[dict[str, Any]]) -> None:
        if self.bundle is not None:
            self.bundle.rows("episodes", episodes)
        self._assets(episodes)
        ids = sorted(i for i in {as_id(e.get("id")) for e in episodes} if i is not None)
        self.manifest["episodes"] = {"index": "episodes.idx",
                                     "arrays": write_arrays(self.api / "episodes.idx", {"ids": array("q", ids)})}
        rows = ListTemplate.build(episodes, self.api / "episode_rows.json", "id")
        self.manifest["episode_rows"] = rows.save_index(self.api / "episode_rows.idx")
        self._playlists("series", {"episodes": episodes})

    def finish(self, counts: dict[str, int], now: float | None = None) -> dict[str, Any]:
        """Index the guide, close every file and write the manifest (blocking)."""
        for key in LIST_KEYS.values():  # a list the ingest never had is empty
            if key not in self.manifest["lists"]:
                self.add(key, [])
        if "episodes" not in self.manifest:
            self.add_episodes([])
        if self.bundle is not None:
            self.bundle.value("counts", counts)
            self.bundle.close()
            self._playlist_files()
        self.manifest["counts"] = counts
        self.manifest["epg"] = _epg_entry(self.directory, self.manifest["archive_days"], now)
        self.assets.add_xml_file(self.directory / "guide.xml")
        self.manifest["assets"] = self.assets.save(self.api / "assets.idx")
        _finish(self.api, self.manifest)
        return self.manifest

    def _assets(self, rows: Any) -> None:
        """Note the provider images the rows name."""
        encoded = getattr(rows, "encoded", None)
        for data in encoded if encoded is not None else (_dumps(row) for row in rows):
            self.assets.add_json(data)

    def _live(self, rows: Any) -> None:
        """The live channels' facts (one pass over the rows) and panel.json."""
        archive, days, names, epg = array("b"), array("i"), [], []
        channels: list[bytes] = []
        groups = {c["category_id"]: c["category_name"] for c in self.categories.get("live_categories", [])}
        for s in rows:
            archive.append(1 if s.get("tv_archive") else 0)
            days.append(_small_int(s.get("tv_archive_duration")))
            names.append(str(s.get("name") or ""))
            epg.append(str(s.get("epg_channel_id") or ""))
            channels.append(_dumps(str(s["stream_id"])) + b":" + _dumps(panel_channel(s, groups)))
        self.manifest["live"] = {"index": "live.idx", "texts": "live.json", "arrays": write_arrays(
            self.api / "live.idx", {"archive": archive, "days": days})}
        write_json(self.api / "live.json", {"names": names, "epg": epg})
        deepest = [d for a, d in zip(archive, days) if a]
        self.manifest["archive_days"] = max(deepest or [1]) or 1
        categories = {"live": self.categories.get("live_categories", []),
                      "movie": self.categories.get("vod_categories", []),
                      "series": self.categories.get("series_categories", [])}
        with open(self.api / "panel.json.tmp", "wb") as f:
            f.write(b'"categories":' + _dumps(categories) + b',"available_channels":{')
            f.write(b",".join(channels))
            f.write(b"}")
        os.replace(self.api / "panel.json.tmp", self.api / "panel.json")

    def _playlists(self, kind: str, part: dict[str, Any]) -> None:
        """The get.php templates of one kind, and (ingest) its share of
        ``live.m3u`` / ``full.m3u``."""
        self.manifest["playlists"] += write_templates(part, self.api, (kind,)).manifest()
        if self.bundle is not None:
            with open(self.directory / f".{kind}.m3u.part", "w", encoding="utf-8", newline="") as f:
                for line in _cache_playlist(part, (kind,), header=False):
                    f.write(line)

    def _playlist_files(self) -> None:
        """``live.m3u`` and ``full.m3u``: the header, then the parts."""
        head = "".join(_cache_playlist({}, (), header=True)).encode()
        for name, kinds in (("live.m3u", ("live",)), ("full.m3u", ("live", "movie", "series"))):
            with open(self.directory / name, "wb") as out:
                out.write(head)
                for kind in kinds:
                    with open(self.directory / f".{kind}.m3u.part", "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
        for kind in ("live", "movie", "series"):
            os.unlink(self.directory / f".{kind}.m3u.part")


#: The order of :meth:`Preparer.add` calls (the ingest's download order).
ORDER = ("live_categories", "vod_categories", "series_categories", "live_streams", "vod_streams", "series")
BUNDLE_FORMAT = 1


def _cache_playlist(bundle: dict[str, Any], kinds: tuple[str, ...], header: bool) -> Any:
    """The data directory's playlists: xrelay's renderer with placeholders."""
    return render_m3u(bundle, base=BASE_MARKER, username=USER_MARKER, password=PASS_MARKER,
                      kinds=kinds, quoted=True, header=header)


class BundleWriter:
    """``bundle.json`` written one value or one row at a time (blocking)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")
        self.first = True

    def _key(self, key: str) -> None:
        self.file.write((b"{" if self.first else b",") + json.dumps(key).encode() + b":")
        self.first = False

    def value(self, key: str, value: Any) -> None:
        self._key(key)
        self.file.write(_dumps(value))

    def rows(self, key: str, rows: Any) -> None:
        """A list of rows (dicts, or :class:`~xrelay.catalog.rows.EncodedRows`)."""
        self._key(key)
        self.file.write(b"[")
        encoded = getattr(rows, "encoded", None)
        if encoded is None:
            encoded = (_dumps(row) for row in rows)
        batch: list[bytes] = []
        first = True
        for data in encoded:
            batch.append(data)
            if len(batch) >= 2000:
                self.file.write((b"" if first else b",") + b",".join(batch))
                batch.clear()
                first = False
        if batch:
            self.file.write((b"" if first else b",") + b",".join(batch))
        self.file.write(b"]")

    def close(self) -> None:
        self.file.write(b"}" if not self.first else b"{}")
        self.file.close()


def prepare(bundle: dict[str, Any], directory: Path, now: float | None = None,
            write_bundle: bool = False) -> dict[str, Any]:
    """Write ``directory/api/`` for a whole *bundle*, whose guide is
    ``directory/guide.xml`` (and, with *write_bundle*, the bundle's own
    files); returns the manifest."""
    preparer = Preparer(directory, int(bundle.get("generated_at") or 0), bundle.get("account", {}),
                        write_bundle)
    for key in ORDER:
        preparer.add(key, bundle.get(key, []))
    preparer.add_episodes(bundle.get("episodes", []))
    return preparer.finish(bundle.get("counts", {}), now)


def prepare_existing(generation: str) -> None:
    """Prepare a generation that has only its bundle (run in a child process)."""
    path = Path(generation)
    with open(path / "bundle.json", "rb") as f:
        bundle = json.loads(f.read())
    prepare(bundle, path)


def refresh_epg(generation: str) -> bool:
    """Index a generation's guide again around the present time (its window
    moved on since the ingest; run in a child process).  False if it could
    not: the previous index stays described by the manifest."""
    api = Path(generation) / "api"
    with open(api / MANIFEST, "rb") as f:
        manifest = json.loads(f.read())
    entry = _epg_entry(Path(generation), int(manifest.get("archive_days") or 1), None)
    if entry is None:
        return False
    manifest["epg"] = entry
    _finish(api, manifest)
    return True


def _epg_entry(directory: Path, days: int, now: float | None) -> dict[str, Any] | None:
    started = time.monotonic()
    try:
        index = index_guide(directory, days, now)
    except (OSError, ValueError, expat.ExpatError) as e:  # missing, not a guide, cut off
        log.warn("cannot index the guide: {error}", error=str(e))
        return None
    log.info("guide indexed: {programmes} programmes in {seconds:.1f} s",
             programmes=len(index), seconds=time.monotonic() - started)
    return EpgIndex.save(index, directory / "api")


def _finish(api: Path, manifest: dict[str, Any]) -> None:
    """Flush every file, then write the manifest that makes them valid."""
    for name in os.listdir(api):
        if name != MANIFEST and ".tmp" not in name:
            try:
                with open(api / name, "rb") as f:
                    os.fsync(f.fileno())
            except FileNotFoundError:
                pass  # a file the daemon was replacing meanwhile
    fsync_dir(api)
    write_atomic(api / MANIFEST, _dumps(manifest))


def _small_int(value: Any) -> int:
    try:
        return max(0, min(int(value or 0), 1 << 30))
    except (TypeError, ValueError):
        return 0


def run_in_child(fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` in a fresh child process and return its result
    (blocking: call from a thread; waiting releases the GIL).  Seconds of
    pure-Python work there never share the GIL with the reactor."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
