"""The stepping JSON parser returns exactly what json.loads returns."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from xrelay import jsonparse

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


def test_the_gil_changes_hands_while_parsing() -> None:
    """A big list parsed in a thread: the main thread is never starved long."""
    rows = [{"stream_id": i, "name": f"Channel {i}", "category_ids": [1, 2], "x": "y" * 40}
            for i in range(200_000)]
    text = json.dumps({"live_streams": rows})
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(jsonparse.loads(text)))
    longest = 0.0
    last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    worker.join()
    assert result[0] == {"live_streams": rows}
    assert longest < 0.2, f"the main thread waited {longest * 1000:.0f} ms"


def test_iter_rows_parses_one_row_at_a_time() -> None:
    from xrelay.jsonparse import iter_rows

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

    from xrelay.jsonparse import iter_rows

    with pytest.raises(ValueError):
        json.loads(doc)
    with pytest.raises(ValueError):
        list(iter_rows(doc)[1])
