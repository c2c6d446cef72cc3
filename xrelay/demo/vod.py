"""HTTP Range for the demo provider's files (movies, episodes, catch-up).

One ``bytes=`` range per request: ``a-b``, ``a-`` and ``-n`` answer 206 with
``Content-Range``; a range starting past the end answers 416 with
``Content-Range: bytes */SIZE``.  A multi-range or malformed header is
ignored (200, whole file), which RFC 9110 allows.  ``If-Range`` holding
anything but the file's ``Last-Modified`` or ETag also gives the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENT_TYPES = {
    "mp4": b"video/mp4",
    "mkv": b"video/x-matroska",
    "ts": b"video/mp2t",
    "avi": b"video/x-msvideo",
    "m4v": b"video/mp4",
}


def content_type(ext: str) -> bytes:
    return CONTENT_TYPES.get(ext.lower(), b"application/octet-stream")


class Unsatisfiable(Exception):
    """The range starts past the end of the file."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def header(self, size: int) -> bytes:
        return b"bytes %d-%d/%d" % (self.start, self.end, size)


def parse_range(header: bytes | None, size: int) -> ByteRange | None:
    """The range to serve, None for the whole file; raises Unsatisfiable."""
    if not header:
        return None
    unit, _, spec = header.decode("latin-1").strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # suffix: the last N bytes
            n = int(last)
            if n <= 0:
                raise Unsatisfiable()
            return ByteRange(max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise Unsatisfiable()
    if start < 0 or end < start:
        return None
    return ByteRange(start, min(end, size - 1))


def if_range_matches(if_range: bytes | None, last_modified: bytes, etag: bytes) -> bool:
    """True when there is no If-Range or it names the current file."""
    if not if_range:
        return True
    value = if_range.strip()
    return value in (last_modified, etag)
