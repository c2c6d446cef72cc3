"""One player_api list, serialised once, with the index to cut it.

A :class:`ListTemplate` is the JSON array ``[row0,row1,...]`` of one list
(live streams, movies, series, a category list) with the ``@XRELAY_BASE@``
marker left in, and flat arrays beside it: where each row starts, how many
markers come before it, each row's id, the rows of each category, and the
ids sorted for lookups.  It is built where the catalog is (the ingest's
child process, :mod:`xrelay.catalog.prepare`) and loaded by the daemon from
``GENERATION/api/KEY.json`` and ``KEY.idx``: a few bytes per row in memory,
never a Python object per row.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from xrelay.http.body import MarkerStream
from xrelay.catalog.rows import encode_row as dumps
from xrelay.catalog.packed import read_arrays, write_arrays
from xrelay.core.scrub import BASE_MARKER

__all__ = ["ListTemplate", "dumps", "MARKER", "GZIP_LEVEL", "IN_MEMORY"]

MARKER = BASE_MARKER.encode()
#: gzip level of cached answers (built in a thread, once per base).
GZIP_LEVEL = 6
#: Templates up to this size are also kept in memory.
IN_MEMORY = 1024 * 1024


@dataclass
class ListTemplate:
    """One list serialised: ``[row0,row1,...]`` with markers left in."""

    path: str | None
    size: int
    #: offsets[i] = where row i starts; offsets[n] - 1 = where "]" is
    offsets: array
    #: markers[i] = base markers before row i
    markers: array
    by_category: dict[int, array] = field(default_factory=dict)
    data: bytes | None = None
    #: the ids in ascending order, and the row of each (for lookups)
    sorted_ids: array = field(default_factory=lambda: array("q"))
    rows_by_id: array = field(default_factory=lambda: array("i"))

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def build(cls, rows: Iterable[dict[str, Any]], path: Path | None = None,
              id_key: str | None = None) -> "ListTemplate":
        """Serialise *rows* (blocking) into *path*, or into memory if None;
        with *id_key*, index the rows by that integer field."""
        offsets = array("q")
        markers = array("q")
        ids = array("q")
        by_category: dict[int, list[int]] = {}
        pos, marks = 1, 0
        parts: list[bytes] = [b"["]
        out = open(f"{path}.tmp", "wb") if path is not None else None
        # rows kept encoded (xrelay.catalog.rows.EncodedRows) are not encoded again
        pairs = rows.pairs() if hasattr(rows, "pairs") else ((row, dumps(row)) for row in rows)
        try:
            pending = 0
            for i, (row, encoded) in enumerate(pairs):
                if i:
                    parts.append(b",")
                offsets.append(pos)
                markers.append(marks)
                if id_key is not None:
                    ids.append(_int(row.get(id_key)))
                parts.append(encoded)
                pos += len(encoded) + 1
                pending += len(encoded)
                marks += encoded.count(MARKER)
                for cid in _categories(row):
                    by_category.setdefault(cid, []).append(i)
                if out is not None and pending > 1 << 20:
                    out.write(b"".join(parts))
                    parts.clear()
                    pending = 0
            offsets.append(pos)
            markers.append(marks)
            parts.append(b"]")
            tail = b"".join(parts)
            if out is not None:
                out.write(tail)
                out.close()
                out = None
                os.replace(f"{path}.tmp", path)  # type: ignore[arg-type]
                size = pos if len(offsets) > 1 else 2
                data = None
                if size <= IN_MEMORY:
                    with open(path, "rb") as f:  # type: ignore[arg-type]
                        data = f.read()
            else:
                data, size = tail, len(tail)
        finally:
            if out is not None:
                out.close()
        cats = {k: array("i", v) for k, v in by_category.items()}
        order = sorted(range(len(ids)), key=ids.__getitem__)
        return cls(str(path) if path is not None else None, size, offsets, markers, cats, data,
                   array("q", (ids[i] for i in order)), array("i", order))

    # -- on disk ------------------------------------------------------------------

    def save_index(self, path: Path) -> dict[str, Any]:
        """Write the arrays to *path* (blocking); returns the manifest entry."""
        cat_ids = array("q", sorted(self.by_category))
        cat_ends, cat_rows = array("q"), array("i")
        for cid in cat_ids:
            cat_rows.extend(self.by_category[cid])
            cat_ends.append(len(cat_rows))
        table = write_arrays(path, {
            "offsets": self.offsets, "markers": self.markers,
            "sorted_ids": self.sorted_ids, "rows_by_id": self.rows_by_id,
            "cat_ids": cat_ids, "cat_ends": cat_ends, "cat_rows": cat_rows,
        })
        return {"data": Path(self.path).name if self.path else None, "index": path.name,
                "size": self.size, "count": self.count, "arrays": table}

    @classmethod
    def load(cls, directory: Path, entry: dict[str, Any]) -> "ListTemplate":
        """The template a manifest *entry* describes (blocking)."""
        a = read_arrays(directory / entry["index"], entry["arrays"])
        path = directory / entry["data"]
        size = int(entry["size"])
        if path.stat().st_size != size:
            raise ValueError(f"{path}: {path.stat().st_size} bytes, the manifest says {size}")
        by_category: dict[int, array] = {}
        start = 0
        for cid, end in zip(a["cat_ids"], a["cat_ends"]):
            by_category[cid] = a["cat_rows"][start:end]
            start = end
        data = None
        if size <= IN_MEMORY:
            with open(path, "rb") as f:
                data = f.read()
        return cls(str(path), size, a["offsets"], a["markers"], by_category, data,
                   a["sorted_ids"], a["rows_by_id"])

    # -- lookups ------------------------------------------------------------------

    def position(self, ident: int) -> int | None:
        """The row of the item with id *ident*, or None."""
        i = bisect_left(self.sorted_ids, ident)
        if i < len(self.sorted_ids) and self.sorted_ids[i] == ident:
            return self.rows_by_id[i]
        return None

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every row in order, decoded (blocking: reads the file once, whole)."""
        data = self.data
        if data is None:
            with open(self.path, "rb") as f:  # type: ignore[arg-type]
                data = f.read()
        offsets = self.offsets
        for i in range(self.count):
            yield json.loads(data[offsets[i]:offsets[i + 1] - 1])

    def row(self, i: int) -> dict[str, Any]:
        """Row *i*, decoded (blocking: it may read the file)."""
        start, end = self.offsets[i], self.offsets[i + 1] - 1
        if self.data is not None:
            raw = self.data[start:end]
        else:
            fd = os.open(self.path, os.O_RDONLY)  # type: ignore[arg-type]
            try:
                raw = os.pread(fd, end - start, start)
            finally:
                os.close(fd)
        return json.loads(raw)

    # -- answers --------------------------------------------------------------------

    def length_for(self, base: bytes) -> int:
        return self.size + self.markers[-1] * (len(base) - len(MARKER))

    def full(self, base: bytes) -> bytes:
        """The whole answer in memory (blocking)."""
        data = self.data
        if data is None:
            with open(self.path, "rb") as f:  # type: ignore[arg-type]
                data = f.read()
        return data.replace(MARKER, base) if self.markers[-1] else data

    def full_gzip(self, base: bytes) -> bytes:
        """The whole answer gzip-compressed, read in chunks (blocking)."""
        if self.data is not None:
            return gzip.compress(self.full(base), GZIP_LEVEL, mtime=0)
        stream = MarkerStream([self.path], [(MARKER, base)], gzip=True, level=GZIP_LEVEL)  # type: ignore[list-item]
        try:
            chunks = []
            while (chunk := stream()) is not None:
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            stream.close()

    def slice(self, base: bytes, category: int | None, limit: int | None) -> bytes:
        """A category's rows and/or the first *limit* rows (blocking)."""
        if category is None:
            indexes: Iterable[int] = range(min(limit or 0, self.count))
        else:
            picked = self.by_category.get(category, array("i"))
            indexes = picked[:limit] if limit is not None else picked
        ranges: list[list[int]] = []
        for i in indexes:
            start, end = self.offsets[i], self.offsets[i + 1] - 1
            if ranges and ranges[-1][1] + 1 == start:
                ranges[-1][1] = end  # contiguous rows: one read
            else:
                ranges.append([start, end])
        if self.data is not None:
            view = memoryview(self.data)
            pieces = [view[a:b] for a, b in ranges]
            out = b"[" + b",".join(pieces) + b"]"
        else:
            fd = os.open(self.path, os.O_RDONLY)  # type: ignore[arg-type]
            try:
                pieces_b = [os.pread(fd, b - a, a) for a, b in ranges]
            finally:
                os.close(fd)
            out = b"[" + b",".join(pieces_b) + b"]"
        if category is not None:
            # As XUI answers a category: each row names the category asked
            # for, even a row that belongs to several.
            out = _CATEGORY_ID.sub(b'"category_id":"%d"' % category, out)
        return out.replace(MARKER, base) if MARKER in out else out


_CATEGORY_ID = re.compile(rb'"category_id":"\d*"')


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return -1


def _categories(row: dict[str, Any]) -> list[int]:
    cats = row.get("category_ids")
    if isinstance(cats, list) and cats:
        return [c for c in cats if isinstance(c, int)]
    cid = row.get("category_id")
    if isinstance(cid, str) and cid.isascii() and cid.isdigit():
        return [int(cid)]
    return []
