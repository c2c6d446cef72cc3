"""The player_api lists as the catalog stores them: which action answers
which list, the id field of each, and the rows derived from them.

Shared by the ingest, which prepares every list's template
(:func:`build_templates`), and the API, which serves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xrelay.catalog.list_template import ListTemplate

__all__ = ["LIST_KEYS", "ID_KEYS", "build_templates", "panel_channel"]

#: player_api action -> bundle key
LIST_KEYS = {
    "get_live_categories": "live_categories",
    "get_vod_categories": "vod_categories",
    "get_series_categories": "series_categories",
    "get_live_streams": "live_streams",
    "get_vod_streams": "vod_streams",
    "get_series": "series",
}
#: bundle key -> the integer id field its rows are looked up by
ID_KEYS = {"live_streams": "stream_id", "vod_streams": "stream_id", "series": "series_id"}


def build_templates(bundle: dict[str, Any], directory: Path | None = None) -> dict[str, ListTemplate]:
    """Every list's template (blocking)."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    return {key: ListTemplate.build(bundle.get(key, []), directory / f"{key}.json" if directory else None,
                                    ID_KEYS.get(key))
            for key in LIST_KEYS.values()}


def panel_channel(s: dict[str, Any], groups: dict[Any, str]) -> dict[str, Any]:
    """One live channel as panel_api.php's available_channels lists it."""
    return {
        "num": s.get("num"), "name": s.get("name", ""),
        "stream_type": s.get("stream_type", "live"), "type_name": "Live Streams",
        "stream_id": s["stream_id"], "stream_icon": s.get("stream_icon") or "",
        "epg_channel_id": s.get("epg_channel_id"), "added": s.get("added", "0"),
        "category_name": groups.get(s.get("category_id"), ""), "category_id": s.get("category_id"),
        "series_no": None, "live": "1", "container_extension": None,
        "custom_sid": "", "tv_archive": s.get("tv_archive", 0), "direct_source": "",
        "tv_archive_duration": s.get("tv_archive_duration", 0),
    }
