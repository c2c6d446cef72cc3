"""HLS viewers of live channels, served from the channel's own stream.

A live channel (:class:`~xrelay.relay.channels.Channel`) has one upstream
and one shared buffer; TS viewers read that buffer as it arrives. For HLS
viewers, :class:`LiveHls` hangs a
:class:`~xrelay.relay.hls_segmenter.Segmenter` on the buffer (an observer of
its ring, primed with what the ring still holds) the first time somebody asks
for the channel's ``.m3u8``, and answers:

* the media playlist (:func:`~xrelay.relay.hls_live.render_playlist`), rendered
  once per window change, with segment URLs
  ``BASE/hls/USER/USERTOKEN/L<ID>-<SEQUENCE>.ts``: a per-user token stands for
  the password, and nothing of the provider appears;
* the segments, written from the shared chunks by a
  :class:`~xrelay.relay.hls_live.SegmentProducer` (with back-pressure, zero-copy
  and several chunks per ``sendmsg`` when the transport allows, a single
  ``Range`` honoured); resumed producers
  write in shared, budgeted reactor turns (:class:`~xrelay.relay.hls_live.WriteTurns`),
  so that a playlist or a new player never waits behind a pass over every
  player's socket.

Each (user, address, channel) that keeps fetching is a session
(:class:`~xrelay.relay.hls_sessions.HlsSessions`): it holds one of its user's
streams (newest wins, as for TS), counts as a viewer of the channel (linger,
the zap handover, ``/status``, ``/metrics``, the admin's disconnect button),
and keeps the upstream flowing even when no TS viewer reads it. A session
ends three target durations after its last request; when a channel's last
one ends its segmenter is dropped (its numbering is kept, so a playlist's
sequence numbers never go back while xrelay runs).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from xrelay.core.config import RelayConfig, UserConfig
from xrelay.http.errors import HTTPError, NotFound, Unavailable
from xrelay.http.ranges import byte_range
from xrelay.http.request import client_address, public_base, web_request
from xrelay.relay.fanout import Fanout
from xrelay.relay.hls_live import (DEFAULT_FIRST_SEGMENT_WAIT, PLAYLIST_CACHE_CONTROL, PLAYLIST_TYPE,
                                   SEGMENT_CACHE_CONTROL, SEGMENT_TYPE, HlsUnavailable, SegmentProducer,
                                   WriteTurns, ignore_client_gone, render_playlist, wait_for_segment)
from xrelay.relay.hls_segmenter import Segment, Segmenter
from xrelay.relay.hls_sessions import HlsSession, HlsSessions
from xrelay.relay.slots import UserStreams
from xrelay.http.sockwrite import bound_send_buffer, direct_writer, no_delay, send_now

__all__ = ["LiveHls", "HlsChannel", "segment_name"]

log = Logger()

#: Target durations without a request after which an HLS session ends.
IDLE_TARGETS = 3
#: Placeholder for the per-user URL prefix in a cached playlist.
_PREFIX = "\x00"


def segment_name(stream_id: int, sequence: int) -> str:
    """The last path segment of a live HLS segment's URL."""
    return f"L{stream_id}-{sequence}.ts"


class HlsChannel(Protocol):
    """What :class:`LiveHls` needs of a live channel."""

    stream_id: int
    fanout: Fanout
    closed: bool
    #: The channel's segmenter while it has HLS viewers (LiveHls sets it).
    hls: Segmenter | None

    def attached(self) -> None:
        """A viewer came: the channel is not lingering."""

    def maybe_linger(self) -> None:
        """A viewer left: linger if it was the last one."""


class LiveHls:
    """The HLS side of every live channel; see the module docstring."""

    def __init__(self, clock: Any, config: RelayConfig, user_streams: UserStreams,
                 channel_of: Callable[[int], HlsChannel | None], *,
                 user_token: Callable[[str, str], str], public_url: str | None,
                 first_wait: float = DEFAULT_FIRST_SEGMENT_WAIT) -> None:
        self.clock = clock
        self.config = config
        self.user_streams = user_streams
        self.channel_of = channel_of
        self.user_token = user_token
        self.public_url = public_url
        self.first_wait = first_wait
        self.sessions = HlsSessions(clock, idle_timeout=self.idle_timeout, on_end=self._ended)
        #: Segment writes of all channels, in short reactor turns.
        self.turns = WriteTurns(clock)
        #: Where each channel's numbering goes on when it is segmented again.
        self.resume: dict[int, dict[str, Any]] = {}
        self._rendered: dict[int, tuple[int, str]] = {}

    def idle_timeout(self, stream_id: Any) -> float:
        channel = self.channel_of(stream_id) if isinstance(stream_id, int) else None
        target = channel.hls.target if channel is not None and channel.hls is not None else None
        return IDLE_TARGETS * (target or math.ceil(1.5 * self.config.hls_segment))

    # -- segmenters ---------------------------------------------------------------------

    def segmenter(self, channel: HlsChannel) -> Segmenter:
        """The channel's segmenter, made (and primed from its ring) if needed."""
        if channel.hls is not None:
            return channel.hls
        cfg = self.config
        ring = channel.fanout.ring
        # Its memory has the TS buffer's bound: the segments are the ring's
        # own chunks, kept longer; expired ones go early past the ring's cap.
        seg = Segmenter(self.clock, name=str(channel.stream_id), segment=cfg.hls_segment,
                        window=cfg.hls_window, max_held_bytes=ring.max_bytes,
                        **self.resume.pop(channel.stream_id, {}))
        seg.prime([ring.chunks[s] for s in range(ring.first_seq, ring.next_seq)], ring.access_points())
        ring.observers.append(seg.publish)
        channel.fanout.on_reset.append(seg.reset)
        channel.hls = seg
        return seg

    def drop_segmenter(self, channel: HlsChannel, reason: str) -> None:
        """Forget the channel's segments (keeping its numbering)."""
        seg, channel.hls = channel.hls, None
        if seg is None:
            return
        fanout = channel.fanout
        if seg.publish in fanout.ring.observers:
            fanout.ring.observers.remove(seg.publish)
        if seg.reset in fanout.on_reset:
            fanout.on_reset.remove(seg.reset)
        self.resume[channel.stream_id] = seg.continuation()
        self._rendered.pop(channel.stream_id, None)
        seg.close(reason)

    def channel_closed(self, channel: HlsChannel, reason: str) -> None:
        """The channel closed: its sessions end, its segments go."""
        self.drop_segmenter(channel, reason)
        self.sessions.close_channel(channel.stream_id, reason)

    # -- sessions -------------------------------------------------------------------------

    def touch(self, account: UserConfig, address: str, channel: HlsChannel,
              segment_bytes: int | None = None) -> HlsSession:
        """Note a request of this client; a new session takes one of its user's streams."""
        session = self.sessions.touch(account.username, address, channel.stream_id,
                                      segment_bytes=segment_bytes)
        if session.alive and not session.revoked and session.lease is None:
            channel.attached()
            channel.fanout.set_keep_flowing(True)
            sessions = self.sessions
            session.lease = self.user_streams.open(
                account.username, account.max_connections, key=("hls", channel.stream_id),
                address=address,
                revoke=lambda: sessions.revoke(session, "the user opened more streams than allowed"))
        return session

    def revoke(self, session: HlsSession, reason: str) -> None:
        """End a session by policy; its client is refused while it keeps asking."""
        self.sessions.revoke(session, reason)

    def _ended(self, session: HlsSession, reason: str) -> None:
        if session.lease is not None:
            session.lease.release()
        stream_id = session.channel
        channel = self.channel_of(stream_id) if isinstance(stream_id, int) else None
        if channel is None or channel.closed or self.sessions.count(stream_id):
            return
        channel.fanout.set_keep_flowing(False)
        self.drop_segmenter(channel, "no HLS viewer left")
        channel.maybe_linger()

    def viewers(self, stream_id: int) -> list[HlsSession]:
        return self.sessions.of_channel(stream_id)

    # -- playlists ------------------------------------------------------------------------

    async def playlist(self, request: IRequest, account: UserConfig, channel: HlsChannel) -> bytes:
        """The channel's media playlist for this user (waiting, within a
        bound, for the first segment of a channel opened cold)."""
        address = client_address(request)
        session = self.touch(account, address, channel)
        _refuse_revoked(session)
        seg = self.segmenter(channel)
        try:
            await wait_for_segment(seg, self.clock, self.first_wait)
        except HlsUnavailable as e:
            raise Unavailable(str(e), retry_after=max(1, round(self.config.hls_segment)))
        window = seg.playlist()
        if window is None or not session.alive:
            _refuse_revoked(session)
            raise Unavailable("the channel closed", retry_after=2)
        cached = self._rendered.get(channel.stream_id)
        if cached is None or cached[0] != window.version:
            text = render_playlist(window, lambda s: f"{_PREFIX}{s.sequence}.ts")
            cached = self._rendered[channel.stream_id] = (window.version, text)
        base = public_base(request, self.public_url)
        prefix = (f"{base}/hls/{quote(account.username, safe='')}/"
                  f"{self.user_token(account.username, account.password)}/L{channel.stream_id}-")
        body = cached[1].replace(_PREFIX, prefix).encode()
        no_delay(request)
        # Sent as soon as it is finished, not on the reactor's next pass.
        web_request(request).notifyFinish().addBoth(_send_answer, request)
        request.setHeader(b"content-type", PLAYLIST_TYPE)
        request.setHeader(b"cache-control", PLAYLIST_CACHE_CONTROL)
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    # -- segments ---------------------------------------------------------------------------

    def segment(self, request: IRequest, account: UserConfig, channel: HlsChannel | None,
                sequence: int) -> Any:
        """One segment of the channel, or 404 once it expired."""
        if channel is not None:
            known = self.sessions.get(account.username, client_address(request), channel.stream_id)
            if known is not None:
                _refuse_revoked(known)
        seg = channel.hls if channel is not None and not channel.closed else None
        segment = seg.get(sequence) if seg is not None else None
        if channel is None or segment is None:
            raise NotFound("expired: reload the playlist")
        session = self.touch(account, client_address(request), channel, segment_bytes=segment.size)
        _refuse_revoked(session)
        request.setHeader(b"content-type", SEGMENT_TYPE)
        request.setHeader(b"cache-control", SEGMENT_CACHE_CONTROL)
        request.setHeader(b"accept-ranges", b"bytes")
        first, end = 0, segment.size
        wanted = byte_range(request.getHeader(b"range"), segment.size)
        if wanted is False:
            request.setResponseCode(416)
            request.setHeader(b"content-range", b"bytes */%d" % segment.size)
            request.setHeader(b"content-length", b"0")
            return b""
        if isinstance(wanted, tuple):
            first, end = wanted[0], wanted[1] + 1
            request.setResponseCode(206)
            request.setHeader(b"content-range", b"bytes %d-%d/%d" % (first, end - 1, segment.size))
        request.setHeader(b"content-length", b"%d" % (end - first))
        if request.method == b"HEAD":
            return b""
        return _SegmentResource(self.sessions, self.turns, session, segment, first, end)


def _send_answer(finished: Any, request: IRequest) -> None:
    if finished is None:  # finished, not lost
        send_now(request)


def _refuse_revoked(session: HlsSession) -> None:
    if session.revoked:
        raise HTTPError(403, f"stream closed: {session.revoked}")


class _SegmentResource(Resource):
    """Writes one segment (or a range of it) from the shared chunks."""

    isLeaf = True

    def __init__(self, sessions: HlsSessions, turns: WriteTurns, session: HlsSession, segment: Segment,
                 first: int, end: int) -> None:
        super().__init__()
        self.sessions = sessions
        self.turns = turns
        self.session = session
        self.segment = segment
        self.first = first
        self.end = end

    def render_GET(self, request: Request) -> Any:
        request.write(b"")  # the headers; the body may then bypass the buffer
        bound_send_buffer(request)
        no_delay(request)
        writer = direct_writer(request)
        producer = SegmentProducer.for_segment(request, self.segment, self.first, self.end,
                                               write=writer, turns=self.turns,
                                               write_many=writer.send_many if writer is not None else None)
        done: Deferred[int] = producer.start()

        def sent(size: int) -> None:
            self.sessions.note_sent(self.session, size)
            if not getattr(request, "finished", False) and not getattr(request, "_disconnected", False):
                request.finish()

        done.addCallbacks(sent, ignore_client_gone)
        request.notifyFinish().addErrback(lambda _: producer.stopProducing())
        return NOT_DONE_YET
