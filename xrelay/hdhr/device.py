"""Emulated HDHomeRun devices: their configuration and their identity.

``[[hdhr]]`` entries of the configuration become :class:`HdhrDevice` records
(:func:`parse_devices`, errors in the configuration's one-line style). Each
device gets a DeviceID (:func:`device_id`): eight hex digits whose last is
SiliconDust's check digit of the first seven, derived from the device's name
and a random salt kept once per installation in the data directory
(:func:`load_salt`), so it survives restarts and changes of the tuner count
(media servers key a tuner by its id: a new id is a new device).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from xrelay.core.config import ConfigError, _Section

__all__ = [
    "HdhrDevice",
    "SALT_FILE",
    "check_digit",
    "device_id",
    "device_ids",
    "is_valid_device_id",
    "load_salt",
    "parse_devices",
]

#: The salt file, in the data directory.
SALT_FILE = "hdhr-salt"
MIN_TOKEN = 8

_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+", re.ASCII)
_ID_RE = re.compile(r"[0-9A-F]{8}", re.ASCII)
_SALT_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)
#: SiliconDust's nibble table for the DeviceID check digit.
_CHECK_TABLE = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)


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


# -- identity ----------------------------------------------------------------


def check_digit(first_seven: int) -> int:
    """SiliconDust's check nibble of a DeviceID's first seven hex digits."""
    n = [(first_seven >> shift) & 0xF for shift in range(24, -1, -4)]  # most significant first
    t = _CHECK_TABLE
    return t[n[0]] ^ n[1] ^ t[n[2]] ^ n[3] ^ t[n[4]] ^ n[5] ^ t[n[6]]


def is_valid_device_id(text: str) -> bool:
    """True for eight hex digits whose last is the check digit of the others."""
    if not _ID_RE.fullmatch(text.upper()):
        return False
    value = int(text, 16)
    return check_digit(value >> 4) == value & 0xF


def device_id(name: str, salt: bytes, attempt: int = 0) -> str:
    """The DeviceID of the device called ``name`` in this installation.

    It depends on nothing else (not the token, tuners, port or lineup).
    The first digit is 1, as on SiliconDust's devices; ``attempt`` picks
    another id when two names collide.
    """
    digest = hashlib.sha256(salt + b"\x00hdhr-device-id\x00" + str(attempt).encode()
                            + b"\x00" + name.encode()).digest()
    first_seven = 0x1000000 | int.from_bytes(digest[:3], "big")
    return f"{(first_seven << 4) | check_digit(first_seven):08X}"


def device_ids(devices: Sequence[HdhrDevice], salt: bytes) -> dict[str, str]:
    """Device name -> DeviceID for all devices, all different."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for device in devices:
        attempt = 0
        while (value := device_id(device.name, salt, attempt)) in taken:
            attempt += 1
        out[device.name] = value
        taken.add(value)
    return out


def load_salt(data_dir: Path) -> bytes:
    """The installation's salt, created once (atomically) on first use.

    Blocking file I/O: call it at start-up, before the reactor runs.
    """
    path = data_dir / SALT_FILE
    try:
        return _read_salt(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{SALT_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() never replaces: if another process made the file
            # first, its salt wins and ours is thrown away.
            os.link(tmp, path)
        except FileExistsError:
            pass
        else:
            _fsync_dir(data_dir)
    finally:
        os.unlink(tmp)
    return _read_salt(path)


def _read_salt(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not _SALT_RE.fullmatch(text):
        raise ConfigError(f"{path}: not a salt file (32 hex digits); remove it to make a new"
                          " one, which gives every HDHomeRun device a new DeviceID")
    return bytes.fromhex(text)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
