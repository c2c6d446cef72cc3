"""The stepping JSON parser returns exactly what json.loads returns."""

from __future__ import annotations

import json
import random

import pytest

from xrelay.core import jsonparse

CASES = [
    "[]", "{}", " [ 1 , 2 ,3 ] ", '{"a": [1, {"b": [2, 3]}], "c": {}}', '"x"', "3.5", "null",
    '[{"stream_id": 1, "name": "A \\u00e9"}, {"x": [[], {}]}]', '\ufeff[1]',
    '{"a":{"b":{"c":{"d":[1,2,{"e":null}]}}}}',
]


@pytest.mark.parametrize("text", CASES)
def test_same_as_json_loads(text: str) -> None:
    assert jsonparse.loads(text) == json.loads(text.lstrip("\ufeff"))
    assert jsonparse.loads(text.encode()) == json.loads(text.lstrip("\ufeff"))


@pytest.mark.parametrize("text", ["[1,", '{"a" 1}', "[1 2]", '{"a":1,}', "[1]x", "", '{"a":[1,2}',
                                  '{1: 2}', "[{]"])
def test_same_errors(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonparse.loads(text)


def test_random_documents() -> None:
    rng = random.Random(7)

    def value(depth: int) -> object:
        makers = [
            lambda: None, rng.random, lambda: rng.randrange(-5, 10**9),
            lambda: f"s{rng.random()}\n\"",
            lambda: [value(depth + 1) for _ in range(rng.randrange(4))],
            lambda: {f"k{i}": value(depth + 1) for i in range(rng.randrange(4))},
        ]
        return makers[rng.randrange(6 if depth < 4 else 4)]()

    for _ in range(200):
        doc = value(0)
        for indent in (None, 1):
            assert jsonparse.loads(json.dumps(doc, indent=indent)) == doc


def test_the_parser_gives_the_gil_away_between_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big list parsed in a thread pauses every ``_YIELD_EVERY`` rows, so the
    reactor thread gets the GIL at once (how long it waits is measured by
    bench/api_gil_probe.py, not here: a wall-clock bound fails on a busy machine)."""
    rows = [{"stream_id": i, "name": f"Channel {i}"} for i in range(10_000)]
    pauses: list[float] = []
    monkeypatch.setattr(jsonparse.time, "sleep", pauses.append)
    assert jsonparse.loads(json.dumps({"live_streams": rows})) == {"live_streams": rows}
    assert len(pauses) == 10_000 // jsonparse._YIELD_EVERY
    assert all(p > 0 for p in pauses)


def test_iter_rows_parses_one_row_at_a_time() -> None:
    from xrelay.core.jsonparse import iter_rows

    doc = '\ufeff [ {"stream_id": 1, "a": [1, {"b": 2}]}, {"stream_id": 2} ] \n'
    shape, rows = iter_rows(doc)
    assert shape == "list"
    assert next(rows) == (None, {"stream_id": 1, "a": [1, {"b": 2}]})
    assert list(rows) == [(None, {"stream_id": 2})]
    shape, rows = iter_rows(b'{"7": {"x": 1}, "8": {"y": "\\u00e9"}}')
    assert shape == "object" and list(rows) == [("7", {"x": 1}), ("8", {"y": "é"})]
    assert iter_rows("[]")[0] == "list" and list(iter_rows("{}")[1]) == []
    shape, rows = iter_rows(" 42 ")
    assert shape == "int" and list(rows) == []


@pytest.mark.parametrize("doc", ['[{"a": 1}, {"b": ', '[{"a": 1}] trailing', '{"a" 1}', '[1 2]', '{"a": 1,}'])
def test_iter_rows_refuses_what_json_loads_refuses(doc: str) -> None:
    import json

    from xrelay.core.jsonparse import iter_rows

    with pytest.raises(ValueError):
        json.loads(doc)
    with pytest.raises(ValueError):
        list(iter_rows(doc)[1])
