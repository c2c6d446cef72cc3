"""The assembled daemon starts, ingests from the demo provider and stops."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
import treq

from harness import start_relay


@pytest_twisted.ensureDeferred
async def test_starts_ingests_and_answers(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path)
    try:
        assert relay.xr.cache.loaded
        assert len(relay.live_by_id) == relay.provider.settings.live
        response = await treq.get(relay.url + "/no/such/thing/at/all")
        assert response.code == 404
        assert (await response.text()).strip() == "not found"
    finally:
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_a_bad_host_header_is_a_400(tmp_path: Path) -> None:
    relay = await start_relay(tmp_path, ingest=False)
    try:
        for host in (b"x" * 3000, b"bad host", b"a:\xc2\xb2"):
            response = await treq.get(relay.url + "/player_api.php", headers={b"Host": [host]})
            assert response.code == 400
            await response.content()
        response = await treq.get(relay.url + "/")
        assert response.code == 200
        await response.content()
    finally:
        await relay.stop()
