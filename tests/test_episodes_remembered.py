"""Episodes players remember: the episode -> series map kept in the data
directory across ingests and restarts (xrelay.catalog.episodes), unknown
episode ids left to the provider once per interval, and the hook where a
lineup decides (xrelay.media.vod)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from demo_helpers import wait_until
from harness import start_relay
from media_helpers import raw_request
from xrelay.catalog.episodes import LOG_FILE, MAP_FILE, EpisodeMap, episode_ids_of
from xrelay.demo.provider import DemoSettings


async def forget_from_playlist(relay: Any, episode: int) -> None:
    """As if the provider's playlist (the generation's episode list) missed it."""
    relay.xr.cache.current.episodes.remove(episode)
    assert not relay.xr.cache.has("episode", episode)


async def episode_of_details(relay: Any) -> tuple[int, int]:
    series = sorted(relay.series_by_id)[0]
    detail = await relay.xr.cache.details("series", series)
    return series, episode_ids_of(detail)[0]


async def play(relay: Any, episode: int) -> Any:
    return await raw_request(relay.port, f"/series/alice/alicepw/{episode}.mp4", headers={"Range": "bytes=0-99"})


@pytest_twisted.ensureDeferred
async def test_the_map_outlives_ingests_and_restarts(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        series, episode = await episode_of_details(relay)
        assert relay.xr.cache.episode_series(episode) == series
        assert (await relay.ingest()).ok  # a new generation, without that series' details
        await forget_from_playlist(relay, episode)
        asked = relay.provider.stats.requests["series"]
        assert (await play(relay, episode)).status == 206
        assert relay.provider.stats.requests["series"] == asked + 1
    finally:
        await relay.stop()
    assert (tmp_path / "data" / MAP_FILE).is_file()
    again = await start_relay(tmp_path, ingest=False, settings=DemoSettings(redirect_streams=False))
    try:
        await wait_until(lambda: again.xr.cache.loaded)
        assert again.xr.cache.episode_series(episode) == series
        await forget_from_playlist(again, episode)
        assert (await play(again, episode)).status == 206
    finally:
        await again.stop()


def test_the_map_file_and_log(tmp_path: Path) -> None:
    episodes = EpisodeMap(tmp_path)
    episodes.load()
    episodes.record(7, [701, 702])
    episodes.record(8, [801])
    episodes.record(7, [701])  # known: nothing appended
    assert (tmp_path / LOG_FILE).read_bytes() == b"701 7\n702 7\n801 8\n"
    reread = EpisodeMap(tmp_path)
    reread.load()
    assert [reread.series_of(e) for e in (701, 702, 801, 999)] == [7, 7, 8, None]
    reread.compact()
    assert (tmp_path / LOG_FILE).read_bytes() == b""
    with open(tmp_path / LOG_FILE, "ab") as f:
        f.write(b"901 9\n902 9")  # a line cut by a crash
    third = EpisodeMap(tmp_path)
    third.load()
    assert [third.series_of(e) for e in (701, 801, 901, 902)] == [7, 8, 9, None]
    assert len(third) == 4


def test_a_data_directory_without_a_map_is_filled_from_cached_details(tmp_path: Path) -> None:
    details = tmp_path / "generations" / "G1" / "details" / "series"
    details.mkdir(parents=True)
    (details / "5.json").write_text('{"episodes": {"1": [{"id": "51"}, {"id": "52"}], "2": [{"id": 53}]}}')
    (details / "6.json").write_text("garbage")
    episodes = EpisodeMap(tmp_path)
    episodes.load()
    assert [episodes.series_of(e) for e in (51, 52, 53)] == [5, 5, 5]
    assert (tmp_path / MAP_FILE).is_file()


@pytest_twisted.ensureDeferred
async def test_an_unknown_episode_is_asked_of_the_provider_once_per_interval(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        stats = relay.provider.stats
        # one the provider has (its details never fetched, missing from the playlist)
        known = sorted(relay.episode_ids)[-1]
        assert relay.xr.cache.episode_series(known) is None
        await forget_from_playlist(relay, known)
        asked = stats.requests["series"]
        assert (await play(relay, known)).status == 206
        assert (await play(relay, known)).status == 206
        assert stats.requests["series"] == asked + 2  # played twice
        # one the provider does not have: asked once, then 404 without asking
        asked = stats.requests["series"]
        for _ in range(3):
            assert (await play(relay, 999_999)).status == 404
        assert stats.requests["series"] == asked + 1
        # after the interval, asked again
        relay.xr.vod.recheck_after = 0
        assert (await play(relay, 999_999)).status == 404
        assert stats.requests["series"] == asked + 2
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_the_lineup_hook_decides_before_the_provider_is_asked(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, settings=DemoSettings(redirect_streams=False))
    try:
        series, episode = await episode_of_details(relay)
        seen: list[tuple[str, int | None]] = []

        def allowed(user: Any, of: int | None) -> bool:
            seen.append((user.username, of))
            return of is not None and of != series

        relay.xr.vod.episode_allowed = allowed
        asked = relay.provider.stats.requests["series"]
        assert (await play(relay, episode)).status == 404
        assert (await play(relay, 999_999)).status == 404   # series unknown
        assert relay.provider.stats.requests["series"] == asked
        assert seen == [("alice", series), ("alice", None)]
    finally:
        await relay.stop()
