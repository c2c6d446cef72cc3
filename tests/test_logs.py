"""Logs: where twistd sends them, the JSON format, masking before encoding, a
daemonised twistd writing its --logfile, and a whole session's log scanned for secrets."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import pytest_twisted
import treq
from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger, LogLevel, capturedLogs, textFileLogObserver
from twisted.python.failure import Failure
from twisted.python.syslog import SyslogObserver
from twisted.scripts.twistd import ServerOptions

from daemon import ADMIN, REPO, Daemon, start_provider
from streamclient import open_stream
from xrelay.core.config import UpstreamConfig
from xrelay.core.scrub import Scrubber
from xrelay.demo.provider import DemoSettings
from xrelay.ops.logs import (Destination, LoggingRoot, MaskedFailure, ScrubbingObserver, destination,
                             event_as_json_line, json_observer, masked_event, open_destination, premasked,
                             text_observer, twistd_observer)

#: A provider password that JSON escapes (and a username short enough to be masked only in URLs).
AWKWARD = UpstreamConfig(url="http://panel.example:8080", username="ab", password='pa"ss\\wo/rd')


class _Reactor:
    """Records callFromThread calls (what the SIGUSR1 handler does)."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.calls.append(f)


def fake_reactor() -> Any:
    """What the log needs of an ``IReactorFromThreads``: callFromThread."""
    return _Reactor()


def logger_to(observer: Any) -> Logger:
    """A logger publishing to *observer* only."""
    return Logger(namespace="xrelay.test", observer=observer)


def twistd_options(*argv: str) -> Any:
    """twistd's own options, parsed as twistd parses them; what xrelay's
    ``Options.parent`` is under twistd."""
    config = ServerOptions()
    config.parseOptions([*argv, "xrelay", "--demo"])
    assert config.subOptions.parent is config
    return config


# -- the JSON format ------------------------------------------------------------------


def test_one_json_object_per_line_with_the_structured_fields() -> None:
    out = io.StringIO()
    observer = json_observer(out)
    log = logger_to(observer)
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


# -- masking before formatting and encoding -------------------------------------------


def test_json_lines_are_masked_before_encoding() -> None:
    """A password with a quote and a backslash: JSON escapes it, so masking
    the encoded line would miss it; the event is masked first."""
    scrubber = Scrubber(AWKWARD)
    password = AWKWARD.password
    out = io.StringIO()
    log = logger_to(ScrubbingObserver(json_observer(out), scrubber.text))
    url = f"http://panel.example:8080/live/ab/{password}/7.ts"
    log.info("fetching {url} failed", url=url, attempt=2, hint=password, parts=[password, "ok"])
    line = out.getvalue()
    data = json.loads(line)
    assert data["message"] == "fetching http://***/live/***/***/7.ts failed"
    assert data["url"] == "http://***/live/***/***/7.ts"
    assert data["hint"] == "***" and data["parts"] == ["***", "ok"] and data["attempt"] == 2
    assert password not in line and json.dumps(password)[1:-1] not in line and "ab/" not in line
    assert scrubber.leaks(json.loads(line)["message"]) == []


def test_tracebacks_are_masked_for_every_observer() -> None:
    scrubber = Scrubber(AWKWARD)
    try:
        raise ConnectionError("refused: http://panel.example:8080/player_api.php"
                              f"?username=ab&password={AWKWARD.password}")
    except ConnectionError:
        failure = Failure()
    text_out, json_out = io.StringIO(), io.StringIO()
    for observer in (textFileLogObserver(text_out), json_observer(json_out)):
        log = logger_to(ScrubbingObserver(observer, scrubber.text))
        log.failure("ingest crashed", failure)
    for out in (text_out.getvalue(), json.loads(json_out.getvalue())["traceback"]):
        assert "ConnectionError" in out and "refused: http://***/player_api.php?username=***&password=***" in out
        assert AWKWARD.password not in out and "panel.example" not in out
    event = masked_event({"log_failure": failure, "failure": failure, "log_format": "x"}, scrubber.text)
    assert isinstance(event["log_failure"], MaskedFailure) and event["failure"] is event["log_failure"]
    assert "panel.example" not in event["log_failure"].getErrorMessage()


def test_legacy_events_and_every_kind_of_field_are_masked() -> None:
    def scrub(text: str) -> str:
        return text.replace("hunter2", "***").replace("1234", "***")

    legacy = {"message": ("GET /x?password=hunter2",), "log_text": "GET /x?password=hunter2",
              "log_format": "{log_text}", "format": "%(log_legacy)s", "log_legacy": "GET hunter2",
              "log_time": 1.0, "isError": 0, "system": "-", "log_level": LogLevel.info}
    event = masked_event(legacy, scrub)
    data = json.loads(event_as_json_line(event))
    assert data["message"] == "GET /x?password=***"
    assert event["message"] == ("GET /x?password=***",) and "log_legacy" not in event and "format" not in event
    # a number equal to a secret, an object whose text holds it, braces in the message
    event = masked_event({"log_format": "{a} {{literal}} {b}", "a": 1234, "b": Path("/hunter2"),
                          "log_namespace": "hunter2.module"}, scrub)
    assert event["a"] == "***" and event["b"] == "/***" and event["log_namespace"] == "hunter2.module"
    out = io.StringIO()  # the classic text renders the masked message literally
    textFileLogObserver(out)(event)
    assert out.getvalue().rstrip().endswith("*** {literal} /***")


def test_the_text_log_is_masked_too() -> None:
    out = io.StringIO()
    observer = ScrubbingObserver(open_destination(Destination("stdout"), "text", fake_reactor(), stdout=out),
                                 lambda text: text.replace("sekrit", "***"))
    observer({"log_format": "failed for {url}", "url": "http://h/sekrit/1.ts",
              "log_level": LogLevel.error, "log_namespace": "x", "log_time": 0.0})
    assert "failed for http://h/***/1.ts" in out.getvalue() and "sekrit" not in out.getvalue()


def test_premasked_lines_pass_as_they_are_and_nothing_else_does() -> None:
    seen: list[Any] = []
    scrubbed: list[str] = []

    def scrub(text: str) -> str:
        scrubbed.append(text)
        return text.replace("sekrit", "***")

    observer = ScrubbingObserver(seen.append, scrub)
    logger_to(observer).info("{line}", **premasked("GET /x 200"))
    assert formatEvent_of(seen[-1]) == "GET /x 200" and scrubbed == []  # masked by its emitter
    # The marker is an object only xrelay.ops.logs has: a look-alike is masked as usual...
    logger_to(observer).info("{line}", line="sekrit", _xrelay_premasked=True)
    # ...and so is a marked event whose format would render other fields,
    # or that carries any field besides its line.
    logger_to(observer).info("{line} {url}", url="sekrit", **premasked("GET"))
    logger_to(observer).info("{line}", url="sekrit", **premasked("GET"))
    assert [formatEvent_of(e) for e in seen[1:]] == ["***", "GET ***", "GET"]
    assert seen[-1]["url"] == "***"


def formatEvent_of(event: Any) -> str:
    from twisted.logger import formatEvent

    return formatEvent(event)


def test_the_text_format_is_twistds_with_the_time_formatted_once_a_second() -> None:
    ours, theirs = io.StringIO(), io.StringIO()
    events = [{"log_format": "line {n}", "n": n, "log_level": LogLevel.info, "log_namespace": "x",
               "log_time": 1_700_000_000 + n * 0.4} for n in range(6)]
    events.append({"log_format": "no time", "log_level": LogLevel.warn, "log_namespace": "y"})
    ours_observer, theirs_observer = text_observer(ours), textFileLogObserver(theirs)
    for event in events:
        ours_observer(event)
        theirs_observer(event)
    assert ours.getvalue() == theirs.getvalue() and ours.getvalue().count("\n") == 7


# -- where twistd sends the log ----------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    ((), Destination("file", path="twistd.log")),
    (("--logfile", "/var/log/xrelay.log"), Destination("file", path="/var/log/xrelay.log")),
    (("-n",), Destination("stdout")),
    (("-n", "--logfile", "-"), Destination("stdout")),
    (("-n", "--logfile", "x.log"), Destination("file", path="x.log")),
    (("--syslog",), Destination("syslog", prefix="twisted")),
    (("--syslog", "--prefix", "xrelay", "--logfile", "ignored.log"), Destination("syslog", prefix="xrelay")),
])
def test_the_destination_is_twistds_choice(argv: tuple[str, ...], expected: Destination) -> None:
    assert destination(twistd_options(*argv)) == expected


def test_a_daemon_cannot_log_to_stdout_and_outside_twistd_it_does() -> None:
    with pytest.raises(SystemExit, match="Daemons cannot log to stdout"):
        destination(twistd_options("--logfile", "-"))
    assert destination(None) == Destination("stdout")


def test_foreground_json_lines_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    observer = twistd_observer("json", lambda text: text.replace("sekrit", "***"), fake_reactor(),
                               twistd_options("-n", "--pidfile="))
    logger_to(observer).info("hello {who}", who="sekrit")
    data = json.loads(capsys.readouterr().out)
    assert data["message"] == "hello ***" and data["who"] == "***"


@pytest.fixture
def sigusr1() -> Iterator[None]:
    """Leaves the process's SIGUSR1 handler as it found it."""
    before = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_json_lines_go_to_the_log_file_which_sigusr1_rotates(tmp_path: Path, sigusr1: None) -> None:
    path = tmp_path / "xrelay.log"
    reactor = fake_reactor()
    observer = ScrubbingObserver(open_destination(destination(twistd_options("--logfile", str(path))), "json",
                                                  reactor), lambda text: text.replace("sekrit", "***"))
    log = logger_to(observer)
    log.info("one {x}", x="sekrit")
    assert json.loads(path.read_text())["message"] == "one ***"
    handler = signal.getsignal(signal.SIGUSR1)
    assert callable(handler)
    handler(signal.SIGUSR1, None)
    assert len(reactor.calls) == 1  # rotated in the reactor thread, as twistd does
    reactor.calls[0]()
    log.info("two")
    assert json.loads((tmp_path / "xrelay.log.1").read_text())["message"] == "one ***"
    assert json.loads(path.read_text())["message"] == "two"


def test_sigusr1_taken_by_someone_else_is_left_alone(tmp_path: Path, sigusr1: None) -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGUSR1, mine)
    open_destination(Destination("file", path=str(tmp_path / "x.log")), "text", fake_reactor())
    assert signal.getsignal(signal.SIGUSR1) is mine


class FakeSyslog(SyslogObserver):
    """Twisted's syslog observer, talking to a list instead of the syslog daemon."""

    def __init__(self, prefix: str) -> None:
        self.opened: list[str] = []
        self.sent: list[tuple[int, str]] = []
        super().__init__(prefix)

    def openlog(self, prefix: str, options: int, facility: int) -> None:  # type: ignore[override]
        self.opened.append(prefix)

    def syslog(self, priority: int, line: str) -> None:  # type: ignore[override]
        self.sent.append((priority, line))


def test_syslog_gets_masked_text_even_when_json_is_configured() -> None:
    import syslog

    made: list[FakeSyslog] = []

    def factory(prefix: str) -> Any:
        made.append(FakeSyslog(prefix))
        return made[0].emit

    where = destination(twistd_options("--syslog", "--prefix", "xrelay"))
    scrubber = Scrubber(AWKWARD)
    observer = ScrubbingObserver(open_destination(where, "json", fake_reactor(), syslog=factory), scrubber.text)
    log = logger_to(observer)
    log.info("upstream {url}", url=f"http://panel.example:8080/live/ab/{AWKWARD.password}/1.ts")
    try:
        raise OSError(f"no route to panel.example with {AWKWARD.password}")
    except OSError:
        log.failure("ingest crashed")
    fake = made[0]
    assert fake.opened == ["xrelay"]
    text = "\n".join(line for _, line in fake.sent)
    assert fake.sent[0] == (syslog.LOG_INFO, "[-] upstream http://***/live/***/***/1.ts")
    assert (syslog.LOG_ALERT, "[-] ingest crashed") in fake.sent
    assert "OSError: no route to *** with ***" in text and '"message"' not in text  # text, not JSON
    assert AWKWARD.password not in text and "panel.example" not in text


def test_logging_root_hands_the_observer_to_twistd() -> None:
    observer = twistd_observer("json", str, fake_reactor(), None)
    application = Application("xrelay")
    root = LoggingRoot(observer)
    root.setServiceParent(application)
    assert application.getComponent(ILogObserver) is observer
    assert ILogObserver.providedBy(observer)  # twistd checks this before using it
    plain = Application("xrelay")
    LoggingRoot(None).setServiceParent(plain)
    assert plain.getComponent(ILogObserver, None) is None


def test_twistd_logger_option_is_warned_about() -> None:
    with capturedLogs() as events:
        twistd_observer("text", str, fake_reactor(),
                        twistd_options("-n", "--logger", "twisted.logger.jsonFileLogObserver"))
    assert any("--logger" in e["log_format"] and e["log_level"] == LogLevel.warn for e in events)


# -- a daemonised twistd -----------------------------------------------------------------------


def _wait_gone(pid: int, timeout: float) -> bool:
    """Whether process *pid* (not our child) ended within *timeout* s: one
    bounded wait on a pidfd, no polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")
def test_a_daemonised_twistd_writes_its_logfile(tmp_path: Path) -> None:
    """``twistd --logfile F xrelay ...`` as an init script runs it: twistd
    forks into the background and returns once the port listens, and every
    line, to the last, goes to F, masked."""
    logfile, pidfile = tmp_path / "xrelay.log", tmp_path / "xrelay.pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRELAY_UPSTREAM_")}
    env["PYTHONPATH"] = str(REPO)
    twistd = Path(sys.executable).with_name("twistd")
    argv = [str(twistd)] if twistd.exists() else [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    argv += ["--logfile", str(logfile), "--pidfile", str(pidfile),
             "xrelay", "--demo", "--listen", "tcp:0:interface=127.0.0.1", "--data-dir", str(tmp_path / "data")]
    # the foreground twistd exits once the daemon has started its services
    started = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text())
    try:
        text = logfile.read_text()
        assert "twistd" in text and "starting up" in text and "[xrelay.ops.service#info] xrelay" in text, text
        port = int(text.split("Site starting on ", 1)[1].split()[0])
        user_token = "0123456789abcdef01234567"
        assert _get(f"http://127.0.0.1:{port}/hls/demo/{user_token}/feedbeef.ts") == 401
        demo = DemoSettings()
        assert _get(f"http://127.0.0.1:{port}/live/{demo.username}/{demo.password}/1.ts") == 401
        assert _get(f"http://127.0.0.1:{port}/hdhr/demo-tuner/discover.json") == 200  # the demo tuner
        # the access line is written before the answer is sent
        text = logfile.read_text()
        assert '"GET /hls/demo/***/feedbeef.ts" 401' in text and user_token not in text
        assert '"GET /live/***/***/1.ts" 401' in text
        assert '"GET /hdhr/***/discover.json" 200' in text
        # the tuner's key is in the demo's announcement only (as the demo user's password is)
        assert [line for line in text.splitlines() if "demo-tuner" in line] == [
            line for line in text.splitlines()
            if f"HDHomeRun tuner for Plex, Jellyfin or Emby: http://127.0.0.1:{port}/hdhr/demo-tuner" in line]
        assert "demo-tuner" in text
    finally:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 30):
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the daemon did not stop on SIGTERM within 30 s")
    text = logfile.read_text()
    assert text.rstrip().endswith("Server Shut Down.")  # the log followed the daemon to its end
    assert demo.username not in text and demo.password not in text
    assert started.stdout == "" and not pidfile.exists()


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
        code, playlist = await fetch(f"{base}/live/alice/alicepw/{live_id}.m3u8")
        hls_uris = [line for line in playlist.decode().splitlines() if "/hls/alice/" in line]
        assert code == 200 and hls_uris
        await fetch(hls_uris[0])  # a segment or variant, by the user's HLS token
        hls_token = hls_uris[0].split("/hls/alice/", 1)[1].split("/", 1)[0]
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
    assert '"GET /hls/alice/***/' in text and hls_token not in text  # nor their HLS tokens
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
    ("/hls/alice/0123456789abcdef01234567/feedbeef.ts", "/hls/alice/***/feedbeef.ts"),
    ("/hls/alice/0123456789abcdef01234567", "/hls/alice/***"),
])
def test_access_log_masks_passwords_in_every_url_form(uri: str, logged: str) -> None:
    from xrelay.web.site import redact_uri

    assert redact_uri(uri) == logged


def test_access_log_masks_the_hls_user_token_as_made() -> None:
    from xrelay.media.segment_cache import TokenMap
    from xrelay.web.site import redact_uri

    token = TokenMap(object()).user_token("alice", "alicepw")
    assert redact_uri(f"/hls/alice/{token}/c0ffee.m3u8") == "/hls/alice/***/c0ffee.m3u8"


def test_the_access_log_line_is_masked_by_the_site() -> None:
    from twisted.internet.task import Clock
    from twisted.web.resource import Resource
    from twisted.web.test.requesthelper import DummyRequest

    from xrelay.web.site import AccessLoggedSite

    site = AccessLoggedSite(Resource(), None, reactor=Clock(), body_gate=None, scrub=Scrubber(AWKWARD))
    request: Any = DummyRequest([b"get.php"])
    # someone tries the provider's own account, and its address, on xrelay
    request.uri = (b"/get.php?username=ab&password=secret&next=http://panel.example:8080/x"
                   b"&again=http://%70anel.example:8080/y")  # the host spelled with an escape
    request.code, request.sentLength = 401, 20
    with capturedLogs() as events:
        site.log(request)
    [event] = [e for e in events if e.get("log_namespace") == "xrelay.web.access"]
    out = io.StringIO()
    ScrubbingObserver(text_observer(out), Scrubber(AWKWARD).text)(event)
    line = out.getvalue()
    assert '"GET /get.php?username=' in line and " 401 20" in line
    assert "secret" not in line and "anel.example" not in line


def test_access_false_logs_no_request() -> None:
    from twisted.internet.task import Clock
    from twisted.web.resource import Resource
    from twisted.web.test.requesthelper import DummyRequest

    from xrelay.core.config import parse_config
    from xrelay.web.site import AccessLoggedSite

    upstream = {"upstream": {"url": "http://p.example", "username": "u", "password": "p"}}
    assert parse_config({**upstream, "log": {"access": False}}, environ={}).log.access is False
    assert parse_config(upstream, environ={}).log.access is True
    site = AccessLoggedSite(Resource(), None, reactor=Clock(), body_gate=None, scrub=Scrubber(AWKWARD),
                            access_log=False)
    request: Any = DummyRequest([b""])
    request.code, request.sentLength = 200, 1
    with capturedLogs() as events:
        site.log(request)
    assert [e for e in events if e.get("log_namespace") == "xrelay.web.access"] == []
