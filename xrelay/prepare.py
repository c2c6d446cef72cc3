"""What the daemon serves, written beside each generation's bundle.

The ingest calls :func:`prepare` on its staging directory, where the
catalog already is in memory (in the ingest's child process), before the
generation is committed.  So the daemon never holds the catalog as Python
objects: it loads a manifest and flat arrays (:mod:`xrelay.generation`),
in milliseconds, with a few bytes per row, and a restart serves at once.

``GENERATION/api/``::

    manifest.json          written last: format, account, counts, and what
                           each file below holds (sizes, array tables)
    KEY.json, KEY.idx      each player_api list (@XRELAY_BASE@ left in) and
                           its index: row offsets, markers, ids, categories
    live.idx, live.json    per live channel, in list order: catch-up flag
                           and days; name and EPG channel id
    episodes.idx           the episode ids, sorted
    STYLE-KIND.m3u         get.php templates
    panel.json             panel_api.php's categories and available_channels
    epg.idx, epg-channels.json, epg-texts.bin    the EPG index

A generation written by an older xrelay has no manifest: the daemon runs
:func:`prepare_existing` on it in a child process (:func:`run_in_child`).
Everything here blocks: run it in a thread or a child process.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from pathlib import Path
from typing import Any
from xml.parsers import expat

from twisted.logger import Logger

from .api_answers import build_templates, panel_extra
from .api_playlists import write_templates
from .epg import EpgIndex, archive_days, index_guide
from .packed import write_arrays
from .store import fsync_dir, write_atomic

__all__ = ["prepare", "prepare_existing", "refresh_epg", "run_in_child", "PREPARED_FORMAT",
           "MANIFEST"]

log = Logger()

#: Bumped whenever the files or the manifest change shape: a generation
#: prepared by another version is prepared again.
PREPARED_FORMAT = 1
MANIFEST = "manifest.json"


def prepare(bundle: dict[str, Any], directory: Path, now: float | None = None) -> dict[str, Any]:
    """Write ``directory/api/`` for *bundle*, whose guide is
    ``directory/guide.xml``; returns the manifest."""
    api = directory / "api"
    api.mkdir(parents=True, exist_ok=True)
    try:
        (api / MANIFEST).unlink()  # being rewritten: not valid until the end
    except FileNotFoundError:
        pass
    lists = {key: template.save_index(api / f"{key}.idx")
             for key, template in build_templates(bundle, api).items()}
    playlists = write_templates(bundle, api).manifest()
    live_rows = bundle.get("live_streams", [])
    live_table = write_arrays(api / "live.idx", {
        "archive": array("b", (1 if s.get("tv_archive") else 0 for s in live_rows)),
        "days": array("i", (_small_int(s.get("tv_archive_duration")) for s in live_rows)),
    })
    _write_json(api / "live.json", {
        "names": [str(s.get("name") or "") for s in live_rows],
        "epg": [str(s.get("epg_channel_id") or "") for s in live_rows],
    })
    episodes = sorted({int(e["id"]) for e in bundle.get("episodes", [])
                       if str(e.get("id", "")).isascii() and str(e.get("id", "")).isdigit()})
    episodes_table = write_arrays(api / "episodes.idx", {"ids": array("q", episodes)})
    with open(api / "panel.json.tmp", "wb") as f:
        f.write(panel_extra(bundle))
    os.replace(api / "panel.json.tmp", api / "panel.json")
    days = archive_days(live_rows)
    manifest = {
        "format": PREPARED_FORMAT,
        "generated_at": int(bundle.get("generated_at") or 0),
        "account": bundle.get("account", {}),
        "counts": bundle.get("counts", {}),
        "lists": lists,
        "playlists": playlists,
        "live": {"index": "live.idx", "arrays": live_table, "texts": "live.json"},
        "episodes": {"index": "episodes.idx", "arrays": episodes_table},
        "panel": "panel.json",
        "archive_days": days,
        "epg": _epg_entry(directory, days, now),
    }
    _finish(api, manifest)
    return manifest


def prepare_existing(generation: str) -> None:
    """Prepare a generation that has only its bundle (run in a child process)."""
    path = Path(generation)
    with open(path / "bundle.json", "rb") as f:
        bundle = json.loads(f.read())
    prepare(bundle, path)


def refresh_epg(generation: str) -> None:
    """Index a generation's guide again around the present time (its window
    moved on since the ingest; run in a child process)."""
    api = Path(generation) / "api"
    with open(api / MANIFEST, "rb") as f:
        manifest = json.loads(f.read())
    manifest["epg"] = _epg_entry(Path(generation), int(manifest.get("archive_days") or 1), None)
    _finish(api, manifest)


def _epg_entry(directory: Path, days: int, now: float | None) -> dict[str, Any] | None:
    started = time.monotonic()
    try:
        index = index_guide(directory, days, now)
    except (OSError, expat.ExpatError) as e:
        log.warn("cannot index the guide: {error}", error=str(e))
        return None
    log.info("guide indexed: {programmes} programmes in {seconds:.1f} s",
             programmes=len(index), seconds=time.monotonic() - started)
    return EpgIndex.save(index, directory / "api")


def _finish(api: Path, manifest: dict[str, Any]) -> None:
    """Flush every file, then write the manifest that makes them valid."""
    for name in os.listdir(api):
        if name != MANIFEST and not name.endswith(".tmp"):
            with open(api / name, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(api)
    write_atomic(api / MANIFEST, json.dumps(manifest, separators=(",", ":")).encode())


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    os.replace(tmp, path)


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
