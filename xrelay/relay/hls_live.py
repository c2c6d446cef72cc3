"""Serving a channel's live HLS: media playlists, segment bodies, first wait.

The pieces the ``/live/USER/PASS/ID.m3u8`` route and its segment route need
on top of a channel's :class:`~xrelay.relay.hls_segmenter.Segmenter`:

* :func:`render_playlist` writes the media playlist of a
  :class:`~xrelay.relay.hls_segmenter.PlaylistWindow` (RFC 8216, version 3:
  no ``#EXT-X-ENDLIST``, a fixed ``#EXT-X-TARGETDURATION``, the media and
  discontinuity sequence numbers, ``#EXT-X-PROGRAM-DATE-TIME`` and
  ``#EXTINF`` with three decimals on every segment). Segment URIs come from a
  callable, so the caller keeps its own token scheme (no password, nothing of
  the provider).
* :class:`SegmentProducer` is an ``IPushProducer`` that writes one segment's
  shared pieces to a consumer (a ``twisted.web`` request) with back-pressure:
  it stops when the consumer pauses it and goes on when resumed. It writes the
  ring's own ``bytes`` objects (or ``memoryview`` slices of them): nothing is
  copied per client; given a :mod:`xrelay.http.sockwrite` writer it sends
  them straight to the socket.
* :func:`wait_for_segment` waits, within a bound on the passed clock, for a
  channel opened cold to complete its first segment; it fails with
  :class:`HlsUnavailable` (a reason for a 503) otherwise.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IProducer, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from xrelay.relay.hls_segmenter import Piece, PlaylistWindow, Segment, Segmenter

log = Logger()

PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
SEGMENT_TYPE = b"video/mp2t"
#: Playlists change every segment: no cache may keep them.
PLAYLIST_CACHE_CONTROL = b"no-cache"
#: A segment never changes while it can be fetched.
SEGMENT_CACHE_CONTROL = b"max-age=60"
HLS_VERSION = 3
#: Seconds a request for a channel opened cold waits for its first segment.
DEFAULT_FIRST_SEGMENT_WAIT = 15.0


class HlsUnavailable(Exception):
    """No playlist can be served now; ``str()`` is a reason for a 503."""


class FirstSegmentTimeout(HlsUnavailable):
    """The channel completed no segment within the bound."""


class SegmenterClosed(HlsUnavailable):
    """The channel closed while a request waited for it."""


class ClientGone(Exception):
    """The client went away before its segment was sent."""


# -- playlists ----------------------------------------------------------------------------


def program_date_time(seconds: float) -> str:
    """ISO 8601 UTC time with milliseconds, as ``#EXT-X-PROGRAM-DATE-TIME`` wants."""
    millis = round(seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def render_playlist(window: PlaylistWindow, uri: Callable[[Segment], str]) -> str:
    """The media playlist text of ``window``; ``uri(segment)`` names each
    segment (absolute, or relative to the playlist's URL)."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{window.target}",
        f"#EXT-X-MEDIA-SEQUENCE:{window.media_sequence}",
        f"#EXT-X-DISCONTINUITY-SEQUENCE:{window.discontinuity_sequence}",
    ]
    for segment in window.segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{program_date_time(segment.program_time)}")
        lines.append(f"#EXTINF:{segment.duration:.3f},")
        lines.append(uri(segment))
    lines.append("")
    return "\n".join(lines)


# -- waiting for the first segment ---------------------------------------------------------


def wait_for_segment(segmenter: Segmenter, clock: IReactorTime,
                     timeout: float = DEFAULT_FIRST_SEGMENT_WAIT) -> Deferred[Segment]:
    """A Deferred firing with the channel's newest segment: at once when it
    has one, else when its first one is complete. It fails with
    :class:`FirstSegmentTimeout` after ``timeout`` seconds on ``clock``, or
    :class:`SegmenterClosed` if the channel closes first; cancelling it (the
    client left) stops the wait."""
    latest = segmenter.latest
    if latest is not None and segmenter.target is not None:
        done: Deferred[Segment] = Deferred()
        done.callback(latest)
        return done
    timer: list[IDelayedCall] = []

    def cleanup() -> None:
        segmenter.unlisten(on_segment)
        if timer and timer[0].active():
            timer[0].cancel()

    def cancel(_: Deferred[Segment]) -> None:
        cleanup()

    result: Deferred[Segment] = Deferred(cancel)

    def on_segment(segment: Segment | None) -> None:
        if result.called:
            return
        cleanup()
        if segment is None:
            reason = segmenter.close_reason or "the channel closed"
            result.errback(SegmenterClosed(f"the channel closed: {reason}"))
        else:
            result.callback(segment)

    def expire() -> None:
        if result.called:
            return
        cleanup()
        result.errback(FirstSegmentTimeout(
            f"the channel delivered no complete segment within {timeout:g} s"))

    timer.append(clock.callLater(timeout, expire))
    segmenter.listen(on_segment)
    return result


# -- segment bodies -----------------------------------------------------------------------------


@implementer(IPushProducer)
class SegmentProducer:
    """Writes a segment's pieces to ``consumer`` with back-pressure.

    ``write`` replaces ``consumer.write`` for the data: a
    :mod:`xrelay.http.sockwrite` writer that returns how many bytes the
    socket took (it pauses this producer itself when the socket is full);
    the consumer still paces the producer.  ``write_many``, given too, sends
    several pieces (up to :data:`BATCH_BYTES`) in one call. :meth:`start` registers it and
    returns a Deferred firing with the number of bytes written once all were
    written and the producer unregistered (the caller then finishes the
    request), or failing with :class:`ClientGone` if the consumer stopped it.
    """

    def __init__(self, consumer: IConsumer, pieces: Sequence[Piece], *,
                 write: Callable[[Piece], int | None] | None = None,
                 write_many: Callable[[Sequence[Piece]], int] | None = None,
                 turns: WriteTurns | None = None) -> None:
        self.consumer = consumer
        #: Given, a resumed producer writes in the shared budgeted turns
        #: instead of inside ``resumeProducing``.
        self.turns = turns
        self._pieces = list(pieces)
        self._index = 0
        self._pos = 0
        # Twisted's consumers take any buffer; IConsumer.write says bytes.
        self._write: Callable[[Piece], int | None] = write or consumer.write  # type: ignore[assignment]
        self._write_many = write_many
        self.size = sum(len(p) for p in self._pieces)
        self.sent = 0
        self.paused = False
        self.stopped = False
        self._writing = False
        self._done: Deferred[int] = Deferred()

    @classmethod
    def for_segment(cls, consumer: IConsumer, segment: Segment, first: int = 0,
                    end: int | None = None, **kw: Any) -> SegmentProducer:
        """A producer of ``segment``'s bytes ``first`` to ``end`` (exclusive)."""
        return cls(consumer, segment.slice(first, end), **kw)

    def start(self) -> Deferred[int]:
        self.consumer.registerProducer(self, True)
        if self.turns is None:
            self._pump()
        else:
            # The first piece goes at once (the player's first byte); the rest
            # in the shared turns, so that many requests arriving together
            # never make one long reactor turn.
            self._pump(limit=1)
            if not self.paused and not self.stopped:
                self.turns.wake(self)
        return self._done

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.stopped:
            return
        self.paused = False
        if self.turns is not None:
            self.turns.wake(self)
        else:
            self._pump()

    def pump(self) -> int:
        """Write what the consumer takes now; the bytes written."""
        before = self.sent
        self._pump()
        return self.sent - before

    def stopProducing(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._pieces = []
        # The request still names this producer: let go of it (and of the
        # writer, which holds it too), so that the pair is freed at once
        # rather than by the cyclic collector.
        self._write, self._write_many = _discard, None
        if not self._done.called:
            self._done.errback(ClientGone(f"the client left after {self.sent} of {self.size} bytes"))
        self.consumer = _GONE

    # writing

    def _pump(self, limit: int | None = None) -> None:
        """Write until paused, stopped or done, or once ``limit`` bytes are
        written (re-entry safe: a consumer may pause or resume us from inside
        ``write``)."""
        if self._writing:
            return
        self._writing = True
        stop_at = self.sent + limit if limit is not None else None
        try:
            pieces = self._pieces
            many = self._write_many if limit is None else None
            while not self.paused and not self.stopped and self._index < len(pieces):
                if stop_at is not None and self.sent >= stop_at:
                    break
                index, pos = self._index, self._pos
                piece = pieces[index]
                data = piece if not pos else memoryview(piece)[pos:]
                size = len(data)
                if many is not None and index + 1 < len(pieces):
                    batch = [data]
                    following = index + 1
                    while following < len(pieces) and size < BATCH_BYTES:
                        batch.append(pieces[following])
                        size += len(pieces[following])
                        following += 1
                    taken = many(batch)
                    # Advance over the pieces the socket took whole.
                    left = pos + taken
                    while index < len(pieces) and left >= len(pieces[index]):
                        left -= len(pieces[index])
                        index += 1
                    self._index, self._pos = index, left
                    self.sent += taken
                    if taken < size:
                        break  # the socket is full: the writer paused us
                    continue
                written = self._write(data)
                if written is None or written >= size:
                    written = size
                    self._index += 1
                    self._pos = 0
                else:
                    self._pos = pos + written
                self.sent += written
        finally:
            self._writing = False
        if not self.stopped and self._index >= len(self._pieces) and not self._done.called:
            self.stopped = True
            self._pieces = []
            try:
                self.consumer.unregisterProducer()
            except Exception:
                log.failure("unregistering a segment producer")
            self._done.callback(self.sent)


def _discard(data: Piece) -> int:
    return len(data)


@implementer(IConsumer)
class _Gone:
    """The consumer of a producer whose client left: takes nothing."""

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass


_GONE = _Gone()


#: Most bytes a segment producer offers in one ``write_many`` call (more
#: than a viewer socket's send buffer takes at once).
BATCH_BYTES = 1024 * 1024

#: Bytes the resumed segment producers write per reactor turn, all together
#: (a producer writes until its socket is full, so a turn may go past it by
#: one socket's worth).  Kept small for the same reason as the fan-out's
#: ``DEFAULT_DRAIN_BUDGET``: the turns between which requests are read.
DEFAULT_TURN_BUDGET = 1024 * 1024


class WriteTurns:
    """Writes resumed :class:`SegmentProducer` s in reactor turns of at most
    ``budget`` bytes, oldest wake first.

    A transport resumes its producer while the reactor handles a batch of
    socket events; hundreds of players' sockets turning writable at once
    would make that one turn write hundreds of times a socket buffer, and
    every request waiting behind it (a playlist, a new player) would wait
    that long. Queued here, the writes go out in short turns between which
    the reactor reads new requests.
    """

    def __init__(self, clock: IReactorTime, budget: int = DEFAULT_TURN_BUDGET) -> None:
        self.clock = clock
        self.budget = budget
        self._queue: deque[SegmentProducer] = deque()
        self._queued: set[SegmentProducer] = set()
        self._call: IDelayedCall | None = None
        self.turns = 0

    def wake(self, producer: SegmentProducer) -> None:
        if producer in self._queued:
            return
        self._queued.add(producer)
        self._queue.append(producer)
        if self._call is None:
            self._call = self.clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._call = None
        self.turns += 1
        budget = self.budget
        queue, queued = self._queue, self._queued
        while queue and budget > 0:
            producer = queue.popleft()
            queued.discard(producer)
            if not producer.paused and not producer.stopped:
                budget -= producer.pump()
        if queue and self._call is None:
            self._call = self.clock.callLater(0, self._turn)


def ignore_client_gone(failure: Any) -> None:
    """An errback for :meth:`SegmentProducer.start` when the client leaving
    is no error (it is the common case of a player zapping away)."""
    failure.trap(ClientGone, CancelledError)
    return None
