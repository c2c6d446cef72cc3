"""The demo provider's player_api.php answers, as plain JSON-able values.

Types follow an XC 2.x-era panel (docs/xtream-api.md, "Field types");
``quirky`` catalogs change a few account fields the way real panels do
(``exp_date`` null, ``active_cons`` an int, ``port`` an int).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .catalog import ARCHIVE_DAYS, Context, DemoCatalog, b64

#: Numeric action aliases accepted by XC 2.x and XUI panels.
ACTION_ALIASES = {
    "200": "get_vod_categories", "201": "get_live_categories", "202": "get_live_streams",
    "203": "get_vod_streams", "204": "get_series_info", "205": "get_short_epg",
    "206": "get_series_categories", "207": "get_simple_data_table", "208": "get_series",
    "209": "get_vod_info",
}
LIST_ACTIONS = {
    "get_live_streams": "live", "get_vod_streams": "vod", "get_series": "series",
}
CATEGORY_ACTIONS = {
    "get_live_categories": "live", "get_vod_categories": "vod", "get_series_categories": "series",
}
AUTH_FAILED = {"user_info": {"auth": 0}}


def local_time(epoch: float, tz: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in the provider's timezone."""
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class ApiRequest:
    """One player_api call, already authenticated."""

    ctx: Context
    host: str
    port: str
    scheme: str
    now: float
    active_cons: int
    max_connections: int
    tz: ZoneInfo
    tz_name: str
    formats: tuple[str, ...] = ("m3u8", "ts", "rtmp")


def account_info(catalog: DemoCatalog, req: ApiRequest) -> dict[str, Any]:
    """The answer to player_api.php without an action."""
    quirky = catalog.quirky
    exp = int(req.now // 86400 * 86400) + 365 * 86400
    return {
        "user_info": {
            "username": req.ctx.username,
            "password": req.ctx.password,
            "message": "Welcome to the xrelay demo provider",
            "auth": 1,
            "status": "Active",
            "exp_date": None if quirky else str(exp),
            "is_trial": "0",
            "active_cons": req.active_cons if quirky else str(req.active_cons),
            "created_at": str(1_690_000_000),
            "max_connections": str(req.max_connections),
            "allowed_output_formats": list(req.formats),
        },
        "server_info": {
            "url": req.host,
            "port": int(req.port) if quirky else req.port,
            "https_port": "25463",
            "server_protocol": req.scheme,
            "rtmp_port": "25462",
            "timezone": req.tz_name,
            "timestamp_now": int(req.now),
            "time_now": local_time(req.now, req.tz),
            "process": True,
        },
    }


def epg_listings(catalog: DemoCatalog, req: ApiRequest, stream_id: int,
                 limit: int | None, simple: bool) -> dict[str, Any]:
    """get_short_epg (current and upcoming, ``limit`` rows, default 4) or
    get_simple_data_table (the whole window, with now_playing/has_archive)."""
    if not catalog.is_live(stream_id):
        return {"epg_listings": []}
    i = stream_id - 1
    epg_id = catalog.epg_channel_id(i)
    if epg_id is None:
        return {"epg_listings": []}
    progs = catalog.programmes(epg_id, req.now)
    if not simple:
        progs = [p for p in progs if p.stop > req.now][: limit or 4]
    archive_from = req.now - ARCHIVE_DAYS * 86400
    rows = []
    for p in progs:
        row: dict[str, Any] = {
            "id": str(p.row_id),
            "epg_id": str(i + 1),
            "title": b64(p.title),
            "lang": "en",
            "start": local_time(p.start, req.tz),
            "end": local_time(p.stop, req.tz),
            "description": b64(p.description),
            "channel_id": epg_id,
            "start_timestamp": str(p.start),
            "stop_timestamp": str(p.stop),
        }
        if simple:
            row["now_playing"] = 1 if p.start <= req.now < p.stop else 0
            row["has_archive"] = int(
                catalog.has_archive(i) and p.stop <= req.now and p.stop >= archive_from
            )
        rows.append(row)
    return {"epg_listings": rows}


def _int_arg(args: dict[str, str], name: str) -> int | None:
    try:
        return int(args.get(name, ""))
    except ValueError:
        return None


def answer(catalog: DemoCatalog, req: ApiRequest, action: str, args: dict[str, str],
           keep: int = 1) -> Any:
    """The JSON value for ``action`` (already de-aliased); unknown actions
    get the account info, as real panels do."""
    if action in CATEGORY_ACTIONS:
        return catalog.categories(CATEGORY_ACTIONS[action])
    if action in LIST_ACTIONS:
        return catalog.list_rows(LIST_ACTIONS[action], req.ctx, _int_arg(args, "category_id"), keep)
    if action == "get_vod_info":
        return catalog.vod_info(_int_arg(args, "vod_id") or 0, req.ctx)
    if action == "get_series_info":
        return catalog.series_info(_int_arg(args, "series_id") or 0, req.ctx)
    if action in ("get_short_epg", "get_simple_data_table"):
        return epg_listings(catalog, req, _int_arg(args, "stream_id") or 0,
                            _int_arg(args, "limit"), action == "get_simple_data_table")
    return account_info(catalog, req)
