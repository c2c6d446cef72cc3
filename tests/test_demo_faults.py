"""Fault injection: the provider breaks the ways ingest and relay tests need."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost
from twisted.web.client import ResponseNeverReceived

from xrelay.demo.provider import DemoProvider

from demo_helpers import open_stream, start_provider, wait_until as poll, within

USER, PASS = "provider-user", "provider-pass"
CREDS = {"username": USER, "password": PASS}


@pytest_twisted.async_yield_fixture
async def provider() -> AsyncIterator[DemoProvider]:
    p = await start_provider(reactor, live=40, redirect_streams=False)
    yield p
    await p.stop()


async def api_body(p: DemoProvider, action: str = "") -> tuple[int, bytes, list[str]]:
    params: dict[str, Any] = dict(CREDS, action=action) if action else dict(CREDS)
    response = await treq.get(f"{p.url}/player_api.php", params=params)
    return response.code, await response.content(), response.headers.getRawHeaders(
        "content-type") or []


@pytest_twisted.ensureDeferred
async def test_api_faults(provider: DemoProvider) -> None:
    provider.faults.api = "html"
    code, body, ctype = await api_body(provider)
    assert code == 200 and body.startswith(b"<!DOCTYPE html>") and ctype[0].startswith("text/html")
    provider.faults.api = "bad_json"
    code, body, _ = await api_body(provider, "get_live_streams")
    with pytest.raises(ValueError):
        json.loads(body)
    provider.faults.api = "auth0"
    assert json.loads((await api_body(provider))[1]) == {"user_info": {"auth": 0}}
    provider.faults.api = "http500"
    assert (await api_body(provider))[0] == 500
    provider.faults.api = "expired"
    expired = json.loads((await api_body(provider, "get_live_streams"))[1])
    assert expired["user_info"]["status"] == "Expired" and expired["user_info"]["auth"] == 1
    provider.faults.api = "shrink"
    assert len(json.loads((await api_body(provider, "get_live_streams"))[1])) == 8
    provider.faults.clear()
    assert len(json.loads((await api_body(provider, "get_live_streams"))[1])) == 40


@pytest_twisted.ensureDeferred
async def test_api_fault_limited_to_one_action(provider: DemoProvider) -> None:
    provider.faults.api, provider.faults.api_action = "bad_json", "get_vod_streams"
    assert json.loads((await api_body(provider))[1])["user_info"]["auth"] == 1
    assert json.loads((await api_body(provider, "get_live_streams"))[1])
    with pytest.raises(ValueError):
        json.loads((await api_body(provider, "get_vod_streams"))[1])


@pytest_twisted.ensureDeferred
async def test_api_hang_never_answers(provider: DemoProvider) -> None:
    provider.faults.api = "hang"
    with pytest.raises(ResponseNeverReceived) as never:
        await treq.get(f"{provider.url}/player_api.php", params=CREDS, timeout=0.3)
    assert never.value.reasons[0].check(CancelledError)  # treq's timeout gave up waiting
    assert provider.stats.requests["player_api"] == 1


@pytest_twisted.ensureDeferred
async def test_xmltv_truncated_drops_the_connection(provider: DemoProvider) -> None:
    provider.faults.xmltv = "truncated"
    response, reader = await open_stream(f"{provider.url}/xmltv.php", params=CREDS)
    assert response.code == 200
    await within(reader.done)
    assert reader.received > 0 and b"</tv>" not in reader.data
    assert reader.reason is not None and "ResponseDone" not in repr(reader.reason.value)


@pytest_twisted.ensureDeferred
async def test_xmltv_hang_midway(provider: DemoProvider) -> None:
    provider.faults.xmltv = "hang_midway"
    response, reader = await open_stream(f"{provider.url}/xmltv.php", params=CREDS)
    await within(provider.stats.wait_for(lambda: provider.stats.requests["xmltv_hung"] == 1))
    await poll(lambda: reader.received > 0)
    assert not reader.done.called and b"</tv>" not in reader.data
    reader.stop()
    await within(reader.done)


@pytest_twisted.ensureDeferred
async def test_get_php_refuse_and_reset(provider: DemoProvider) -> None:
    params = dict(CREDS, type="m3u_plus", output="ts")
    provider.faults.get_php = "refuse"
    response = await treq.get(f"{provider.url}/get.php", params=params)
    await response.content()
    assert response.code == 404
    provider.faults.get_php = "reset"
    with pytest.raises(ResponseNeverReceived) as never:
        await treq.get(f"{provider.url}/get.php", params=params)
    assert never.value.reasons[0].check(ConnectionLost)


@pytest_twisted.ensureDeferred
async def test_live_drop_after_bytes(provider: DemoProvider) -> None:
    provider.faults.live = "drop_after_bytes:5000"
    for attempt in (1, 2):
        response, reader = await open_stream(f"{provider.url}/live/{USER}/{PASS}/1.ts")
        await within(reader.done)
        assert reader.received == 5000
        assert provider.stats.opened[("live", 1)] == attempt
    await within(provider.stats.wait_for(lambda: provider.stats.open_count() == 0))


@pytest_twisted.ensureDeferred
async def test_live_silent_sends_headers_only(provider: DemoProvider) -> None:
    provider.faults.live = "silent"
    response, silent = await open_stream(f"{provider.url}/live/{USER}/{PASS}/1.ts")
    assert response.code == 200
    provider.faults.live = None
    _, healthy = await open_stream(f"{provider.url}/live/{USER}/{PASS}/2.ts", 20_000)
    await within(healthy.done)  # the reactor has ticked many times meanwhile
    assert silent.received == 0 and not silent.done.called
    assert provider.stats.open_count("live", 1) == 1
    silent.stop()
    await within(provider.stats.wait_for(lambda: provider.stats.open_count() == 0))


@pytest_twisted.ensureDeferred
async def test_live_refuse_and_vod_drop(provider: DemoProvider) -> None:
    provider.faults.live = "refuse"
    response = await treq.get(f"{provider.url}/live/{USER}/{PASS}/1.ts")
    await response.content()
    assert response.code == 404
    response = await treq.get(f"{provider.url}/live/{USER}/{PASS}/1.m3u8")  # HLS too
    await response.content()
    assert response.code == 404
    provider.faults.vod = "drop_after_bytes:100000"
    response, reader = await open_stream(f"{provider.url}/movie/{USER}/{PASS}/41.mp4")
    await within(reader.done)
    assert reader.received == 100_000 and response.length > 100_000


@pytest_twisted.ensureDeferred
async def test_drop_streams_cuts_open_live_connections(provider: DemoProvider) -> None:
    _, reader = await open_stream(f"{provider.url}/live/{USER}/{PASS}/1.ts")
    await within(provider.stats.wait_for(lambda: provider.stats.open_count("live") == 1))
    assert provider.drop_streams("vod") == 0
    assert provider.drop_streams() == 1
    await within(reader.done)
    assert provider.stats.open_count() == 0 and provider.stats.kicked == 0
