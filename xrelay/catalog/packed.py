"""Flat arrays in one file, described by a small JSON-able table.

The prepared files of a generation (:mod:`xrelay.catalog.prepare`) keep their
indexes (row offsets, ids, category rows, programme times) as machine
arrays: written with :func:`write_arrays`, read back with
:func:`read_arrays` in a few milliseconds and a few bytes per row, with no
Python object per row.  The table (name, typecode, length, in file order)
goes into the generation's manifest, so a truncated or foreign file is
refused rather than misread.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import Any

from xrelay.catalog.rows import encode_row

__all__ = ["write_arrays", "read_arrays", "write_json", "PackedError"]

Table = list[list]  # [[name, typecode, length], ...]


class PackedError(ValueError):
    """The file does not hold the arrays its table describes."""


def write_arrays(path: Path | str, arrays: dict[str, array]) -> Table:
    """Write *arrays* one after the other (blocking); returns their table."""
    table: Table = []
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        for name, values in arrays.items():
            values.tofile(f)
            table.append([name, values.typecode, len(values)])
    os.replace(tmp, path)
    return table


def write_json(path: Path | str, value: Any) -> None:
    """A small JSON file beside the arrays (channel names...), written whole
    under a temporary name first (blocking)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(encode_row(value))
    os.replace(tmp, path)


def read_arrays(path: Path | str, table: Table) -> dict[str, array]:
    """The arrays of *path* as *table* describes them (blocking)."""
    out: dict[str, array] = {}
    try:
        with open(path, "rb") as f:
            for name, typecode, length in table:
                values = array(typecode)
                values.fromfile(f, int(length))
                out[str(name)] = values
            if f.read(1):
                raise PackedError(f"{path}: longer than its table says")
    except (EOFError, TypeError, ValueError) as e:
        if isinstance(e, PackedError):
            raise
        raise PackedError(f"{path}: does not match its table ({e})") from None
    return out
