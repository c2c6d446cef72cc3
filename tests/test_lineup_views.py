"""Lineup views (xrelay.catalog.lineup_build, lineup_view), the guide cut to
a lineup's channels, episodes placed in their series, the Lineups component,
``xrelay lineup show`` and start-up refusing a bad lineup."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads
from twisted.internet.task import Clock

from test_lineups import LIVE, bundle, parse
from xrelay import cli
from xrelay.catalog.episode_series import playlist_series, series_name_of
from xrelay.catalog.generation import Generation, load_generation
from xrelay.catalog.guide_filter import index_elements, write_guide
from xrelay.catalog.lineup_build import build_views, find_views
from xrelay.catalog.lineup_service import Lineups, stream_of_key
from xrelay.catalog.lineup_view import LineupView, load_view
from xrelay.catalog.prepare import prepare
from xrelay.core.config import UserConfig
from xrelay.http.errors import Unavailable
from xrelay.ops.service import close_outside_lineups
from xrelay.relay.slots import UserStreams

GUIDE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv generator-info-name="test">
  <channel id="ch10"><display-name>BBC One</display-name><icon src="@XRELAY_BASE@/asset/1"/></channel>
  <channel id="ch15"/>
  <channel id="ch12"><display-name>CBeebies</display-name></channel>
  <programme start="20250101000000 +0000" stop="20250101010000 +0000" channel="ch10"><title>News</title></programme>
  <programme start="20250101000000 +0000" stop="20250101010000 +0000" channel="ch15"><title>Late</title></programme>
  <programme start="20250101000000 +0000" stop="20250101010000 +0000" channel="ch12"/>
  <programme start="20250101010000 +0000" stop="20250101020000 +0000" channel="ch10"><title>@XRELAY_BASE@</title></programme>
</tv>
"""
EPISODES = [
    {"id": 500, "name": "Peppa Pig S01E01", "group": "Cartoons", "logo": "", "ext": "mp4"},
    {"id": 501, "name": "Peppa Pig - S01 E02", "group": "Cartoons", "logo": "", "ext": "mp4"},
    {"id": 502, "name": "The Wire S01 E01", "group": "Drama", "logo": "", "ext": "mkv"},
    {"id": 503, "name": "Something else entirely", "group": "Drama", "logo": "", "ext": "mkv"},
]
KIDS = {"kids": {"adult": "hide", "number_from": 100, "rename": [{"pattern": "^UK: ", "replace": ""}],
                 "live": {"include_categories": ["*Kids*"], "favourites": ["id:13"]},
                 "series": {"include_categories": ["Cartoons"]}},
        "all": {}}


def make_generation(directory: Path, live: dict[int, Any] | None = None, guide: str = GUIDE) -> Generation:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "guide.xml").write_text(guide)
    prepare({**bundle(live), "episodes": EPISODES}, directory)
    return load_generation(directory)


def build(generation: Generation, table: dict[str, Any], data: Path) -> dict[str, LineupView]:
    found = build_views(str(generation.path), parse(table), str(data), [])["views"]
    return {name: load_view(Path(d), generation) for name, d in found.items()}


def rows(view: LineupView, key: str) -> list[dict[str, Any]]:
    template = view.lists[key]
    return [template.row(i) for i in range(template.count)]


# -- the guide, cut ------------------------------------------------------------------------

def test_a_guide_keeps_only_the_elements_of_the_wanted_channels(tmp_path: Path) -> None:
    path = tmp_path / "guide.xml"
    path.write_text(GUIDE)
    elements = index_elements(path)
    assert elements.channels == ["ch10", "ch15", "ch12"] and len(elements.starts) == 7
    size, markers = write_guide(elements, {"ch10", "ch99"}, tmp_path / "out.xml")
    text = (tmp_path / "out.xml").read_text()
    assert size == len(text.encode()) and markers == text.count("@XRELAY_BASE@") == 2
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n<tv ')
    assert text.endswith("</tv>\n")
    assert 'id="ch15"' not in text and 'channel="ch12"' not in text and text.count('channel="ch10"') == 2
    from xml.dom.minidom import parseString
    assert parseString(text).documentElement.tagName == "tv"  # well-formed
    write_guide(elements, set(), tmp_path / "none.xml")
    assert "<channel" not in (tmp_path / "none.xml").read_text()
    write_guide(elements, {"ch10", "ch15", "ch12"}, tmp_path / "all.xml")
    assert (tmp_path / "all.xml").read_text() == GUIDE


def test_an_empty_guide_stays_whole(tmp_path: Path) -> None:
    for text in ('<?xml version="1.0"?>\n<tv/>\n', "<tv></tv>"):
        path = tmp_path / "g.xml"
        path.write_text(text)
        write_guide(index_elements(path), {"x"}, tmp_path / "o.xml")
        assert (tmp_path / "o.xml").read_text() == text


# -- episodes and their series ---------------------------------------------------------------

def test_series_names_in_episode_names() -> None:
    assert series_name_of("Peppa Pig S01E01") == "peppa pig"
    assert series_name_of("Peppa  Pig - S1 E12 The Park") == "peppa pig"
    assert series_name_of("Bluey S01.E02") == "bluey"
    assert series_name_of("Season finale") is None and series_name_of("S01E01") is None


def test_episodes_are_placed_by_name_and_group() -> None:
    names = ["Bluey", "Bluey", "The Wire"]
    found = playlist_series([(1, "Bluey S01E01", "Kids"), (2, "Bluey S01E01", "Drama"), (3, "Bluey S01E01", "News"),
                             (4, "The Wire S02E03", ""), (5, "Nothing", "Kids")],
                            names, [40, 41, 42], [[30], [31], [31]], {30: "Kids", 31: "Drama"})
    assert found == {1: 40, 2: 41, 4: 42}  # 3: two series of that name, none in that group


# -- views ----------------------------------------------------------------------------------

def test_a_view_holds_the_lineups_rows_numbers_playlists_panel_and_guide(tmp_path: Path) -> None:
    generation = make_generation(tmp_path / "generations" / "g1")
    views = build(generation, KIDS, tmp_path)
    kids = views["kids"]
    live = rows(kids, "live_streams")
    assert [(r["stream_id"], r["name"], r["num"]) for r in live] == [
        (13, "Cartoon Shop", 100), (12, "CBeebies", 110)]  # favourite first; renamed; numbered from 100
    assert list(kids.ids["live"]) == [12, 13] and kids.number(12) == 110 and kids.number(10) is None
    assert [r["category_name"] for r in rows(kids, "live_categories")] == ["UK | Kids"]
    assert [r["stream_id"] for r in rows(kids, "vod_streams")] == [100, 101]  # 102: 18+, 103: is_adult
    assert [r["series_id"] for r in rows(kids, "series")] == [40, 42]
    assert kids.allows("movie", 100) and not kids.allows("vod", 103) and not kids.allows("live", 15)
    assert kids.allows_episode(500, None) and kids.allows_episode(501, None)
    assert not kids.allows_episode(502, None) and not kids.allows_episode(503, None)
    assert kids.allows_episode(503, 40) and not kids.allows_episode(503, 41)
    plus = Path(kids.playlists.files[("plus", "live")].path).read_text()
    assert 'tvg-chno="100"' in plus and plus.index("/13.") < plus.index("/12.") and "/10." not in plus
    series = Path(kids.playlists.files[("plus", "series")].path).read_text()
    assert "/500." in series and "/501." in series and "/502." not in series
    panel = json.loads(b"{" + kids.panel_path.read_bytes() + b"}")
    assert set(panel["available_channels"]) == {"12", "13"} and panel["available_channels"]["13"]["num"] == 100
    assert [c["category_name"] for c in panel["categories"]["live"]] == ["UK | Kids"]
    assert kids.guide is not None
    guide = kids.guide.path.read_text()
    assert 'id="ch12"' in guide and 'id="ch10"' not in guide and 'channel="ch15"' not in guide
    assert [(c.number, c.stream_id, c.name, c.epg_id) for c in kids.channels()] == [
        (100, 13, "Cartoon Shop", "ch13"), (110, 12, "CBeebies", "ch12")]
    assert kids.counts["live"] == 2 and kids.counts["episodes"] == 2
    # a lineup holding everything serves the generation's own files where it can
    whole = views["all"]
    assert whole.guide is None and whole.lists["vod_streams"] is generation.lists["vod_streams"]
    assert whole.allows_episode(503, None) and whole.counts["episodes"] == 4
    assert [r["num"] for r in rows(whole, "live_streams")] == sorted(r["num"] for r in rows(whole, "live_streams"))


def test_views_are_reused_for_the_same_rules_and_numbers(tmp_path: Path) -> None:
    generation = make_generation(tmp_path / "generations" / "g1")
    lineups = parse(KIDS)
    result = build_views(str(generation.path), lineups, str(tmp_path), [])
    first = result["views"]
    assert result["written"] == 2 and result["peak_mb"] > 0
    assert find_views(generation, lineups, tmp_path) == first
    stamp = {name: os.stat(Path(d) / "view.json").st_mtime_ns for name, d in first.items()}
    result = build_views(str(generation.path), lineups, str(tmp_path), [])
    again = result["views"]
    assert result["written"] == 0
    assert again == first and {n: os.stat(Path(d) / "view.json").st_mtime_ns for n, d in again.items()} == stamp
    changed = parse({**KIDS, "kids": {**KIDS["kids"], "number_from": 200}})
    assert find_views(generation, changed, tmp_path) is None
    rebuilt = build_views(str(generation.path), changed, str(tmp_path), [first["kids"]])["views"]
    assert rebuilt["all"] == first["all"] and rebuilt["kids"] != first["kids"]
    assert Path(first["kids"]).is_dir()  # kept: being served
    build_views(str(generation.path), changed, str(tmp_path), [])
    assert not Path(first["kids"]).exists()


def test_numbers_survive_a_new_generation_adding_and_removing_channels(tmp_path: Path) -> None:
    table = {"all": {}}
    g1 = make_generation(tmp_path / "generations" / "g1")
    before = {c.stream_id: c.number for c in build(g1, table, tmp_path)["all"].channels()}
    live = dict(LIVE)
    del live[11], live[17]
    live[20] = ("UK: New One", [1], 0)
    live[21] = ("Brand New", [6], 0)
    g2 = make_generation(tmp_path / "generations" / "g2", live)
    after = {c.stream_id: c.number for c in build(g2, table, tmp_path)["all"].channels()}
    assert {k: after[k] for k in before if k in after} == {k: before[k] for k in after if k in before}
    assert after[20] not in before.values() and after[21] not in before.values()
    assert before[11] not in after.values() and before[17] not in after.values()
    rows_of = rows(build(g2, table, tmp_path)["all"], "live_streams")
    assert {r["stream_id"]: r["num"] for r in rows_of} == after


# -- the Lineups component ---------------------------------------------------------------------

KID = UserConfig("kid", "pw", lineup="kids")
ALICE = UserConfig("alice", "pw")


async def _lineups(tmp_path: Path, table: dict[str, Any]) -> tuple[Lineups, Any]:
    generation = make_generation(tmp_path / "generations" / "g1")
    details: dict[int, int] = {}  # episode -> series, as the series' details tell (EpisodeMap)
    cache = SimpleNamespace(current=None, generation=generation.path, episode_series=details.get, details=details)

    def build_here(*args: Any) -> Any:
        return threads.deferToThread(build_views, *args)

    lineups = Lineups(Clock(), cache, tmp_path, parse(table), build=build_here)  # type: ignore[arg-type]
    return lineups, (cache, generation)


@pytest_twisted.ensureDeferred
async def test_lineups_decide_for_every_kind(tmp_path: Path) -> None:
    lineups, (cache, generation) = await _lineups(tmp_path, KIDS)
    with pytest.raises(Unavailable):
        lineups.may_play(KID, "live", 12)  # no view yet: 503, not a guess
    assert lineups.may_play(ALICE, "live", 15) is True and lineups.view_for(ALICE) is None
    changes: list[Any] = []
    lineups.listeners.append(lambda l: changes.append(dict(l.views)))
    cache.current = generation
    await lineups.refresh()
    assert lineups.builds == 1 and len(changes) == 1
    assert lineups.may_play(KID, "live", 12) is True and lineups.may_play(KID, "live", 15) is False
    assert lineups.may_play(KID, "vod", 103) is False and lineups.may_play(KID, "series", 40) is True
    assert lineups.may_play(KID, "episode", 500) is True
    assert lineups.may_play(KID, "episode", 503) is False  # of no series the playlist or details tell
    cache.details[503] = 42  # the series' details were fetched
    assert lineups.may_play(KID, "episode", 503) is True
    cache.details[502] = 41
    assert lineups.may_play(KID, "episode", 502) is False and lineups.may_keep(KID, "episode", 502) is False
    assert lineups.may_keep(KID, "episode", 999) is True  # of no known series: left playing
    assert [c.stream_id for c in await lineups.channel_list("kids")] == [13, 12]
    with pytest.raises(KeyError):
        await lineups.channel_list("nope")
    kids = lineups.views["kids"]
    await lineups.refresh()  # same rules and numbers: not built again, the same view kept
    assert lineups.builds == 1 and len(changes) == 2 and lineups.views["kids"] is kids
    await lineups.configure(parse({"kids": {"live": {"include_streams": ["id:10"]}}}))
    assert lineups.builds == 2 and lineups.may_play(KID, "live", 12) is False
    assert lineups.may_play(KID, "live", 10) is True and lineups.counts("all") is None


def test_stream_keys() -> None:
    assert stream_of_key(("live", 12)) == ("live", 12) and stream_of_key(("hls", 12)) == ("live", 12)
    assert stream_of_key(("timeshift", 12, "2025-01-01:10-00")) == ("live", 12)
    assert stream_of_key(("movie", 5)) == ("vod", 5) and stream_of_key(("series", 7)) == ("episode", 7)
    assert stream_of_key(None) is None and stream_of_key(("radio", 1)) is None and stream_of_key(("live", "x")) is None


def test_streams_outside_a_users_lineup_are_closed() -> None:
    clock = Clock()
    streams = UserStreams(clock)
    closed: list[Any] = []
    for user, key in (("kid", ("live", 12)), ("kid", ("live", 15)), ("kid", ("movie", 103)),
                      ("alice", ("live", 15)), ("kid", "odd key")):
        streams.open(user, None, key=key, revoke=lambda key=key, user=user: closed.append((user, key)))
    users = {"kid": KID, "alice": ALICE}
    allowed = {("live", 12)}
    lineups = SimpleNamespace(may_keep=lambda user, kind, ident: (kind, ident) in allowed)
    assert close_outside_lineups(streams, users, lineups) == 2  # type: ignore[arg-type]
    assert closed == [("kid", ("live", 15)), ("kid", ("movie", 103))]
    assert streams.count("kid") == 2 and streams.count("alice") == 1


# -- the command line, and start-up ---------------------------------------------------------

CONFIG = """
[upstream]
url = "http://provider.invalid"
username = "u"
password = "p"
[ingest]
data_dir = "{data}"
[[users]]
username = "kid"
password = "kidpw"
lineup = "kids"
[lineups.kids]
adult = "hide"
live = {{include_categories = ["*Kids*"]}}
"""


def test_lineup_show_is_a_dry_run_on_the_current_cache(tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "data"
    config = tmp_path / "xrelay.toml"
    config.write_text(CONFIG.format(data=data))
    assert cli.main(["lineup", "show", "kids", "--config", str(config)]) == 1
    assert "no cached catalog" in capsys.readouterr().err
    from xrelay.catalog.store import CacheStore
    store = CacheStore(data)
    store.prepare()
    generation = make_generation(data / "generations" / "g1")
    (generation.path / "bundle.json").write_text("{}")
    store._point_current_at(generation.path)
    listing = sorted(os.listdir(data))
    assert cli.main(["lineup", "show", "kids", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "lineup kids in g1: 2 live channels in 1 categories" in out
    assert "UK: CBeebies  [UK | Kids]  id 12" in out and "Hot Night" not in out
    assert sorted(os.listdir(data)) == listing  # nothing written
    assert cli.main(["lineup", "show", "nope", "--config", str(config)]) == 2
    assert "no lineup 'nope' (kids)" in capsys.readouterr().err


@pytest.mark.parametrize("lineup, key", [
    ('[lineups.kids]\nlive = {include_streams = ["re:(oops"]}\n', "lineups.kids.live.include_streams[0]"),
    ('[lineups.other]\n', "users[0].lineup: unknown lineup 'kids' (other)"),
    ('[lineups.kids]\nextends = "family"\n', "lineups.kids.extends: unknown lineup 'family'"),
    ('[lineups.kids]\n[[hdhr]]\nname = "t"\ntoken = "tuner-key-1"\nlineup = "sport"\n',
     "hdhr[0].lineup: unknown lineup 'sport' (kids)"),
])
def test_a_bad_lineup_stops_start_up_naming_the_key(tmp_path: Path, capsys: Any, lineup: str, key: str) -> None:
    from xrelay.tap import Options, makeService

    config = tmp_path / "xrelay.toml"
    text = CONFIG.format(data=tmp_path / "data")
    config.write_text(text[:text.index("[lineups.kids]")] + lineup)
    options = Options()
    options.parseOptions(["--config", str(config)])
    with pytest.raises(SystemExit) as stopped:
        makeService(options)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xrelay: {config}: ") and key in err and "\n" not in err
    assert cli.main(["check-config", "--config", str(config)]) == 2
