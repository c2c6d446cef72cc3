"""Stable channel numbers per lineup, kept in the data directory.

A lineup's live channels are numbered once, in lineup order, from its
``number_from``, in blocks: each category (and the favourites) gets a block
of consecutive numbers with some room to spare, the next block starting at
the next multiple of :data:`ALIGN` past the previous one.  From then on:

* a channel keeps its number for as long as it stays in the lineup (even if
  it moves to another category);
* a new channel takes the lowest free number of its category's block, or,
  when the block is full (or the category is new), a new block after the
  last one;
* a removed channel's number is retired: it is given to no other channel
  for :data:`RETIRE_AFTER` (90 days), so a TV or Plex remembering number 7
  never silently gets another channel.

The numbers of every lineup live in one JSON file (``channel-numbers.json``),
written atomically; reading and writing block (run them in a thread).
"""

from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from twisted.logger import Logger

from xrelay.catalog.store import write_atomic

__all__ = ["ChannelNumbers", "LineupNumbers", "Clock", "FAVOURITES", "NO_CATEGORY", "FILE_NAME", "RETIRE_AFTER", "ALIGN"]

log = Logger()

FILE_NAME = "channel-numbers.json"
FORMAT = 1
#: Seconds a removed channel's number stays out of use.
RETIRE_AFTER = 90 * 86400.0
#: Blocks start at number_from + a multiple of this.
ALIGN = 10
#: Block keys besides category ids: the favourites, the channels without a category.
FAVOURITES = -2
NO_CATEGORY = -1


class Clock(Protocol):
    """What numbering needs of the reactor (IReactorTime, task.Clock)."""

    def seconds(self) -> float: ...


def _room(count: int) -> int:
    """Numbers a new block of *count* channels reserves: 10 % and at least 5 spare."""
    return count + max(5, -(-count // 10))


@dataclass
class LineupNumbers:
    """One lineup's numbers: blocks, channel numbers, retired numbers."""

    number_from: int = 1
    #: [key, first, last]; key: a category id, FAVOURITES or NO_CATEGORY
    blocks: list[list[int]] = field(default_factory=list)
    #: channel id -> number
    numbers: dict[int, int] = field(default_factory=dict)
    #: number -> when it was retired (clock seconds)
    retired: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"number_from": self.number_from, "blocks": self.blocks,
                "numbers": {str(k): v for k, v in self.numbers.items()},
                "retired": {str(k): v for k, v in self.retired.items()}}

    @classmethod
    def from_json(cls, value: Any) -> "LineupNumbers":
        """Raises ValueError, TypeError or KeyError on a damaged entry."""
        blocks = [[int(b[0]), int(b[1]), int(b[2])] for b in value["blocks"]]
        return cls(int(value["number_from"]), blocks,
                   {int(k): int(v) for k, v in value["numbers"].items()},
                   {int(k): float(v) for k, v in value["retired"].items()})

    def assign(self, ids: Sequence[int], keys: Sequence[int], number_from: int, now: float,
               retire_after: float = RETIRE_AFTER) -> array:
        """The numbers of the channels *ids* (in lineup order) whose blocks
        are *keys*; the state updated: kept numbers, new ones, retirements.
        (Two flat sequences, no object per channel: no garbage collection
        pass over the daemon's heap in the middle of a reload.)"""
        if number_from != self.number_from:  # the admin moved the lineup: number it afresh
            self.number_from, self.blocks, self.numbers, self.retired = number_from, [], {}, {}
        self.retired = {n: t for n, t in self.retired.items() if now - t < retire_after}
        present = set(ids)
        for ident in [i for i in self.numbers if i not in present]:
            self.retired[self.numbers.pop(ident)] = now
        taken = set(self.numbers.values()) | set(self.retired)
        waiting: dict[int, int] = {}
        for ident, key in zip(ids, keys):
            if ident not in self.numbers:
                waiting[key] = waiting.get(key, 0) + 1
        out = array("i")
        cursors: dict[int, int] = {}  # block index -> no free number below this
        blocks: dict[int, list[int]] = {}
        for i, block in enumerate(self.blocks):
            blocks.setdefault(block[0], []).append(i)
        for ident, key in zip(ids, keys):
            number = self.numbers.get(ident)
            if number is None:
                number = self._free(key, taken, waiting[key], blocks, cursors)
                self.numbers[ident] = number
                taken.add(number)
                waiting[key] -= 1
            out.append(number)
        self._drop_unused_blocks(taken)
        return out

    def _free(self, key: int, taken: set[int], waiting: int, blocks: dict[int, list[int]],
              cursors: dict[int, int]) -> int:
        """The lowest free number of *key*'s blocks, or the first of a new block."""
        for i in blocks.get(key, ()):
            _, first, last = self.blocks[i]
            n = cursors.get(i, first)
            while n <= last and n in taken:
                n += 1
            cursors[i] = n
            if n <= last:
                return n
        start = self.number_from
        if self.blocks:
            start = max(b[2] for b in self.blocks) + 1
            start += -(start - self.number_from) % ALIGN
        last = start + _room(waiting) - 1
        last += -(last + 1 - self.number_from) % ALIGN  # the next block starts aligned
        blocks.setdefault(key, []).append(len(self.blocks))
        self.blocks.append([key, start, last])
        return start

    def _drop_unused_blocks(self, taken: set[int]) -> None:
        """Blocks with no number in use or retired any more are forgotten."""
        self.blocks = [b for b in self.blocks if not taken.isdisjoint(range(b[1], b[2] + 1))]


class ChannelNumbers:
    """The numbers of every lineup, in ``DATA_DIR/channel-numbers.json``."""

    def __init__(self, data_dir: Path, clock: Clock, retire_after: float = RETIRE_AFTER) -> None:
        self.path = data_dir / FILE_NAME
        self.clock = clock
        self.retire_after = retire_after
        self.lineups: dict[str, LineupNumbers] = {}
        self._saved: bytes | None = None

    def load(self, set_aside: bool = True) -> None:
        """Read the file (blocking).  A damaged file is set aside
        (``.damaged``; left where it is without *set_aside*: a dry run) and
        numbering starts again, with a warning."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.lineups, self._saved = {}, None
            return
        try:
            value = json.loads(data)
            if value.get("format") != FORMAT:
                raise ValueError(f"format {value.get('format')!r}")
            self.lineups = {str(k): LineupNumbers.from_json(v) for k, v in value["lineups"].items()}
            self._saved = data
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            log.warn("{path} is damaged ({error}): channel numbers start again", path=str(self.path),
                     error=str(e))
            if set_aside:
                os.replace(self.path, self.path.with_name(FILE_NAME + ".damaged"))
            self.lineups, self._saved = {}, None

    def assign(self, lineup: str, ids: Sequence[int], keys: Sequence[int], number_from: int = 1) -> array:
        """Numbers of *lineup*'s channels *ids* (in lineup order) in the blocks *keys*."""
        state = self.lineups.setdefault(lineup, LineupNumbers(number_from))
        return state.assign(ids, keys, number_from, self.clock.seconds(), self.retire_after)

    def save(self) -> bool:
        """Write the file if anything changed (blocking, atomic); True if written."""
        data = json.dumps({"format": FORMAT, "lineups": {k: v.to_json() for k, v in sorted(self.lineups.items())}},
                          separators=(",", ":")).encode()
        if data == self._saved:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, data)
        self._saved = data
        return True
