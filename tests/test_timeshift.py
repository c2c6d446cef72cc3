"""Catch-up through xrelay: both URL forms, START conversion, archive window."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
import treq

from harness import start_relay
from media_helpers import LogCapture, assert_no_secrets, raw_request
from xrelay.core.config import ServerConfig
from xrelay.demo.provider import DemoSettings
from xrelay.demo.sample import sample_clip
from xrelay.media.timeshift import parse_start, provider_start

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

# -- START parsing (unit) ----------------------------------------------------------


@pytest.mark.parametrize("text", [
    "2024-07-01:20-15", "2024-07-01:20-15-00", "2024-07-01_20-15", "2024-07-01:20:15",
    "2024-07-01 20:15:00", "2024-07-01T20:15:00", "2024-07-01T18:15:00Z",
    "2024-07-01T14:15:00-04:00", "1719857700", "1719857700000", "20240701201500",
])
def test_parse_start_forms(text: str) -> None:
    moment = parse_start(text, BERLIN)  # 20:15 in Berlin (CEST) = 18:15 UTC
    assert moment is not None
    assert moment.timestamp() == datetime(2024, 7, 1, 18, 15, tzinfo=timezone.utc).timestamp()


def test_parse_start_hour_form_and_junk() -> None:
    assert parse_start("20240701-20", BERLIN) == datetime(2024, 7, 1, 20, 0, tzinfo=BERLIN)
    for junk in ("", "yesterday", "123", "2024-13-01:20-15", "2024-07-01:25-00"):
        assert parse_start(junk, BERLIN) is None


def test_provider_start_is_the_panels_local_wall_clock() -> None:
    moment = datetime(2024, 1, 15, 12, 30, tzinfo=timezone.utc)
    assert provider_start(moment, NEW_YORK) == "2024-01-15:07-30"
    assert provider_start(moment, BERLIN) == "2024-01-15:13-30"


# -- over real sockets --------------------------------------------------------------


def _start(tmp_path: Any, **settings: Any) -> Any:
    return start_relay(
        tmp_path, settings=DemoSettings(timezone="America/New_York", redirect_streams=False, **settings),
        server=ServerConfig(listen="tcp:0:interface=127.0.0.1", timezone="Europe/Berlin"))


def _recent(minutes_ago: int) -> datetime:
    now = int(time.time()) // 60 * 60
    return datetime.fromtimestamp(now - minutes_ago * 60, timezone.utc)


def _archive_channel(relay: Any) -> int:
    return next(sid for sid, row in sorted(relay.live_by_id.items()) if row["tv_archive"])


@pytest_twisted.ensureDeferred
async def test_both_forms_convert_start_into_the_providers_timezone(tmp_path: Any) -> None:
    relay = await _start(tmp_path)
    logs = LogCapture().__enter__()
    try:
        sid = _archive_channel(relay)
        moment = _recent(90)
        expected = moment.astimezone(NEW_YORK).strftime("%Y-%m-%d:%H-%M")
        berlin = moment.astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
        body = sample_clip().data * 2
        stats = relay.provider.stats
        answers = []

        path = await raw_request(relay.port, f"/timeshift/alice/alicepw/60/{berlin}/{sid}.ts")
        answers.append(path)
        assert path.status == 200 and path.body == body
        assert path.headers[b"content-type"] == b"video/mp2t"

        epoch = int(moment.timestamp())
        query = await raw_request(
            relay.port, f"/streaming/timeshift.php?username=alice&password=alicepw&stream={sid}"
                        f"&start={epoch}&duration=45", headers={"Range": "bytes=1000-1999"})
        answers.append(query)
        assert query.status == 206 and query.body == body[1000:2000]
        assert query.headers[b"content-range"] == b"bytes 1000-1999/%d" % len(body)

        iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        short = await raw_request(
            relay.port, f"/timeshift.php?username=alice&password=alicepw&stream={sid}.ts"
                        f"&start={iso}&duration=30", headers={"Range": "bytes=-100"})
        answers.append(short)
        assert short.status == 206 and short.body == body[-100:]

        alternate = await raw_request(relay.port, f"/timeshifts/alice/alicepw/20/{sid}/{berlin}.ts",
                                      headers={"Range": "bytes=0-9"})
        answers.append(alternate)
        assert alternate.status == 206 and alternate.body == body[:10]

        received = stats.timeshift
        assert [(r.stream_id, r.start, r.duration, r.form) for r in received] == [
            (sid, expected, 60, "path"), (sid, expected, 45, "path"), (sid, expected, 30, "path"),
            (sid, expected, 20, "path")]
        assert all(r.start_utc == int(moment.timestamp()) for r in received)
        assert expected != berlin  # the conversion did something
        assert_no_secrets(relay, *answers)
        logs.assert_no_secrets(relay)
    finally:
        logs.__exit__()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_refusals_are_clear_and_never_reach_the_provider(tmp_path: Any) -> None:
    relay = await _start(tmp_path)
    try:
        rows = relay.live_by_id
        sid = _archive_channel(relay)
        plain = next(s for s, row in sorted(rows.items()) if not row["tv_archive"])
        days = rows[sid]["tv_archive_duration"]
        ok = _recent(30).astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
        too_old = _recent(days * 1440 + 180).astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
        future = _recent(-120).astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
        cases = [
            (f"/timeshift/alice/wrong/60/{ok}/{sid}.ts", 401, b""),
            (f"/timeshift/carol/carolpw/60/{ok}/{sid}.ts", 403, b""),
            (f"/timeshift/alice/alicepw/60/{ok}/99999.ts", 404, b"unknown"),
            (f"/timeshift/alice/alicepw/60/{ok}/{plain}.ts", 404, b"no catch-up"),
            (f"/timeshift/alice/alicepw/60/{too_old}/{sid}.ts", 404, b"archive"),
            (f"/timeshift/alice/alicepw/60/{future}/{sid}.ts", 404, b"not started"),
            (f"/timeshift/alice/alicepw/60/yesterday/{sid}.ts", 400, b"bad start"),
            (f"/timeshift/alice/alicepw/0/{ok}/{sid}.ts", 400, b"bad duration"),
            (f"/timeshift/alice/alicepw/abc/{ok}/{sid}.ts", 400, b"bad duration"),
            (f"/streaming/timeshift.php?username=alice&password=alicepw&stream={plain}"
             f"&start={ok}&duration=60", 404, b"no catch-up"),
        ]
        for path, code, text in cases:
            answer = await raw_request(relay.port, path)
            assert answer.status == code, path
            assert text in answer.body, (path, answer.body)
            assert_no_secrets(relay, answer)
        assert relay.provider.stats.requests["timeshift"] == 0
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_archive_flags_served_match_what_the_relay_accepts(tmp_path: Any) -> None:
    """Every channel row (as the API serves it): archive channels play at the
    edge of their window and are refused just beyond it; others are refused."""
    relay = await _start(tmp_path, live=10)
    try:
        rows = relay.live_by_id
        if relay.xr.api is not None:  # what players really read: the API's answer
            response = await treq.get(f"{relay.url}/player_api.php?username=bob&password=bobpw"
                                      "&action=get_live_streams")
            served = json.loads(await response.content())
            rows = {int(r["stream_id"]): r for r in served}
            assert set(rows) == set(relay.live_by_id)
        assert any(r["tv_archive"] for r in rows.values())
        assert any(not r["tv_archive"] for r in rows.values())
        for sid, row in sorted(rows.items()):
            days = int(row["tv_archive_duration"] or 0)
            inside = _recent(max(days * 1440 - 60, 30)).astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
            outside = _recent(days * 1440 + 180).astimezone(BERLIN).strftime("%Y-%m-%d:%H-%M")
            first = await raw_request(relay.port, f"/timeshift/bob/bobpw/30/{inside}/{sid}.ts",
                                      headers={"Range": "bytes=0-187"})
            if int(row["tv_archive"]):
                assert days > 0
                assert first.status == 206, sid
                second = await raw_request(relay.port, f"/timeshift/bob/bobpw/30/{outside}/{sid}.ts")
                assert second.status == 404, sid
            else:
                assert days == 0
                assert first.status == 404, sid
    finally:
        await relay.stop()


@pytest.mark.parametrize("path", [
    "/live/alice/alicepw/%C2%B2.ts", "/alice/alicepw/%C2%B2", "/movie/alice/alicepw/%C2%B2.mp4",
    "/series/alice/alicepw/%C2%B2.mkv", "/live/alice/alicepw/%E0%A5%A7.ts",
    "/timeshift/alice/alicepw/60/2024-01-01:10-00/%C2%B2.ts",
    "/timeshift/alice/alicepw/60/%C2%B2%C2%B2%C2%B2%C2%B2-01-01:10-00/1.ts",
    "/streaming/timeshift.php?username=alice&password=alicepw&stream=%C2%B2&start=2024-01-01:10-00&duration=60",
])
@pytest_twisted.ensureDeferred
async def test_unicode_digits_are_not_ids(tmp_path: Any, path: str) -> None:
    """str.isdigit() accepts '²' and '१': such ids get a 4xx, never a 500 or a stream."""
    relay = await start_relay(tmp_path)
    try:
        answer = await raw_request(relay.port, path)
        assert 400 <= answer.status < 500, (path, answer.status)
    finally:
        await relay.stop()
