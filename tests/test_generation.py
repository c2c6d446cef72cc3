"""Prepared generations: what the ingest writes (xrelay.catalog.prepare) and what
the daemon loads (xrelay.catalog.generation) answer exactly as the bundle would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xrelay.catalog import rows as catalog
from xrelay.catalog.lists import LIST_KEYS
from xrelay.catalog.generation import NotPrepared, load_generation
from xrelay.catalog.packed import PackedError, read_arrays, write_arrays
from xrelay.catalog.prepare import MANIFEST, prepare

BASE = b"http://tv.lan:8080"


def guide(channels: list[str]) -> str:
    rows = ['<?xml version="1.0" encoding="utf-8"?>\n<tv>\n']
    for c in channels:
        rows.append(f'<channel id="{c}"><display-name>{c}</display-name></channel>\n')
    rows.append("</tv>\n")
    return "".join(rows)


def episode(ident: str) -> dict:
    return {"id": ident, "ext": "mp4", "name": f"Episode {ident}", "logo": "", "group": "Show"}


def bundle() -> dict:
    """A small catalog shaped as the ingest writes it (normalised rows)."""
    live = [
        {"stream_id": 7, "name": "Seven", "epg_channel_id": "seven.tv", "tv_archive": 1,
         "tv_archive_duration": 3, "category_id": "1", "category_ids": [1],
         "stream_icon": "@XRELAY_BASE@/asset/7.png"},
        {"stream_id": 3, "name": "Three", "epg_channel_id": None, "tv_archive": 0,
         "tv_archive_duration": 0, "category_id": "2", "category_ids": [2, 1], "stream_icon": ""},
    ]
    vod = [{"stream_id": 100 + i, "name": f"Movie {i}", "category_id": str(i % 2 + 1),
            "category_ids": [i % 2 + 1], "container_extension": "mkv"} for i in range(5)]
    series = [{"series_id": 40, "name": "Show", "category_id": "9", "category_ids": [9]}]
    live, vod, series = catalog.normalise_live(live), catalog.normalise_vod(vod), catalog.normalise_series(series)
    return {
        "format": 1, "generated_at": 1_700_000_000,
        "account": {"max_connections": 2, "timezone": "Europe/Paris"},
        "live_categories": catalog.normalise_categories([{"category_id": "1", "category_name": "News"}]),
        "vod_categories": [], "series_categories": [],
        "live_streams": live, "vod_streams": vod, "series": series,
        "episodes": [episode("901"), episode("900"), episode("x")],
        "counts": {"live_streams": 2, "vod_streams": 5, "series": 1},
    }


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    (tmp_path / "guide.xml").write_text(guide(["seven.tv"]))
    prepare(bundle(), tmp_path)
    return tmp_path


def test_lookups_answer_as_the_bundle(prepared: Path) -> None:
    gen = load_generation(prepared)
    assert gen.account == {"max_connections": 2, "timezone": "Europe/Paris"}
    assert gen.generated_at == 1_700_000_000 and gen.counts["vod_streams"] == 5
    assert [gen.has("live", i) for i in (3, 7, 8, -1)] == [True, True, False, False]
    assert gen.has("vod", 104) and not gen.has("vod", 7) and gen.has("series", 40)
    assert gen.has("episode", 900) and gen.has("episode", 901) and not gen.has("episode", 902)
    seven = gen.live(7)
    assert (seven.name, seven.epg_channel_id, seven.tv_archive, seven.archive_days) == ("Seven", "seven.tv", True, 3)
    three = gen.live(3)
    assert (three.epg_channel_id, three.tv_archive) == ("", False)
    assert gen.live(99) is None
    assert gen.row("vod", 103) == bundle()["vod_streams"][3]
    assert gen.row("series", 40)["name"] == "Show" and gen.row("vod", 40) is None
    assert gen.count("live") == 2 and gen.count("vod") == 5


def test_lists_and_playlists_are_the_bundles(prepared: Path) -> None:
    gen = load_generation(prepared)
    b = bundle()
    for key in LIST_KEYS.values():
        template = gen.lists[key]
        want = json.loads(json.dumps(b[key]).replace("@XRELAY_BASE@", BASE.decode()))
        assert json.loads(template.full(BASE)) == want, key
        assert template.length_for(BASE) == len(template.full(BASE))
    live = gen.lists["live_streams"]
    assert [r["stream_id"] for r in json.loads(live.slice(BASE, 1, None))] == [7, 3]
    assert [r["stream_id"] for r in json.loads(live.slice(BASE, 2, None))] == [3]
    parts = gen.playlists.parts("plus", ("live",))
    text = Path(parts[0].path).read_text()
    assert text.count("#EXTINF") == 2 and 'catchup-days="3"' in text
    panel = json.loads(b"{" + gen.panel_path.read_bytes() + b"}")
    assert set(panel["available_channels"]) == {"7", "3"}
    assert gen.epg.built_at > 0 and gen.epg.size == len(guide(["seven.tv"]))


def test_manifest_is_written_last_and_checked(prepared: Path) -> None:
    api = prepared / "api"
    manifest = json.loads((api / MANIFEST).read_text())
    (api / MANIFEST).unlink()
    with pytest.raises(NotPrepared):
        load_generation(prepared)
    (api / MANIFEST).write_text(json.dumps({**manifest, "format": 0}))
    with pytest.raises(NotPrepared):
        load_generation(prepared)
    (api / MANIFEST).write_text(json.dumps(manifest))
    load_generation(prepared)
    # a list file that is not the size the manifest says is refused
    with open(api / "vod_streams.json", "ab") as f:
        f.write(b" ")
    with pytest.raises(ValueError):
        load_generation(prepared)


def test_a_guide_that_cannot_be_indexed_leaves_the_rest_served(tmp_path: Path) -> None:
    (tmp_path / "guide.xml").write_text("<tv><programme")
    manifest = prepare(bundle(), tmp_path)
    assert manifest["epg"] is None
    gen = load_generation(tmp_path)
    assert len(gen.epg) == 0 and gen.has("live", 7)


def test_scattered_ids_are_found_and_only_those(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    live = rng.sample(range(1, 10**9), 3000)
    vod = rng.sample(range(1, 10**6), 5000)
    episodes = rng.sample(range(1, 10**7), 4000)
    b = {"live_streams": catalog.normalise_live([{"stream_id": i, "name": f"c{i}"} for i in live]),
         "vod_streams": catalog.normalise_vod([{"stream_id": i} for i in vod]),
         "episodes": [episode(str(i)) for i in episodes]}
    (tmp_path / "guide.xml").write_text(guide([]))
    prepare(b, tmp_path)
    gen = load_generation(tmp_path)
    assert all(gen.live(i).name == f"c{i}" for i in live)
    assert all(gen.row("vod", i)["stream_id"] == i for i in vod[:200])
    assert all(gen.has("episode", i) for i in episodes)
    others = set(range(1, 20000)) - set(vod)
    assert not any(gen.has("vod", i) for i in others)
    assert not any(gen.has("episode", i) for i in set(range(1, 20000)) - set(episodes))


def test_packed_arrays_refuse_a_file_that_does_not_match(tmp_path: Path) -> None:
    from array import array

    table = write_arrays(tmp_path / "a.idx", {"x": array("q", [1, 2, 3]), "y": array("i", [5])})
    assert {k: list(v) for k, v in read_arrays(tmp_path / "a.idx", table).items()} == {"x": [1, 2, 3], "y": [5]}
    with pytest.raises(PackedError):
        read_arrays(tmp_path / "a.idx", [["x", "q", 4]])  # shorter than said
    with pytest.raises(PackedError):
        read_arrays(tmp_path / "a.idx", [["x", "q", 3]])  # longer than said
