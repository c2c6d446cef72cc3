"""What one lineup holds of a prepared generation, as row index arrays.

:func:`compute_selections` applies every lineup (:mod:`xrelay.core.lineups`)
to a loaded :class:`~xrelay.catalog.generation.Generation` once, when the
generation is loaded or the configuration re-read, never per request.  A
:class:`Selection` then answers, per kind (``live``, ``vod``, ``series``):

* ``allows(kind, id)``: a binary search in a sorted id array: the one
  decision every list, info action, playlist, guide and stream asks;
* the rows to serve, in the lineup's order (favourites first), as indexes
  into the generation's list templates, and the same per category;
* the categories to list (those with something left in them), as indexes
  into the category list templates;
* live channel numbers (:mod:`xrelay.catalog.numbering`), in row order and
  by id.

Rules, per lineup section: an item is in when one of its categories matches
``include_categories`` or the item matches ``include_streams`` (no include
list: everything); then ``exclude_categories`` (any of its categories) and
``exclude_streams`` remove; ``adult = "hide"`` removes what the provider
flags ``is_adult`` and every category matching ``adult_patterns``, whatever
the includes say.  ``extends`` applies the other lineup first, so a lineup
can only narrow it.  Everything here blocks (it may read the list files for
names and adult flags): run it in a thread.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import compress
from typing import Callable, Mapping

from xrelay.catalog.generation import Generation
from xrelay.core.lineups import KINDS, LineupConfig, Patterns, SectionRules
from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.numbering import FAVOURITES, ChannelNumbers, LineupNumbers
from xrelay.catalog.row_facts import RowFacts, load_facts

__all__ = ["KindSelection", "Selection", "compute_selections", "GenerationFacts", "LISTS"]

#: kind -> (stream list, category list) in the generation
LISTS = {"live": ("live_streams", "live_categories"), "vod": ("vod_streams", "vod_categories"),
         "series": ("series", "series_categories")}
_KIND = {"live": "live", "vod": "vod", "movie": "vod", "series": "series"}

Facts = Callable[[str], RowFacts]
#: Items per C loop (name matching, array building): a few ms of GIL each,
#: so that the reactor's thread gets it between them.
SLICE = 4096


@dataclass(frozen=True)
class KindSelection:
    """One kind of one lineup: arrays over the generation's templates."""

    #: rows in the generation's list
    total: int
    #: the rows served, in the lineup's order
    rows: array
    #: the ids allowed, ascending
    ids: array
    #: rows of the category list to serve, in the catalog's order
    categories: array
    #: category id -> its rows served, in the lineup's order
    by_category: dict[int, array] = field(default_factory=dict)
    #: live: the channel number of each of ``rows``, and of each of ``ids``
    numbers: array = field(default_factory=lambda: array("i"))
    id_numbers: array = field(default_factory=lambda: array("i"))

    @property
    def complete(self) -> bool:
        """Is every item of the catalog allowed?"""
        return len(self.ids) == self.total

    def allows(self, ident: int) -> bool:
        i = bisect_left(self.ids, ident)
        return i < len(self.ids) and self.ids[i] == ident

    def number(self, ident: int) -> int | None:
        """A live channel's number in this lineup."""
        i = bisect_left(self.ids, ident)
        if i < len(self.ids) and self.ids[i] == ident and self.id_numbers:
            return self.id_numbers[i]
        return None

    def slice(self, category: int | None, limit: int | None = None) -> array:
        """The rows of a list answer: a category's, or all; the first *limit*."""
        rows = self.rows if category is None else self.by_category.get(category, array("i"))
        return rows[:limit] if limit is not None else rows


@dataclass(frozen=True)
class Selection:
    """Everything one lineup may see and play of one generation."""

    lineup: str
    kinds: dict[str, KindSelection]

    def allows(self, kind: str, ident: int) -> bool:
        """May a user of this lineup see and play *ident* of *kind*
        (``live``, ``vod``/``movie``, ``series``)?"""
        return self.kinds[_KIND[kind]].allows(ident)

    def allows_episode(self, series_id: int | None) -> bool:
        """An episode is allowed with its series; one whose series is not
        known is allowed only when every series is."""
        series = self.kinds["series"]
        return series.complete if series_id is None else series.allows(series_id)

    def counts(self) -> dict[str, int]:
        out = {}
        for kind, sel in self.kinds.items():
            out[kind] = len(sel.ids)
            out[f"{kind}_categories"] = len(sel.categories)
        return out


class GenerationFacts:
    """Names and adult flags of a generation's lists, read when first asked
    (saved facts when the generation has them, else a scan of the list)."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._facts: dict[str, RowFacts] = {}

    def __call__(self, key: str) -> RowFacts:
        facts = self._facts.get(key)
        if facts is None:
            api = self.generation.path / "api"
            facts = load_facts(api, self.generation.manifest, key)
            if facts is None:
                facts = RowFacts.scan(self.generation.lists[key])
            self._facts[key] = facts
        return facts


class _Kind:
    """One kind of a generation, with what lineups read of it computed once."""

    def __init__(self, kind: str, generation: Generation, facts: Facts) -> None:
        stream_key, category_key = LISTS[kind]
        self.kind = kind
        self.stream_key = stream_key
        self.template: ListTemplate = generation.lists[stream_key]
        self.count = self.template.count
        self._facts = facts
        categories = generation.lists.get(category_key)
        #: (category id, name, row in the category list), in the catalog's order
        self.categories: list[tuple[int, str, int]] = []
        if categories is not None:
            for i in range(categories.count):
                row = categories.row(i)
                try:
                    self.categories.append((int(row["category_id"]), str(row.get("category_name") or ""), i))
                except (KeyError, TypeError, ValueError):
                    continue
        known = {cid for cid, _, _ in self.categories}
        #: categories holding rows but missing from the category list
        self.unlisted = [cid for cid in self.template.by_category if cid not in known]
        self._ids_by_row: array | None = None
        self._first_category: array | None = None

    @property
    def facts(self) -> RowFacts:
        return self._facts(self.stream_key)

    @property
    def ids_by_row(self) -> array:
        if self._ids_by_row is None:
            t = self.template
            ids = array("q", bytes(8 * self.count))
            for ident, row in zip(t.sorted_ids, t.rows_by_id):
                ids[row] = ident
            self._ids_by_row = ids
        return self._ids_by_row

    @property
    def first_category(self) -> array:
        """Each row's first category in the category list's order (-1: none)."""
        if self._first_category is None:
            first = array("q", [-1]) * self.count
            for cid in [c for c, _, _ in self.categories] + self.unlisted:
                for row in self.template.by_category.get(cid, ()):
                    if first[row] < 0:
                        first[row] = cid
            self._first_category = first
        return self._first_category

    def category_rows(self, cids: list[int]) -> list[array]:
        return [self.template.by_category[c] for c in cids if c in self.template.by_category]

    def rows_matching(self, patterns: Patterns) -> list[int]:
        """Rows whose id or name matches *patterns*."""
        out = [r for r in (self.template.position(i) for i in patterns.ids) if r is not None]
        if patterns.by_name:
            names = self.facts.names
            tests = [rx.search for rx in patterns.searches]
            if patterns.globs is not None:
                tests.append(patterns.globs.match)
            # map + compress: C loops, no Python frame per name, a slice at a time
            for start in range(0, len(names), SLICE):
                part = names[start:start + SLICE]
                for test in tests:
                    out.extend(compress(range(start, start + len(part)), map(test, part)))
        return out


def _narrow(k: _Kind, lineup: LineupConfig, within: bytearray | None) -> bytearray:
    """Lineup *lineup*'s rows of kind *k*, within *within* (its parent's)."""
    rules: SectionRules = lineup.section(k.kind)
    n = k.count
    if not rules.enabled:
        return bytearray(n)
    if rules.has_include:
        mark = bytearray(n)
        picked = [cid for cid, name, _ in k.categories if rules.include_categories.matches(cid, name)]
        picked += [cid for cid in k.unlisted if cid in rules.include_categories.ids]
        for rows in k.category_rows(picked):
            for r in rows:
                mark[r] = 1
        for r in k.rows_matching(rules.include_streams):
            mark[r] = 1
    else:
        mark = bytearray(b"\x01") * n
    dropped = []
    for cid, name, _ in k.categories:
        if rules.exclude_categories.matches(cid, name) or (
                lineup.hide_adult and lineup.adult_patterns.matches(cid, name)):
            dropped.append(cid)
    dropped += [cid for cid in k.unlisted
                if cid in rules.exclude_categories.ids or (lineup.hide_adult and cid in lineup.adult_patterns.ids)]
    for rows in k.category_rows(dropped):
        for r in rows:
            mark[r] = 0
    for r in k.rows_matching(rules.exclude_streams):
        mark[r] = 0
    if lineup.hide_adult:
        for r in compress(range(n), k.facts.adult):
            mark[r] = 0
    if within is not None:  # 0/1 bytes: one AND of two big integers
        both = int.from_bytes(mark, "little") & int.from_bytes(within, "little")
        mark = bytearray(both.to_bytes(n, "little"))
    return mark


def _select(k: _Kind, lineup: LineupConfig, mark: bytearray, numbers: ChannelNumbers | None) -> KindSelection:
    rules = lineup.section(k.kind)
    t = k.template
    n = k.count
    # favourites: first, in the order of the entries they match
    rank: dict[int, int] = {}
    if rules.favourites:
        ids_by_row = k.ids_by_row
        names = k.facts.names if rules.favourites.by_name else None
        for r in set(k.rows_matching(rules.favourites)):
            if mark[r]:
                first = rules.favourites.first(ids_by_row[r], names[r] if names is not None else "")
                if first is not None:
                    rank[r] = first
    favourites = sorted(rank, key=lambda r: (rank[r], r))
    others = bytearray(mark)
    for r in favourites:
        others[r] = 0
    rows = array("i", favourites)
    rows.extend(_picked(range(n), others))
    ids = _picked(t.sorted_ids, mark, t.rows_by_id, "q")
    numbered = array("i")
    id_numbers = array("i")
    by_number: Callable[[int], int] | None = None
    if k.kind == "live":  # numbered in this order, then shown by number
        ids_by_row, category = k.ids_by_row, k.first_category
        order_ids = array("q", (ids_by_row[r] for r in rows))
        keys = array("q", (FAVOURITES if r in rank else category[r] for r in rows))
        if numbers is not None:
            assigned = numbers.assign(lineup.name, order_ids, keys, lineup.number_from)
        else:  # numbered as the first time, remembered nowhere
            assigned = LineupNumbers(lineup.number_from).assign(order_ids, keys, lineup.number_from, 0.0)
        number_of_row = array("i", bytes(4 * n))
        for r, number in zip(rows, assigned):
            number_of_row[r] = number
        by_number = number_of_row.__getitem__
        rows = array("i", favourites)
        rows.extend(_by_number(_picked(range(n), others), number_of_row))
        numbered = array("i", (number_of_row[r] for r in rows))
        id_numbers = array("i", (number_of_row[r] for r in _picked(t.rows_by_id, mark, t.rows_by_id)))
    by_category: dict[int, array] = {}
    listed = array("i")
    is_favourite = bytearray(n)
    for r in favourites:
        is_favourite[r] = 1
    for cid, i in [(c, i) for c, _, i in k.categories] + [(c, -1) for c in k.unlisted]:
        members = t.by_category.get(cid)
        if members is None:
            continue
        kept = array("i", sorted(compress(members, map(is_favourite.__getitem__, members)), key=rank.__getitem__)
                     if rank else ())
        rest = compress(members, map(others.__getitem__, members))
        kept.extend(sorted(rest, key=by_number) if by_number is not None else rest)
        if kept:
            by_category[cid] = kept
            if i >= 0:  # a category missing from the category list is served, not listed
                listed.append(i)
    return KindSelection(n, rows, ids, listed, by_category, numbered, id_numbers)


def _by_number(rows: array, number_of_row: array) -> array:
    """*rows* in the order of their (distinct) numbers: a Python loop over a
    table of numbers, not one long sort holding the GIL."""
    if not rows:
        return rows
    low = min(number_of_row[r] for r in rows)
    high = max(number_of_row[r] for r in rows)
    table = array("i", [-1]) * (high - low + 1)
    for r in rows:
        table[number_of_row[r] - low] = r
    return array("i", (r for r in table if r >= 0))


def _picked(values: range | array, flags: bytearray, rows: array | None = None, typecode: str = "i") -> array:
    """The *values* whose flag is set (the flag of the same index, or of
    the row *rows* gives for that index), a slice at a time."""
    out = array(typecode)
    for a in range(0, len(values), SLICE):
        part = flags[a:a + SLICE] if rows is None else bytes(map(flags.__getitem__, rows[a:a + SLICE]))
        out.extend(compress(values[a:a + SLICE], part))
    return out


def compute_selections(generation: Generation, lineups: Mapping[str, LineupConfig],
                       numbers: ChannelNumbers | None = None, facts: Facts | None = None) -> dict[str, Selection]:
    """Every lineup's :class:`Selection` of *generation* (blocking).  With
    *numbers*, live channels get their stable numbers (the caller saves
    *numbers* afterwards); without, they are numbered as if for the first time."""
    facts = facts if facts is not None else GenerationFacts(generation)
    kinds = {kind: _Kind(kind, generation, facts) for kind in KINDS}
    marks: dict[tuple[str, str], bytearray] = {}

    def mark_of(kind: str, lineup: LineupConfig) -> bytearray:
        key = (lineup.name, kind)
        if key not in marks:
            parent = mark_of(kind, lineups[lineup.extends]) if lineup.extends is not None else None
            marks[key] = _narrow(kinds[kind], lineup, parent)
        return marks[key]

    return {name: Selection(name, {kind: _select(kinds[kind], lineup, mark_of(kind, lineup), numbers)
                                   for kind in KINDS})
            for name, lineup in lineups.items()}
