"""The channels an emulated HDHomeRun device tunes: its lineup, numbered.

A device asks ``channels_for(lineup)`` (:data:`ChannelsFor`, given by the
composition root) for its channels in lineup order, each with its
GuideNumber.  The numbers must be unique and stable across catalog
refreshes: media servers key channels by them (Jellyfin names them
``hdhr_<GuideNumber>``).

:class:`CatalogChannels` is the answer without lineups: the whole live
catalog in catalog order, numbered by the provider's ``num`` when those are
all unique, else by position.  It is computed once per catalog generation,
in a thread, when the catalog loads.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Sequence

from twisted.internet import threads
from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.generation import Generation

__all__ = ["CatalogChannels", "ChannelsFor", "TunerChannel", "number_channels"]

log = Logger()


class TunerChannel(NamedTuple):
    """One channel of a device's lineup."""

    number: str  # the GuideNumber
    stream_id: int
    name: str
    epg_id: str | None  # the channel's id in xrelay's guide
    icon: str | None  # may hold xrelay's base-URL marker


#: ``channels_for(lineup name or None)``: a device's channels, in lineup order.
ChannelsFor = Callable[[str | None], Sequence[TunerChannel]]


def number_channels(rows: Iterable[dict[str, Any]]) -> list[TunerChannel]:
    """Live list rows as tuner channels, in their order: numbered by their
    ``num`` when every row has a positive one and no two are equal, else by
    position from 1 (a mix of the two could give one number twice)."""
    picked: list[tuple[Any, int, str, str | None, str | None]] = []
    for row in rows:
        stream_id = row.get("stream_id")
        if not isinstance(stream_id, int) or isinstance(stream_id, bool):
            continue
        picked.append((row.get("num"), stream_id, str(row.get("name") or f"Channel {stream_id}"),
                       row.get("epg_channel_id") or None, row.get("stream_icon") or None))
    nums = [num for num, *_ in picked]
    usable = all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in nums)
    if not usable or len(set(nums)) != len(nums):
        nums = list(range(1, len(picked) + 1))
    return [TunerChannel(str(num), stream_id, name, epg, icon)
            for num, (_, stream_id, name, epg, icon) in zip(nums, picked)]


def _generation_channels(generation: Generation) -> list[TunerChannel]:
    """The live channels of *generation* (blocking: reads its list)."""
    template = generation.lists.get("live_streams")
    if template is None:
        return []
    return number_channels(template.row(i) for i in range(template.count))


class CatalogChannels:
    """:data:`ChannelsFor` without lineups: every device gets the whole
    live catalog (a device's ``lineup`` is not applied; see the lineups
    feature for the selection that replaces this)."""

    def __init__(self, cache: CatalogCache) -> None:
        self.cache = cache
        self.generation: Generation | None = None
        self.channels: list[TunerChannel] = []

    async def reloaded(self, cache: CatalogCache) -> None:
        """A catalog listener: number the new generation's channels."""
        generation = cache.current
        if generation is None or generation is self.generation:
            return
        channels = await threads.deferToThread(_generation_channels, generation)
        if cache.current is generation:
            self.generation, self.channels = generation, channels
            log.info("HDHomeRun devices: {count} channels", count=len(channels))

    def __call__(self, lineup: str | None) -> Sequence[TunerChannel]:
        return self.channels
