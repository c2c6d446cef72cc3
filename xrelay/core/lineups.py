"""Lineups: named views of the catalog, as the configuration file describes them.

``[lineups.NAME]`` tables become frozen :class:`LineupConfig` records; a user
names one with ``lineup = "NAME"``.  Per section (``live``, ``vod``,
``series``) a lineup has ``enabled``, ``include_categories``,
``exclude_categories``, ``include_streams``, ``exclude_streams`` and
``favourites``.  Every entry of these lists is one of

* a case-insensitive glob on the category or stream name (``UK*``),
* ``id:123``, an id,
* ``re:...``, a case-insensitive regular expression searched in the name.

For example::

    [lineups.family]
    adult = "hide"                 # is_adult items, and categories matching adult_patterns
    rename = [{pattern = '^(UK|US)[:|] ?', replace = ''}]
    [lineups.family.live]
    include_categories = ["UK*", "id:12"]
    exclude_streams = ["re:shopping|teleshop"]
    favourites = ["BBC One*", "id:101"]
    [lineups.kids]
    extends = "family"             # narrows family's result
    number_from = 100
    live = {include_categories = ["*Kids*"]}
    vod = {enabled = false}

The records only match; :mod:`xrelay.catalog.selection` applies them to a
prepared generation.  They live in ``xrelay.core`` because the
configuration (:mod:`xrelay.core.config`) parses them at load time.  Errors name the key, as the rest of the configuration
does: ``FILE: lineups.kids.live.include_streams[2]: bad regular expression ...``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from fnmatch import translate
from typing import Any, Mapping, Protocol, Sequence

from xrelay.core.config_error import ConfigError

__all__ = [
    "ADULT_PATTERNS", "KINDS", "LineupConfig", "Patterns", "Rename", "SectionRules", "UserLineup",
    "parse_lineups", "parse_patterns",
]

#: The sections of a lineup, as the generation names its kinds.
KINDS = ("live", "vod", "series")
#: Category names hidden by ``adult = "hide"`` unless ``adult_patterns`` says otherwise.
ADULT_PATTERNS = ("*XXX*", "*Adult*", "*18+*")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Patterns:
    """A list of entries (globs, ``id:N``, ``re:...``), compiled once."""

    entries: tuple[str, ...] = ()
    ids: frozenset[int] = frozenset()
    #: every glob in one case-insensitive alternation (matched whole)
    globs: re.Pattern[str] | None = None
    #: the ``re:`` entries (searched)
    searches: tuple[re.Pattern[str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def by_name(self) -> bool:
        """Does any entry look at names (rather than ids only)?"""
        return self.globs is not None or bool(self.searches)

    def matches_name(self, name: str) -> bool:
        if self.globs is not None and self.globs.match(name):
            return True
        return any(rx.search(name) for rx in self.searches)

    def matches(self, ident: int, name: str) -> bool:
        return ident in self.ids or self.matches_name(name)

    def first(self, ident: int, name: str) -> int | None:
        """The index of the first entry that matches (favourites' order)."""
        for i, entry in enumerate(self.entries):
            if _entry_matches(entry, ident, name):
                return i
        return None


def _entry_matches(entry: str, ident: int, name: str) -> bool:
    kind, value = _split(entry)
    if kind == "id":
        return int(value) == ident
    if kind == "re":
        return re.search(value, name, re.IGNORECASE) is not None
    return re.match(translate(value), name, re.IGNORECASE) is not None


def _split(entry: str) -> tuple[str, str]:
    head = entry[:3].lower()
    if head == "id:":
        return "id", entry[3:].strip()
    if head == "re:":
        return "re", entry[3:]
    return "glob", entry


@dataclass(frozen=True)
class SectionRules:
    """One section (``live``, ``vod`` or ``series``) of a lineup."""

    enabled: bool = True
    include_categories: Patterns = field(default_factory=Patterns)
    exclude_categories: Patterns = field(default_factory=Patterns)
    include_streams: Patterns = field(default_factory=Patterns)
    exclude_streams: Patterns = field(default_factory=Patterns)
    favourites: Patterns = field(default_factory=Patterns)

    @property
    def has_include(self) -> bool:
        return bool(self.include_categories) or bool(self.include_streams)

    def describe(self) -> dict[str, Any]:
        """The section as the configuration file says it (check-config)."""
        return {"enabled": self.enabled, **{key: list(getattr(self, key).entries) for key in _SECTION_LISTS}}


@dataclass(frozen=True)
class Rename:
    """A display rule: ``pattern`` (a regular expression) replaced by ``replace``."""

    pattern: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class LineupConfig:
    name: str
    live: SectionRules = field(default_factory=SectionRules)
    vod: SectionRules = field(default_factory=SectionRules)
    series: SectionRules = field(default_factory=SectionRules)
    hide_adult: bool = False
    adult_patterns: Patterns = field(default_factory=lambda: _DEFAULT_ADULT)
    #: the lineup this one narrows
    extends: str | None = None
    number_from: int = 1
    rename: tuple[Rename, ...] = ()

    def section(self, kind: str) -> SectionRules:
        return {"live": self.live, "vod": self.vod, "movie": self.vod, "series": self.series}[kind]

    def display_name(self, name: str) -> str:
        """*name* as this lineup shows it (the cache keeps the original)."""
        for rule in self.rename:
            name = rule.pattern.sub(rule.replace, name)
        return name

    def chain(self, lineups: Mapping[str, "LineupConfig"]) -> list["LineupConfig"]:
        """This lineup and the ones it extends, the widest first."""
        out = [self]
        while out[0].extends is not None:
            out.insert(0, lineups[out[0].extends])
        return out

    def describe(self) -> dict[str, Any]:
        """The lineup as plain data (``xrelay check-config``)."""
        return {
            "extends": self.extends, "number_from": self.number_from,
            "adult": "hide" if self.hide_adult else "show",
            "adult_patterns": list(self.adult_patterns.entries),
            "rename": [{"pattern": r.pattern.pattern, "replace": r.replace} for r in self.rename],
            **{kind: self.section(kind).describe() for kind in KINDS},
        }

    def fingerprint(self, lineups: Mapping[str, "LineupConfig"]) -> str:
        """A digest of every rule that shapes this lineup's result (its own
        and those of the lineups it extends): equal fingerprints, equal
        selections of the same generation."""
        rules = [lineup.describe() for lineup in self.chain(lineups)]
        text = json.dumps(rules, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class UserLineup(Protocol):
    """What :func:`parse_lineups` reads of a user: the lineup it names."""

    @property
    def lineup(self) -> str | None: ...


# -- parsing ---------------------------------------------------------------------------

class _Table:
    """One table of the document, with errors naming FILE and key."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        self.source, self.name = source, name
        if not isinstance(table, dict):
            raise self.error(None, f"must be a table, not {_type_name(table)}")
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def error(self, key: str | None, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {f'{self.name}.{key}' if key else self.name}: {what}")

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.used.add(key)
        value = self.table.get(key, default)
        if key in self.table and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise self.error(key, f"expected {_type_name(kind())}, got {_type_name(value)}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def parse_patterns(entries: Any, source: str, key: str) -> Patterns:
    """An array of entries; *key* names it in errors (``lineups.kids.live.include_streams``)."""
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: {key}: expected an array of strings, got {_type_name(entries)}")
    ids: set[int] = set()
    globs: list[str] = []
    searches: list[re.Pattern[str]] = []
    for i, entry in enumerate(entries):
        where = f"{source}: {key}[{i}]"
        if not isinstance(entry, str):
            raise ConfigError(f"{where}: expected a string, got {_type_name(entry)}")
        kind, value = _split(entry)
        if not value:
            raise ConfigError(f"{where}: empty pattern")
        if kind == "id":
            if not (value.isascii() and value.isdigit()):
                raise ConfigError(f"{where}: {entry!r}: id: must be followed by a number")
            ids.add(int(value))
        elif kind == "re":
            try:
                searches.append(re.compile(value, re.IGNORECASE))
            except re.error as e:
                raise ConfigError(f"{where}: bad regular expression {entry!r}: {e}") from None
        else:
            problem = _glob_problem(value)
            if problem:
                raise ConfigError(f"{where}: bad glob {entry!r}: {problem}")
            globs.append(translate(value))
    combined = re.compile("|".join(f"(?:{g})" for g in globs), re.IGNORECASE) if globs else None
    return Patterns(tuple(entries), frozenset(ids), combined, tuple(searches))


def _glob_problem(glob: str) -> str | None:
    """fnmatch reads an unclosed ``[`` as a literal: refuse it, as the admin
    surely meant a character class or a literal bracket (``[[]``)."""
    i = 0
    while i < len(glob):
        if glob[i] == "[":
            j = i + 1
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            while j < len(glob) and glob[j] != "]":
                j += 1
            if j >= len(glob):
                return "'[' is not closed (write [[] for a literal '[')"
            i = j
        i += 1
    return None


_DEFAULT_ADULT: Patterns = parse_patterns(list(ADULT_PATTERNS), "<default>", "adult_patterns")
_SECTION_LISTS = ("include_categories", "exclude_categories", "include_streams", "exclude_streams",
                  "favourites")


def _section(source: str, name: str, raw: Any) -> SectionRules:
    t = _Table(source, name, raw)
    enabled = t.get("enabled", bool, True)
    lists = {key: parse_patterns(t.get(key, list, []), source, f"{name}.{key}") for key in _SECTION_LISTS}
    t.finish()
    return SectionRules(enabled=enabled, **lists)


def _renames(source: str, key: str, raw: Any) -> tuple[Rename, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: {key}: expected an array of tables, got {_type_name(raw)}")
    out = []
    for i, item in enumerate(raw):
        t = _Table(source, f"{key}[{i}]", item)
        pattern_text = t.get("pattern", str, None)
        if pattern_text is None:
            raise t.error("pattern", "missing")
        replace = t.get("replace", str, "")
        t.finish()
        try:
            pattern = re.compile(pattern_text)
        except re.error as e:
            raise t.error("pattern", f"bad regular expression {pattern_text!r}: {e}") from None
        try:  # an empty alternative matches "": the replacement is expanded once
            re.compile(pattern_text + "|").sub(replace, "")
        except re.error as e:
            raise t.error("replace", f"bad replacement {replace!r}: {e}") from None
        out.append(Rename(pattern, replace))
    return tuple(out)


def _lineup(source: str, name: str, raw: Any) -> LineupConfig:
    key = f"lineups.{name}"
    t = _Table(source, key, raw)
    if not _NAME.fullmatch(name):
        raise t.error(None, "a lineup name is 1 to 64 letters, digits, '-' or '_'")
    sections = {kind: _section(source, f"{key}.{kind}", t.get(kind, dict, {})) for kind in KINDS}
    adult = t.get("adult", str, "show")
    if adult not in ("show", "hide"):
        raise t.error("adult", f"must be \"show\" or \"hide\", got {adult!r}")
    adult_patterns = _DEFAULT_ADULT
    if "adult_patterns" in t.table:
        adult_patterns = parse_patterns(t.get("adult_patterns", list, []), source, f"{key}.adult_patterns")
    extends = t.get("extends", str, None)
    number_from = t.get("number_from", int, 1)
    if number_from < 1:
        raise t.error("number_from", f"must be >= 1, got {number_from}")
    rename = _renames(source, f"{key}.rename", t.get("rename", list, []))
    t.finish()
    return LineupConfig(name=name, hide_adult=adult == "hide", adult_patterns=adult_patterns,
                        extends=extends, number_from=number_from, rename=rename, **sections)


def parse_lineups(table: Any, users: Sequence[UserLineup], source: str = "<memory>") -> dict[str, LineupConfig]:
    """The ``[lineups]`` table of the document (``{}`` when absent) checked
    against itself and against the users' ``lineup`` references (``users``
    in ``[[users]]`` order).  Raises :class:`ConfigError` naming the key."""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: lineups: must be a table, not {_type_name(table)}")
    lineups = {name: _lineup(source, name, raw) for name, raw in table.items()}
    for name, lineup in lineups.items():
        if lineup.extends is not None and lineup.extends not in lineups:
            raise ConfigError(f"{source}: lineups.{name}.extends: unknown lineup {lineup.extends!r}")
    for name in lineups:
        path = [name]
        while (parent := lineups[path[-1]].extends) is not None:
            if parent in path:
                cycle = " -> ".join(path[path.index(parent):] + [parent])
                raise ConfigError(f"{source}: lineups.{name}.extends: cycle {cycle}")
            path.append(parent)
    for i, user in enumerate(users):
        ref = user.lineup
        if ref is not None and ref not in lineups:
            known = ", ".join(sorted(lineups)) or "none defined"
            raise ConfigError(f"{source}: users[{i}].lineup: unknown lineup {ref!r} ({known})")
    return lineups
