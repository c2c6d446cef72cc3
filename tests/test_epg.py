"""The EPG index (xrelay.catalog.epg): streaming parse, time window, listings."""

from __future__ import annotations

import base64
import time
from xml.parsers import expat
from zoneinfo import ZoneInfo

import pytest

from xrelay.catalog.epg import build_index, parse_xmltv_time

NOW = parse_xmltv_time("20250601120000 +0000")
HOUR = 3600


def prog(channel: str, start: int, hours: float = 1, title: str = "T", desc: str = "D", lang: str = "en") -> str:
    from datetime import datetime, timezone

    def fmt(t: int) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%d%H%M%S +0000")

    return (f'<programme start="{fmt(start)}" stop="{fmt(start + int(hours * HOUR))}" channel="{channel}">'
            f'<title lang="{lang}">{title}</title><desc>{desc}</desc></programme>\n')


def guide(tmp_path, *programmes: str, extra: str = "") -> str:
    path = tmp_path / "guide.xml"
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<tv>{extra}\n' + "".join(programmes) + "</tv>\n",
                    encoding="utf-8")
    return str(path)


def test_parse_xmltv_time():
    assert parse_xmltv_time("20250101070000 +0000") == 1735714800
    assert parse_xmltv_time("20250101080000 +0100") == 1735714800
    assert parse_xmltv_time("20250101020000 -0500") == 1735714800
    assert parse_xmltv_time("20250101070000") == 1735714800
    assert parse_xmltv_time("202501010700") == 1735714800
    for bad in ("", "garbage", "2025", "20251301070000 +0000"):
        assert parse_xmltv_time(bad) is None


def test_index_sorts_dedupes_and_windows(tmp_path):
    path = guide(
        tmp_path,
        prog("b", NOW + HOUR, title="B later"),
        prog("a", NOW, title="A now"),
        prog("a", NOW - HOUR, title="A before"),
        prog("a", NOW - HOUR, title="A duplicate start"),
        prog("a", NOW - 10 * 86400, title="too old"),
        prog("a", NOW + 10 * 86400, title="too far"),
        prog("b", NOW, title="Ünïcode &amp; &lt;tags&gt;", desc="multi\nline"),
        '<programme start="junk" channel="a"><title>bad time</title></programme>\n',
        extra='<channel id="a"><icon src="@XRELAY_BASE@/asset/a.png"/></channel>',
    )
    index = build_index(path, NOW, past=2 * 86400, future=3 * 86400)
    assert [index.text(i)[0] for i in index.programmes("a")] == ["A before", "A now"]
    assert [index.text(i)[0] for i in index.programmes("b")] == ["Ünïcode & <tags>", "B later"]
    assert index.text(next(iter(index.programmes("b"))))[1] == "multi\nline"
    assert index.markers == 1
    assert index.size == len(open(path, "rb").read())
    assert list(index.programmes("nope")) == [] and list(index.programmes(None)) == []


def test_listings_short_and_simple(tmp_path):
    path = guide(tmp_path, *(prog("a", NOW + h * HOUR, title=f"P{h}") for h in range(-5, 6)))
    index = build_index(path, NOW)
    tz = ZoneInfo("Europe/Berlin")
    short = index.listings("a", NOW + 60, tz, simple=False, limit=None, archive_days=7)
    assert [base64.b64decode(r["title"]).decode() for r in short] == ["P0", "P1", "P2", "P3"]
    assert short[0]["start"] == "2025-06-01 14:00:00"  # CEST
    assert short[0]["start_timestamp"] == str(NOW) and short[0]["stop_timestamp"] == str(NOW + HOUR)
    assert "now_playing" not in short[0]
    assert len(index.listings("a", NOW, tz, simple=False, limit=2, archive_days=7)) == 2
    simple = index.listings("a", NOW + 60, tz, simple=True, limit=None, archive_days=7)
    assert len(simple) == 11
    assert [r["now_playing"] for r in simple].count(1) == 1
    assert [r["has_archive"] for r in simple] == [1] * 5 + [0] * 6
    none = index.listings("a", NOW + 60, tz, simple=True, limit=None, archive_days=0)
    assert [r["has_archive"] for r in none] == [0] * 11
    for r in simple:
        assert isinstance(r["now_playing"], int) and isinstance(r["has_archive"], int)
        assert base64.b64encode(base64.b64decode(r["description"])).decode() == r["description"]


def test_broken_guides_raise(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_bytes(b"<tv><programme start='20250101000000' channel='a'><title>x")
    with pytest.raises(expat.ExpatError):
        build_index(path, NOW)
    with pytest.raises(OSError):
        build_index(tmp_path / "missing.xml", NOW)


def test_texts_on_disk(tmp_path):
    path = guide(tmp_path, *(prog("a", NOW + h * HOUR, title=f"P{h}", desc=f"D{h} é") for h in range(-2, 3)),
                 prog("b", NOW, title="B"))
    memory = build_index(path, NOW)
    disk = build_index(path, NOW, text_path=tmp_path / "texts.bin")
    assert disk.on_disk and not memory.on_disk and disk.texts == b""
    tz = ZoneInfo("UTC")
    for simple in (True, False):
        for channel in ("a", "b", "zz"):
            assert disk.listings(channel, NOW, tz, simple=simple, limit=None, archive_days=1) == \
                   memory.listings(channel, NOW, tz, simple=simple, limit=None, archive_days=1)
    assert (tmp_path / "texts.bin").read_bytes() == bytes(memory.texts)


def test_an_index_saved_and_loaded_answers_the_same(tmp_path) -> None:
    """What the ingest writes is what the daemon serves, after a restart too."""
    from xrelay.catalog.epg import EpgIndex, index_guide

    generation = tmp_path / "gen"
    generation.mkdir()
    now = int(time.time()) // 3600 * 3600
    lines = ['<?xml version="1.0" encoding="utf-8"?>\n<tv>\n']
    for ch in range(20):
        lines.append(f'<channel id="c{ch}"><display-name>C{ch}</display-name></channel>\n')
        for h in range(-30, 6):
            start = time.strftime("%Y%m%d%H%M%S +0000", time.gmtime(now + h * 3600))
            stop = time.strftime("%Y%m%d%H%M%S +0000", time.gmtime(now + (h + 1) * 3600))
            lines.append(f'<programme start="{start}" stop="{stop}" channel="c{ch}">'
                         f'<title>T{ch}-{h}</title><desc>D</desc></programme>\n')
    lines.append("</tv>\n")
    (generation / "guide.xml").write_text("".join(lines))
    built = index_guide(generation, 1, now)
    assert len(built) == 20 * (24 + 6 + 1)  # one day back, programmes ending since then included
    entry = built.save(generation / "api")
    loaded = EpgIndex.load(generation / "api", entry)
    tz = ZoneInfo("UTC")
    assert loaded.channels == built.channels and len(loaded) == len(built)
    assert (loaded.markers, loaded.size, loaded.built_at) == (built.markers, built.size, built.built_at)
    for simple in (True, False):
        assert loaded.listings("c3", now, tz, simple=simple, limit=None, archive_days=1) == \
               built.listings("c3", now, tz, simple=simple, limit=None, archive_days=1)
    # a texts file that does not match the arrays is refused, not misread
    (generation / "api" / entry["texts"]).write_bytes(b"short")
    with pytest.raises(ValueError):
        EpgIndex.load(generation / "api", entry)
