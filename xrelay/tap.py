"""Service wiring for ``twistd xrelay``.

``makeService`` returns a :class:`MultiService` of named children, started
in this order and stopped in reverse:

* ``demo-provider`` (``--demo`` only): the built-in fake provider on loopback;
* ``catalog``: loads the cached catalog at start-up;
* ``relay``: the live relay's channels and upstream connections;
* ``ingest``: the ingest schedule (and SIGHUP);
* ``web``: the listening port, added last so it closes first.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from xrelay.app import XRelay
from xrelay.core.config import (AdminConfig, Config, ConfigError, IngestConfig, ServerConfig,
                     UpstreamConfig, UserConfig, load_config, with_overrides)
from xrelay.core.lineups import parse_lineups
from xrelay.core.config import HdhrDevice
from xrelay.core.reactor import IReactor, installed_reactor
from xrelay.provider.client import ProviderClient

__all__ = ["Options", "makeService", "build"]

log = Logger()

DEMO_USER = ("demo", "demo")
DEMO_ADMIN = ("admin", "demo")
#: The demo's second user sees only the ``kids`` lineup.
DEMO_KIDS = ("kids", "kids")
#: The demo's lineup, as a ``[lineups.kids]`` table would say it: a few live
#: channels by name glob, movies by regular expression less one by id, three
#: series; numbered from 100, "UK: " dropped from the names.
DEMO_LINEUPS = {
    "kids": {
        "adult": "hide",
        "number_from": 100,
        "rename": [{"pattern": "^UK: ", "replace": ""}],
        "live": {"include_streams": ["*Kids*", "*Music*"]},
        "vod": {"include_streams": ["re:willow|alpha"], "exclude_streams": ["id:40"]},
        "series": {"include_streams": ["id:1", "*Lane*"]},
    },
}
#: The demo's HDHomeRun tuner: its name and token (its key, in its URL).
DEMO_TUNER = ("xrelay demo tuner", "demo-tuner")


class Options(usage.Options):
    synopsis = "[--config FILE | --demo] [--listen ENDPOINT]"
    longdesc = ("Share one Xtream Codes IPTV subscription with every device on the LAN. "
                "--demo runs a built-in fake provider and needs no configuration.")
    optParameters = [
        ["config", "c", None, "Path to the TOML configuration file."],
        ["listen", "l", None, "Twisted endpoint to listen on (overrides [server] listen), "
                              "e.g. tcp:8080:interface=127.0.0.1"],
        ["data-dir", None, None, "Data directory (overrides [ingest] data_dir; "
                                 "--demo default: ~/.local/state/xrelay-demo)"],
    ]
    optFlags = [["demo", None, "Run against the built-in demo provider (user demo, password demo)."]]

    def postOptions(self) -> None:
        if not self["config"] and not self["demo"]:
            raise usage.UsageError("give --config FILE, or --demo to try xrelay without a provider")


def demo_config(listen: str | None, data_dir: str | None) -> Config:
    from xrelay.demo.provider import DemoSettings

    settings = DemoSettings()
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    users = (UserConfig(username=DEMO_USER[0], password=DEMO_USER[1], max_connections=4),
             UserConfig(username=DEMO_KIDS[0], password=DEMO_KIDS[1], max_connections=2, lineup="kids"))
    return Config(
        # The demo provider's real address is set once it listens.
        upstream=UpstreamConfig(url="http://127.0.0.1:1", username=settings.username,
                                password=settings.password),
        server=ServerConfig(listen=listen or ServerConfig.listen),
        ingest=IngestConfig(data_dir=Path(data_dir) if data_dir else state / "xrelay-demo"),
        users=users,
        admin=AdminConfig(username=DEMO_ADMIN[0], password=DEMO_ADMIN[1]),
        hdhr=(HdhrDevice(name=DEMO_TUNER[0], token=DEMO_TUNER[1]),),
        source="--demo",
        lineups=parse_lineups(DEMO_LINEUPS, users, "--demo"),
    )


class DemoProviderService(Service):
    """Runs the built-in demo provider and points xrelay at it."""

    name = "demo-provider"

    def __init__(self, reactor: IReactorTime, client: ProviderClient) -> None:
        from xrelay.demo.provider import DemoProvider, DemoSettings

        self.client = client
        self.provider = DemoProvider(reactor, DemoSettings())
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        d = self.provider.listen("tcp:0:interface=127.0.0.1")

        def listening(port: Any) -> None:
            self.port = port
            self.client.set_origin(self.provider.url)
            log.info("demo provider listening on loopback port {port}", port=port.getHost().port)

        d.addCallback(listening)
        d.addErrback(lambda f: log.failure("demo provider failed to start", f))

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


def build(reactor: IReactor, config: Config, *, demo: bool = False,
          config_path: str | None = None) -> tuple[MultiService, XRelay]:
    """The whole daemon as a MultiService, and its components."""

    def reload_config() -> Config | None:
        if not config_path:
            return None
        try:
            return load_config(config_path)
        except ConfigError as e:
            log.error("configuration not reloaded: {error}", error=str(e))
            return None

    xr = XRelay(reactor, config, reload_config=reload_config)
    root = MultiService()
    if demo:
        DemoProviderService(reactor, xr.client).setServiceParent(root)
    xr.services(root)
    return root, xr


#: GIL switch interval, seconds, for the whole process.  Catalog work runs in
#: threads (JSON, the EPG parse, templates); Python's default 5 ms lets each
#: of them keep the reactor thread waiting that long at every hand-over,
#: which adds up in API latency.  Set by the entry point, for the process.
SWITCH_INTERVAL = 0.0005


def makeService(options: Options) -> MultiService:
    reactor = installed_reactor()
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        if options["demo"]:
            config = demo_config(options["listen"], options["data-dir"])
        else:
            config = load_config(options["config"])
            config = with_overrides(config, listen=options["listen"])
            if options["data-dir"]:
                config = replace(config, ingest=replace(config.ingest, data_dir=Path(options["data-dir"])))
        service, xr = build(reactor, config, demo=options["demo"], config_path=options["config"])
    except ConfigError as e:
        sys.stderr.write(f"xrelay: {e}\n")
        sys.stderr.flush()
        raise SystemExit(2)
    if options["demo"]:
        reactor.callWhenRunning(_announce_demo, xr)
    from xrelay.ops.heap import HeapService
    from xrelay.ops.logs import LoggingRoot, twistd_observer

    # twistd starts logging after makeService: LoggingRoot hands it the observer for
    # twistd's own destination (--logfile, --syslog, -n; options.parent is twistd's options).
    twistd_options = getattr(options, "parent", None)  # None when not run by twistd
    root = LoggingRoot(twistd_observer(config.log.format, xr.scrubber.text, reactor, twistd_options))
    service.setServiceParent(root)
    # Started after the daemon's services: the heap they built is kept out of
    # every later garbage collection, for the process (xrelay.ops.heap).
    HeapService(reactor).setServiceParent(root)
    return root


def _announce_demo(xr: XRelay) -> None:
    listen = xr.config.server.listen
    listening = xr.web_endpoint.port if xr.web_endpoint is not None else None
    port = str(listening) if listening else _listen_port(listen)
    host = "127.0.0.1"
    user, password = DEMO_USER
    log.info("demo: open http://{host}:{port}/get.php?username={user}&password={password}&type=m3u_plus&output=ts "
             "in VLC, or log in with an Xtream player at http://{host}:{port} as {user}/{password} "
             "(or {kids}/{kids_password}: the kids lineup, a smaller catalog); "
             "admin pages with {admin}/{admin_password}; "
             "HDHomeRun tuner for Plex, Jellyfin or Emby: http://{host}:{port}/hdhr/{tuner}",
             host=host, port=port, user=user, password=password, kids=DEMO_KIDS[0],
             kids_password=DEMO_KIDS[1], admin=DEMO_ADMIN[0], admin_password=DEMO_ADMIN[1],
             tuner=DEMO_TUNER[1])


def _listen_port(description: str) -> str:
    for part in description.split(":")[1:]:
        if part.isdigit():
            return part
    return "8080"
