"""The tuners of one emulated device: which are streaming now.

``auto/vN`` takes the lowest free tuner, ``tunerK/vN`` tuner K if it is
free.  A device never streams more channels at once than it announces
tuners, whatever the provider account would allow: a media server plans
its recordings with the count it was given.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["TunerBusy", "Tuners", "Tuning"]


class TunerBusy(Exception):
    """The tuner asked for (or every tuner) is streaming."""


class Tuning:
    """One tuner taken; :meth:`release` frees it, once."""

    def __init__(self, tuners: Tuners, index: int) -> None:
        self.tuners = tuners
        self.index = index
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.tuners.busy.discard(self.index)


class Tuners:
    """The tuners of one device; ``count()`` may change (the provider's limit)."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count
        self.busy: set[int] = set()

    def exists(self, index: int) -> bool:
        return 0 <= index < self.count()

    def take(self, index: int | None = None) -> Tuning:
        """Tuner *index*, or the lowest free one; raises :class:`TunerBusy`."""
        count = self.count()
        if len(self.busy) >= count:
            raise TunerBusy("all tuners are in use")
        if index is None:
            index = next(i for i in range(count) if i not in self.busy)
        elif index in self.busy or not 0 <= index < count:
            raise TunerBusy(f"tuner {index} is in use")
        self.busy.add(index)
        return Tuning(self, index)
