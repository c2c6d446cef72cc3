"""Logs: the JSON format, twistd integration, and a whole session's log scanned for secrets."""

from __future__ import annotations

import io
import os
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure

from daemon import ADMIN, Daemon, start_provider
from streamclient import open_stream
from xrelay.ops.logs import LoggingRoot, event_as_json_line, json_observer, observer_for


def test_one_json_object_per_line_with_the_structured_fields() -> None:
    out = io.StringIO()
    observer = json_observer(out)
    log = Logger(namespace="xrelay.test", observer=observer)
    log.info("evicted {viewer} from {channel}:\nbehind", viewer="alice@10.0.0.2", channel=7,
             behind=123456, event="viewer_evicted")
    log.warn("ingest failed: {reason}", reason="xmltv.php: cut off", outcome="failed", duration=1.5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "evicted alice@10.0.0.2 from 7:\nbehind"
    assert first["level"] == "info" and first["system"] == "xrelay.test"
    assert first["channel"] == 7 and first["behind"] == 123456 and first["event"] == "viewer_evicted"
    assert first["time"].endswith("Z")
    assert second["level"] == "warn" and second["outcome"] == "failed" and second["duration"] == 1.5


def test_failures_carry_their_traceback_and_odd_values_become_text() -> None:
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    line = event_as_json_line({"log_format": "boom {thing}", "log_level": LogLevel.error,
                               "log_namespace": "x", "log_time": 0.5, "log_failure": failure,
                               "thing": object(), "path": Path("/var/lib/xrelay")})
    data = json.loads(line)
    assert line.endswith("\n") and line.count("\n") == 1
    assert "ZeroDivisionError" in data["traceback"]
    assert data["path"] == "/var/lib/xrelay" and data["level"] == "error"
    assert data["time"] == "1970-01-01T00:00:00.500Z"


def test_legacy_messages_and_scrubbing() -> None:
    line = event_as_json_line({"message": ("GET /x?password=hunter2",), "log_time": 1.0, "isError": 0,
                               "system": "-"}, scrub=lambda s: s.replace("hunter2", "***"))
    data = json.loads(line)
    assert data["message"] == "GET /x?password=***"


def test_the_text_log_is_scrubbed_too() -> None:
    import io

    out = io.StringIO()
    observer = observer_for("text", out, scrub=lambda text: text.replace("sekrit", "***"))
    observer({"log_format": "failed for {url}", "url": "http://h/sekrit/1.ts",
              "log_level": LogLevel.error, "log_namespace": "x", "log_time": 0.0})
    assert "***" in out.getvalue() and "sekrit" not in out.getvalue()


def test_logging_root_hands_the_observer_to_twistd() -> None:
    observer = observer_for("json")
    assert observer is not None and observer_for("text") is not None
    application = Application("xrelay")
    root = LoggingRoot(observer)
    root.setServiceParent(application)
    assert application.getComponent(ILogObserver) is observer
    plain = Application("xrelay")
    LoggingRoot(None).setServiceParent(plain)
    assert plain.getComponent(ILogObserver, None) is None


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_twistd_writes_json_lines(tmp_path: Path) -> None:
    provider = await start_provider()
    daemon = Daemon(tmp_path, provider, log_format="json")
    try:
        await daemon.start()
        await daemon.wait_line('"outcome": "ok"')
        response = await treq.get(daemon.url + "/player_api.php?username=alice&password=alicepw")
        await response.content()
        await daemon.wait_line("player_api.php")
        await daemon.stop()
        records = [json.loads(line) for line in daemon.lines if line.strip()]
        assert len(records) == len([line for line in daemon.lines if line.strip()])
        start = [r for r in records if r.get("event") == "start"]
        assert start and start[0]["users"] == 2 and start[0]["level"] == "info"
        assert any(r.get("outcome") == "ok" and "ingest succeeded" in r["message"] for r in records)
        assert any("twistd" in r["message"] and "starting up" in r["message"] for r in records)
        access = [r for r in records if "player_api.php" in r["message"]]
        assert access and "alicepw" not in access[0]["message"]
    finally:
        await daemon.stop()
        await provider.stop()


async def fetch(url: str, **kw: Any) -> tuple[int, bytes]:
    response = await treq.get(url, **kw)
    return response.code, await response.content()


async def read_some(url: str, amount: int = 188 * 50) -> int:
    response, reader = await open_stream(url, keep=0)
    if response.code == 200:
        try:
            await reader.wait_bytes(amount)
        finally:
            reader.close()
    else:
        await response.content()
    return response.code


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_a_whole_session_never_logs_the_provider_secrets(tmp_path: Path) -> None:
    """Ingest, every API, live, HLS, a movie, an episode, catch-up, the
    admin pages, bad logins, a reload: then scan every log line."""
    provider = await start_provider()
    daemon = Daemon(tmp_path, provider)
    username, password = provider.settings.username, provider.settings.password
    netloc = provider.url.split("://", 1)[1]
    base = daemon.url
    creds = "username=alice&password=alicepw"
    try:
        await daemon.start()
        await daemon.wait_line("ingest succeeded")
        live_id = (await daemon.live_ids())[0]
        _, body = await fetch(f"{base}/player_api.php?{creds}&action=get_vod_streams")
        movie = json.loads(body)[0]
        _, body = await fetch(f"{base}/player_api.php?{creds}&action=get_series")
        series_id = json.loads(body)[0]["series_id"]
        _, body = await fetch(f"{base}/player_api.php?{creds}&action=get_series_info&series_id={series_id}")
        episodes = json.loads(body).get("episodes") or {}
        episode = next(iter(episodes.values()))[0] if episodes else None
        for action in ("", "&action=get_live_categories", "&action=get_vod_categories",
                       f"&action=get_vod_info&vod_id={movie['stream_id']}",
                       f"&action=get_short_epg&stream_id={live_id}",
                       f"&action=get_simple_data_table&stream_id={live_id}"):
            await fetch(f"{base}/player_api.php?{creds}{action}")
        await fetch(f"{base}/panel_api.php?{creds}")
        await fetch(f"{base}/get.php?{creds}&type=m3u_plus&output=ts")
        await fetch(f"{base}/xmltv.php?{creds}")
        for alias in ("/player_api/alice/alicepw", "/player_api/alice/alicepw/get_live_categories",
                      "/playlist/alice/alicepw/m3u_plus", "/epg/alice/alicepw/gz"):
            code, _ = await fetch(base + alias)
            assert code == 200, alias
        await fetch(f"{base}/player_api.php?username=alice&password=WRONG")
        # someone trying the provider's own login on xrelay
        await fetch(f"{base}/player_api.php?username={username}&password={password}")
        await read_some(f"{base}/live/{username}/{password}/1.ts")

        assert await read_some(f"{base}/live/alice/alicepw/{live_id}.ts") == 200
        await read_some(f"{base}/alice/alicepw/{live_id}")
        await fetch(f"{base}/live/alice/alicepw/{live_id}.m3u8")
        await read_some(f"{base}/movie/alice/alicepw/{movie['stream_id']}.{movie.get('container_extension') or 'mp4'}")
        if episode is not None:
            await read_some(f"{base}/series/alice/alicepw/{episode['id']}.{episode.get('container_extension') or 'mp4'}")
        await read_some(f"{base}/timeshift/alice/alicepw/30/2026-01-01:10-00/{live_id}.ts")
        await read_some(f"{base}/timeshifts/alice/alicepw/30/{live_id}/2026-01-01:10-00.ts")
        await read_some(f"{base}/live/alice/WRONG/{live_id}.ts")
        await read_some(f"{base}/live/alice/alicepw/999999.ts")

        for path in ("/admin", "/admin/live", "/admin/state.json", "/metrics", "/status"):
            code, _ = await fetch(base + path, auth=ADMIN)
            assert code == 200, path
            await fetch(base + path, auth=("admin", "WRONG"))

        mark = daemon.mark()
        provider.faults.xmltv = "truncated"  # a failed ingest logs its reason
        daemon.signal(signal.SIGHUP)
        await daemon.wait_line("ingest failed", after=mark)
    finally:
        await daemon.stop()
        await provider.stop()

    text = daemon.text
    if os.environ.get("XRELAY_DUMP_LOG"):
        Path(os.environ["XRELAY_DUMP_LOG"]).write_text(text)
    # the access log ran, for streams the client closed too
    assert f'"GET /live/alice/***/{live_id}.ts" 200' in text
    assert '"GET /movie/alice/***/' in text
    assert "ingest failed" in text and "ingest succeeded" in text
    assert "alicepw" not in text and "WRONG" not in text  # users' passwords neither
    for number, line in enumerate(daemon.lines, 1):
        for secret in (password, username, netloc):
            assert secret not in line, f"log line {number} contains a provider secret: {line}"


@pytest.mark.parametrize("uri, logged", [
    ("/live/alice/pw/1.ts", "/live/alice/***/1.ts"),
    ("/alice/pw/1", "/alice/***/1"),
    ("/player_api/alice/pw", "/player_api/alice/***"),
    ("/player_api/alice/pw/get_live_streams", "/player_api/alice/***/get_live_streams"),
    ("/playlist/alice/pw/m3u_plus", "/playlist/alice/***/m3u_plus"),
    ("/epg/alice/pw", "/epg/alice/***"),
    ("/timeshifts/alice/pw/30/7/2026-01-01:10-00.ts", "/timeshifts/alice/***/30/7/2026-01-01:10-00.ts"),
    ("/timeshift/alice/pw/30/2026-01-01:10-00/7.ts", "/timeshift/alice/***/30/2026-01-01:10-00/7.ts"),
    ("/get.php?username=alice&password=pw&type=m3u", "/get.php?username=alice&password=***&type=m3u"),
])
def test_access_log_masks_passwords_in_every_url_form(uri: str, logged: str) -> None:
    from xrelay.web.site import redact_uri

    assert redact_uri(uri) == logged
