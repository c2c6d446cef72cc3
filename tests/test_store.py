"""The data directory: generations swapped in atomically."""

from __future__ import annotations

import os
from pathlib import Path

from xrelay.catalog.store import CACHE_FILES, CacheStore


def make_generation(store: CacheStore, text: str) -> Path:
    staging = store.begin()
    for name in CACHE_FILES:
        staging.path(name).write_text(f"{name}:{text}")
    return staging.commit()


def test_commit_swaps_all_files_at_once(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    assert store.current() is None and store.load_bundle() is None
    first = make_generation(store, "one")
    assert store.current() == first
    assert (tmp_path / "live.m3u").read_text() == "live.m3u:one"
    second = make_generation(store, "two")
    assert {n: (tmp_path / n).read_text() for n in CACHE_FILES} == {n: f"{n}:two" for n in CACHE_FILES}
    assert second != first
    make_generation(store, "three")
    assert len(list((tmp_path / "generations").iterdir())) == 2, "old generations are pruned"


def test_the_generation_being_served_is_never_pruned(tmp_path: Path) -> None:
    """The daemon serves G1; G2 is committed but fails to load; G3 is
    committed: G1's files are still there for the requests reading them."""
    store = CacheStore(tmp_path)
    store.prepare()
    first = make_generation(store, "one")
    store.mark_served(first)
    make_generation(store, "two")
    third = make_generation(store, "three")
    assert first.is_dir() and store.current() == third
    assert len(list((tmp_path / "generations").iterdir())) == 3
    store.mark_served(third)
    make_generation(store, "four")
    assert not first.exists() and len(list((tmp_path / "generations").iterdir())) == 2
    # a subdirectory (the prepared api/) is flushed and committed with the rest
    staging = store.begin()
    (staging.dir / "api").mkdir()
    (staging.dir / "api" / "manifest.json").write_text("{}")
    staging.path("bundle.json").write_text("x")
    assert (staging.commit() / "api" / "manifest.json").read_text() == "{}"


def test_discarded_staging_changes_nothing(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    make_generation(store, "one")
    staging = store.begin()
    staging.path("bundle.json").write_text("half")
    staging.discard()
    assert (tmp_path / "bundle.json").read_text() == "bundle.json:one"


def test_prepare_sweeps_an_interrupted_ingest(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    make_generation(store, "one")
    leftover = store.begin()
    leftover.path("bundle.json").write_text("partial")
    CacheStore(tmp_path).prepare()
    assert list((tmp_path / "staging").iterdir()) == []
    assert (tmp_path / "bundle.json").read_text() == "bundle.json:one"


def test_details_and_history(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.prepare()
    gen = make_generation(store, "one")
    assert store.read_detail(gen, "vod", 5) is None
    store.write_detail(gen, "vod", 5, b"{}")
    assert store.read_detail(gen, "vod", 5) == b"{}"
    for i in range(25):
        store.record({"ok": True, "n": i})
    history = store.history()
    assert len(history) == 20 and history[-1]["n"] == 24
    (tmp_path / "ingests.json").write_text("{broken")
    assert store.history() == []
    assert not any(name.startswith(".") for name in os.listdir(tmp_path) if name != ".current")
