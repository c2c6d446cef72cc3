"""Emulated HDHomeRun devices: their identity.

The devices themselves are ``[[hdhr]]`` entries of the configuration
(:class:`~xrelay.core.config.HdhrDevice`). Each device gets a
DeviceID (:func:`device_id`): eight hex digits whose last is SiliconDust's
check digit of the first seven, derived from the device's name and a random
salt kept once per installation in the data directory (:func:`load_salt`),
so it survives restarts and changes of the tuner count (media servers key
a tuner by its id: a new id is a new device).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Sequence

from xrelay.core.config import ConfigError, HdhrDevice

__all__ = [
    "SALT_FILE",
    "check_digit",
    "device_id",
    "device_ids",
    "is_valid_device_id",
    "load_salt",
]

#: The salt file, in the data directory.
SALT_FILE = "hdhr-salt"
_ID_RE = re.compile(r"[0-9A-F]{8}", re.ASCII)
_SALT_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)
#: SiliconDust's nibble table for the DeviceID check digit.
_CHECK_TABLE = (0xA, 0x5, 0xF, 0x6, 0x7, 0xC, 0x1, 0xB, 0x9, 0x2, 0x8, 0xD, 0x4, 0x3, 0xE, 0x0)


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
