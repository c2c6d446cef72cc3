"""Stable channel numbers per lineup (xrelay.catalog.numbering), alone and
through a re-ingest (xrelay.catalog.selection)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest
from twisted.internet.task import Clock

from xrelay.catalog import rows as catalog
from xrelay.catalog.generation import Generation, load_generation
from xrelay.core.lineups import parse_lineups
from xrelay.catalog.numbering import (ALIGN, FAVOURITES, FILE_NAME, RETIRE_AFTER, ChannelNumbers,
                                      LineupNumbers)
from xrelay.catalog.prepare import prepare
from xrelay.catalog.selection import compute_selections

DAY = 86400.0


def numbered(state: LineupNumbers, channels: Sequence[tuple[int, int]], now: float = 0.0,
             number_from: int = 1) -> dict[int, int]:
    """(channel id, block key) in lineup order -> their numbers."""
    ids, keys = [c for c, _ in channels], [k for _, k in channels]
    return dict(zip(ids, state.assign(ids, keys, number_from, now)))


def test_first_numbering_in_blocks_per_category() -> None:
    state = LineupNumbers()
    got = numbered(state, [(1, 10), (2, 10), (3, 20), (4, 10), (5, FAVOURITES), (6, 30)])
    # block of category 10: 3 channels + 5 spare, rounded to ALIGN; the next block starts aligned
    assert got == {1: 1, 2: 2, 4: 3, 3: 11, 5: 21, 6: 31}
    assert state.blocks == [[10, 1, 10], [20, 11, 20], [FAVOURITES, 21, 30], [30, 31, 40]]
    assert ALIGN == 10


def test_number_from() -> None:
    state = LineupNumbers(100)
    assert numbered(state, [(1, 10), (2, 20)], number_from=100) == {1: 100, 2: 110}


def test_big_blocks_keep_ten_percent_spare() -> None:
    state = LineupNumbers()
    numbered(state, [(i, 10) for i in range(200)] + [(1000, 20)])
    assert state.blocks[0] == [10, 1, 220] and state.blocks[1][1] == 221


def test_channels_keep_their_numbers_and_new_ones_fill_their_block() -> None:
    state = LineupNumbers()
    first = numbered(state, [(1, 10), (2, 10), (3, 20), (4, 20)], now=0)
    assert first == {1: 1, 2: 2, 3: 11, 4: 12}
    # re-ingest: 2 is gone, 5 is new in category 10, 6 in 20, 3 moved category, 7 in a new category
    second = numbered(state, [(5, 10), (1, 10), (3, 10), (6, 20), (4, 20), (7, 40)], now=DAY)
    assert second == {5: 3, 1: 1, 3: 11, 6: 13, 4: 12, 7: 21}
    assert state.retired == {2: DAY}


def test_retired_numbers_are_not_reused_for_90_days() -> None:
    state = LineupNumbers()
    numbered(state, [(1, 10), (2, 10), (3, 10)], now=0)
    numbered(state, [(1, 10), (3, 10)], now=DAY)  # 2 retired
    assert numbered(state, [(1, 10), (3, 10), (8, 10)], now=DAY + RETIRE_AFTER - 1)[8] == 4
    # long after: number 2 is free again, and the block's lowest free number
    assert numbered(state, [(1, 10), (3, 10), (8, 10), (9, 10)], now=DAY + RETIRE_AFTER)[9] == 2
    assert state.retired == {}


def test_a_returning_channel_gets_a_new_number() -> None:
    state = LineupNumbers()
    numbered(state, [(1, 10), (2, 10)], now=0)
    numbered(state, [(1, 10)], now=DAY)
    assert numbered(state, [(1, 10), (2, 10)], now=2 * DAY)[2] == 3  # its old number is retired


def test_a_full_block_overflows_into_a_new_block_after_the_last() -> None:
    state = LineupNumbers()
    numbered(state, [(i, 10) for i in range(1, 6)] + [(100, 20)])  # 10: 1..10, 20: 11..20
    more = numbered(state, [(i, 10) for i in range(1, 13)] + [(100, 20)], now=DAY)
    assert [more[i] for i in range(6, 13)] == [6, 7, 8, 9, 10, 21, 22]
    assert state.blocks[-1][0] == 10 and state.blocks[-1][1] == 21


def test_unused_blocks_are_forgotten() -> None:
    state = LineupNumbers()
    numbered(state, [(1, 10), (2, 20)], now=0)
    numbered(state, [(1, 10)], now=DAY)
    assert [b[0] for b in state.blocks] == [10, 20]  # 11 is retired: its block stays
    numbered(state, [(1, 10)], now=DAY + RETIRE_AFTER)
    assert [b[0] for b in state.blocks] == [10]


def test_changing_number_from_numbers_afresh() -> None:
    state = LineupNumbers()
    numbered(state, [(1, 10), (2, 20)])
    assert numbered(state, [(1, 10), (2, 20)], now=DAY, number_from=500) == {1: 500, 2: 510}
    assert state.retired == {}


def test_file_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(1_000_000)
    numbers = ChannelNumbers(tmp_path, clock)
    numbers.load()
    assert list(numbers.assign("kids", [1, 2], [10, 10])) == [1, 2]
    assert list(numbers.assign("all", [2], [10], number_from=7)) == [7]
    assert numbers.save() and not numbers.save()  # written once, then unchanged
    clock.advance(DAY)
    again = ChannelNumbers(tmp_path, clock)
    again.load()
    assert list(again.assign("kids", [3, 2], [10, 10])) == [3, 2]
    assert again.lineups["kids"].retired == {1: 1_000_000 + DAY}
    assert again.save()
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert saved["lineups"]["kids"]["numbers"] == {"2": 2, "3": 3}
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left


def test_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text('{"format": 1, "lineups": {"kids": {"blocks": [')
    numbers = ChannelNumbers(tmp_path, Clock())
    numbers.load()
    assert numbers.lineups == {}
    assert (tmp_path / (FILE_NAME + ".damaged")).exists() and not (tmp_path / FILE_NAME).exists()
    assert list(numbers.assign("kids", [1], [10])) == [1] and numbers.save()


# -- through a re-ingest ------------------------------------------------------------------

def make_generation(directory: Path, channels: list[tuple[int, int]]) -> Generation:
    """A generation whose live channels are (id, category) in this order."""
    directory.mkdir(parents=True)
    (directory / "guide.xml").write_text('<?xml version="1.0"?>\n<tv></tv>\n')
    prepare({
        "generated_at": 1, "account": {}, "counts": {}, "episodes": [],
        "live_categories": catalog.normalise_categories(
            [{"category_id": str(c), "category_name": f"Group {c}"} for c in (1, 2, 3)]),
        "live_streams": catalog.normalise_live(
            [{"stream_id": i, "name": f"Channel {i}", "category_id": str(c)} for i, c in channels]),
    }, directory)
    return load_generation(directory)


@pytest.fixture
def lineups() -> dict:
    return parse_lineups({"all": {}, "tuner": {"number_from": 100, "live": {"exclude_categories": ["Group 3"]}}},
                         [], "xrelay.toml")


def test_numbers_survive_a_reingest_that_adds_and_removes_channels(tmp_path: Path, lineups: dict) -> None:
    clock = Clock()
    data = tmp_path / "data"
    g1 = make_generation(tmp_path / "g1", [(10, 1), (11, 1), (12, 1), (20, 2), (21, 2), (30, 3)])
    numbers = ChannelNumbers(data, clock)
    numbers.load()
    first = compute_selections(g1, lineups, numbers)
    numbers.save()
    assert [first["all"].kinds["live"].number(i) for i in (10, 11, 12, 20, 21, 30)] == [1, 2, 3, 11, 12, 21]
    assert [first["tuner"].kinds["live"].number(i) for i in (10, 11, 12, 20, 21)] == [100, 101, 102, 110, 111]

    clock.advance(6 * 3600)
    # the provider drops 11 and 20, adds 13 (group 1), 22 (group 2) and 31 (group 3), reorders
    g2 = make_generation(tmp_path / "g2", [(13, 1), (12, 1), (10, 1), (22, 2), (21, 2), (31, 3), (30, 3)])
    numbers = ChannelNumbers(data, clock)  # a restarted daemon reads the file
    numbers.load()
    second = compute_selections(g2, lineups, numbers)
    numbers.save()
    live = second["all"].kinds["live"]
    assert {i: live.number(i) for i in (10, 12, 13, 21, 22, 30, 31)} == {
        10: 1, 12: 3, 13: 4, 21: 12, 22: 13, 30: 21, 31: 22}
    tuner = second["tuner"].kinds["live"]
    assert {i: tuner.number(i) for i in (10, 12, 13, 21, 22)} == {10: 100, 12: 102, 13: 103, 21: 111, 22: 112}
    assert tuner.number(31) is None
    # shown by number
    template = g2.lists["live_streams"]
    assert [template.row(r)["stream_id"] for r in live.rows] == [10, 12, 13, 21, 22, 30, 31]
    assert list(live.numbers) == [1, 3, 4, 12, 13, 21, 22]
    assert list(tuner.numbers) == [100, 102, 103, 111, 112]

    clock.advance(DAY)
    # 11 comes back: its old number 2 is retired, it gets the next free one
    g3 = make_generation(tmp_path / "g3", [(10, 1), (11, 1), (12, 1), (13, 1)])
    third = compute_selections(g3, lineups, numbers)
    assert third["all"].kinds["live"].number(11) == 5
