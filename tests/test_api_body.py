"""Placeholder replacement across chunks, file streaming sources and the
precomputed list templates (xrelay.http.body, xrelay.api.answers)."""

from __future__ import annotations

import gzip
import json
import random

import pytest_twisted

from xrelay.api.answers import AnswerCache, ListAnswers, StreamAnswer
from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.lists import build_templates
from xrelay.http.body import MarkerReplacer, MarkerStream

MARKER_B = b"@XRELAY_BASE@"
REPL = [(b"@XRELAY_BASE@", b"http://h:1"), (b"@XRELAY_USER@", b"u"), (b"@XRELAY_LIVEEXT@", b"ts")]


def expected(data: bytes) -> bytes:
    for k, v in REPL:
        data = data.replace(k, v)
    return data


def test_marker_replacer_every_split_point():
    data = b"a@b@@XRELAY_BASE@/x.@XRELAY_LIVEEXT@\r\n@XRELAY_USER@@XRELAY_USER@ @ end@"
    for cut in range(len(data) + 1):
        r = MarkerReplacer(REPL)
        assert r.feed(data[:cut]) + r.feed(data[cut:]) + r.flush() == expected(data), cut


def test_marker_replacer_random_chunks():
    rng = random.Random(7)
    data = b"".join(rng.choice([b"@XRELAY_BASE@", b"@", b"xy", b"@XRELAY_", b"\r\n", b"@XRELAY_USER@"])
                    for _ in range(2000))
    for _ in range(50):
        r = MarkerReplacer(REPL)
        out, pos = [], 0
        while pos < len(data):
            step = rng.randint(1, 40)
            out.append(r.feed(data[pos:pos + step]))
            pos += step
        out.append(r.flush())
        assert b"".join(out) == expected(data)


def test_marker_stream_over_files_with_gzip(tmp_path):
    one, two = tmp_path / "1", tmp_path / "2"
    one.write_bytes(b"@XRELAY_BASE@/a\n" * 50000)
    two.write_bytes(b"tail @XRELAY_USER@")
    for gz in (False, True):
        source = MarkerStream([str(one), str(two)], REPL, gzip=gz, head=b"#head @XRELAY_BASE@\n")
        chunks = []
        while (chunk := source()) is not None:
            chunks.append(chunk)
        body = b"".join(chunks)
        if gz:
            body = gzip.decompress(body)
        assert body == expected(b"#head @XRELAY_BASE@\n" + one.read_bytes() + two.read_bytes())
        assert len(chunks) > 1
        source.close()


ROWS = [{"stream_id": i, "name": f"n{i}", "stream_icon": f"@XRELAY_BASE@/asset/{i}.png" if i % 3 else "",
         "category_id": str(i % 4 + 1), "category_ids": [i % 4 + 1] + ([9] if i % 5 == 0 else [])}
        for i in range(1, 40)]


def in_category(rows, category):
    return [{**r, "category_id": str(category)} for r in rows if category in r["category_ids"]]


def test_list_template_in_memory_and_on_disk(tmp_path):
    base = b"http://tv:8080"
    want = json.loads(json.dumps(ROWS).replace("@XRELAY_BASE@", base.decode()))
    for path in (None, tmp_path / "t.json"):
        t = ListTemplate.build(ROWS, path)
        assert (t.data is None) == (path is not None and t.size > 1 << 20)
        assert json.loads(t.full(base)) == want
        assert len(t.full(base)) == t.length_for(base)
        assert gzip.decompress(t.full_gzip(base)) == t.full(base)
        assert json.loads(t.slice(base, None, 5)) == want[:5]
        assert json.loads(t.slice(base, 2, None)) == in_category(want, 2)
        assert json.loads(t.slice(base, 9, 2)) == in_category(want, 9)[:2]
        # XUI's way: a row in several categories names the one asked for
        assert {r["category_id"] for r in json.loads(t.slice(base, 9, None))} == {"9"}
        assert t.slice(base, 77, None) == b"[]"
        if path is not None:
            assert path.read_bytes() == t.full(MARKER_B)
    for path in (None, tmp_path / "e.json"):
        empty = ListTemplate.build([], path)
        assert empty.full(base) == b"[]" and empty.size == 2


def test_big_template_stays_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr("xrelay.catalog.list_template.IN_MEMORY", 100)
    t = ListTemplate.build(ROWS, tmp_path / "big.json")
    assert t.data is None
    base = b"http://x:1"
    assert json.loads(t.slice(base, 2, None)) == in_category(json.loads(t.full(base)), 2)
    assert gzip.decompress(t.full_gzip(base)) == t.full(base)
    assert len(t.full(base)) == t.length_for(base)


@pytest_twisted.ensureDeferred
async def test_list_answers_cache_and_gzip():
    answers = ListAnswers(budget=10_000_000)
    answers.adopt(build_templates({"live_streams": ROWS}))
    base = b"http://a:1"
    first = await answers.answer("live_streams", base)
    assert await answers.answer("live_streams", base) is first  # served from the cache
    zipped = await answers.answer("live_streams", base, gz=True)
    assert gzip.decompress(zipped) == first
    other = await answers.answer("live_streams", b"http://b:2")
    assert b"http://b:2/asset/" in other and base not in other
    assert await answers.answer("vod_streams", base) == b"[]"
    answers.adopt(build_templates({"live_streams": ROWS[:3]}))
    assert len(json.loads(await answers.answer("live_streams", base))) == 3


@pytest_twisted.ensureDeferred
async def test_list_answers_stream_lists_too_big_for_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("xrelay.catalog.list_template.IN_MEMORY", 100)
    answers = ListAnswers(budget=2000)  # the list (about 4 KB) is over half of it
    answers.adopt(build_templates({"live_streams": ROWS}, tmp_path))
    base = b"http://a:1"
    streamed = await answers.answer("live_streams", base)
    assert isinstance(streamed, StreamAnswer)
    source, chunks = streamed.source(), []
    while (chunk := source()) is not None:
        chunks.append(chunk)
    body = b"".join(chunks)
    assert len(body) == streamed.length
    assert gzip.decompress(await answers.answer("live_streams", base, gz=True)) == body
    assert json.loads(await answers.answer("live_streams", base, limit=4)) == json.loads(body)[:4]




@pytest_twisted.ensureDeferred
async def test_big_lists_are_kept_once_per_base_in_one_shared_budget(tmp_path, monkeypatch):
    monkeypatch.setattr("xrelay.catalog.list_template.IN_MEMORY", 100)
    cache = AnswerCache(budget=20_000)
    whole, lineup = ListAnswers(cache), ListAnswers(cache)
    whole.adopt(build_templates({"live_streams": ROWS}, tmp_path / "whole"))
    lineup.adopt(build_templates({"live_streams": ROWS[:20]}, tmp_path / "lineup"))
    base = b"http://a:1"
    first = await whole.answer("live_streams", base)
    assert isinstance(first, bytes) and await whole.answer("live_streams", base) is first  # kept
    assert len(json.loads(first)) == len(ROWS) and b"http://a:1/asset/" in first
    small = await lineup.answer("live_streams", base)
    assert len(json.loads(small)) == 20 and cache.size == len(first) + len(small)
    # one budget: more bases than fit push the least recently used out
    for n in range(8):
        await whole.answer("live_streams", b"http://host%d:1" % n)
    assert cache.size <= cache.budget
    assert await whole.answer("live_streams", base) is not first  # evicted, made again
    # a new catalog forgets its old answers, and only its own
    small = await lineup.answer("live_streams", base)
    kept = cache.size
    lineup.adopt(build_templates({"live_streams": ROWS[:5]}, tmp_path / "lineup2"))
    assert cache.size == kept - len(small)
