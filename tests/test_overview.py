"""The admin's read-only view (xrelay.ops.overview) with stand-in components."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest_twisted

from xrelay.ingest.ingester import IngestResult
from xrelay.ops.overview import INGEST_HISTORY, Overview


NO_HLS = {"channels": [], "segment_cache": {"bytes": 0, "items": 0, "fetches": 0, "hits": 0}}


def overview_of(history: list[dict[str, Any]] | None = None) -> Overview:
    """An Overview over stand-ins: an idle relay, no files, no HLS."""
    store = SimpleNamespace(history=lambda: list(history or []))
    cache = SimpleNamespace(generation=None, current=SimpleNamespace(counts={"live_streams": 3, "junk": "x"}))
    relay = SimpleNamespace(channels={}, snapshot=lambda: {
        "slots": {"used": 0, "allowed": 1, "handovers": 0, "refused": 0}, "channels": [], "viewers": 0,
        "evictions": 0, "reconnects": 0, "closed_for_user_limit": 0})
    files = SimpleNamespace(playbacks=set(), snapshot=lambda: [])
    hls = SimpleNamespace(snapshot=lambda: NO_HLS)
    lineups = SimpleNamespace(config={}, counts=lambda name: None)
    return Overview(store, SimpleNamespace(running=None), cache, [], relay, files, hls,  # type: ignore[arg-type]
                    lineups)


def result(ok: bool, trigger: str, started: float) -> IngestResult:
    return IngestResult(ok, started, 1.0, {"live_streams": 3} if ok else {},
                        None if ok else "refused", None, trigger)


@pytest_twisted.ensureDeferred
async def test_history_from_disk_then_from_the_ingester() -> None:
    on_disk = [{"ok": True, "started": float(i), "trigger": "schedule"} for i in range(30)]
    overview = overview_of(on_disk)
    overview.on_ingest(result(False, "admin", 100.0))  # may land before the disk read
    await overview.load_history()
    entries = list(overview.ingests)
    assert len(entries) == INGEST_HISTORY
    assert entries[-1]["trigger"] == "admin" and entries[-2]["started"] == 29.0
    assert overview.last_ingest()["ok"] is False
    assert overview.last_success()["started"] == 29.0
    assert overview.ingest_counts == {("failed", "admin"): 1}
    state = overview.state()
    assert state["ingest"]["history"][0]["trigger"] == "admin"  # newest first
    assert state["ingest"]["catalog"] == {"live_streams": 3}
    assert state["ingest"]["cache_age"] is None and state["ingest"]["running"] is False


def test_without_relay_or_media() -> None:
    overview = overview_of()
    assert overview.relay()["channels"] == [] and overview.relay()["viewers"] == 0
    assert overview.media() == {"files": [], "hls": NO_HLS}
    assert overview.disconnect("v1") is False
    assert overview.close_streams_of({"alice"}, "gone") == 0
    assert overview.last_ingest() is None and overview.last_success() is None


def test_viewer_ids_are_stable_and_distinct() -> None:
    overview = overview_of()

    class V:
        pass

    a, b = V(), V()
    assert overview.viewer_id(a) == overview.viewer_id(a)
    assert overview.viewer_id(a) != overview.viewer_id(b)
