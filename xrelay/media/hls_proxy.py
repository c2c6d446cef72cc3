"""The provider's HLS through xrelay: rewritten playlists and shared segments.

Live channels normally serve their HLS from their own stream
(:mod:`xrelay.relay.hls_viewers`); this path is for what that cannot carry:
catch-up ``.m3u8`` playlists, and live channels whose provider HLS is
encrypted or not MPEG-TS (the relay routes their ``ID.m3u8`` here).

``/live/USER/PASS/ID.m3u8`` of such a channel fetches the provider's playlist (redirects
followed, the final URL kept: later fetches go there first, and relative
URIs resolve against it) and rewrites every URI in it (:mod:`xrelay.media.hls_rewrite`: media segments,
``#EXT-X-KEY``/``#EXT-X-MAP``/``#EXT-X-MEDIA`` URIs and variant playlists;
absolute, relative or host-relative) to
``BASE/hls/USER/USERTOKEN/TOKEN.EXT`` on xrelay, where

* ``USERTOKEN`` is an HMAC of the xrelay user's name and password under a
  per-process key: segment requests are authorised without the password in
  the URL, and stop working when the user is disabled or its password
  changes;
* ``TOKEN`` is an opaque HMAC of the provider URL; :class:`~xrelay.media.segment_cache.TokenMap` maps it
  back server-side and forgets it a while after the last playlist naming it.
  No provider host, path or credential ever appears in a playlist.

Segments and keys are fetched once from the provider and kept a short while
in :class:`~xrelay.media.segment_cache.SegmentCache`, shared by every client of the channel (concurrent
requests for one segment wait on one fetch); the cache is bounded in bytes.
Playlists are fetched at most once a second per URL for all clients.

Like a live channel, an HLS channel (:class:`HlsChannel`) holds one
provider slot while it is played, and each client of it one of its user's
streams; both are released ``linger`` seconds after the last request
(at least 2.5 target durations, so a player's playlist refreshes keep it).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any, Hashable
from urllib.parse import quote, unquote, urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest, IResponse

from twisted.internet.defer import CancelledError

from xrelay.core.config import UserConfig
from xrelay.core.deferreds import Shared
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.catalog.cache import CatalogCache
from xrelay.http.errors import HTTPError, BadGateway, NotFound, Unauthorized, Unavailable
from xrelay.http.ranges import byte_range
from xrelay.http.request import client_address, public_base
from xrelay.media.files import FileRelay
from xrelay.media.hls_rewrite import rewrite_playlist, target_duration
from xrelay.media.segment_cache import SegmentCache, TokenEntry, TokenMap
from xrelay.provider.client import ProviderClient, ProviderError, collect_body, discard_body, final_url
from xrelay.relay.slots import Lease, SlotsExhausted, Yield

__all__ = ["HlsServer", "HlsChannel", "SegmentCache", "TokenMap", "byte_range", "rewrite_playlist"]

log = Logger()

PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
#: Seconds a fetched playlist is reused for every client.
PLAYLIST_TTL = 1.0
#: Biggest playlist and segment accepted from the provider, bytes.
MAX_PLAYLIST = 2 * 1024 * 1024
MAX_SEGMENT = 32 * 1024 * 1024
#: Seconds without any data from the provider while reading a body.
IDLE_TIMEOUT = 15.0
#: Seconds to wait for the provider's response headers.
FETCH_TIMEOUT = 20.0

_KINDS = {"playlist": "m3u8", "segment": "ts", "key": "key"}
_SEGMENT_EXTS = {"ts", "aac", "mp4", "m4s", "m4a", "mp3", "vtt", "webvtt", "ac3", "ec3", "cmfv", "cmfa"}
_CONTENT_TYPES = {"ts": b"video/mp2t", "aac": b"audio/aac", "mp4": b"video/mp4", "m4s": b"video/iso.segment",
                  "key": b"application/octet-stream", "vtt": b"text/vtt", "webvtt": b"text/vtt"}


# -- channels -------------------------------------------------------------------------


@dataclass(eq=False)
class Session:
    """One client (user at an address) of an HLS channel."""

    user: str
    address: str
    last_seen: float
    lease: Lease | None = None
    revoked: str = ""


@dataclass(eq=False)
class HlsChannel:
    """An HLS stream being played: its slot, its clients, its playlists."""

    server: HlsServer
    key: Hashable
    entry_url: str
    what: str
    final_url: str | None = None
    slot: Lease | None = None
    ready: Shared[Lease] | None = None
    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)
    target: float = 6.0
    closed: bool = False
    close_reason: str = ""
    created: float = 0.0
    last_seen: float = 0.0
    _timer: IDelayedCall | None = None
    _playlists: dict[str, tuple[float, Shared[tuple[str, str]]]] = field(default_factory=dict)

    @property
    def linger(self) -> float:
        return max(self.server.linger, self.server.linger_targets * self.target)

    def live_sessions(self) -> list[Session]:
        now = self.server.clock.seconds()
        return [s for s in self.sessions.values() if not s.revoked and now - s.last_seen <= self.linger]

    # -- slot ---------------------------------------------------------------

    def yields_to(self, user: str, address: str) -> Yield:
        if self.closed or self.slot is None:
            return Yield.NO
        sessions = self.live_sessions()
        if not sessions:
            return Yield.IDLE
        if len(sessions) == 1 and (sessions[0].user, sessions[0].address) == (user, address):
            return Yield.SAME_CLIENT
        return Yield.NO

    def revoke(self) -> Deferred[None]:
        self.close("its provider connection was handed over")
        return succeed(None)

    async def join(self, user: Any, address: str) -> Session:
        """Count this client in (taking the channel's slot first if needed)."""
        if self.ready is None:
            d = self.server.files.acquire(self.key, user.username, address, self.revoke,
                                          self.yields_to)
            d.addCallback(self._granted)
            self.ready = Shared(d)
        await self.ready.wait()
        if self.closed:
            raise SlotsExhausted(self.close_reason or "the stream was closed")
        return self.touch(user, address)

    def _granted(self, lease: Lease) -> Lease:
        self.slot = lease
        if self.closed:
            lease.release()
        log.info("{what}: provider slot taken", what=self.what)
        return lease

    def touch(self, user: Any, address: str) -> Session:
        """Note a request of this client; its session (a revoked one stays
        revoked while the client keeps asking, without keeping the channel)."""
        now = self.server.clock.seconds()
        key = (user.username, address)
        session = self.sessions.get(key)
        if session is not None and session.revoked:
            session.last_seen = now
            return session
        self.last_seen = now
        if session is None or (not session.revoked and now - session.last_seen > self.linger):
            if session is not None and session.lease is not None:
                session.lease.release()
            session = Session(user.username, address, now)
            self.sessions[key] = session
            streams = self.server.files.user_streams
            session.lease = streams.open(
                user.username, user.max_connections, key=self.key, address=address,
                revoke=lambda: self._revoke_session(session))
        session.last_seen = now
        self._schedule()
        return session

    def _revoke_session(self, session: Session) -> None:
        session.revoked = "the user opened more streams than allowed"
        if session.lease is not None:
            session.lease.release()

    def _schedule(self) -> None:
        if self.closed:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.linger)
        else:
            self._timer = self.server.clock.callLater(self.linger, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        now = self.server.clock.seconds()
        for key, session in list(self.sessions.items()):
            if now - session.last_seen > self.linger:
                if session.lease is not None:
                    session.lease.release()
                del self.sessions[key]
        if now - self.last_seen >= self.linger:
            self.close("no requests")
        else:
            self._schedule()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("{what}: closing: {reason}", what=self.what, reason=reason)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for session in self.sessions.values():
            if session.lease is not None:
                session.lease.release()
        self.sessions.clear()
        if self.slot is not None:
            self.slot.release()
        if self.ready is not None and not self.ready.done:
            self.ready.cancel()
        self.server.forget(self)

    # -- playlists ------------------------------------------------------------

    def fetch_playlist(self, url: str) -> Deferred[tuple[str, str]]:
        """(text, final URL) of a provider playlist, shared for PLAYLIST_TTL."""
        now = self.server.clock.seconds()
        found = self._playlists.get(url)
        if found is not None and (not found[1].done or now - found[0] < PLAYLIST_TTL):
            return found[1].wait()
        for old in [u for u, (at, s) in self._playlists.items() if s.done and now - at > 10]:
            del self._playlists[old]  # variant URLs with expiring tokens come and go
        shared = Shared(Deferred.fromCoroutine(self._fetch_playlist(url)))
        self._playlists[url] = (now, shared)
        return shared.wait()

    async def _fetch_playlist(self, url: str) -> tuple[str, str]:
        first = self.final_url if url == self.entry_url and self.final_url else url
        try:
            text, final = await self.server.fetch_text(first, "HLS playlist")
        except ProviderError:
            if first == url:
                raise
            self.final_url = None  # the redirect target expired: ask the entry URL again
            text, final = await self.server.fetch_text(url, "HLS playlist")
        if url == self.entry_url:
            self.final_url = final
        if "#EXT-X-TARGETDURATION" in text:
            self.target = target_duration(text, self.target)
        return text, final

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "what": self.what,
            "clients": [{"user": s.user, "address": s.address,
                         "idle_seconds": round(now - s.last_seen, 1)} for s in self.live_sessions()],
            "has_slot": self.slot is not None and not self.slot.released,
            "target_duration": self.target,
        }


class HlsServer:
    """Live HLS and HLS catch-up: rewritten playlists and the ``/hls/...`` resources."""

    def __init__(self, clock: IReactorTime, catalog: CatalogCache, client: ProviderClient, scrubber: Scrubber,
                 users: UserDB, files: FileRelay, *, linger: float, public_url: str | None,
                 cache_bytes: int = 64 * 1024 * 1024, cache_ttl: float = 30.0) -> None:
        self.clock = clock
        self.catalog = catalog
        self.client = client
        self.scrubber = scrubber
        self.users = users
        self.files = files
        self.linger = linger
        self.public_url = public_url
        self.tokens = TokenMap(self.clock)
        self.segments = SegmentCache(self.clock, cache_bytes, cache_ttl)
        self.channels: dict[Hashable, HlsChannel] = {}
        #: A channel lingers at least this many target durations after its
        #: last request (players refresh their playlist every target duration).
        self.linger_targets = 2.5

    # -- entry points (xrelay.web.routes) -------------------------------------------

    def playlist(self, request: IRequest, account: UserConfig, stream_id: int) -> Any:
        """A logged-in user's ``/live/USER/PASS/ID.m3u8``."""
        if not self.catalog.loaded:
            raise Unavailable("the channel list is not loaded yet, try again soon", retry_after=10)
        if not self.catalog.has("live", stream_id):
            raise NotFound("unknown stream")
        url = self.client.stream_url("live", stream_id, "m3u8")
        return self.remote_playlist(request, account, ("hls", stream_id), url,
                                    what=f"HLS channel {stream_id}")

    def remote_playlist(self, request: IRequest, account: UserConfig, key: Hashable, url: str,
                        what: str | None = None) -> Deferred[Any]:
        """Serve the provider playlist at ``url`` (never shown) rewritten,
        as channel ``key``; used by live HLS and HLS catch-up."""
        channel = self.channels.get(key)
        if channel is None or channel.closed:
            now = self.clock.seconds()
            channel = HlsChannel(self, key, url, what or f"HLS {key}", created=now, last_seen=now)
            self.channels[key] = channel
        return Deferred.fromCoroutine(self._serve_playlist(request, account, channel, url))

    def authorise(self, username: str, user_token: str) -> UserConfig:
        """The user a ``/hls/USER/USERTOKEN/...`` path logs in, or raise the refusal."""
        user = self.users.get(username)
        if user is None or not hmac.compare_digest(
                user_token.encode(), self.tokens.user_token(username, user.password).encode()):
            raise Unauthorized("not authorised: reload the playlist")
        auth = self.users.authenticate(username, user.password)
        if auth.user is None:
            raise HTTPError(403, f"this account is {auth.reason}")
        return auth.user

    def stream_of(self, name: str) -> tuple[str, int] | None:
        """The live channel a ``/hls/.../TOKEN.EXT`` resource belongs to
        (live HLS or catch-up), as ``("live", id)``; None if unknown."""
        entry = self.tokens.get(name.split(".", 1)[0])
        key = entry.channel.key if entry is not None else None
        if isinstance(key, tuple) and len(key) >= 2 and key[0] in ("hls", "timeshift") and isinstance(key[1], int):
            return "live", key[1]
        return None

    def resource(self, request: IRequest, username: str, user_token: str, name: str) -> Any:
        """``/hls/USER/USERTOKEN/TOKEN.EXT``: authorised by the user token, not the password."""
        user = self.authorise(username, user_token)
        token = name.split(".", 1)[0]
        entry = self.tokens.get(token)
        if entry is None or entry.channel.closed:
            raise NotFound("expired: reload the playlist")
        return Deferred.fromCoroutine(self._serve_resource(request, user, entry))

    # -- serving ------------------------------------------------------------------

    async def _serve_playlist(self, request: IRequest, account: UserConfig, channel: HlsChannel,
                              url: str) -> Any:
        address = client_address(request)
        try:
            session = await channel.join(account, address)
        except CancelledError:
            # the channel closed (xrelay stopping) while this request waited
            raise Unavailable("the stream was closed")
        except SlotsExhausted as e:
            if not channel.sessions:
                channel.close(f"no provider slot: {e}")
            log.info("refused {what} to {user}@{address}: {reason}", what=channel.what,
                     user=account.username, address=address, reason=str(e))
            raise Unavailable(f"busy: {e}")
        if session.revoked:
            raise HTTPError(403, f"stream closed: {session.revoked}")
        return await self._send_playlist(request, account, channel, url)

    async def _serve_resource(self, request: IRequest, account: UserConfig, entry: TokenEntry) -> Any:
        channel = entry.channel
        session = channel.touch(account, client_address(request))
        if session.revoked:
            raise HTTPError(403, f"stream closed: {session.revoked}")
        if entry.kind == "playlist":
            return await self._send_playlist(request, account, channel, entry.url)
        try:
            cached = await self.segments.get(entry.url, lambda: self._fetch_segment(entry.url, entry.kind))
        except ProviderError as e:
            log.info("{what}: segment fetch failed: {error}", what=channel.what, error=str(e))
            code = 404 if "HTTP 40" in str(e) else 502
            raise HTTPError(code, "segment not available: reload the playlist")
        return _send_bytes(request, cached.data, cached.content_type)

    async def _send_playlist(self, request: IRequest, account: UserConfig, channel: HlsChannel,
                             url: str) -> Any:
        try:
            text, final = await channel.fetch_playlist(url)
        except ProviderError as e:
            log.info("{what}: playlist fetch failed: {error}", what=channel.what, error=str(e))
            raise BadGateway("the provider did not deliver this stream")
        if not text.lstrip().startswith("#EXTM3U"):
            log.info("{what}: the provider's answer is not a playlist", what=channel.what)
            raise BadGateway("the provider did not deliver a playlist")
        base = public_base(request, self.public_url)
        prefix = f"{base}/hls/{quote(account.username, safe='')}/" \
                 f"{self.tokens.user_token(account.username, account.password)}/"

        def make_uri(absolute: str, kind: str) -> str:
            token = self.tokens.token(absolute, kind, channel)
            ext = _KINDS[kind]
            if kind == "segment":
                suffix = urlsplit(absolute).path.rsplit(".", 1)[-1].lower()
                ext = suffix if suffix in _SEGMENT_EXTS else "ts"
            return f"{prefix}{token}.{ext}"

        body = rewrite_playlist(text, final, make_uri, self.scrubber.leaks).encode()
        request.setHeader(b"content-type", PLAYLIST_TYPE)
        request.setHeader(b"cache-control", b"no-store, no-cache, must-revalidate")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    # -- provider fetches ------------------------------------------------------------

    async def fetch_text(self, url: str, what: str) -> tuple[str, str]:
        response = await self._get(url, what)
        final = final_url(response, url)
        body = await collect_body(self.clock, response, MAX_PLAYLIST, IDLE_TIMEOUT, what)
        return body.decode("utf-8", "replace"), final

    async def _fetch_segment_async(self, url: str, kind: str) -> tuple[bytes, bytes]:
        what = "HLS key" if kind == "key" else "HLS segment"
        response = await self._get(url, what)
        data = await collect_body(self.clock, response, MAX_SEGMENT, IDLE_TIMEOUT, what)
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if not ctype or self.scrubber.leaks(ctype.decode("latin-1")):
            suffix = urlsplit(url).path.rsplit(".", 1)[-1].lower()
            ctype = _CONTENT_TYPES.get("key" if kind == "key" else suffix, b"video/mp2t")
        return data, ctype

    def _fetch_segment(self, url: str, kind: str) -> Deferred[tuple[bytes, bytes]]:
        return Deferred.fromCoroutine(self._fetch_segment_async(url, kind))

    async def _get(self, url: str, what: str) -> IResponse:
        response = await self.client.request(url, timeout=FETCH_TIMEOUT, what=what)
        if response.code != 200:
            discard_body(response)
            raise ProviderError(f"{what}: HTTP {response.code}")
        return response

    # -- bookkeeping -------------------------------------------------------------------

    def forget(self, channel: HlsChannel) -> None:
        if self.channels.get(channel.key) is channel:
            del self.channels[channel.key]
        if not self.channels:
            self.segments.clear()

    def close_all(self, reason: str = "xrelay is stopping") -> None:
        for channel in list(self.channels.values()):
            channel.close(reason)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.seconds()
        return {
            "channels": [c.snapshot(now) for c in self.channels.values()],
            "segment_cache": {"bytes": self.segments.size, "items": len(self.segments.entries),
                              "fetches": self.segments.fetches, "hits": self.segments.hits},
        }


def _send_bytes(request: IRequest, data: bytes, content_type: bytes) -> bytes:
    """A cached segment or key, honouring a single Range (EXT-X-BYTERANGE)."""
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"max-age=30")
    request.setHeader(b"accept-ranges", b"bytes")
    wanted = byte_range(request.getHeader(b"range"), len(data))
    if wanted is False:
        request.setResponseCode(416)
        request.setHeader(b"content-range", b"bytes */%d" % len(data))
        return b""
    if wanted is not None:
        first, last = wanted
        request.setResponseCode(206)
        request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, last, len(data)))
        data = data[first : last + 1]
    request.setHeader(b"content-length", b"%d" % len(data))
    return data
