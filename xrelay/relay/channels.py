"""The live relay: channels, their lifecycle, and the stream requests.

``/live/USER/PASS/ID.ts``, ``/live/USER/PASS/ID`` and ``/USER/PASS/ID``
(routed here by :mod:`xrelay.web.routes`) check the xrelay user and the catalog
without contacting the provider (401/403/404), then join the viewer to the
channel's :class:`Channel`, opening it first when nobody watches it:

* a provider slot is taken from :class:`~xrelay.relay.slots.ProviderSlots`
  (handed over from a lingering channel or from the same client's previous
  channel; 503 with a short reason when none can be had);
* one upstream feeds one :class:`~xrelay.relay.fanout.Fanout`, which serves
  every viewer: the provider's MPEG-TS (:class:`~xrelay.relay.upstream.Upstream`)
  or, for channels the provider serves only as HLS, its segments joined into
  one stream (:class:`~xrelay.relay.hls_upstream.HlsUpstream`), as
  ``[relay] upstream_format`` says;
* ``/live/USER/PASS/ID.m3u8`` is served from the same channel
  (:mod:`xrelay.relay.hls_viewers`): HLS viewers and TS viewers share its one
  provider connection, and an HLS session counts as a viewer;
* after the last viewer leaves the channel lingers ``[relay] linger``
  seconds (zapping back is instant), then closes and frees its slot. A
  channel that has a viewer again (TS or HLS) is no longer lingering: it
  never gives its slot up to another client.

Each viewer also counts against its user's ``max_connections``
(:class:`~xrelay.relay.slots.UserStreams`): one stream more than allowed closes
that user's oldest stream.

A player's ``.ts`` request that cannot be served (no slot, the provider
failing the channel before it answers, an expired account) gets a status
clip instead of the refusal (:mod:`xrelay.relay.clips`) unless its user
switched clips off or it asked for a ``Range``.  :meth:`LiveRelay.tune`
serves clients that are not xrelay logins (HDHomeRun tuners): never a clip.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from xrelay.core.config import RelayConfig
from xrelay.core.deferreds import Shared
from xrelay.relay.clips import BUSY, EXPIRED, UNAVAILABLE, StatusClips
from xrelay.relay.fanout import Fanout, Viewer
from xrelay.relay.hls_live import PLAYLIST_TYPE
from xrelay.relay.hls_segmenter import Segmenter
from xrelay.relay.hls_sessions import HlsSession
from xrelay.relay.hls_upstream import HlsNotCarried, HlsUpstream
from xrelay.relay.hls_viewers import LiveHls
from xrelay.http.sockwrite import bound_send_buffer, direct_writer
from xrelay.relay.slots import Lease, ProviderSlots, SlotsExhausted, UserStreams, Yield
from xrelay.relay.upstream import NotMpegTs, Upstream, UpstreamError
from xrelay.catalog.cache import CatalogCache
from xrelay.core.config import UserConfig
from xrelay.http.errors import HTTPError, NotFound, Unavailable, text_error
from xrelay.http.request import client_address
from xrelay.provider.client import ProviderClient

log = Logger()


class ChannelClosed(Exception):
    pass


class ChannelBusy(Unavailable):
    """503: no provider slot for this channel, even by the zap rule."""


class ChannelFailed(Unavailable):
    """503: the provider did not deliver the channel (before its first byte)."""


class Channel:
    """One live channel: its provider slot, its upstream and its viewers."""

    def __init__(self, relay: LiveRelay, stream_id: int) -> None:
        self.relay = relay
        self.stream_id = stream_id
        self.clock = relay.clock
        cfg = relay.config
        self.fanout = Fanout(str(stream_id), self.clock, max_behind=cfg.max_behind)
        self.fanout.on_empty = self._empty
        self.upstream: Upstream | HlsUpstream | None = None
        #: Its HLS segmenter while it has HLS viewers (see LiveHls).
        self.hls: Segmenter | None = None
        self.lease: Lease | None = None
        self.created = self.clock.seconds()
        self.closed = False
        self.close_reason = ""
        self.waiting = 0
        self._linger: IDelayedCall | None = None
        self._stopped: Deferred[None] | None = None
        self.ready: Shared[None] | None = None

    def __repr__(self) -> str:
        return f"<Channel {self.stream_id}>"

    @property
    def viewers(self) -> set[Viewer]:
        return self.fanout.viewers

    def hls_viewers(self) -> list[HlsSession]:
        return self.relay.hls.viewers(self.stream_id)

    def has_viewers(self) -> bool:
        """Does anybody watch it, as TS or as HLS?"""
        return bool(self.fanout.viewers) or bool(self.relay.hls.sessions.count(self.stream_id))

    def open(self, user: str, address: str) -> None:
        opening = Deferred.fromCoroutine(self._open(user, address))
        self.ready = Shared(opening)
        # Runs after the waiting viewers were told: if they all left while
        # the channel opened, it lingers (and closes) like any empty channel.
        opening.addCallback(lambda _: self.maybe_linger())

    async def _open(self, user: str, address: str) -> None:
        relay = self.relay
        relay.refresh_capacity()
        try:
            self.lease = await relay.slots.acquire(
                self.stream_id, user=user, address=address,
                revoke=self.revoke, yields_to=self.yields_to,
            )
            if self.closed:
                self.lease.release()
                raise ChannelClosed(self.close_reason or "the channel was closed")
            refused: NotMpegTs | None = None
            if relay.upstream_format(self.stream_id) == "ts":
                self.upstream = self._ts_upstream(fallback=relay.config.upstream_format == "auto")
                log.info("channel {channel}: opening the upstream", channel=self.stream_id)
                try:
                    await self.upstream.start()
                    return
                except NotMpegTs as e:
                    log.info("channel {channel}: {reason}; trying the provider's HLS",
                             channel=self.stream_id, reason=str(e))
                    refused = e
            self.upstream = self._hls_upstream()
            log.info("channel {channel}: opening the provider's HLS", channel=self.stream_id)
            try:
                await self.upstream.start()
            except HlsNotCarried as e:
                relay.proxied[self.stream_id] = str(e)
                raise
            except UpstreamError:
                if refused is not None:
                    raise refused
                raise
            if refused is not None:
                relay.hls_only[self.stream_id] = str(refused)
        except BaseException as e:
            self.close(f"could not open: {e}")
            raise

    def _ts_upstream(self, fallback: bool) -> Upstream:
        relay, cfg = self.relay, self.relay.config
        return Upstream(
            self.clock, relay.open_url, relay.stream_url(self.stream_id), self.fanout,
            name=str(self.stream_id), silence_timeout=cfg.silence_timeout,
            reconnect_bound=cfg.reconnect_bound, on_give_up=self._give_up,
            on_not_ts=self._not_ts if fallback else None,
        )

    def _hls_upstream(self) -> HlsUpstream:
        relay, cfg = self.relay, self.relay.config
        return HlsUpstream(
            self.clock, relay.open_url, relay.hls_url(self.stream_id), self.fanout,
            name=str(self.stream_id), silence_timeout=cfg.silence_timeout,
            reconnect_bound=cfg.reconnect_bound, on_give_up=self._give_up,
        )

    def _not_ts(self, reason: str) -> None:
        """The running TS upstream turned out to be a playlist: go on from
        the provider's HLS, with the same slot and viewers."""
        if self.closed:
            return
        self.relay.hls_only[self.stream_id] = reason
        upstream = self.upstream = self._hls_upstream()
        log.info("channel {channel}: {reason}; switching to the provider's HLS",
                 channel=self.stream_id, reason=reason)

        def failed(failure: Any) -> None:
            if failure.check(HlsNotCarried):
                self.relay.proxied[self.stream_id] = str(failure.value)
            if self.upstream is upstream:
                self.close(f"the provider did not deliver this channel: {failure.value}")

        upstream.start().addErrback(failed)

    def yields_to(self, user: str, address: str) -> Yield:
        """Would this channel give its provider slot up to that client?"""
        if self.waiting:
            return Yield.NO
        watching = [(v.user, v.address) for v in self.fanout.viewers]
        watching += [(s.user, s.address) for s in self.hls_viewers()]
        if not watching:
            return Yield.IDLE
        if set(watching) == {(user, address)}:  # that client alone (as TS, HLS or both)
            return Yield.SAME_CLIENT
        return Yield.NO

    def revoke(self) -> Deferred[None]:
        """Give the provider slot up now (handover): close everything."""
        return self.close("its provider connection was handed over")

    def attached(self) -> None:
        self._cancel_linger()

    def _empty(self, fanout: Fanout) -> None:
        self.maybe_linger()

    @property
    def lingering(self) -> bool:
        return self._linger is not None

    def maybe_linger(self) -> None:
        if self.closed or self.has_viewers() or self.waiting or self._linger is not None:
            return
        if self.ready is None or not self.ready.done:
            return
        self._linger = self.clock.callLater(self.relay.config.linger, self._linger_over)

    def _linger_over(self) -> None:
        self._linger = None
        if not self.has_viewers() and not self.waiting:
            self.close("no viewers left")

    def _cancel_linger(self) -> None:
        if self._linger is not None:
            if self._linger.active():
                self._linger.cancel()
            self._linger = None

    def _give_up(self, reason: str) -> None:
        self.close(f"the provider stream is gone ({reason})")

    def close(self, reason: str) -> Deferred[None]:
        """Close viewers cleanly, the upstream, and free the slot; fires
        when the upstream connection is closed. Idempotent."""
        if self._stopped is not None:
            return _after(self._stopped)
        self.closed = True
        self.close_reason = reason
        self._cancel_linger()
        log.info("channel {channel}: closing: {reason}", channel=self.stream_id, reason=reason)
        self.relay._forget(self)
        self.relay.hls.channel_closed(self, reason)
        self.fanout.close(reason)
        stopped = self.upstream.stop() if self.upstream is not None else succeed(None)

        def release(result: object) -> object:
            if self.lease is not None:
                self.lease.release()
            return result

        stopped.addBoth(release)
        self._stopped = stopped
        return _after(stopped)

    def snapshot(self) -> dict[str, Any]:
        up = self.upstream
        now = self.clock.seconds()
        rate = self.fanout.ring.bitrate()
        viewers = []
        for v in self.fanout.iter_viewers():
            viewers.append({
                "user": v.user,
                "address": v.address,
                "format": "ts",
                "bytes": v.bytes_sent,
                "started": v.started,
                "seconds": round(now - v.started, 1),
                "behind_seconds": round(v.behind() / rate, 2) if rate else None,
                "paused": v.paused,
            })
        viewers.extend(self.relay.hls.sessions.snapshot(s) for s in self.hls_viewers())
        channel = self.relay.catalog.live(self.stream_id)
        return {
            "stream_id": self.stream_id,
            "name": channel.name if channel is not None else "",
            "opened": self.created,
            "state": "lingering" if self._linger is not None else (
                up.state.value if up is not None else "waiting for a slot"),
            "upstream": {
                "format": up.format if up is not None else self.relay.upstream_format(self.stream_id),
                "state": up.state.value if up is not None else "none",
                "connections": up.connections if up is not None else 0,
                "reconnects": up.reconnects if up is not None else 0,
                "redirected": up.redirected if up is not None else False,
                "last_error": up.last_error if up is not None else "",
                "paused": self.fanout.upstream_paused,
                "bytes": up.bytes_in if up is not None else 0,
                "bitrate_bps": round(rate * 8) if rate else None,
            },
            "buffer_bytes": self.fanout.ring.size,
            "evictions": self.fanout.evictions,
            "viewers": viewers,
            "hls": self.hls.snapshot() if self.hls is not None else None,
        }

    def viewer_objects(self) -> list[Viewer | HlsSession]:
        """Its viewers in the order :meth:`snapshot` lists them."""
        out: list[Viewer | HlsSession] = list(self.fanout.iter_viewers())
        out.extend(self.hls_viewers())
        return out


def _after(d: Deferred[None]) -> Deferred[None]:
    """A fresh Deferred that fires when ``d`` has (without touching d)."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            out.callback(None)
        return result

    if d.called:
        out.callback(None)
    else:
        d.addBoth(fire)
    return out


class _StreamResource(Resource):
    """Renders one viewer's endless response (NOT_DONE_YET)."""

    isLeaf = True

    def __init__(self, relay: LiveRelay, channel: Channel, user: UserConfig, address: str,
                 duration: float | None = None) -> None:
        super().__init__()
        self.relay = relay
        self.channel = channel
        self.user = user
        self.address = address
        self.duration = duration

    def render_GET(self, request: Request) -> Any:
        channel = self.channel
        if channel.closed:
            return text_error(request, 503, "the channel was closed")
        request.setHeader(b"content-type", b"video/mp2t")
        request.setHeader(b"cache-control", b"no-store")
        holder: list[Viewer] = []
        lease = self.relay.user_streams.open(
            self.user.username, self.user.max_connections,
            key=("live", channel.stream_id), address=self.address,
            revoke=lambda: holder[0].close("the user opened more streams than allowed") if holder else None,
        )

        request.write(b"")  # the headers; the body may then bypass the buffer
        bound_send_buffer(request)
        writer = direct_writer(request)

        def finish() -> None:
            if writer is not None and writer.mid_frame:
                # Half an HTTP chunk went out: the body cannot end cleanly.
                writer.transport.abortConnection()
            else:
                _end_request(request)

        viewer = channel.fanout.attach(request, user=self.user.username, address=self.address,
                                       finish=finish, write=writer)
        holder.append(viewer)
        log.info("{viewer} joined channel {channel}", viewer=f"{self.user.username}@{self.address}",
                 channel=channel.stream_id, event="viewer_joined")
        channel.attached()

        def detached(v: Viewer) -> None:
            lease.release()
            self.relay.viewer_left(v)

        viewer.on_detach(detached)
        request.notifyFinish().addBoth(lambda _: viewer.detach("client left"))
        if self.duration is not None:
            ending = self.relay.clock.callLater(self.duration, viewer.close, "its duration is over")
            viewer.on_detach(lambda v: ending.cancel() if ending.active() else None)
        return NOT_DONE_YET


def _end_request(request: IRequest) -> None:
    """Finish a stream response and close its connection."""
    if getattr(request, "finished", False) or getattr(request, "_disconnected", False):
        return
    request.finish()
    transport = getattr(request, "transport", None)
    if transport is not None:
        transport.loseConnection()


class LiveRelay:
    """All live channels of this xrelay, and the request handler."""

    def __init__(self, clock: IReactorTime, config: RelayConfig, catalog: CatalogCache, client: ProviderClient,
                 slots: ProviderSlots, user_streams: UserStreams,
                 refresh_capacity: Callable[[], None] = lambda: None,
                 clips: StatusClips | None = None, *,
                 hls_user_token: Callable[[str, str], str], public_url: str | None = None) -> None:
        self.clock = clock
        self.config = config
        self.catalog = catalog
        self.client = client
        self.slots = slots
        self.user_streams = user_streams
        self.refresh_capacity = refresh_capacity
        #: Status clips played instead of a refusal (None: never).
        self.clips = clips
        self.channels: dict[int, Channel] = {}
        #: HLS viewers of the channels (``/live/U/P/ID.m3u8``).
        self.hls = LiveHls(clock, config, user_streams, self.channels.get,
                           user_token=hls_user_token, public_url=public_url)
        #: Channels whose MPEG-TS the provider refused or answered with a
        #: playlist (``upstream_format = "auto"``): read from its HLS since.
        self.hls_only: dict[int, str] = {}
        #: Channels whose provider HLS the hub cannot carry (encrypted, fMP4):
        #: their ``.m3u8`` goes to the rewrite-and-proxy path.
        self.proxied: dict[int, str] = {}
        self.evictions = 0
        self.reconnects = 0
        #: Bytes received by the upstreams of channels already closed (metrics).
        self.upstream_bytes_closed = 0
        self.refresh_capacity()

    # -- provider side -----------------------------------------------------

    def stream_url(self, stream_id: int) -> str:
        return self.client.stream_url("live", stream_id, "ts")

    def hls_url(self, stream_id: int) -> str:
        return self.client.stream_url("live", stream_id, "m3u8")

    def upstream_format(self, stream_id: int) -> str:
        """What a channel opened now asks the provider for: "ts" or "hls"."""
        chosen = self.config.upstream_format
        if chosen != "auto":
            return chosen
        formats = self.catalog.account.get("allowed_output_formats") or ["ts"]
        if stream_id in self.hls_only or ("ts" not in formats and "m3u8" in formats):
            return "hls"
        return "ts"

    def open_url(self, url: str) -> Deferred[Any]:
        return self.client.request(url, timeout=30.0, what="live stream")

    # -- requests ------------------------------------------------------------

    def serve(self, request: IRequest, account: UserConfig, stream_id: int, ext: str) -> Any:
        """A logged-in user's request for a live channel as MPEG-TS."""
        if ext not in ("ts", ""):
            raise NotFound("unknown stream")
        if not self.catalog.loaded:
            raise Unavailable("the channel list is not loaded yet, try again soon", retry_after=10)
        if not self.catalog.has("live", stream_id):
            raise NotFound("unknown stream")
        if request.method == b"HEAD":
            request.setHeader(b"content-type", b"video/mp2t")
            return b""
        address = getattr(request.getClientAddress(), "host", "")
        joined = Deferred.fromCoroutine(self._join(request, account, address, stream_id))
        if self._clip_allowed(request, account):
            joined.addErrback(self._clip_instead)
        return joined

    def tune(self, request: IRequest, viewer: UserConfig, address: str, stream_id: int, *,
             duration: float | None = None) -> Deferred[Resource]:
        """The channel for a client that is not an xrelay login (an HDHomeRun
        tuner, *viewer* naming it): the stream resource, or the refusal
        (:class:`ChannelBusy`, :class:`ChannelFailed`), never a clip.  The
        stream ends after *duration* seconds when given."""
        return Deferred.fromCoroutine(self._join(request, viewer, address, stream_id, duration))

    def expired_clip(self, request: IRequest, account: UserConfig, stream_id: int, ext: str) -> Any:
        """The status clip for an expired account's live .ts request, or None
        when that request gets the plain refusal."""
        if ext not in ("ts", "") or not self.catalog.has("live", stream_id):
            return None
        if self.clips is None or not self._clip_allowed(request, account):
            return None
        return self.clips.resource(EXPIRED)

    def _clip_allowed(self, request: IRequest, account: UserConfig) -> bool:
        return (self.clips is not None and account.status_clips
                and request.getHeader(b"range") is None)

    def _clip_instead(self, failure: Any) -> Resource:
        failure.trap(ChannelBusy, ChannelFailed)
        assert self.clips is not None
        return self.clips.resource(BUSY if failure.check(ChannelBusy) else UNAVAILABLE)

    async def _join(self, request: IRequest, user: UserConfig, address: str, stream_id: int,
                    duration: float | None = None) -> Any:
        if stream_id in self.proxied:
            raise ChannelFailed(f"this channel is only available as HLS ({self.proxied[stream_id]}):"
                                f" play {stream_id}.m3u8")
        try:
            channel = await self._channel(user, address, stream_id)
        except HlsNotCarried as e:
            raise ChannelFailed(f"this channel is only available as HLS ({e}): play {stream_id}.m3u8")
        return _StreamResource(self, channel, user, address, duration)

    async def _channel(self, user: UserConfig, address: str, stream_id: int) -> Channel:
        """The channel, opened first if nobody watches it; ChannelBusy or
        ChannelFailed when it cannot be had (HlsNotCarried passes through)."""
        channel = self.channels.get(stream_id)
        if channel is None:
            channel = Channel(self, stream_id)
            self.channels[stream_id] = channel
            channel.open(user.username, address)
        assert channel.ready is not None
        channel.waiting += 1
        try:
            await channel.ready.wait()
        except SlotsExhausted as e:
            log.info("refused channel {channel} to {user}@{address}: {reason}",
                     channel=stream_id, user=user.username, address=address, reason=str(e))
            raise ChannelBusy(f"busy: {e}")
        except HlsNotCarried:
            raise
        except (UpstreamError, ChannelClosed) as e:
            raise ChannelFailed(f"the provider did not deliver this channel: {e}")
        finally:
            channel.waiting -= 1
            channel.maybe_linger()
        return channel

    def serve_hls(self, request: IRequest, account: UserConfig, stream_id: int,
                  proxy: Callable[[], Any]) -> Any:
        """A logged-in user's ``/live/USER/PASS/ID.m3u8``: the channel's own
        HLS, or ``proxy()`` (the provider's HLS rewritten) for a channel whose
        provider HLS the hub cannot carry."""
        if not self.catalog.loaded:
            raise Unavailable("the channel list is not loaded yet, try again soon", retry_after=10)
        if not self.catalog.has("live", stream_id):
            raise NotFound("unknown stream")
        if stream_id in self.proxied:
            return proxy()
        if request.method == b"HEAD":
            request.setHeader(b"content-type", PLAYLIST_TYPE)
            return b""
        return Deferred.fromCoroutine(self._serve_hls(request, account, stream_id, proxy))

    async def _serve_hls(self, request: IRequest, account: UserConfig, stream_id: int,
                         proxy: Callable[[], Any]) -> Any:
        address = client_address(request)
        known = self.hls.sessions.get(account.username, address, stream_id)
        if known is not None and known.revoked:
            raise HTTPError(403, f"stream closed: {known.revoked}")
        try:
            channel = await self._channel(account, address, stream_id)
        except HlsNotCarried as e:
            log.info("channel {channel}: its HLS is relayed as the provider's ({reason})",
                     channel=stream_id, reason=str(e))
            answer = proxy()
            return (await answer) if isinstance(answer, Deferred) else answer
        return await self.hls.playlist(request, account, channel)

    def serve_segment(self, request: IRequest, account: UserConfig, stream_id: int,
                      sequence: int) -> Any:
        """One live HLS segment (the route checked the user token)."""
        return self.hls.segment(request, account, self.channels.get(stream_id), sequence)

    def close_viewer(self, viewer: Viewer | HlsSession, reason: str) -> None:
        """End one viewer's stream (the admin, a reload): a TS viewer's
        response ends; an HLS session ends and its client is refused while it
        keeps asking."""
        if isinstance(viewer, HlsSession):
            self.hls.revoke(viewer, reason)
        else:
            viewer.close(reason)

    def viewer_left(self, viewer: Viewer) -> None:
        if viewer.evicted:
            self.evictions += 1
        else:
            log.info("{viewer} left channel {channel} after {seconds:.0f} s, {sent} bytes",
                     viewer=f"{viewer.user}@{viewer.address}", channel=viewer.fanout.name,
                     seconds=self.clock.seconds() - viewer.started, sent=viewer.bytes_sent,
                     event="viewer_left")

    def _forget(self, channel: Channel) -> None:
        if self.channels.get(channel.stream_id) is channel:
            del self.channels[channel.stream_id]
        if channel.upstream is not None:
            self.reconnects += channel.upstream.reconnects
            self.upstream_bytes_closed += channel.upstream.bytes_in

    def close_all(self, reason: str = "xrelay is stopping") -> Deferred[Any]:
        closing = DeferredList([c.close(reason) for c in list(self.channels.values())])
        self.hls.sessions.close_all(reason)
        return closing

    def snapshot(self) -> dict[str, Any]:
        self.refresh_capacity()
        channels = [c.snapshot() for c in sorted(self.channels.values(), key=lambda c: c.created)]
        return {
            "slots": {"used": self.slots.used, "allowed": self.slots.capacity,
                      "handovers": self.slots.handovers, "refused": self.slots.refusals},
            "channels": channels,
            "viewers": sum(len(c["viewers"]) for c in channels),
            "evictions": self.evictions,
            "reconnects": self.reconnects + sum(c["upstream"]["reconnects"] for c in channels),
            "closed_for_user_limit": self.user_streams.closed_for_limit,
            "status_clips": self.clips.snapshot() if self.clips is not None else {},
        }


class RelayService(Service):
    name = "relay"

    def __init__(self, relay: LiveRelay) -> None:
        self.relay = relay

    def stopService(self) -> Any:
        super().stopService()
        return self.relay.close_all()

