"""HTTP byte ranges of in-memory bodies (HLS segments served by xrelay)."""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["byte_range"]


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | None | Literal[False]:
    """The inclusive (first, last) of a single ``bytes=`` range; None to send
    everything (no header, or one we do not handle); False if unsatisfiable."""
    if not header:
        return None
    m = re.fullmatch(rb"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or not (m.group(1) or m.group(2)):
        return None
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size else False
    first = int(m.group(1))
    if first >= size:
        return False
    last = int(m.group(2)) if m.group(2) else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)
