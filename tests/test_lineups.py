"""Lineups: the [lineups] configuration (xrelay.core.lineups), the
selections computed over a prepared generation (xrelay.catalog.selection)
and the row facts they read (xrelay.catalog.row_facts)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xrelay.catalog import rows as catalog
from xrelay.catalog.generation import Generation, load_generation
from xrelay.core.lineups import LineupConfig, parse_lineups
from xrelay.catalog.prepare import prepare
from xrelay.catalog.row_facts import FACTS, RowFacts, _lines, load_facts, write_generation_facts
from xrelay.catalog.selection import Selection, compute_selections
from xrelay.core.config import ConfigError

SOURCE = "/etc/xrelay/xrelay.toml"


@dataclass
class User:
    lineup: str | None = None


def parse(table: Any, users: list[User] | None = None) -> dict[str, LineupConfig]:
    return parse_lineups(table, users or [], SOURCE)


def config_error(table: Any, users: list[User] | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        parse(table, users)
    return str(e.value)


# -- the catalog ------------------------------------------------------------------------

LIVE_CATEGORIES = {1: "UK | News", 2: "UK | Kids", 3: "US | Sport", 4: "XXX | Adult", 5: "FR | Cinéma",
                   6: "Empty", 7: "Adult Swim"}
#: stream id -> (name, categories, is_adult)
LIVE = {
    10: ("UK: BBC One", [1], 0),
    11: ("UK: Sky News", [1], 0),
    12: ("UK: CBeebies", [2], 0),
    13: ("UK: Cartoon Shop", [2], 0),
    14: ("US: ESPN", [3], 0),
    15: ("Hot Night", [4], 1),
    16: ("UK: Late Night", [1], 1),
    17: ("Canal+ Cinéma", [5], 0),
    18: ("UK: Kids Mix", [2, 4], 0),
    19: ("Boomerang", [7], 0),
}
VOD_CATEGORIES = {20: "Movies | Family", 21: "Movies | 18+"}
VOD = {100: ("Frozen", [20], 0), 101: ("Up", [20], 0), 102: ("Night Moves", [21], 0),
       103: ("Blue Hour", [20], 1)}
SERIES_CATEGORIES = {30: "Cartoons", 31: "Drama"}
SERIES = {40: ("Peppa Pig", [30]), 41: ("The Wire", [31]), 42: ("Bluey", [30])}


def bundle(live: dict[int, tuple[str, list[int], int]] | None = None) -> dict[str, Any]:
    live = LIVE if live is None else live

    def cats(names: dict[int, str]) -> list[dict[str, Any]]:
        return catalog.normalise_categories([{"category_id": str(k), "category_name": v} for k, v in names.items()])

    return {
        "generated_at": 1_700_000_000, "account": {},
        "live_categories": cats(LIVE_CATEGORIES), "vod_categories": cats(VOD_CATEGORIES),
        "series_categories": cats(SERIES_CATEGORIES),
        "live_streams": catalog.normalise_live([
            {"stream_id": k, "name": n, "category_ids": c, "category_id": str(c[0]), "is_adult": str(a),
             "epg_channel_id": f"ch{k}"} for k, (n, c, a) in live.items()]),
        "vod_streams": catalog.normalise_vod([
            {"stream_id": k, "name": n, "category_ids": c, "category_id": str(c[0]), "is_adult": a}
            for k, (n, c, a) in VOD.items()]),
        "series": catalog.normalise_series([
            {"series_id": k, "name": n, "category_ids": c, "category_id": str(c[0])} for k, (n, c) in SERIES.items()]),
        "episodes": [], "counts": {},
    }


def make_generation(directory: Path, live: dict[int, tuple[str, list[int], int]] | None = None) -> Generation:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "guide.xml").write_text('<?xml version="1.0"?>\n<tv></tv>\n')
    prepare(bundle(live), directory)
    return load_generation(directory)


@pytest.fixture
def generation(tmp_path: Path) -> Generation:
    return make_generation(tmp_path / "g1")


def select(generation: Generation, table: dict[str, Any], name: str = "x") -> Selection:
    return compute_selections(generation, parse(table))[name]


def ids(selection: Selection, kind: str = "live") -> list[int]:
    return list(selection.kinds[kind].ids)


def category_names(generation: Generation, selection: Selection, kind: str = "live") -> list[str]:
    key = {"live": "live_categories", "vod": "vod_categories", "series": "series_categories"}[kind]
    template = generation.lists[key]
    return [template.row(i)["category_name"] for i in selection.kinds[kind].categories]


def served_ids(generation: Generation, selection: Selection, kind: str = "live") -> list[int]:
    """The ids of the rows a list answer would serve, in order."""
    key = {"live": "live_streams", "vod": "vod_streams", "series": "series"}[kind]
    field = "series_id" if kind == "series" else "stream_id"
    template = generation.lists[key]
    return [template.row(r)[field] for r in selection.kinds[kind].rows]


# -- configuration -------------------------------------------------------------------------

def test_no_lineups() -> None:
    assert parse(None) == {} and parse({}) == {}


def test_entries_are_globs_ids_and_regexes() -> None:
    lineup = parse({"x": {"live": {"include_streams": ["uk: bbc*", "id:17", "re:sky\\s+news", "ID: 5"]}}})["x"]
    inc = lineup.live.include_streams
    assert inc.ids == frozenset({17, 5})
    assert inc.matches(0, "UK: BBC One")  # globs ignore case, match the whole name
    assert not inc.matches(0, "The UK: BBC One")
    assert inc.matches(0, "uk: SKY   news hd")  # regexes ignore case, are searched
    assert inc.matches(17, "whatever") and not inc.matches(18, "whatever")
    assert inc.first(0, "Sky News") == 2 and inc.first(5, "") == 3 and inc.first(1, "x") is None
    brackets = parse({"x": {"live": {"include_streams": ["[[]uk] *", "[!0-9]?"]}}})["x"].live.include_streams
    assert brackets.matches_name("[UK] BBC One") and not brackets.matches_name("UK BBC One")
    assert brackets.matches_name("a1") and not brackets.matches_name("11")


def test_defaults() -> None:
    lineup = parse({"x": {}})["x"]
    assert lineup.live.enabled and not lineup.live.has_include and not lineup.hide_adult
    assert lineup.number_from == 1 and lineup.extends is None and lineup.rename == ()
    assert lineup.adult_patterns.matches_name("XXX | Adult") and lineup.adult_patterns.matches_name("Kids 18+")


@pytest.mark.parametrize("table, message", [
    ({"kids": {"live": {"include_streams": ["UK*", "re:(unclosed"]}}},
     "lineups.kids.live.include_streams[1]: bad regular expression 're:(unclosed'"),
    ({"kids": {"vod": {"exclude_categories": ["[UK"]}}},
     "lineups.kids.vod.exclude_categories[0]: bad glob '[UK': '[' is not closed"),
    ({"kids": {"live": {"include_streams": ["id:12a"]}}},
     "lineups.kids.live.include_streams[0]: 'id:12a': id: must be followed by a number"),
    ({"kids": {"live": {"favourites": [""]}}}, "lineups.kids.live.favourites[0]: empty pattern"),
    ({"kids": {"live": {"favourites": [12]}}}, "lineups.kids.live.favourites[0]: expected a string, got an integer"),
    ({"kids": {"live": {"include_streams": "UK*"}}},
     "lineups.kids.live.include_streams: expected an array, got a string"),
    ({"kids": {"live": {"enabled": "no"}}}, "lineups.kids.live.enabled: expected a boolean, got a string"),
    ({"kids": {"live": {"include": ["UK*"]}}}, "lineups.kids.live.include: unknown key"),
    ({"kids": {"radio": {}}}, "lineups.kids.radio: unknown key"),
    ({"kids": {"adult": "no"}}, "lineups.kids.adult: must be \"show\" or \"hide\", got 'no'"),
    ({"kids": {"adult_patterns": ["re:["]}}, "lineups.kids.adult_patterns[0]: bad regular expression"),
    ({"kids": {"number_from": 0}}, "lineups.kids.number_from: must be >= 1, got 0"),
    ({"kids": {"number_from": True}}, "lineups.kids.number_from: expected an integer, got a boolean"),
    ({"kids": {"extends": "family"}}, "lineups.kids.extends: unknown lineup 'family'"),
    ({"a": {"extends": "b"}, "b": {"extends": "a"}}, "lineups.a.extends: cycle a -> b -> a"),
    ({"a": {"extends": "a"}}, "lineups.a.extends: cycle a -> a"),
    ({"a": {}, "b": {"extends": "c"}, "c": {"extends": "b"}}, "lineups.b.extends: cycle b -> c -> b"),
    ({"kids room": {}}, "lineups.kids room: a lineup name is 1 to 64 letters"),
    ({"kids": []}, "lineups.kids: must be a table, not an array"),
    ({"kids": {"rename": [{"pattern": "(", "replace": ""}]}},
     "lineups.kids.rename[0].pattern: bad regular expression '('"),
    ({"kids": {"rename": [{"pattern": "^(UK)", "replace": "\\2"}]}},
     "lineups.kids.rename[0].replace: bad replacement '\\\\2'"),
    ({"kids": {"rename": [{"replace": ""}]}}, "lineups.kids.rename[0].pattern: missing"),
    ({"kids": {"rename": [{"pattern": "x", "with": ""}]}}, "lineups.kids.rename[0].with: unknown key"),
])
def test_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    error = config_error(table)
    assert error.startswith(f"{SOURCE}: ")
    assert message in error


def test_user_lineup_references() -> None:
    users = [User(), User("kids"), User("nope")]
    error = config_error({"kids": {}}, users)
    assert error == f"{SOURCE}: users[2].lineup: unknown lineup 'nope' (kids)"
    assert set(parse({"kids": {}}, users[:2])) == {"kids"}
    assert "(none defined)" in config_error(None, [User("kids")])


def test_rename_is_display_only() -> None:
    lineup = parse({"x": {"rename": [{"pattern": "^(UK|US)[:|] ?", "replace": ""},
                                      {"pattern": "(\\w+) HD$", "replace": "\\1"}]}})["x"]
    assert lineup.display_name("UK: BBC One HD") == "BBC One"
    assert lineup.display_name("FR: TF1") == "FR: TF1"


def test_chain() -> None:
    lineups = parse({"all": {}, "family": {"extends": "all"}, "kids": {"extends": "family"}})
    assert [lineup.name for lineup in lineups["kids"].chain(lineups)] == ["all", "family", "kids"]


# -- selections ------------------------------------------------------------------------------

def test_no_rules_selects_everything_but_empty_categories(generation: Generation) -> None:
    s = select(generation, {"x": {}})
    assert ids(s) == sorted(LIVE) and ids(s, "vod") == sorted(VOD) and ids(s, "series") == sorted(SERIES)
    assert all(k.complete for k in s.kinds.values())
    assert category_names(generation, s) == [n for n in LIVE_CATEGORIES.values() if n != "Empty"]
    # live channels are shown by number: a block per category, in the order categories first appear
    assert served_ids(generation, s) == [10, 11, 16, 12, 13, 18, 14, 15, 17, 19]
    assert list(s.kinds["live"].numbers) == [1, 2, 3, 11, 12, 13, 21, 31, 41, 51]
    assert served_ids(generation, s, "vod") == list(VOD)  # the others in the catalog's order
    assert s.counts() == {"live": 10, "live_categories": 6, "vod": 4, "vod_categories": 2,
                          "series": 3, "series_categories": 2}


def test_include_categories_by_glob_and_id(generation: Generation) -> None:
    s = select(generation, {"x": {"live": {"include_categories": ["uk |*", "id:5"]}}})
    assert ids(s) == [10, 11, 12, 13, 16, 17, 18]
    # 18 is also in XXX | Adult, which lists it: a category is listed when it holds a selected item
    assert category_names(generation, s) == ["UK | News", "UK | Kids", "XXX | Adult", "FR | Cinéma"]
    assert list(s.kinds["live"].by_category[4]) == [generation.lists["live_streams"].position(18)]


def test_include_streams_adds_to_categories(generation: Generation) -> None:
    s = select(generation, {"x": {"live": {"include_categories": ["US*"],
                                            "include_streams": ["id:17", "re:bbc", "boom*"]}}})
    assert ids(s) == [10, 14, 17, 19]
    assert category_names(generation, s) == ["UK | News", "US | Sport", "FR | Cinéma", "Adult Swim"]


def test_excludes_win_over_includes(generation: Generation) -> None:
    s = select(generation, {"x": {"live": {
        "include_streams": ["UK:*", "id:14"], "include_categories": ["UK | Kids"],
        "exclude_streams": ["*shop*", "id:14"], "exclude_categories": ["XXX*"]}}})
    # 13 (shop) and 14 (included and excluded by id) out; 18 out: one of its categories is excluded
    assert ids(s) == [10, 11, 12, 16]


def test_exclude_only(generation: Generation) -> None:
    s = select(generation, {"x": {"live": {"exclude_categories": ["UK*"], "exclude_streams": ["re:night"]}}})
    assert ids(s) == [14, 17, 19]
    assert category_names(generation, s) == ["US | Sport", "FR | Cinéma", "Adult Swim"]


def test_adult_hide_drops_flags_and_categories_even_when_included(generation: Generation) -> None:
    s = select(generation, {"x": {"adult": "hide", "live": {"include_streams": ["*"]}}})
    # 15 (flag and category), 16 (flag), 18 (in XXX | Adult), 19 (in Adult Swim: the default patterns)
    assert ids(s) == [10, 11, 12, 13, 14, 17]
    assert "XXX | Adult" not in category_names(generation, s)
    assert ids(s, "vod") == [100, 101]  # 102 is in "Movies | 18+", 103 flagged
    assert category_names(generation, s, "vod") == ["Movies | Family"]
    assert not s.allows("live", 15) and not s.allows("movie", 103) and not s.allows("vod", 102)


def test_adult_patterns_replace_the_defaults(generation: Generation) -> None:
    s = select(generation, {"x": {"adult": "hide", "adult_patterns": ["re:^xxx", "id:5"]}})
    assert ids(s) == [10, 11, 12, 13, 14, 19]  # Boomerang is back; FR | Cinéma (id 5) gone
    assert ids(s, "vod") == [100, 101, 102]  # "18+" is no longer a pattern; the flag still counts


def test_adult_show_keeps_everything(generation: Generation) -> None:
    assert ids(select(generation, {"x": {"adult": "show"}})) == sorted(LIVE)


def test_disabled_section(generation: Generation) -> None:
    s = select(generation, {"x": {"vod": {"enabled": False}}})
    assert ids(s, "vod") == [] and list(s.kinds["vod"].categories) == [] and not s.allows("vod", 100)
    assert list(s.kinds["vod"].rows) == [] and s.kinds["vod"].by_category == {}
    assert ids(s, "series") == sorted(SERIES)


def test_extends_only_narrows(generation: Generation) -> None:
    lineups = parse({
        "family": {"adult": "hide", "live": {"include_categories": ["UK*"]}, "series": {"exclude_streams": ["the *"]}},
        "kids": {"extends": "family", "live": {"include_categories": ["*Kids*", "US*"], "exclude_streams": ["*shop"]},
                 "vod": {"include_streams": ["re:."]}},
        "same": {"extends": "family"},
    })
    s = compute_selections(generation, lineups)
    assert ids(s["family"]) == [10, 11, 12, 13]
    assert ids(s["kids"]) == [12]  # US | Sport is not in family; 18 is adult there
    assert ids(s["same"]) == ids(s["family"])
    assert ids(s["kids"], "vod") == [100, 101]  # includes everything, within family's
    assert ids(s["kids"], "series") == [40, 42]
    assert category_names(generation, s["kids"]) == ["UK | Kids"]


def test_lookups_and_slices(generation: Generation) -> None:
    s = select(generation, {"x": {"live": {"include_categories": ["UK*"]}, "series": {"include_streams": ["id:42"]}}})
    live = s.kinds["live"]
    for ident in LIVE:
        assert s.allows("live", ident) == (ident in (10, 11, 12, 13, 16, 18))
    assert not s.allows("live", 999)
    template = generation.lists["live_streams"]
    assert [template.row(r)["stream_id"] for r in live.slice(2)] == [12, 13, 18]
    assert [template.row(r)["stream_id"] for r in live.slice(2, 2)] == [12, 13]
    assert [template.row(r)["stream_id"] for r in live.slice(None, 3)] == [10, 11, 16]
    assert list(live.slice(3)) == []
    assert s.allows_episode(42) and not s.allows_episode(40) and not s.allows_episode(None)
    assert select(generation, {"x": {}}).allows_episode(None)


def test_favourites_first_and_numbers(generation: Generation) -> None:
    s = select(generation, {"x": {"number_from": 100, "live": {
        "include_categories": ["UK | News", "UK | Kids"], "favourites": ["*cbeebies", "id:11"]}}})
    live = s.kinds["live"]
    assert served_ids(generation, s) == [12, 11, 10, 16, 13, 18]
    assert list(live.numbers) == [100, 101, 110, 111, 120, 121]  # favourites' block, then a block per category
    assert [live.number(i) for i in (10, 11, 12, 13, 16, 18)] == [110, 101, 100, 120, 111, 121]
    assert live.number(14) is None
    template = generation.lists["live_streams"]
    assert [template.row(r)["stream_id"] for r in live.slice(1)] == [11, 10, 16]  # favourites first here too


def test_favourites_of_movies_keep_the_catalog_order_otherwise(generation: Generation) -> None:
    s = select(generation, {"x": {"vod": {"favourites": ["up"]}}})
    assert served_ids(generation, s, "vod") == [101, 100, 102, 103]
    assert list(s.kinds["vod"].numbers) == []


# -- row facts -------------------------------------------------------------------------------

def test_facts_scanned_from_the_list_files(generation: Generation) -> None:
    facts = RowFacts.scan(generation.lists["live_streams"])
    assert facts.names == [n for n, _, _ in LIVE.values()]
    assert list(facts.adult) == [a for _, _, a in LIVE.values()]
    assert RowFacts.scan(generation.lists["series"]).names == [n for n, _ in SERIES.values()]
    assert facts == RowFacts.collect(bundle()["live_streams"])


def test_saved_facts_are_used_for_their_own_lists_only(tmp_path: Path) -> None:
    g1 = make_generation(tmp_path / "g1")
    api = g1.path / "api"
    assert load_facts(api, g1.manifest, "vod_streams") is None
    write_generation_facts(str(g1.path))
    saved = load_facts(api, g1.manifest, "vod_streams")
    assert saved is not None and saved.names == [n for n, _, _ in VOD.values()] and list(saved.adult) == [0, 0, 0, 1]
    # facts.json describing another list (a generation copied over, a list rewritten) is ignored
    index = json.loads((api / FACTS).read_text())
    index["vod_streams"]["list"][1] += 1
    (api / FACTS).write_text(json.dumps(index))
    assert load_facts(api, g1.manifest, "vod_streams") is None
    assert ids(select(g1, {"x": {"adult": "hide"}}), "vod") == [100, 101]  # scanned again


def test_saved_facts_decide(tmp_path: Path) -> None:
    """The selection reads the saved facts when they match (proved by
    facts that differ from the list's own flags)."""
    g1 = make_generation(tmp_path / "g1")
    write_generation_facts(str(g1.path))
    api = g1.path / "api"
    index = json.loads((api / FACTS).read_text())
    (api / "facts-vod_streams.txt").write_text("Frozen\nUp\nNight Moves\nBlue Hour")
    from xrelay.catalog.packed import write_arrays
    from array import array
    index["vod_streams"]["arrays"] = write_arrays(api / "facts-vod_streams.idx", {"adult": array("B", [1, 0, 0, 0])})
    (api / FACTS).write_text(json.dumps(index))
    assert ids(select(g1, {"x": {"adult": "hide", "vod": {"exclude_categories": ["*18+"]}}}), "vod") == [101, 103]


def test_saved_facts_of_empty_lists_and_odd_names(tmp_path: Path) -> None:
    empty = make_generation(tmp_path / "empty", live={})
    write_generation_facts(str(empty.path))
    assert load_facts(empty.path / "api", empty.manifest, "live_streams") == RowFacts([], bytearray())
    odd = make_generation(tmp_path / "odd", live={1: ("", [1], 0), 2: ("Two\rLines", [1], 1), 3: ("Ünï", [1], 0)})
    write_generation_facts(str(odd.path))
    assert load_facts(odd.path / "api", odd.manifest, "live_streams") == RowFacts(["", "Two Lines", "Ünï"],
                                                                                 bytearray([0, 1, 0]))


@pytest.mark.parametrize("text", ["", "a", "\n", "a\nb", "\n\nx\n", "one\ntwo\n\nthree" * 50, "x" * 100 + "\n"])
def test_lines_split_in_pieces(text: str) -> None:
    assert _lines(text, pieces=7) == text.split("\n")
