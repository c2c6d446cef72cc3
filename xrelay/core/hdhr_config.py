"""``[[hdhr]]``: the emulated HDHomeRun tuner devices of the configuration.

Each entry becomes a :class:`HdhrDevice` (:func:`parse_devices`), checked
strictly with errors in the configuration's one-line style
(``FILE: hdhr[1].token: must be at least 8 characters``). The device's
identity (its DeviceID) is :mod:`xrelay.hdhr.device`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xrelay.core.config import ConfigError, Section

__all__ = ["HdhrDevice", "MIN_TOKEN", "parse_devices"]

#: The shortest token accepted: it is the device's only key.
MIN_TOKEN = 8

_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+", re.ASCII)


@dataclass(frozen=True)
class HdhrDevice:
    """One emulated tuner device."""

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
        sec = Section(source, f"hdhr[{i}]", table)
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
