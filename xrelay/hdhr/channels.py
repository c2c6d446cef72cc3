"""The channels an emulated HDHomeRun device tunes: its lineup, numbered.

A device asks ``channels_for(lineup)`` (:data:`ChannelsFor`, given by the
composition root) for its :class:`Lineup`: its channels in lineup order,
each with its GuideNumber, and a lookup by GuideNumber.  The numbers must
be unique and stable across catalog refreshes: media servers key channels
by them (Jellyfin names them ``hdhr_<GuideNumber>``).

:class:`ArrayLineup` is a lineup kept as two flat arrays (stream ids and
numbers, in lineup order) over a loaded generation, which has the names
and guide ids: a few bytes per channel, no Python object per channel
until one is asked for.  :class:`LineupTuners` gives a device naming a
lineup that lineup's channels, numbered as the lineup numbers them
(:mod:`xrelay.catalog.numbering`: stable across ingests); a device without
one gets :class:`CatalogChannels`: the whole live catalog in catalog order,
numbered by the provider's ``num`` when those are all unique, else by
position, computed once per catalog generation, in a thread.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Protocol

from twisted.internet import threads
from twisted.logger import Logger

from xrelay.catalog.cache import CatalogCache
from xrelay.catalog.generation import Generation
from xrelay.catalog.lineup_service import Lineups
from xrelay.catalog.lineup_view import LineupView

__all__ = ["ArrayLineup", "CatalogChannels", "ChannelsFor", "Lineup", "LineupTuners", "TunerChannel",
           "catalog_lineup", "catalog_numbers", "lineup_of_view"]

log = Logger()


class TunerChannel(NamedTuple):
    """One channel of a device's lineup."""

    number: str  # the GuideNumber
    stream_id: int
    name: str
    epg_id: str | None  # the channel's id in xrelay's guide
    icon: str | None  # may hold xrelay's base-URL marker; None: the catalog's


class Lineup(Protocol):
    """A device's channels, in lineup order."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[TunerChannel]: ...

    def find(self, number: str) -> TunerChannel | None:
        """The channel with that GuideNumber, if any."""


#: ``channels_for(lineup name or None)``: a device's channels.
ChannelsFor = Callable[[str | None], Lineup]


class ArrayLineup:
    """A :class:`Lineup` of *generation*'s live channels *ids*, numbered *numbers*
    (parallel arrays in lineup order; the numbers unique)."""

    def __init__(self, generation: Generation | None, ids: array, numbers: array,
                 display_name: Callable[[str], str] = str) -> None:
        self.generation = generation
        self.ids = ids
        self.numbers = numbers
        self.display_name = display_name
        self._order = array("i", sorted(range(len(numbers)), key=numbers.__getitem__))
        self._sorted = array(numbers.typecode, (numbers[i] for i in self._order))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[TunerChannel]:
        for i in range(len(self.ids)):
            yield self._channel(i)

    def find(self, number: str) -> TunerChannel | None:
        if not (number.isascii() and number.isdigit()) or len(number) > 12:
            return None
        value = int(number)
        at = bisect_left(self._sorted, value)
        if at == len(self._sorted) or self._sorted[at] != value:
            return None
        return self._channel(self._order[at])

    def _channel(self, i: int) -> TunerChannel:
        stream_id = self.ids[i]
        live = self.generation.live(stream_id) if self.generation is not None else None
        name = live.name if live is not None else f"Channel {stream_id}"
        epg = live.epg_channel_id if live is not None else None
        return TunerChannel(str(self.numbers[i]), stream_id, self.display_name(name), epg or None, None)


def catalog_numbers(rows: Iterable[dict[str, Any]]) -> tuple[array, array]:
    """Stream ids and numbers of live list rows, in their order: the rows'
    ``num`` when every row has a positive one and no two are equal, else
    positions from 1 (a mix of the two could give one number twice)."""
    ids, nums = array("q"), array("q")
    usable = True
    for row in rows:
        stream_id, num = row.get("stream_id"), row.get("num")
        if not isinstance(stream_id, int) or isinstance(stream_id, bool):
            continue
        ids.append(stream_id)
        if usable and isinstance(num, int) and not isinstance(num, bool) and 0 < num < 1 << 62:
            nums.append(num)
        else:
            usable = False
    if not usable or len(set(nums)) != len(nums):
        nums = array("q", range(1, len(ids) + 1))
    return ids, nums


def catalog_lineup(generation: Generation) -> ArrayLineup:
    """The live channels of *generation*, numbered (blocking: reads its list)."""
    template = generation.lists.get("live_streams")
    ids, numbers = catalog_numbers(template.rows() if template is not None else ())
    return ArrayLineup(generation, ids, numbers)


class CatalogChannels:
    """:data:`ChannelsFor` for devices without a lineup: the whole live
    catalog (:class:`LineupTuners` asks it for them)."""

    def __init__(self) -> None:
        self.lineup = ArrayLineup(None, array("q"), array("q"))

    async def reloaded(self, cache: CatalogCache) -> None:
        """A catalog listener: number the new generation's channels."""
        generation = cache.current
        if generation is None or generation is self.lineup.generation:
            return
        lineup = await threads.deferToThread(catalog_lineup, generation)
        if cache.current is generation:
            self.lineup = lineup
            log.info("HDHomeRun devices: {count} channels", count=len(lineup))

    def __call__(self, lineup: str | None) -> Lineup:
        return self.lineup


class LineupTuners:
    """:data:`ChannelsFor` with lineups: a device naming a lineup gets that
    lineup's live channels, in its order, each with the lineup's stable
    channel number as GuideNumber and its display name; a device without one
    gets the whole catalog (*whole*).  The lineups' channels are set up
    again, in a thread, whenever their views change (a :class:`Lineups`
    listener); until a lineup's first view is ready its devices have no
    channels."""

    def __init__(self, whole: ChannelsFor, lineups: Lineups, cache: CatalogCache, wanted: Iterable[str]) -> None:
        self.whole = whole
        self.lineups = lineups
        self.cache = cache
        self.wanted = set(wanted)
        self._tuned: dict[str, tuple[LineupView, ArrayLineup]] = {}
        self._none = ArrayLineup(None, array("q"), array("q"))

    async def views_changed(self, lineups: Lineups) -> None:
        generation = self.cache.current
        tuned = {}
        for name in sorted(self.wanted & set(lineups.views)):
            view = lineups.views[name]
            known = self._tuned.get(name)
            if known is not None and known[0] is view:
                tuned[name] = known
                continue
            config = lineups.config.get(name)
            display = config.display_name if config is not None else str
            lineup = await threads.deferToThread(lineup_of_view, view, generation, display)
            tuned[name] = (view, lineup)
            log.info("HDHomeRun devices of lineup {lineup}: {count} channels", lineup=name, count=len(lineup))
        self._tuned = tuned

    def __call__(self, lineup: str | None) -> Lineup:
        if lineup is None:
            return self.whole(None)
        tuned = self._tuned.get(lineup)
        return tuned[1] if tuned is not None else self._none


def lineup_of_view(view: LineupView, generation: Generation | None,
                   display_name: Callable[[str], str] = str) -> ArrayLineup:
    """A lineup view's live channels as a tuner lineup, in number order
    (the lineup's order: favourites, then each category's block)."""
    ids, numbers = view.ids["live"], view.numbers
    order = sorted(range(len(numbers)), key=numbers.__getitem__)
    return ArrayLineup(generation if generation is not None and generation.path == view.generation else None,
                       array("q", (ids[i] for i in order)), array("q", (numbers[i] for i in order)),
                       display_name)
