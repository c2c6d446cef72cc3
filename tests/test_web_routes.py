"""The route table in memory (StubTreq): guards, the stream converter, and
the one place errors become answers; the live and HLS URLs the same through
the router and through :class:`~xrelay.web.hot_routes.HotRoutes`."""

from __future__ import annotations

import base64
import gc
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from xrelay.core.config import AdminConfig, UpstreamConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.http.errors import HTTPError, NotFound, Unavailable
from xrelay.http.throttle import LoginThrottle
from xrelay.web.guards import LoginThrottles
from xrelay.web.hot_routes import HotRoutes
from xrelay.web.routes import StreamRef, Surfaces, WebApp

ALICE = UserConfig(username="alice", password="alicepw")
OLD = UserConfig(username="old", password="oldpw", exp_date=1)


class Recorder:
    """Stands in for every part: records calls, answers or raises as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.raises: Exception | None = None
        #: Makes each answer instead of b"ok" (a Deferred, a resource...).
        self.answer: Any = None
        #: The requests the parts were given (weakly).
        self.requests: list[weakref.ref[Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name == "authorise":  # the HLS user token check: it logs alice in
            def authorise(user: str, token: str) -> UserConfig:
                self.calls.append((name, (user, token)))
                return ALICE
            return authorise
        if name == "stream_of":  # no provider HLS token names a channel here
            return lambda token: None

        def call(request: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            self.requests.append(weakref.ref(request))
            if self.raises is not None:
                raise self.raises
            return self.answer() if self.answer is not None else b"ok"
        return call


class Lineup:
    """Stands in for the lineups: *allowed* (kind, id) pairs, or everything."""

    def __init__(self, allowed: set[tuple[str, int]] | None = None) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, str, int]] = []

    def may_play(self, user: UserConfig, kind: str, ident: int) -> bool:
        self.asked.append((user.username, kind, ident))
        return self.allowed is None or (kind, ident) in self.allowed


#: The two front doors of the live and HLS URLs.
FRONTS = ["router", "hot"]


def stub(lineups: Lineup | None = None, front: str = "router") -> tuple[StubTreq, Recorder]:
    part = Recorder()
    surfaces = Surfaces(users=UserDB([ALICE, OLD]), admin=AdminConfig("admin", "adminpw"),
                        scrubber=Scrubber(UpstreamConfig(url="http://provider.example", username="pu",
                                                         password="ppw")),
                        api=part, relay=part, hls=part, vod=part, timeshift=part,  # type: ignore[arg-type]
                        status=part, metrics=part, admin_page=part, hdhr=part,  # type: ignore[arg-type]
                        lineups=lineups or Lineup(),  # type: ignore[arg-type]
                        throttles=LoginThrottles(users=LoginThrottle(Clock()), admin=LoginThrottle(Clock())))
    web = WebApp(surfaces)
    router = web.app.resource()
    return StubTreq(HotRoutes(web, router) if front == "hot" else router), part


async def fetch(client: StubTreq, url: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    response = await client.get("http://xrelay.test" + url, **kwargs)
    return response.code, await response.content(), response.headers


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_a_stream_route_gets_the_logged_in_user_and_a_typed_stream(front: str) -> None:
    client, part = stub(front=front)
    assert (await fetch(client, "/live/alice/alicepw/1000.TS"))[:2] == (200, b"ok")
    assert (await fetch(client, "/alice/alicepw/7"))[:2] == (200, b"ok")
    assert part.calls == [("serve", (ALICE, 1000, "ts")), ("serve", (ALICE, 7, "ts"))]
    await fetch(client, "/movie/alice/alicepw/5.mkv")
    assert part.calls[-1] == ("serve", (ALICE, "movie", 5, "mkv"))
    await fetch(client, "/live/alice/alicepw/9.m3u8")
    assert part.calls[-1] == ("serve_hls", (ALICE, 9))
    # A live channel's own HLS segment: the user token is checked, then the relay serves it.
    await fetch(client, "/hls/alice/TOKEN/L9-41.ts")
    assert part.calls[-2:] == [("authorise", ("alice", "TOKEN")), ("serve_segment", (ALICE, 9, 41))]
    await fetch(client, "/hls/alice/TOKEN/0123abcd.ts")
    assert part.calls[-1] == ("resource", ("alice", "TOKEN", "0123abcd.ts"))


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_a_live_hls_segment_outside_the_users_lineup_is_expired(front: str) -> None:
    client, part = stub(Lineup(allowed={("live", 8)}), front)
    code, body, _ = await fetch(client, "/hls/alice/TOKEN/L9-41.ts")
    assert code == 404 and b"reload" in body
    assert [name for name, _ in part.calls] == ["authorise"]
    assert (await fetch(client, "/hls/alice/TOKEN/L8-41.ts"))[0] == 200


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("path", ["/live/alice/alicepw/%E0%A5%A7.ts", "/live/alice/alicepw/12a.ts",
                                  "/movie/alice/alicepw/123456789012.mp4", "/series/alice/alicepw/-1.mp4"])
@pytest_twisted.ensureDeferred
async def test_what_is_not_a_stream_id_is_404_before_any_part_runs(path: str, front: str) -> None:
    client, part = stub(front=front)
    code, body, _ = await fetch(client, path)
    assert (code, body) == (404, b"not found\n")
    assert part.calls == []


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_refused_logins_never_reach_the_part(front: str) -> None:
    client, part = stub(front=front)
    code, body, headers = await fetch(client, "/player_api.php?username=alice&password=nope")
    assert (code, body) == (401, b'{"user_info":{"auth":0}}')
    assert headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert (await fetch(client, "/live/alice/nope/1.ts"))[:2] == (401, b"wrong username or password\n")
    assert (await fetch(client, "/movie/old/oldpw/1.mp4"))[:2] == (403, b"this account has expired\n")
    assert part.calls == []
    assert (await fetch(client, "/player_api.php?username=alice&password=alicepw"))[0] == 200
    assert part.calls == [("player_api", (ALICE,))]
    # an expired account's live stream is first offered the relay's status clip
    assert (await fetch(client, "/live/old/oldpw/1.ts"))[:2] == (200, b"ok")
    assert part.calls[-1] == ("expired_clip", (OLD, 1, "ts"))


@pytest_twisted.ensureDeferred
async def test_xui_path_aliases_pass_the_path_arguments() -> None:
    client, part = stub()
    await fetch(client, "/player_api/alice/alicepw/get_live_streams")
    assert part.calls == [("player_api", (ALICE,))]
    assert (await fetch(client, "/epg/alice/alicepw/zip"))[0] == 404


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_errors_raised_by_a_part_are_answered_in_one_place(front: str) -> None:
    client, part = stub(front=front)
    part.raises = Unavailable("busy: all 1 provider connection(s) are in use", retry_after=5)
    code, body, headers = await fetch(client, "/live/alice/alicepw/1.ts")
    assert (code, body) == (503, b"busy: all 1 provider connection(s) are in use\n")
    assert headers.getRawHeaders(b"retry-after") == [b"5"]
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
    part.raises = NotFound("unknown movie")
    assert (await fetch(client, "/movie/alice/alicepw/1.mp4"))[:2] == (404, b"unknown movie\n")
    part.raises = HTTPError(400, "bad start")
    assert (await fetch(client, "/timeshift/alice/alicepw/30/x/1.ts"))[:2] == (400, b"bad start\n")


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_every_stream_route_asks_the_lineup_before_any_part_runs(front: str) -> None:
    lineups = Lineup({("live", 1)})
    client, part = stub(lineups, front)
    start = "2025-01-01:10-00"
    refused = {
        "/live/alice/alicepw/2.ts": "unknown stream", "/live/alice/alicepw/2.m3u8": "unknown stream",
        "/alice/alicepw/2": "unknown stream", "/movie/alice/alicepw/5.mkv": "unknown movie",
        "/movie/alice/alicepw/5.toolong": "unknown stream", "/series/alice/alicepw/7.mp4": "unknown episode",
        f"/timeshift/alice/alicepw/30/{start}/2.ts": "unknown channel",
        f"/timeshifts/alice/alicepw/30/2/{start}.m3u8": "unknown channel",
        f"/streaming/timeshift.php?username=alice&password=alicepw&stream=2&start={start}&duration=30":
            "unknown channel",
    }
    for path, message in refused.items():
        assert (await fetch(client, path))[:2] == (404, f"{message}\n".encode()), path
    assert part.calls == []
    assert {kind for _, kind, _ in lineups.asked} == {"live", "vod", "episode"}
    assert (await fetch(client, "/live/alice/alicepw/1.ts"))[:2] == (200, b"ok")
    assert (await fetch(client, f"/timeshift/alice/alicepw/30/{start}/1.ts"))[:2] == (200, b"ok")
    assert [name for name, _ in part.calls] == ["serve", "serve"]


@pytest_twisted.ensureDeferred
async def test_admin_routes_need_the_admin() -> None:
    client, part = stub()
    code, _, headers = await fetch(client, "/status")
    assert code == 401 and headers.getRawHeaders(b"www-authenticate")[0].startswith(b"Basic")
    auth = {b"authorization": [b"Basic " + base64.b64encode(b"admin:adminpw")]}
    assert (await fetch(client, "/status", headers=auth))[:2] == (200, b"ok")
    assert (await fetch(client, "/admin/static/admin.js", headers=auth))[:2] == (200, b"ok")
    assert part.calls == [("render", ()), ("static_file", ("admin.js",))]
    response = await client.get("http://xrelay.test/admin/ingest", headers=auth)
    assert response.code == 405  # a GET never acts


def test_stream_ref_round_trip() -> None:
    from xrelay.web.routes import StreamConverter

    converter = StreamConverter(SimpleNamespace())  # type: ignore[arg-type]
    assert converter.to_python("12.M3U8") == StreamRef(12, "m3u8")
    assert converter.to_python("12") == StreamRef(12, "ts")
    assert converter.to_url(StreamRef(12, "ts")) == "12.ts"


# -- the hot routes: the live and HLS URLs without the router ---------------------


class _Body(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"from a resource"


@pytest_twisted.ensureDeferred
async def test_the_hot_routes_answer_what_a_part_returns_as_the_router_does() -> None:
    for front in FRONTS:
        client, part = stub(front=front)
        part.answer = lambda: succeed(b"later")
        assert (await fetch(client, "/live/alice/alicepw/1.m3u8"))[:2] == (200, b"later"), front
        part.answer = _Body
        assert (await fetch(client, "/hls/alice/TOKEN/L1-2.ts"))[:2] == (200, b"from a resource"), front
        part.answer = lambda: fail(Unavailable("the channel closed", retry_after=2))
        code, body, headers = await fetch(client, "/live/alice/alicepw/1.m3u8")
        assert (code, body) == (503, b"the channel closed\n"), front
        assert headers.getRawHeaders(b"retry-after") == [b"2"], front
        part.answer = None
        response = await client.head("http://xrelay.test/live/alice/alicepw/1.ts")
        assert response.code == 200 and await response.content() == b"", front


@pytest_twisted.ensureDeferred
async def test_the_hot_routes_leave_unplain_paths_and_other_methods_to_the_router() -> None:
    hot, part = stub(front="hot")
    router, _ = stub()
    # a percent-escaped user name is decoded by the router, as before
    assert (await fetch(hot, "/live/al%69ce/alicepw/1.ts"))[:2] == (200, b"ok")
    assert part.calls == [("serve", (ALICE, 1, "ts"))]
    for path in ("/live//alicepw/1.ts", "/live/alice/alicepw/1.ts/", "/hls/alice/TOKEN/L1-2.ts/x"):
        assert (await fetch(hot, path))[:2] == (await fetch(router, path))[:2], path
    response = await hot.post("http://xrelay.test/live/alice/alicepw/1.ts")
    assert response.code == 405


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_on_a_hot_route_is_a_500_and_logged(fail_on_logged_errors: Any) -> None:
    client, part = stub(front="hot")
    part.raises = ZeroDivisionError("a bug")
    code, _, _ = await fetch(client, "/live/alice/alicepw/1.ts")
    assert code == 500
    assert any(e.get("log_failure") is not None and e["log_failure"].check(ZeroDivisionError)
               for e in fail_on_logged_errors.errors)


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_cancels_what_a_hot_route_waits_for() -> None:
    client, part = stub(front="hot")
    cancelled: list[bool] = []
    pending: Deferred[bytes] = Deferred(lambda d: cancelled.append(True))
    part.answer = lambda: pending
    response = client.get("http://xrelay.test/live/alice/alicepw/1.m3u8")
    client.flush()
    request = part.requests[-1]()
    assert request is not None and not cancelled
    request.connectionLost(Exception("the player left"))
    assert cancelled == [True]
    response.addErrback(lambda _: None)
    response.cancel()


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_the_player_api_logs_in_from_the_query_on_both_fronts(front: str) -> None:
    client, part = stub(front=front)
    assert (await fetch(client, "/player_api.php?username=alice&password=alicepw&action=get_live_streams"))[:2] \
        == (200, b"ok")
    assert part.calls == [("player_api", (ALICE,))]
    code, body, headers = await fetch(client, "/player_api.php?username=alice&password=wrong")
    assert code == 401 and b'"auth":0' in body.replace(b" ", b"")
    response = await client.post("http://xrelay.test/player_api.php",
                                 data={"username": "alice", "password": "alicepw"})
    assert response.code == 200 and part.calls[-1] == ("player_api", (ALICE,))  # a form: the router's


@pytest.mark.parametrize("front", FRONTS)
@pytest_twisted.ensureDeferred
async def test_a_hot_route_request_is_freed_without_the_cycle_collector(front: str) -> None:
    """Through the router a request stays in a reference cycle (Klein's
    recursive closures) until the cyclic collector runs; through the hot
    routes it is freed as soon as it is answered."""
    client, part = stub(front=front)
    gc.collect()
    gc.disable()
    try:
        assert (await fetch(client, "/live/alice/alicepw/1.m3u8"))[:2] == (200, b"ok")
        assert (await fetch(client, "/hls/alice/TOKEN/L1-2.ts"))[:2] == (200, b"ok")
        assert (await fetch(client, "/player_api.php?username=alice&password=alicepw"))[:2] == (200, b"ok")
        alive = [ref() is not None for ref in part.requests]
    finally:
        gc.enable()
    assert alive == ([False, False, False] if front == "hot" else [True, True, True])
