"""A prepared generation, as the daemon holds it.

:func:`load_generation` reads ``GENERATION/api/`` (written by
:mod:`xrelay.catalog.prepare`): the manifest, the list templates' indexes, the
live channels' facts, the episode ids, the playlist templates, the EPG
index and the provider images the generation names.  Everything is flat arrays and a few strings per live channel; rows
are read from the list files when one is needed (item details), so a
50k/100k/10k catalog costs the daemon tens of MB, and loading it takes
milliseconds of the reactor's time, not seconds.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xrelay.catalog.assets import AssetIndex
from xrelay.catalog.m3u_templates import PlaylistTemplates
from xrelay.catalog.epg import EpgIndex
from xrelay.catalog.list_template import ListTemplate
from xrelay.catalog.packed import read_arrays
from xrelay.catalog.prepare import MANIFEST, PREPARED_FORMAT

__all__ = ["Generation", "LiveChannel", "NotPrepared", "load_generation", "LIST_OF_KIND"]

#: kind of item -> the list it is in
LIST_OF_KIND = {"live": "live_streams", "vod": "vod_streams", "movie": "vod_streams", "series": "series"}


class NotPrepared(Exception):
    """The generation has no (current) prepared files."""


@dataclass(frozen=True)
class LiveChannel:
    """What the relay needs to know of one live channel."""

    stream_id: int
    name: str
    epg_channel_id: str
    tv_archive: bool
    archive_days: int


class Generation:
    """One loaded generation: lookups by id and everything the API serves."""

    def __init__(self, path: Path, manifest: dict[str, Any], lists: dict[str, ListTemplate],
                 playlists: PlaylistTemplates, epg: EpgIndex, live: dict[str, Any],
                 episodes: array, assets: AssetIndex | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.lists = lists
        self.playlists = playlists
        self.epg = epg
        self._live_archive: array = live["archive"]
        self._live_days: array = live["days"]
        self._live_names: list[str] = live["names"]
        self._live_epg: list[str] = live["epg"]
        #: the episode ids, ascending
        self.episodes = episodes
        #: the provider images this generation names (for /asset/)
        self.assets = assets if assets is not None else AssetIndex()

    @property
    def account(self) -> dict[str, Any]:
        value = self.manifest.get("account")
        return value if isinstance(value, dict) else {}

    @property
    def generated_at(self) -> int:
        return int(self.manifest.get("generated_at") or 0)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest.get("counts") or {})

    @property
    def panel_path(self) -> Path:
        return self.path / "api" / str(self.manifest.get("panel", "panel.json"))

    def count(self, kind: str) -> int:
        template = self.lists.get(LIST_OF_KIND[kind])
        return template.count if template is not None else 0

    def has(self, kind: str, ident: int) -> bool:
        """Is *ident* a live channel, movie (``vod``), series or ``episode``?"""
        if kind == "episode":
            i = bisect_left(self.episodes, ident)
            return i < len(self.episodes) and self.episodes[i] == ident
        return self._position(kind, ident) is not None

    def live(self, ident: int) -> LiveChannel | None:
        i = self._position("live", ident)
        if i is None:
            return None
        return LiveChannel(ident, self._live_names[i], self._live_epg[i], bool(self._live_archive[i]),
                           int(self._live_days[i]))

    def row(self, kind: str, ident: int) -> dict[str, Any] | None:
        """The list row of an item (blocking: it may read the list file)."""
        i = self._position(kind, ident)
        return None if i is None else self.lists[LIST_OF_KIND[kind]].row(i)

    def _position(self, kind: str, ident: int) -> int | None:
        template = self.lists.get(LIST_OF_KIND[kind])
        return template.position(ident) if template is not None else None


def load_generation(path: Path) -> Generation:
    """Load a prepared generation (blocking).  Raises :class:`NotPrepared`
    when it has no current manifest, OSError or ValueError when its files
    are damaged."""
    api = path / "api"
    try:
        with open(api / MANIFEST, "rb") as f:
            manifest = json.loads(f.read())
    except FileNotFoundError:
        raise NotPrepared(f"{path.name}: not prepared") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PREPARED_FORMAT:
        raise NotPrepared(f"{path.name}: prepared by another version")
    try:
        lists = {key: ListTemplate.load(api, entry) for key, entry in manifest["lists"].items()}
        playlists = PlaylistTemplates.load(api, manifest["playlists"])
        epg = EpgIndex.load(api, manifest["epg"]) if manifest.get("epg") else EpgIndex()
        live_entry = manifest["live"]
        live: dict[str, Any] = dict(read_arrays(api / live_entry["index"], live_entry["arrays"]))
        with open(api / live_entry["texts"], "rb") as f:
            live.update(json.loads(f.read()))
        count = lists["live_streams"].count
        if not (len(live["archive"]) == len(live["days"]) == len(live["names"]) == len(live["epg"]) == count):
            raise ValueError(f"{api}: the live channels' facts do not match the list")
        episodes_entry = manifest["episodes"]
        episodes = read_arrays(api / episodes_entry["index"], episodes_entry["arrays"])["ids"]
        assets = AssetIndex.load(api, manifest["assets"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{api}: the manifest is incomplete ({e})") from None
    return Generation(path, manifest, lists, playlists, epg, live, episodes, assets)
