"""Tolerant parsing of provider answers into xrelay's serve-ready catalog.

Real panels send numbers as strings, strings as numbers, ``[]`` where an
object belongs, nulls everywhere and duplicate rows per category
(docs/xtream-api.md, last section).  Everything is coerced here, once, at
ingest, into the types the fussiest clients accept (docs/xtream-api.md), so the
API can serve the cache as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Callable, Iterable

__all__ = [
    "as_id",
    "as_int",
    "as_numstr",
    "as_str",
    "normalise_account",
    "normalise_categories",
    "normalise_live",
    "normalise_series",
    "normalise_series_info",
    "normalise_vod",
    "normalise_encoded",
    "EncodedRows",
    "encode_row",
    "normalise_vod_info",
]

LIVE_TYPES = {"live", "created_live", "radio_streams"}


# -- scalar coercion ---------------------------------------------------------

def as_int(value: Any, default: int | None = 0) -> int | None:
    """int, float, numeric string, bool, "" or null -> int (or *default*)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        try:
            return int(value)
        except (ValueError, OverflowError):  # NaN, infinities
            return default
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64:
            return default
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except (ValueError, OverflowError):
                return default
    return default


#: Ids are kept in 64-bit arrays (xrelay.catalog.list_template): bigger ones are garbage.
MAX_ID = 2**63 - 1


def as_id(value: Any) -> int | None:
    """A non-negative id that fits the indexes, or None."""
    number = as_int(value, None)
    return number if number is not None and 0 <= number <= MAX_ID else None


def as_float(value: Any, default: float | None = 0.0) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return default
    return default


def as_numstr(value: Any, default: str = "0") -> str:
    """A numeric string such as ``"1700000000"``."""
    number = as_int(value, None)
    return default if number is None else str(number)


def as_str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    return default


def as_flag(value: Any) -> str:
    """``"0"`` or ``"1"``: booleans arrive as 0, 1, "0", "1", true, false."""
    if isinstance(value, str):
        return "1" if value.strip().lower() in ("1", "true", "yes") else "0"
    return "1" if value else "0"


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(data: Any) -> Iterable[dict[str, Any]]:
    """The rows of a list answer: lists, dicts keyed by id, or garbage."""
    if isinstance(data, dict):
        data = list(data.values())
    if not isinstance(data, list):
        return ()
    return (row for row in data if isinstance(row, dict))


def _category_ids(row: dict[str, Any]) -> list[int]:
    ids = [i for i in (as_id(v) for v in as_list(row.get("category_ids"))) if i is not None]
    first = as_id(row.get("category_id"))
    if first is not None and first not in ids:
        ids.insert(0, first)
    return ids


# -- account -----------------------------------------------------------------

class AuthRefused(Exception):
    """The provider answered, but not with a usable login."""


def normalise_account(data: Any) -> dict[str, Any]:
    """Check a login answer and keep what xrelay needs (no secrets)."""
    if not isinstance(data, dict) or not isinstance(data.get("user_info"), dict):
        raise AuthRefused("the provider's answer has no user_info")
    user = data["user_info"]
    if as_int(user.get("auth"), 0) != 1:
        raise AuthRefused("the provider refused the login (auth 0): check [upstream] username and password")
    status = as_str(user.get("status"), "Active") or "Active"
    if status != "Active":
        raise AuthRefused(f"the provider account is {status}")
    server = as_object(data.get("server_info"))
    formats = [f for f in as_list(user.get("allowed_output_formats")) if isinstance(f, str)]
    return {
        "status": status,
        "exp_date": as_int(user.get("exp_date"), None),
        "is_trial": as_flag(user.get("is_trial")),
        "max_connections": as_int(user.get("max_connections"), 1) or 0,
        "created_at": as_int(user.get("created_at"), None),
        "allowed_output_formats": formats or ["m3u8", "ts"],
        "timezone": as_str(server.get("timezone"), "UTC") or "UTC",
        "message": as_str(user.get("message")),
    }


# -- lists -------------------------------------------------------------------

def normalise_categories(data: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for row in _rows(data):
        cid = as_id(row.get("category_id"))
        if cid is None or cid in seen:
            continue
        seen.add(cid)
        out.append({
            "category_id": str(cid),
            "category_name": as_str(row.get("category_name")).replace("\n", " "),
            "parent_id": as_int(row.get("parent_id"), 0) or 0,
        })
    return out


def _common(row: dict[str, Any], num: int) -> None:
    cats = row["category_ids"]
    row["num"] = num
    row["name"] = as_str(row.get("name")).replace("\n", " ").replace("\r", " ")
    row["added"] = as_numstr(row.get("added"))
    row["category_id"] = str(cats[0]) if cats else None
    row["is_adult"] = as_flag(row.get("is_adult"))
    row["custom_sid"] = ""  # 8.1: "" (a provider's service-id fragments mean nothing here)
    row["direct_source"] = ""


def _live_row(row: dict[str, Any], num: int) -> None:
    _common(row, num)
    row["stream_type"] = "live"
    row["stream_icon"] = as_str(row.get("stream_icon"))
    epg = row.get("epg_channel_id")
    row["epg_channel_id"] = as_str(epg) or None
    row["tv_archive"] = 1 if as_int(row.get("tv_archive"), 0) else 0
    row["tv_archive_duration"] = as_int(row.get("tv_archive_duration"), 0) or 0 if row["tv_archive"] else 0
    row["thumbnail"] = as_str(row.get("thumbnail"))


def _vod_row(row: dict[str, Any], num: int) -> None:
    _common(row, num)
    row["stream_type"] = "movie"
    row["stream_icon"] = as_str(row.get("stream_icon"))
    rating = as_float(row.get("rating"), None)
    row["rating"] = round(rating, 1) if rating is not None else ""
    row["rating_5based"] = round(as_float(row.get("rating_5based"), (rating or 0) / 2) or 0, 1)
    ext = as_str(row.get("container_extension")).strip(". ").lower()
    row["container_extension"] = ext if ext.isalnum() else "mp4"


def _series_fields(d: dict[str, Any]) -> None:
    """The fields a series row and get_series_info's ``info`` share, typed."""
    d["name"] = as_str(d.get("name")).replace("\n", " ")
    d["cover"] = as_str(d.get("cover"))
    for key in ("plot", "cast", "director", "genre", "releaseDate", "youtube_trailer"):
        d[key] = as_str(d.get(key))
    d["last_modified"] = as_numstr(d.get("last_modified"))
    rating = as_float(d.get("rating"), None)
    d["rating"] = as_str(d.get("rating")) if rating is not None else "0"
    d["rating_5based"] = round(as_float(d.get("rating_5based"), (rating or 0) / 2) or 0, 1)
    d["backdrop_path"] = [b for b in as_list(d.get("backdrop_path")) if isinstance(b, str)]
    d["episode_run_time"] = as_numstr(d.get("episode_run_time"))


def _series_row(row: dict[str, Any], num: int) -> None:
    cats = row["category_ids"]
    row["num"] = num
    _series_fields(row)
    # a numeric string even without a category: Jellyfin reads it as a non-nullable int
    row["category_id"] = str(cats[0]) if cats else "0"


#: kind of list -> (id field, per-row normaliser)
STREAM_KINDS: dict[str, tuple[str, Callable[[dict[str, Any], int], None]]] = {
    "live": ("stream_id", _live_row),
    "vod": ("stream_id", _vod_row),
    "series": ("series_id", _series_row),
}


def _normalise(data: Any, kind: str) -> list[dict[str, Any]]:
    """One row per id (the categories of duplicate rows merged), numbered,
    typed; *data* is left as it was."""
    return list(normalise_encoded((dict(row) for row in _rows(data)), kind))


def normalise_live(data: Any) -> list[dict[str, Any]]:
    return _normalise(data, "live")


def normalise_vod(data: Any) -> list[dict[str, Any]]:
    return _normalise(data, "vod")


def normalise_series(data: Any) -> list[dict[str, Any]]:
    return _normalise(data, "series")


class EncodedRows:
    """Normalised rows kept as their compact JSON (about a fifth of their
    size as Python objects).  Iterating decodes one row at a time."""

    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def __len__(self) -> int:
        return len(self.encoded)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(e) for e in self.encoded)

    def pairs(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        """(row, its JSON) for each row."""
        return ((json.loads(e), e) for e in self.encoded)


def encode_row(row: Any) -> bytes:
    """The compact JSON xrelay writes everywhere (bundle, templates)."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()


def normalise_encoded(rows: Iterable[Any], kind: str,
                      finish: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row) -> EncodedRows:
    """Rows of a ``live``, ``vod`` or ``series`` list, normalised as
    :func:`normalise_live` and friends do, then passed through *finish*
    (the scrubber) and kept encoded: one pass, one row in memory at a
    time.  The rows given are changed in place (they are a parser's fresh
    output).  A duplicate id only adds its categories to the first row."""
    key, normalise_row = STREAM_KINDS[kind]
    out = EncodedRows()
    at: dict[int, int] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        ident = as_id(row.get(key))
        if ident is None:
            continue
        cats = _category_ids(row)
        position = at.get(ident)
        if position is None:
            row[key] = ident
            row["category_ids"] = cats
            normalise_row(row, len(out.encoded) + 1)
            at[ident] = len(out.encoded)
            out.encoded.append(encode_row(finish(row)))
            continue
        kept = json.loads(out.encoded[position])
        more = [c for c in cats if c not in kept["category_ids"]]
        if more:
            kept["category_ids"].extend(more)
            kept["category_id"] = str(kept["category_ids"][0])
            out.encoded[position] = encode_row(kept)
    return out


# -- details (fetched on first request) ----------------------------------------

def normalise_vod_info(data: Any, stream: dict[str, Any] | None) -> dict[str, Any]:
    """A get_vod_info answer; ``info`` is always an object."""
    data = as_object(data)
    info = dict(as_object(data.get("info")))
    info["backdrop_path"] = [b for b in as_list(info.get("backdrop_path")) if isinstance(b, str)]
    for key in ("movie_image", "cover_big", "plot", "genre", "releasedate", "duration", "name",
                "o_name", "director", "actors", "cast", "description", "youtube_trailer", "country"):
        info[key] = as_str(info.get(key))
    info["duration_secs"] = as_int(info.get("duration_secs"), 0)
    info["tmdb_id"] = as_int(info.get("tmdb_id"), 0)
    rating = as_float(info.get("rating"), None)
    info["rating"] = round(rating, 1) if rating is not None else 0
    movie = dict(as_object(data.get("movie_data")))
    if stream is not None:
        for key in ("stream_id", "name", "added", "category_id", "category_ids", "container_extension"):
            movie.setdefault(key, stream.get(key))
        movie["stream_id"] = stream["stream_id"]
        movie["container_extension"] = stream["container_extension"]
    movie["stream_id"] = as_int(movie.get("stream_id"), 0)
    movie["name"] = as_str(movie.get("name"))
    movie["added"] = as_numstr(movie.get("added"))
    cats = _category_ids(movie)  # as in the list rows
    movie["category_ids"] = cats
    movie["category_id"] = str(cats[0]) if cats else None
    movie["container_extension"] = as_str(movie.get("container_extension"), "mp4") or "mp4"
    movie["custom_sid"] = ""
    movie["direct_source"] = ""
    return {"info": info, "movie_data": movie}


def normalise_series_info(data: Any, series: dict[str, Any] | None) -> dict[str, Any]:
    """A get_series_info answer: ``episodes`` keyed "1", "2"...; one season
    per key, each with an ``id`` (the provider's, else a stable derived one),
    whatever the provider's ``seasons`` (``[]`` included); ``info`` with the
    list row's ``category_ids`` (docs/xtream-api.md)."""
    data = as_object(data)
    raw_eps = data.get("episodes")
    episodes: dict[str, list[dict[str, Any]]] = {}
    groups: list[tuple[Any, Any]]
    if isinstance(raw_eps, dict):
        groups = list(raw_eps.items())
    else:  # a list of lists: key each list by its items' season
        groups = [(None, group) for group in as_list(raw_eps)]
    for key, group in groups:
        for ep in as_list(group):
            if not isinstance(ep, dict):
                continue
            season_no = as_int(ep.get("season"), None)
            if season_no is None:
                season_no = as_int(key, 1)
            ep_id = as_int(ep.get("id"), None)
            if ep_id is None:
                continue
            ep = dict(ep)
            ep["id"] = str(ep_id)
            ep["season"] = season_no
            ep["episode_num"] = as_int(ep.get("episode_num"), 0)
            ep["title"] = as_str(ep.get("title")).replace("\n", " ")
            ext = as_str(ep.get("container_extension")).strip(". ").lower()
            ep["container_extension"] = ext if ext.isalnum() else "mp4"
            ep["info"] = _episode_info(ep.get("info"))
            ep["custom_sid"] = ""
            ep["added"] = as_numstr(ep.get("added"))
            ep["direct_source"] = ""
            episodes.setdefault(str(season_no), []).append(ep)
    if not episodes:  # one (empty) season, so that seasons and episodes agree
        episodes["1"] = []
    episodes = dict(sorted(episodes.items(), key=lambda kv: int(kv[0])))
    info = dict(as_object(data.get("info")))
    if series is not None:
        for key in ("name", "cover", "plot", "cast", "director", "genre", "releaseDate",
                    "last_modified", "rating", "rating_5based", "backdrop_path",
                    "youtube_trailer", "episode_run_time", "category_id", "category_ids"):
            info.setdefault(key, series.get(key))
    _series_fields(info)
    cats = _category_ids(series if series is not None else info)  # as in the list row
    info["category_ids"] = cats
    info["category_id"] = str(cats[0]) if cats else "0"
    series_id = as_id(series.get("series_id")) if series is not None else None
    seasons_in = {as_int(s.get("season_number"), None): s for s in as_list(data.get("seasons"))
                  if isinstance(s, dict)}
    seasons = []
    for key in episodes:
        number = int(key)
        season = dict(seasons_in.get(number) or {})
        season["season_number"] = number
        season["id"] = as_id(season.get("id")) or _season_id(series_id, number)
        season["name"] = as_str(season.get("name")) or f"Season {number}"
        season["cover"] = as_str(season.get("cover")) or info["cover"]
        season["cover_big"] = as_str(season.get("cover_big")) or season["cover"]
        season["episode_count"] = len(episodes[key])
        season["air_date"] = as_str(season.get("air_date"))
        season["overview"] = as_str(season.get("overview"))
        seasons.append(season)
    return {"seasons": seasons, "info": info, "episodes": episodes}


#: Season numbers below this are folded into a derived season id.
_SEASONS_PER_SERIES = 1000


def _season_id(series_id: int | None, number: int) -> int:
    """A stable id for a season the provider gave none: the same series and
    number always get the same one."""
    number = max(0, number) % _SEASONS_PER_SERIES
    return (series_id or 0) * _SEASONS_PER_SERIES + number


def _episode_info(value: Any) -> dict[str, Any]:
    """An episode's ``info``: an object, with the fields players read typed."""
    info = dict(as_object(value))
    info["movie_image"] = as_str(info.get("movie_image"))
    info["plot"] = as_str(info.get("plot"))
    for key in ("duration", "releasedate", "name"):
        if key in info:
            info[key] = as_str(info[key])
    info["duration_secs"] = as_int(info.get("duration_secs"), 0) or 0
    info["cover_big"] = as_str(info.get("cover_big")) or info["movie_image"]
    if "rating" in info:
        rating = as_float(info.get("rating"), None)
        info["rating"] = round(rating, 1) if rating is not None else 0
    if "bitrate" in info:
        info["bitrate"] = as_int(info.get("bitrate"), 0) or 0
    return info


def is_live_type(stream_type: Any) -> bool:
    return as_str(stream_type, "live") in LIVE_TYPES
