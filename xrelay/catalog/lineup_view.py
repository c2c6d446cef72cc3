"""One lineup's view of one generation: what its users are served.

A view is built beside the generation, in
``GENERATION/api/lineups/NAME-RULES-NUMBERS/`` (by
:mod:`xrelay.catalog.lineup_build`, in a child process), and loaded here by
the daemon: flat arrays and a few file names, like the generation itself.
``RULES`` is the lineup's fingerprint (its rules and those it extends) and
``NUMBERS`` a digest of its channel numbers as kept in the data directory:
a view whose directory exists is the view of those rules and numbers, and is
loaded again as it is (a restart, a SIGHUP that changed another lineup).

``view.json`` describes it:

* ``lists``: each player_api list, a template of its own (the selected rows
  in the lineup's order, ``num`` set to the lineup's channel numbers, names
  renamed) or ``"base"``: the generation's own list, untouched;
* ``playlists``: get.php's templates, likewise;
* ``panel``: panel_api.php's categories and channels;
* ``guide``: the lineup's XMLTV guide, or ``"base"``;
* ``arrays`` (in ``view.idx``): the ids allowed per kind, ascending, the
  live channels' numbers, the episodes allowed;
* ``channels``: the live channels in order with number, name, EPG id and
  logo (``channels.json``, read when asked: the HDHomeRun tuner's lineup).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from xrelay.catalog.generation import Generation
from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.m3u_templates import PlaylistTemplates
from xrelay.catalog.numbering import ChannelNumbers
from xrelay.catalog.packed import read_arrays
from xrelay.core.lineups import LineupConfig

__all__ = ["LineupView", "LineupChannel", "GuideFile", "load_view", "view_dirname", "numbers_digest",
           "list_identity", "VIEWS", "VIEW_MANIFEST", "VIEW_FORMAT", "ID_KINDS"]

VIEW_FORMAT = 1
#: The views of a generation, under its ``api/``.
VIEWS = "lineups"
VIEW_MANIFEST = "view.json"
#: The kinds a view keeps allowed ids for.
ID_KINDS = ("live", "vod", "series", "episode")
_KIND = {"live": "live", "vod": "vod", "movie": "vod", "series": "series", "episode": "episode"}


@dataclass(frozen=True)
class LineupChannel:
    """One live channel of a lineup, as a tuner lists it."""

    number: int
    stream_id: int
    name: str
    epg_id: str
    icon: str


@dataclass(frozen=True)
class GuideFile:
    """A lineup's own guide: its file, size and ``@XRELAY_BASE@`` count."""

    path: Path
    size: int
    markers: int


@dataclass
class LineupView:
    """What the users of one lineup see and may play of one generation."""

    lineup: str
    directory: Path
    generation: Path
    lists: dict[str, ListTemplate]
    playlists: PlaylistTemplates
    panel_path: Path
    #: None: the generation's whole guide
    guide: GuideFile | None
    #: kind (live, vod, series, episode) -> allowed ids, ascending
    ids: dict[str, array]
    #: the live channels' numbers, parallel to ``ids["live"]``
    numbers: array
    #: kind -> is every item of the catalog allowed?
    complete: dict[str, bool]
    counts: dict[str, int] = field(default_factory=dict)

    def allows(self, kind: str, ident: int) -> bool:
        """May a user of this lineup see and play *ident* of *kind*
        (``live``, ``vod``/``movie``, ``series``, ``episode``)?"""
        kind = _KIND[kind]
        if self.complete.get(kind):
            return True
        ids = self.ids[kind]
        i = bisect_left(ids, ident)
        return i < len(ids) and ids[i] == ident

    def allows_episode(self, ident: int, series: int | None) -> bool:
        """An episode: allowed when the playlist placed it in an allowed
        series, or when its *series* (known from cached details) is allowed."""
        if self.allows("episode", ident):
            return True
        return series is not None and self.allows("series", series)

    def number(self, ident: int) -> int | None:
        """A live channel's number in this lineup."""
        ids = self.ids["live"]
        i = bisect_left(ids, ident)
        return self.numbers[i] if i < len(ids) and ids[i] == ident else None

    def channels(self) -> list[LineupChannel]:
        """The live channels in the lineup's order (blocking: reads a file)."""
        with open(self.directory / "channels.json", "rb") as f:
            rows = json.loads(f.read())
        return [LineupChannel(int(n), int(i), str(name), str(epg), str(icon)) for n, i, name, epg, icon in rows]


def list_identity(generation: Generation) -> dict[str, list[Any]]:
    """What a view was built from: each list's file, size and row count."""
    return {key: [e.get("data"), e.get("size"), e.get("count")]
            for key, e in sorted(generation.manifest.get("lists", {}).items())}


def numbers_digest(numbers: ChannelNumbers, lineup: str) -> str:
    """A digest of *lineup*'s channel numbers as kept in the data directory."""
    state = numbers.lineups.get(lineup)
    text = json.dumps(state.to_json() if state is not None else None, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def view_dirname(lineup: LineupConfig, lineups: Mapping[str, LineupConfig], numbers: ChannelNumbers) -> str:
    """The directory of *lineup*'s view for its rules and numbers."""
    return f"{lineup.name}-{lineup.fingerprint(lineups)}-{numbers_digest(numbers, lineup.name)}"


def load_view(directory: Path, generation: Generation) -> LineupView:
    """The view in *directory*, built from *generation* (blocking).  Raises
    OSError or ValueError when it is missing, damaged or another's."""
    with open(directory / VIEW_MANIFEST, "rb") as f:
        manifest = json.loads(f.read())
    if not isinstance(manifest, dict) or manifest.get("format") != VIEW_FORMAT:
        raise ValueError(f"{directory}: not a view of this version")
    if manifest.get("lists_from") != list_identity(generation):
        raise ValueError(f"{directory}: built from other lists")
    try:
        lists = {key: generation.lists[key] if entry == "base" else ListTemplate.load(directory, entry)
                 for key, entry in manifest["lists"].items()}
        playlists = PlaylistTemplates.load(directory, [e for e in manifest["playlists"] if not e.get("base")])
        for e in manifest["playlists"]:
            if e.get("base"):
                playlists.files[(e["style"], e["kind"])] = generation.playlists.files[(e["style"], e["kind"])]
        guide = manifest["guide"]
        arrays = read_arrays(directory / manifest["index"], manifest["arrays"])
        return LineupView(
            lineup=str(manifest["lineup"]), directory=directory, generation=generation.path, lists=lists,
            playlists=playlists, panel_path=directory / manifest["panel"],
            guide=None if guide == "base" else GuideFile(directory / guide["file"], int(guide["size"]),
                                                         int(guide["markers"])),
            ids={kind: arrays[kind] for kind in ID_KINDS}, numbers=arrays["numbers"],
            complete={k: bool(v) for k, v in manifest["complete"].items()},
            counts={k: int(v) for k, v in manifest["counts"].items()})
    except (KeyError, TypeError) as e:
        raise ValueError(f"{directory}: the view's manifest is incomplete ({e})") from None
