"""The configuration file: one TOML file, checked strictly.

Every error names the file, the key and what is wrong, in one line, so that
an admin reading ``journalctl -u xrelay`` knows what to fix.  The provider's
secrets may also come from the environment (``XRELAY_UPSTREAM_*``), so that
they can live in a systemd ``EnvironmentFile`` instead of the config file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from xrelay.core.config_error import ConfigError
from xrelay.core.lineups import LineupConfig, parse_lineups

__all__ = [
    "AdminConfig",
    "Config",
    "ConfigError",
    "HdhrDevice",
    "IngestConfig",
    "LogConfig",
    "RelayConfig",
    "ServerConfig",
    "UpstreamConfig",
    "UserConfig",
    "DEFAULT_BACKLOG",
    "load_config",
    "with_default_backlog",
    "parse_config",
    "parse_devices",
]


@dataclass(frozen=True)
class UpstreamConfig:
    url: str
    username: str
    password: str
    #: Overrides the provider's ``max_connections`` from its account info.
    max_connections: int | None = None
    user_agent: str = "Mozilla/5.0 (xrelay)"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` without a trailing slash."""
        return self.url.rstrip("/")

    def __repr__(self) -> str:  # never print the secrets by accident
        return f"UpstreamConfig(url='***', username='***', password='***', max_connections={self.max_connections!r})"


#: The listen backlog xrelay asks for when the endpoint string names none
#: (Twisted's own is 50: a burst of players would pay SYN retries).
DEFAULT_BACKLOG = 1024


@dataclass(frozen=True)
class ServerConfig:
    listen: str = f"tcp:8080:backlog={DEFAULT_BACKLOG}"
    public_url: str | None = None
    #: Timezone advertised in server_info (EPG ``start``/``end`` strings).
    timezone: str = "UTC"
    # -- limits on what one request and one client address may cost --------
    #: Seconds for a request's line and headers to arrive (however slowly).
    header_timeout: float = 10.0
    #: Seconds for a request's body to arrive after its headers.
    body_timeout: float = 20.0
    #: Seconds a kept-alive connection may wait for its next request (0: no limit).
    idle_timeout: float = 30.0
    #: Largest request body, bytes (the API and admin forms need a few KB).
    max_body: int = 64 * 1024
    #: Longest request line (method, URL, version), bytes: longer gets 414.
    max_request_line: int = 16 * 1024
    #: Largest request head (request line and headers), bytes: larger gets 431.
    max_header_size: int = 32 * 1024
    #: Open connections one client address may hold (0: no cap).
    max_connections_per_address: int = 64
    #: Whether loopback clients (a reverse proxy on the same machine) are capped too.
    cap_loopback: bool = True
    # -- failed logins, per client address ------------------------------------
    #: Failed logins answered without delay.
    login_free_failures: int = 5
    #: Longest delay of a failed login's answer, seconds (it doubles from 0.5 s).
    login_max_delay: float = 8.0
    #: Failed logins after which the address is refused with 429...
    login_lockout_after: int = 20
    #: ...for this many seconds.
    login_lockout: float = 300.0


@dataclass(frozen=True)
class IngestConfig:
    interval: float = 21600.0
    data_dir: Path = Path("/var/lib/xrelay")
    timeout: float = 1800.0
    #: Refuse a catalog that lost more than this fraction of its items.
    max_shrink: float = 0.5
    #: Biggest single download accepted, in bytes (the XMLTV guide included).
    max_download: int = 2 * 1024**3


@dataclass(frozen=True)
class UserConfig:
    username: str
    password: str
    max_connections: int = 1
    exp_date: int | None = None
    enabled: bool = True
    #: The lineup (``[lineups.NAME]``) this user sees; None: the whole catalog.
    lineup: str | None = None
    #: A short clip saying why, instead of a bare refusal of a live stream.
    status_clips: bool = True

    def __repr__(self) -> str:
        return f"UserConfig(username={self.username!r}, password='***')"


@dataclass(frozen=True)
class AdminConfig:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"AdminConfig(username={self.username!r}, password='***')"


#: ``[relay] upstream_format`` values.
UPSTREAM_FORMATS = ("auto", "ts", "hls")


@dataclass(frozen=True)
class RelayConfig:
    #: Seconds an upstream stays open after its last viewer leaves.
    linger: float = 5.0
    #: Seconds of stream a viewer may fall behind live before eviction.
    max_behind: float = 10.0
    #: Seconds without upstream data before the upstream is reopened.
    silence_timeout: float = 10.0
    #: Seconds a channel keeps trying to reconnect before closing its viewers.
    reconnect_bound: float = 30.0
    #: Seconds to wait after closing a channel before reusing its slot.
    handover_pause: float = 0.3
    #: Seconds of stream aimed at per live HLS segment (cut at keyframes).
    hls_segment: float = 4.0
    #: Segments listed in a live HLS playlist.
    hls_window: int = 6
    #: Where a channel's stream comes from: "auto" (MPEG-TS, else the
    #: provider's HLS when the TS is refused or is a playlist), "ts" or "hls".
    upstream_format: str = "auto"
    #: A directory of clips (busy.ts, unavailable.ts, expired.ts) replacing the built-in ones.
    status_clips_dir: Path | None = None
    #: Seconds a status clip plays (looped) before the answer ends.
    status_clip_seconds: float = 20.0


@dataclass(frozen=True)
class LogConfig:
    #: "text" (one line per event) or "json" (one JSON object per line).
    format: str = "text"
    #: Whether every HTTP request is logged (the access log).
    access: bool = True


@dataclass(frozen=True)
class HdhrDevice:
    """One emulated HDHomeRun tuner device (``[[hdhr]]``)."""

    name: str
    token: str
    #: The lineup it serves (None: the whole live catalog).
    lineup: str | None = None
    #: Tuners it announces (None: the provider account's connection limit).
    tuners: int | None = None
    #: A port of its own, served at its root (None: only under /hdhr/TOKEN/).
    port: int | None = None
    udp_discovery: bool = False

    def __repr__(self) -> str:  # the token is the device's key
        return (f"HdhrDevice(name={self.name!r}, token='***', lineup={self.lineup!r},"
                f" tuners={self.tuners!r}, port={self.port!r}, udp_discovery={self.udp_discovery!r})")

    def masked(self) -> dict[str, Any]:
        """For ``check-config``: the token masked."""
        return {"name": self.name, "token": "***", "lineup": self.lineup, "tuners": self.tuners,
                "port": self.port, "udp_discovery": self.udp_discovery}


@dataclass(frozen=True)
class Config:
    upstream: UpstreamConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    users: tuple[UserConfig, ...] = ()
    admin: AdminConfig | None = None
    relay: RelayConfig = field(default_factory=RelayConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: Emulated HDHomeRun tuners (``[[hdhr]]``).
    hdhr: tuple[HdhrDevice, ...] = ()
    source: str = "<memory>"
    #: ``[lineups.NAME]`` tables, checked against the users naming them.
    lineups: Mapping[str, LineupConfig] = field(default_factory=dict)

    def masked(self) -> dict[str, Any]:
        """The effective configuration with every secret masked."""
        up = self.upstream
        out: dict[str, Any] = {
            "upstream": {
                "url": _mask_url(up.url),
                "username": "***",
                "password": "***",
                "max_connections": up.max_connections,
                "user_agent": up.user_agent,
            },
            "server": _plain(self.server),
            "ingest": _plain(self.ingest),
            "relay": _plain(self.relay),
            "log": _plain(self.log),
            "users": [
                {**_plain(u), "password": "***"} for u in self.users
            ],
            "lineups": {name: lineup.describe() for name, lineup in self.lineups.items()},
        }
        if self.admin is not None:
            out["admin"] = {"username": self.admin.username, "password": "***"}
        if self.hdhr:
            out["hdhr"] = [device.masked() for device in self.hdhr]
        return out


def _plain(record: Any) -> dict[str, Any]:
    return {
        f.name: (str(v) if isinstance(v := getattr(record, f.name), Path) else v)
        for f in fields(record)
    }


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://***" if parts.scheme else "***"


# -- parsing ---------------------------------------------------------------

_ENV = {
    "url": "XRELAY_UPSTREAM_URL",
    "username": "XRELAY_UPSTREAM_USERNAME",
    "password": "XRELAY_UPSTREAM_PASSWORD",
}


class _Section:
    """Typed access to one table of the TOML document, with precise errors."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        self.source = source
        self.name = name
        if not isinstance(table, dict):
            raise self.error(None, f"must be a table, not {_type_name(table)}")
        self.table: dict[str, Any] = dict(table)
        self.used: set[str] = set()

    def error(self, key: str | None, what: str) -> ConfigError:
        where = f"{self.name}.{key}" if key else self.name
        return ConfigError(f"{self.source}: {where}: {what}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required or default is ...:
                raise self.error(key, "missing")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {_kind_name(kinds)}, got {_type_name(value)}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {_kind_name(kinds)}, got {_type_name(value)}")
        return value

    def positive(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.get(key, float, default)
        if value < 0 or (value == 0 and not allow_zero):
            raise self.error(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _type_name(value: Any) -> str:
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_endpoint(section: _Section, key: str, description: str) -> None:
    """Parse a Twisted server endpoint string without listening."""
    from twisted.internet import endpoints, reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:  # Twisted raises ValueError, TypeError, KeyError...
        raise section.error(key, f"bad endpoint string {description!r}: {e}") from None


def _check_url(section: _Section, key: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise section.error(key, f"must look like http://host[:port], got {_mask_url(url)!r}")
    try:
        parts.port
    except ValueError:
        raise section.error(key, "has a bad port number") from None
    if parts.query or parts.fragment or parts.username or parts.password:
        raise section.error(key, "must be scheme://host[:port] with no credentials or query")
    return url.rstrip("/")


def parse_config(document: Mapping[str, Any], source: str = "<memory>",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from a parsed TOML document."""
    environ = os.environ if environ is None else environ
    top = _Section(source, "(top level)", dict(document))

    up = _Section(source, "upstream", top.get("upstream", dict, {}))
    url = environ.get(_ENV["url"]) or up.get("url", str, None)
    username = environ.get(_ENV["username"]) or up.get("username", str, None)
    password = environ.get(_ENV["password"]) or up.get("password", str, None)
    for key, value in (("url", url), ("username", username), ("password", password)):
        up.used.add(key)
        if not value:
            raise up.error(key, f"missing (set it in the file or in ${_ENV[key]})")
    max_conn = up.get("max_connections", int, None)
    if max_conn is not None and max_conn < 1:
        raise up.error("max_connections", f"must be >= 1, got {max_conn}")
    upstream = UpstreamConfig(
        url=_check_url(up, "url", url),
        username=username,
        password=password,
        max_connections=max_conn,
        user_agent=up.get("user_agent", str, UpstreamConfig.user_agent),
    )
    up.finish()

    sv = _Section(source, "server", top.get("server", dict, {}))
    listen = sv.get("listen", str, ServerConfig.listen)
    _check_endpoint(sv, "listen", listen)
    public_url = sv.get("public_url", str, None)
    if public_url is not None:
        public_url = _check_url(sv, "public_url", public_url)
    server = ServerConfig(listen=listen, public_url=public_url,
                          timezone=sv.get("timezone", str, ServerConfig.timezone),
                          **_server_limits(sv))
    _check_timezone(sv, server.timezone)
    sv.finish()

    ig = _Section(source, "ingest", top.get("ingest", dict, {}))
    ingest = IngestConfig(
        interval=ig.positive("interval", IngestConfig.interval),
        data_dir=Path(ig.get("data_dir", str, str(IngestConfig.data_dir))),
        timeout=ig.positive("timeout", IngestConfig.timeout),
        max_shrink=ig.positive("max_shrink", IngestConfig.max_shrink, allow_zero=True),
        max_download=int(ig.positive("max_download", IngestConfig.max_download)),
    )
    if ingest.max_shrink > 1:
        raise ig.error("max_shrink", "must be between 0 and 1")
    ig.finish()

    rl = _Section(source, "relay", top.get("relay", dict, {}))
    relay = RelayConfig(
        linger=rl.positive("linger", RelayConfig.linger, allow_zero=True),
        max_behind=rl.positive("max_behind", RelayConfig.max_behind),
        silence_timeout=rl.positive("silence_timeout", RelayConfig.silence_timeout),
        reconnect_bound=rl.positive("reconnect_bound", RelayConfig.reconnect_bound),
        handover_pause=rl.positive("handover_pause", RelayConfig.handover_pause, allow_zero=True),
        hls_segment=rl.positive("hls_segment", RelayConfig.hls_segment),
        hls_window=rl.get("hls_window", int, RelayConfig.hls_window),
        upstream_format=rl.get("upstream_format", str, RelayConfig.upstream_format),
        status_clips_dir=_optional_path(rl.get("status_clips_dir", str, None)),
        status_clip_seconds=rl.positive("status_clip_seconds", RelayConfig.status_clip_seconds),
    )
    if not 1 <= relay.hls_segment <= 10:
        raise rl.error("hls_segment", f"must be between 1 and 10 seconds, got {relay.hls_segment:g}")
    if not 2 <= relay.hls_window <= 30:
        raise rl.error("hls_window", f"must be between 2 and 30 segments, got {relay.hls_window}")
    if relay.upstream_format not in UPSTREAM_FORMATS:
        raise rl.error("upstream_format",
                       f"must be \"auto\", \"ts\" or \"hls\", got {relay.upstream_format!r}")
    rl.finish()

    lg = _Section(source, "log", top.get("log", dict, {}))
    log = LogConfig(format=lg.get("format", str, LogConfig.format),
                    access=lg.get("access", bool, LogConfig.access))
    if log.format not in ("text", "json"):
        raise lg.error("format", f"must be \"text\" or \"json\", got {log.format!r}")
    lg.finish()

    admin = None
    if "admin" in top.table:
        ad = _Section(source, "admin", top.get("admin", dict))
        admin = AdminConfig(username=ad.get("username", str, required=True),
                            password=ad.get("password", str, required=True))
        if not admin.username or not admin.password:
            raise ad.error("password" if admin.username else "username", "must not be empty")
        ad.finish()

    raw_users = top.get("users", list, [])
    users: list[UserConfig] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_users):
        us = _Section(source, f"users[{i}]", raw)
        user = UserConfig(
            username=us.get("username", str, required=True),
            password=us.get("password", str, required=True),
            max_connections=us.get("max_connections", int, 1),
            exp_date=us.get("exp_date", int, None),
            enabled=us.get("enabled", bool, True),
            lineup=us.get("lineup", str, None),
            status_clips=us.get("status_clips", bool, True),
        )
        us.finish()
        if not user.username or "/" in user.username:
            raise us.error("username", "must be non-empty and contain no '/'")
        if not user.password or "/" in user.password:
            raise us.error("password", "must be non-empty and contain no '/'")
        if user.max_connections < 1:
            raise us.error("max_connections", f"must be >= 1, got {user.max_connections}")
        if user.username in seen:
            raise us.error("username", f"duplicate user {user.username!r}")
        if user.username == upstream.username and user.password == upstream.password:
            raise us.error("password", "must differ from the provider's credentials")
        seen.add(user.username)
        users.append(user)

    top.used.add("hdhr")
    hdhr = parse_devices(top.table.get("hdhr", []), source)
    listen_port = _tcp_port(listen)
    for i, device in enumerate(hdhr):
        if device.port is not None and device.port == listen_port:
            raise ConfigError(f"{source}: hdhr[{i}].port: {device.port} is [server] listen's port")
    lineups = parse_lineups(top.get("lineups", dict, {}), users, source)
    for i, device in enumerate(hdhr):
        if device.lineup is not None and device.lineup not in lineups:
            known = ", ".join(sorted(lineups)) or "none defined"
            raise ConfigError(f"{source}: hdhr[{i}].lineup: unknown lineup {device.lineup!r} ({known})")
    top.finish()

    return Config(upstream=upstream, server=server, ingest=ingest, users=tuple(users),
                  admin=admin, relay=relay, log=log, hdhr=hdhr, source=source, lineups=lineups)


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _tcp_port(description: str) -> int | None:
    """The port of a ``tcp:PORT...`` / ``tcp6:port=PORT...`` endpoint string, if it names one."""
    kind, _, rest = description.partition(":")
    if kind not in ("tcp", "tcp6"):
        return None
    for i, part in enumerate(rest.split(":")):
        value = part[len("port="):] if part.startswith("port=") else part if i == 0 else ""
        if value.isdigit():
            return int(value)
    return None


# -- [[hdhr]]: emulated HDHomeRun tuners ----------------------------------------

#: The shortest device token accepted: it is the device's only key.
MIN_TOKEN = 8

_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+", re.ASCII)


def parse_devices(raw: Any, source: str) -> tuple[HdhrDevice, ...]:
    """Build the devices from the document's ``hdhr`` value (an array of tables).

    Errors read like the rest of the configuration's:
    ``FILE: hdhr[1].token: must be at least 8 characters``.
    """
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: hdhr: must be an array of tables ([[hdhr]])")
    devices: list[HdhrDevice] = []
    names: set[str] = set()
    tokens: set[str] = set()
    ports: set[int] = set()
    for i, table in enumerate(raw):
        sec = _Section(source, f"hdhr[{i}]", table)
        name = sec.get("name", str, required=True).strip()
        token = sec.get("token", str, required=True)
        lineup = sec.get("lineup", str, None)
        tuners = sec.get("tuners", int, None)
        port = sec.get("port", int, None)
        udp = sec.get("udp_discovery", bool, False)
        sec.finish()
        if not name:
            raise sec.error("name", "must not be empty")
        if name.casefold() in names:
            raise sec.error("name", f"duplicate device name {name!r}")
        if len(token) < MIN_TOKEN:
            raise sec.error("token", f"must be at least {MIN_TOKEN} characters")
        if not _TOKEN_RE.fullmatch(token):
            raise sec.error("token", "may hold only letters, digits and . _ ~ -")
        if token in tokens:
            raise sec.error("token", "the same token as another device")
        if lineup is not None and not lineup.strip():
            raise sec.error("lineup", "must not be empty (leave it out for the whole catalog)")
        if tuners is not None and not 1 <= tuners <= 255:
            raise sec.error("tuners", f"must be between 1 and 255, got {tuners}")
        if port is not None:
            if not 1 <= port <= 65535:
                raise sec.error("port", f"must be between 1 and 65535, got {port}")
            if port in ports:
                raise sec.error("port", f"port {port} is already another device's")
            ports.add(port)
        names.add(name.casefold())
        tokens.add(token)
        devices.append(HdhrDevice(name=name, token=token, lineup=lineup, tuners=tuners,
                                  port=port, udp_discovery=udp))
    return tuple(devices)


def _server_limits(sv: _Section) -> dict[str, Any]:
    """``[server]``'s request limits and login throttle, checked."""
    d = ServerConfig
    out: dict[str, Any] = {
        "header_timeout": sv.positive("header_timeout", d.header_timeout),
        "body_timeout": sv.positive("body_timeout", d.body_timeout),
        "idle_timeout": sv.positive("idle_timeout", d.idle_timeout, allow_zero=True),
        "login_max_delay": sv.positive("login_max_delay", d.login_max_delay),
        "login_lockout": sv.positive("login_lockout", d.login_lockout),
        "cap_loopback": sv.get("cap_loopback", bool, d.cap_loopback),
    }
    minimum = {"max_body": 1, "max_request_line": 256, "max_header_size": 1024,
               "max_connections_per_address": 0, "login_free_failures": 0, "login_lockout_after": 1}
    for key, least in minimum.items():
        value = sv.get(key, int, getattr(d, key))
        if value < least:
            raise sv.error(key, f"must be >= {least}, got {value}")
        out[key] = value
    if out["login_max_delay"] < 0.5:
        raise sv.error("login_max_delay", "must be at least 0.5 (the first delay)")
    return out


def with_default_backlog(listen: str) -> str:
    """*listen* with xrelay's :data:`DEFAULT_BACKLOG` when it is a TCP, TLS
    or UNIX endpoint string that names no ``backlog`` (Twisted would use 50)."""
    parts = re.split(r"(?<!\\):", listen)
    if parts[0] not in ("tcp", "tcp6", "ssl", "unix") or len(parts) < 2:
        return listen
    if any(part.strip().startswith("backlog=") for part in parts[1:]):
        return listen
    return f"{listen}:backlog={DEFAULT_BACKLOG}"


def _check_timezone(section: _Section, name: str) -> None:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:
        raise section.error("timezone", f"unknown timezone {name!r}") from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the configuration file at *path*."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{source}: cannot read: no such file") from None
    except PermissionError:
        raise ConfigError(f"{source}: cannot read: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: cannot read: is a directory") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    return parse_config(document, source, environ)


def with_overrides(config: Config, *, listen: str | None = None) -> Config:
    """Apply command-line overrides."""
    if listen is not None:
        sec = _Section(config.source, "--listen", {})
        _check_endpoint(sec, "", listen)
        config = replace(config, server=replace(config.server, listen=listen))
    return config
