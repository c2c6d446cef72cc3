"""Tolerant parsing of the odd answers real panels send (xtream-api.md 8.2)."""

from __future__ import annotations

import pytest

from xrelay.catalog import rows as catalog
from xrelay.catalog.rows import AuthRefused


@pytest.mark.parametrize("value, expected", [
    (5, 5), ("5", 5), (" 7 ", 7), ("7.9", 7), (7.2, 7), (True, 1), ("", None), (None, None),
    ("abc", None), ([], None), (float("nan"), None),
])
def test_as_int(value: object, expected: int | None) -> None:
    assert catalog.as_int(value, None) == expected


@pytest.mark.parametrize("value, expected", [
    (1, "1"), (0, "0"), ("1", "1"), ("0", "0"), (True, "1"), (False, "0"), ("true", "1"), (None, "0"),
])
def test_as_flag(value: object, expected: str) -> None:
    assert catalog.as_flag(value) == expected


def test_account_accepts_string_auth_and_null_exp_date() -> None:
    account = catalog.normalise_account({
        "user_info": {"auth": "1", "status": "Active", "exp_date": None, "max_connections": "3",
                      "username": "secret-user", "password": "secret-pass"},
        "server_info": {"url": "panel.example", "timezone": "Europe/London", "port": 8080},
    })
    assert account["max_connections"] == 3 and account["exp_date"] is None
    assert account["timezone"] == "Europe/London"
    assert "secret" not in repr(account) and "panel.example" not in repr(account)


@pytest.mark.parametrize("answer, message", [
    ({"user_info": {"auth": 0}}, "auth 0"),
    ({"user_info": {"auth": 1, "status": "Expired"}}, "Expired"),
    ([], "no user_info"),
    ({"error": "blocked"}, "no user_info"),
])
def test_account_refusals(answer: object, message: str) -> None:
    with pytest.raises(AuthRefused, match=message):
        catalog.normalise_account(answer)


def test_live_rows_are_deduplicated_and_typed() -> None:
    rows = catalog.normalise_live([
        {"stream_id": "10", "name": "A\nB", "category_id": "3", "tv_archive": "1",
         "tv_archive_duration": "7", "epg_channel_id": "", "added": 1700000000, "direct_source": "http://x"},
        {"stream_id": 10, "name": "A", "category_id": "4"},
        {"stream_id": "x"}, {"name": "no id"}, "garbage",
        {"stream_id": 11, "name": "R", "stream_type": "radio_streams", "category_id": None,
         "tv_archive": 0, "tv_archive_duration": "3"},
    ])
    assert [r["stream_id"] for r in rows] == [10, 11]
    a, r = rows
    assert a["category_ids"] == [3, 4] and a["category_id"] == "3"
    assert a["name"] == "A B" and a["num"] == 1 and r["num"] == 2
    assert a["tv_archive"] == 1 and a["tv_archive_duration"] == 7
    assert a["epg_channel_id"] is None and a["added"] == "1700000000" and a["direct_source"] == ""
    assert r["stream_type"] == "live" and r["category_id"] is None
    assert r["tv_archive_duration"] == 0


def test_lists_may_arrive_as_objects_keyed_by_id() -> None:
    rows = catalog.normalise_vod({"5": {"stream_id": 5, "name": "M", "rating": "7.34",
                                        "container_extension": ".MKV"}})
    assert rows[0]["stream_id"] == 5 and rows[0]["rating"] == 7.3
    assert rows[0]["rating_5based"] == 3.7 and rows[0]["container_extension"] == "mkv"
    assert catalog.normalise_vod("nonsense") == []


def test_series_rows() -> None:
    rows = catalog.normalise_series([{"series_id": "9", "name": "S", "backdrop_path": "http://b",
                                      "last_modified": None, "rating": 7}])
    row = rows[0]
    assert row["series_id"] == 9 and row["backdrop_path"] == ["http://b"]
    assert row["last_modified"] == "0" and row["cover"] == ""


def test_vod_info_with_empty_list_info() -> None:
    out = catalog.normalise_vod_info({"info": [], "movie_data": {"stream_id": "5"}},
                                     {"stream_id": 5, "name": "M", "added": "1",
                                      "category_id": "2", "category_ids": [2],
                                      "container_extension": "mkv"})
    assert out["info"]["backdrop_path"] == [] and isinstance(out["info"], dict)
    assert out["movie_data"]["stream_id"] == 5 and out["movie_data"]["container_extension"] == "mkv"


def test_series_info_episodes_as_list_of_lists() -> None:
    """PHP encodes seasons 0 and 1 as a list of lists; re-key by each item's season."""
    out = catalog.normalise_series_info({
        "seasons": [],
        "info": [],
        "episodes": [[{"id": "100", "season": 0, "episode_num": "1", "info": []}],
                     [{"id": 101, "season": "1", "episode_num": 1, "title": "x"}]],
    }, {"name": "S", "cover": "c"})
    assert list(out["episodes"]) == ["0", "1"]
    assert out["episodes"]["0"][0]["id"] == "100"
    assert out["episodes"]["0"][0]["info"] == {"movie_image": "", "plot": "", "duration_secs": 0, "cover_big": ""}
    assert [s["season_number"] for s in out["seasons"]] == [0, 1]
    assert all(isinstance(s["cover"], str) for s in out["seasons"])


def test_series_info_unknown_gives_one_empty_season() -> None:
    out = catalog.normalise_series_info([], None)
    # one season and its (empty) episode list: the two always agree
    assert out["episodes"] == {"1": []} and len(out["seasons"]) == 1
    assert out["seasons"][0]["season_number"] == 1 and out["seasons"][0]["episode_count"] == 0
    assert isinstance(out["seasons"][0]["id"], int)


SERIES_ROW = {"series_id": 42, "name": "S", "cover": "c", "category_id": "7", "category_ids": [7, 9]}


def test_every_season_has_an_id_whatever_the_provider_sends() -> None:
    episodes = {"1": [{"id": "1001", "season": 1}], "2": [{"id": "1002", "season": 2}],
                "3": [{"id": "1003", "season": 3}]}
    for seasons in ([], None, [{"season_number": 1, "name": "One"}],
                    [{"season_number": 2, "id": "555"}, {"season_number": 9, "id": 9}]):
        out = catalog.normalise_series_info({"seasons": seasons, "episodes": episodes, "info": {}}, SERIES_ROW)
        assert [s["season_number"] for s in out["seasons"]] == [1, 2, 3]
        ids = [s["id"] for s in out["seasons"]]
        assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == 3
        for season in out["seasons"]:
            assert season["episode_count"] == 1
            for key in ("name", "cover", "cover_big", "air_date", "overview"):
                assert isinstance(season[key], str), key
        # the provider's id when it has one, else the same derived id every time
        assert ids[1] == (555 if seasons and seasons[0].get("id") == "555" else 42_002)
        assert ids[0] == 42_001 and ids[2] == 42_003
    named = catalog.normalise_series_info({"seasons": [{"season_number": 1, "name": "One"}],
                                           "episodes": episodes}, SERIES_ROW)
    assert named["seasons"][0]["name"] == "One"


def test_series_info_carries_the_list_rows_categories() -> None:
    out = catalog.normalise_series_info({"info": {"category_id": "3"}, "episodes": {}}, SERIES_ROW)
    assert out["info"]["category_ids"] == [7, 9] and out["info"]["category_id"] == "7"
    alone = catalog.normalise_series_info({"info": {"category_id": "3"}}, None)
    assert alone["info"]["category_ids"] == [3] and alone["info"]["category_id"] == "3"


def test_one_pass_normalising_merges_duplicates_and_numbers_rows() -> None:
    """Duplicates only add their categories to the first row; rows are
    numbered in first-seen order; the list form leaves its input alone and
    the encoded form keeps each row as compact JSON."""
    import copy
    import json

    raw = [
        {"stream_id": "5", "name": "Five\n", "category_id": None, "tv_archive": "1", "tv_archive_duration": "3"},
        {"stream_id": 2, "name": "Two", "category_id": "4", "category_ids": [4, "7"]},
        {"stream_id": "5", "name": "Five again", "category_id": "9"},   # adds category 9 to the first
        {"stream_id": 2, "category_ids": [4, 8]},                        # adds 8
        {"stream_id": "x"}, "garbage", {"stream_id": -1},
        {"stream_id": 11, "name": 11, "category_ids": []},
    ]
    kept = copy.deepcopy(raw)
    live = catalog.normalise_live(raw)
    assert raw == kept
    assert [(r["stream_id"], r["num"], r["category_ids"], r["category_id"], r["name"]) for r in live] == [
        (5, 1, [9], "9", "Five "), (2, 2, [4, 7, 8], "4", "Two"), (11, 3, [], None, "11")]
    assert live[0]["tv_archive"] == 1 and live[0]["tv_archive_duration"] == 3
    encoded = catalog.normalise_encoded(copy.deepcopy(raw), "live")
    assert [json.loads(e) for e in encoded.encoded] == list(encoded) == live
    assert all(e == catalog.encode_row(r) for r, e in encoded.pairs())
    series = [{**r, "series_id": r.pop("stream_id")} if isinstance(r, dict) and "stream_id" in r else r
              for r in copy.deepcopy(raw)]
    assert [r["category_id"] for r in catalog.normalise_series(series)] == ["9", "4", "0"]
    scrubbed = catalog.normalise_encoded(copy.deepcopy(raw), "vod", lambda r: {**r, "name": "x"})
    assert {r["name"] for r in scrubbed} == {"x"} and len(scrubbed) == 3


def test_details_fields_get_the_types_players_read() -> None:
    """Provider values in the detail answers are coerced like the list rows."""
    series = catalog.normalise_series_info({
        "info": {"name": 5, "rating": 7, "rating_5based": "3.5", "episode_run_time": 42, "plot": None},
        "episodes": {"1": [{"id": 7, "custom_sid": "1:0:1", "info": {
            "duration_secs": "2580", "movie_image": None, "rating": "7.14", "bitrate": "900"}}]},
    }, None)
    info = series["info"]
    assert (info["name"], info["rating"], info["rating_5based"], info["episode_run_time"], info["plot"]) == \
           ("5", "7", 3.5, "42", "")
    ep = series["episodes"]["1"][0]
    assert ep["custom_sid"] == ""
    assert ep["info"] == {"duration_secs": 2580, "movie_image": "", "plot": "", "cover_big": "",
                          "rating": 7.1, "bitrate": 900}
    movie = catalog.normalise_vod_info({"movie_data": {"stream_id": "5", "name": None, "category_id": 3,
                                                       "category_ids": ["3", 4], "custom_sid": "x"}}, None)
    data = movie["movie_data"]
    assert (data["stream_id"], data["name"], data["category_id"], data["category_ids"], data["custom_sid"]) == \
           (5, "", "3", [3, 4], "")
    rows = catalog.normalise_series([{"series_id": 1, "name": "No category"}])
    assert rows[0]["category_id"] == "0" and rows[0]["category_ids"] == []
    live = catalog.normalise_live([{"stream_id": 1, "custom_sid": "1:0:19:2B66:3F3:1:C00000:0:0:0:"}])
    assert live[0]["custom_sid"] == ""


def test_ids_too_big_for_the_indexes_are_garbage() -> None:
    """A row with an absurd id is dropped, not a failed ingest."""
    rows = catalog.normalise_vod([
        {"stream_id": "99999999999999999999", "name": "huge"},
        {"stream_id": "1e400", "name": "infinite"},
        {"stream_id": 3, "name": "ok", "category_id": "1e20", "category_ids": [2**70, "4"]},
    ])
    assert [(r["stream_id"], r["category_ids"]) for r in rows] == [(3, [4])]
    assert catalog.as_int(float("inf"), None) is None and catalog.as_int("1e400", 7) == 7
    assert catalog.normalise_categories([{"category_id": str(2**64)}, {"category_id": "5"}]) == [
        {"category_id": "5", "category_name": "", "parent_id": 0}]
