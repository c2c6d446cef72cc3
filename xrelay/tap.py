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
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.logger import Logger
from twisted.python import usage

from xrelay.app import XRelay
from xrelay.core.config import (AdminConfig, Config, ConfigError, IngestConfig, ServerConfig,
                     UpstreamConfig, UserConfig, load_config, with_overrides)
from xrelay.ingest.ingester import IngestService

__all__ = ["Options", "makeService", "build"]

log = Logger()

DEMO_USER = ("demo", "demo")
DEMO_ADMIN = ("admin", "demo")


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
    return Config(
        # The demo provider's real address is set once it listens.
        upstream=UpstreamConfig(url="http://127.0.0.1:1", username=settings.username,
                                password=settings.password),
        server=ServerConfig(listen=listen or ServerConfig.listen),
        ingest=IngestConfig(data_dir=Path(data_dir) if data_dir else state / "xrelay-demo"),
        users=(UserConfig(username=DEMO_USER[0], password=DEMO_USER[1], max_connections=4),),
        admin=AdminConfig(username=DEMO_ADMIN[0], password=DEMO_ADMIN[1]),
        source="--demo",
    )


class DemoProviderService(Service):
    """Runs the built-in demo provider and points xrelay at it."""

    name = "demo-provider"

    def __init__(self, reactor: Any, xr: XRelay) -> None:
        from xrelay.demo.provider import DemoProvider, DemoSettings

        self.xr = xr
        self.provider = DemoProvider(reactor, DemoSettings())
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        d = self.provider.listen("tcp:0:interface=127.0.0.1")

        def listening(port: Any) -> None:
            self.port = port
            self.xr.client.set_origin(self.provider.url)
            log.info("demo provider listening on loopback port {port}", port=port.getHost().port)

        d.addCallback(listening)
        d.addErrback(lambda f: log.failure("demo provider failed to start", f))

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()
        return None


class CatalogService(Service):
    """Loads the cached catalog at start-up, so xrelay serves at once."""

    name = "catalog"

    def __init__(self, xr: XRelay) -> None:
        self.xr = xr

    def startService(self) -> None:
        super().startService()
        from twisted.internet import defer

        d = defer.Deferred.fromCoroutine(self.xr.cache.reload())
        d.addCallback(self._loaded)

    def _loaded(self, ok: bool) -> None:
        if ok:
            return
        if self.xr.store.current() is None:
            log.info("no cached catalog yet in {path}; serving once the first ingest completes",
                     path=str(self.xr.store.root))
            return
        # A cache that cannot be loaded (or prepared) would otherwise leave
        # nothing to serve until the next scheduled ingest, hours away.
        ingest = getattr(self.xr, "ingest_service", None)
        if ingest is not None and ingest.running:
            log.warn("the cached catalog cannot be loaded; ingesting it again now")
            ingest.trigger("unusable cache")


class SignalService(Service):
    """SIGHUP: re-read the users from the configuration and ingest now."""

    name = "signals"

    def __init__(self, reactor: Any, xr: XRelay, config_path: str | None) -> None:
        self.reactor = reactor
        self.xr = xr
        self.config_path = config_path
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        if hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.hangup)

    def hangup(self) -> None:
        log.info("SIGHUP: reloading users and starting an ingest")
        if self.config_path:
            try:
                config = load_config(self.config_path)
            except ConfigError as e:
                log.error("configuration not reloaded: {error}", error=str(e))
            else:
                self.xr.reload_users(config)
        if self.xr.ingest_service is not None:
            self.xr.ingest_service.trigger("SIGHUP")


def build(reactor: Any, config: Config, *, demo: bool = False,
          config_path: str | None = None) -> tuple[MultiService, XRelay]:
    """The whole daemon as a MultiService, and its components."""
    xr = XRelay(reactor, config)
    root = MultiService()
    if demo:
        DemoProviderService(reactor, xr).setServiceParent(root)
    CatalogService(xr).setServiceParent(root)
    for module_name in FEATURES:
        service = _wire(module_name, reactor, xr)
        if service is not None:
            service.setServiceParent(root)
    ingest = IngestService(reactor, xr.ingester, config.ingest.interval)
    xr.ingest_service = ingest
    ingest.setServiceParent(root)
    SignalService(reactor, xr, config_path).setServiceParent(root)

    from xrelay.web.routes import make_site

    web = strports.service(config.server.listen, make_site(xr))
    web.setName("web")
    web.setServiceParent(root)
    return root, xr


#: Feature modules, each exposing ``wire(reactor, xr) -> IService | None``:
#: it sets its component on ``xr`` and may return a service to run.  A
#: module that is absent leaves its routes answering 501.
FEATURES = ("xrelay.api.player_api", "xrelay.relay.channels", "xrelay.media.vod", "xrelay.ops.service")


def _wire(module_name: str, reactor: Any, xr: XRelay) -> IService | None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # a broken import inside the module must not pass silently
        return None
    return module.wire(reactor, xr)


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    try:
        if options["demo"]:
            config = demo_config(options["listen"], options["data-dir"])
        else:
            config = load_config(options["config"])
            config = with_overrides(config, listen=options["listen"])
            if options["data-dir"]:
                config = replace(config, ingest=replace(config.ingest, data_dir=Path(options["data-dir"])))
    except ConfigError as e:
        sys.stderr.write(f"xrelay: {e}\n")
        sys.stderr.flush()
        raise SystemExit(2)
    service, xr = build(reactor, config, demo=options["demo"], config_path=options["config"])
    if options["demo"]:
        reactor.callWhenRunning(_announce_demo, xr)
    from xrelay.ops.logs import LoggingRoot, twistd_observer

    # twistd starts logging after makeService: LoggingRoot hands it the observer for
    # twistd's own destination (--logfile, --syslog, -n; options.parent is twistd's options).
    twistd_options = getattr(options, "parent", None)  # None when not run by twistd
    root = LoggingRoot(twistd_observer(config.log.format, xr.scrubber.text, reactor, twistd_options))
    service.setServiceParent(root)
    return root


def _announce_demo(xr: XRelay) -> None:
    listen = xr.config.server.listen
    port = _listen_port(listen)
    host = "127.0.0.1"
    user, password = DEMO_USER
    log.info("demo: open http://{host}:{port}/get.php?username={user}&password={password}&type=m3u_plus&output=ts "
             "in VLC, or log in with an Xtream player at http://{host}:{port} as {user}/{password}; "
             "admin pages with {admin}/{admin_password}",
             host=host, port=port, user=user, password=password,
             admin=DEMO_ADMIN[0], admin_password=DEMO_ADMIN[1])


def _listen_port(description: str) -> str:
    for part in description.split(":")[1:]:
        if part.isdigit():
            return part
    return "8080"
