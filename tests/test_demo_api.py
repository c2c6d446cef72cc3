"""player_api answers of the demo provider, on a fixed clock."""

from __future__ import annotations

import base64
from zoneinfo import ZoneInfo

from xrelay.demo import api
from xrelay.demo.catalog import Context, DemoCatalog

NOW = 1_782_900_000  # 2026-07-01 10:00 UTC, British Summer Time
TZ = ZoneInfo("Europe/London")


def request(**kw: object) -> api.ApiRequest:
    values = dict(ctx=Context("http://p.test:8080", "u", "p"), host="p.test", port="8080",
                  scheme="http", now=NOW, active_cons=1, max_connections=2, tz=TZ,
                  tz_name="Europe/London")
    values.update(kw)
    return api.ApiRequest(**values)  # type: ignore[arg-type]


def test_account_info_types() -> None:
    info = api.account_info(DemoCatalog(), request())
    user, server = info["user_info"], info["server_info"]
    assert user["active_cons"] == "1" and user["max_connections"] == "2"
    assert user["auth"] == 1 and isinstance(user["exp_date"], str)
    assert server["url"] == "p.test" and server["port"] == "8080"
    assert server["timestamp_now"] == NOW and server["time_now"] == "2026-07-01 11:00:00"
    quirky = api.account_info(DemoCatalog(quirky=True), request())
    assert quirky["user_info"]["exp_date"] is None and quirky["server_info"]["port"] == 8080
    assert quirky["user_info"]["active_cons"] == 1


def test_short_epg_is_local_time_and_base64() -> None:
    rows = api.answer(DemoCatalog(), request(), "get_short_epg", {"stream_id": "1"})
    rows = rows["epg_listings"]
    assert len(rows) == 4
    assert rows[0]["start"] == "2026-07-01 11:00:00"  # 10:00 UTC in London
    assert rows[0]["start_timestamp"] == str(NOW)
    assert base64.b64decode(rows[0]["title"]).decode()
    assert "now_playing" not in rows[0]


def test_simple_data_table_flags() -> None:
    catalog = DemoCatalog(epg_hours=4)
    rows = api.answer(catalog, request(), "get_simple_data_table", {"stream_id": "1"})
    rows = rows["epg_listings"]
    assert [r["now_playing"] for r in rows].count(1) == 1
    past = [r for r in rows if int(r["stop_timestamp"]) <= NOW]
    assert past and all(r["has_archive"] == 1 for r in past)
    no_archive = api.answer(catalog, request(), "get_simple_data_table", {"stream_id": "2"})
    assert no_archive["epg_listings"] and all(r["has_archive"] == 0 for r in no_archive["epg_listings"])


def test_aliases_and_fallbacks() -> None:
    assert api.ACTION_ALIASES["202"] == "get_live_streams"
    catalog = DemoCatalog(live=3)
    assert "user_info" in api.answer(catalog, request(), "whatever", {})
    assert api.answer(catalog, request(), "get_live_streams", {"category_id": "0"}) == \
        api.answer(catalog, request(), "get_live_streams", {})
    assert api.answer(catalog, request(), "get_short_epg", {"stream_id": "x"}) == \
        {"epg_listings": []}
