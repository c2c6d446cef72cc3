"""One channel's shared stream buffer and its viewers' push producers.

The upstream's bytes go through a :class:`~xrelay.relay.mpegts.PacketAligner`
into a :class:`StreamRing`: a bounded run of recent, packet-aligned chunks
with absolute byte offsets. The data is stored once; every viewer is a
:class:`Viewer`, an ``IPushProducer`` registered on its consumer (a
``twisted.web`` request or any ``IConsumer``) that only holds a cursor into
the ring and writes the shared chunk objects (with :mod:`xrelay.http.sockwrite`,
straight from the chunk to the socket).

* A viewer whose socket is full is paused; its cursor stays where it was.
  When the ring drops a chunk that a viewer has not written yet (the viewer
  is more than ``max_behind`` seconds of stream behind live) the viewer is
  evicted with ``abortConnection()``.
* A viewer joining a running channel starts at the latest PAT that is
  followed by a PMT and a keyframe, so its player can decode at once; a
  viewer of a channel that has shown no keyframe yet waits for the first.
* The upstream is paused only while every viewer is paused, and never
  while ``keep_flowing`` is set (a channel's HLS viewers read the stream
  through the ring's observers, not as viewers).
* Publishing a chunk, and resumed viewers, are written in turns of at most
  ``drain_batch`` viewers and ``drain_budget`` bytes, so that the reactor
  keeps serving new viewers between them.

Small upstream reads (providers often write 7 packets at a time) are
coalesced into larger chunks before they are published, which keeps the
number of writes per viewer low; a chunk is published when it reaches
``chunk_bytes`` or ``chunk_delay`` seconds after its first byte.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Protocol

from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from xrelay.relay.mpegts import PACKET_SIZE, AccessPoint, AccessPointScanner, PacketAligner

log = Logger()

DEFAULT_MAX_BEHIND = 10.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 128 * 1024
DEFAULT_CHUNK_DELAY = 0.1
#: At most this many viewers and bytes are written per reactor turn when a
#: chunk is published; the rest wait for the next turn, so that accepting and
#: serving new viewers is never stuck behind a pass over thousands of sockets.
#: 2 MiB is about a millisecond of sendmsg on the benchmark machine: short
#: turns for HLS playlists waiting among 2000 clients (8 MiB made turns of
#: 5-20 ms), yet enough per turn to carry 2000 clients at 8 Mbit/s.
DEFAULT_DRAIN_BATCH = 256
DEFAULT_DRAIN_BUDGET = 2 * 1024 * 1024
#: Seconds a viewer of a channel that has shown no keyframe yet waits for
#: one (data before the first keyframe cannot be decoded anyway).
DEFAULT_KEYFRAME_WAIT = 3.0
#: The ring always keeps at least this much, whatever the bitrate estimate.
MIN_KEEP_BYTES = 512 * 1024
#: Arrivals shorter than this are too short to estimate a bitrate from.
MIN_RATE_WINDOW = 1.0


class Chunk:
    """A sealed, packet-aligned piece of the stream at an absolute offset."""

    __slots__ = ("seq", "start", "data", "stamp")

    def __init__(self, seq: int, start: int, data: bytes, stamp: float) -> None:
        self.seq = seq
        self.start = start
        self.data = data
        self.stamp = stamp

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class StreamRing:
    """Recent chunks of one channel, bounded in stream seconds and bytes.

    Chunks are addressed by sequence number; ``first_seq`` is the oldest one
    still held and ``next_seq`` the one the next seal will get. The bound is
    ``max_behind`` seconds at the measured arrival bitrate, never more than
    ``max_bytes`` and never less than :data:`MIN_KEEP_BYTES`.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_behind: float = DEFAULT_MAX_BEHIND,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._clock = clock
        self.max_behind = max_behind
        self.max_bytes = max_bytes
        self.chunks: dict[int, Chunk] = {}
        self.first_seq = 0
        self.next_seq = 0
        self.head = 0  # absolute offset of the oldest byte held
        self.tail = 0  # absolute offset just after the newest byte held
        self._scanner = AccessPointScanner()
        self._access: deque[AccessPoint] = deque()
        self._rate_samples: deque[tuple[float, int]] = deque()
        #: Called with each new chunk and the access points found in it
        #: (a channel's HLS segmenter reads the stream this way).
        self.observers: list[Callable[[Chunk, list[AccessPoint]], Any]] = []

    @property
    def size(self) -> int:
        return self.tail - self.head

    def bitrate(self) -> float | None:
        """Measured arrival rate in bytes per second (None until known)."""
        samples = self._rate_samples
        if len(samples) < 2:
            return None
        (t0, o0), (t1, o1) = samples[0], samples[-1]
        if t1 - t0 < MIN_RATE_WINDOW:
            return None
        return (o1 - o0) / (t1 - t0)

    def limit(self) -> int:
        """How many bytes the ring may hold right now."""
        rate = self.bitrate()
        if rate is None:
            return self.max_bytes
        return max(MIN_KEEP_BYTES, min(self.max_bytes, int(rate * self.max_behind)))

    def append(self, data: bytes) -> Chunk:
        """Seal ``data`` (whole packets) as the newest chunk, then trim."""
        now = self._clock.seconds()
        chunk = Chunk(self.next_seq, self.tail, data, now)
        self.chunks[chunk.seq] = chunk
        self.next_seq += 1
        self.tail = chunk.end
        points = self._scanner.scan(data, chunk.start)
        self._access.extend(points)
        samples = self._rate_samples
        if not samples:
            samples.append((now, chunk.start))
        samples.append((now, self.tail))
        window = max(self.max_behind, MIN_RATE_WINDOW * 2)
        while len(samples) > 2 and now - samples[1][0] > window:
            samples.popleft()
        self.trim()
        for observer in list(self.observers):
            try:
                observer(chunk, points)
            except Exception:
                log.failure("stream observer of chunk {seq}", seq=chunk.seq)
        return chunk

    def trim(self) -> None:
        limit = self.limit()
        chunks = self.chunks
        # Keep the newest chunk whatever its size.
        while self.first_seq < self.next_seq - 1 and self.size > limit:
            dropped = chunks.pop(self.first_seq)
            self.first_seq += 1
            self.head = dropped.end
        access = self._access
        while access and access[0].offset < self.head:
            access.popleft()

    def locate(self, offset: int) -> tuple[int, int]:
        """(seq, position in chunk) of an absolute offset held by the ring."""
        if offset >= self.tail:
            return self.next_seq, 0
        for seq in range(self.next_seq - 1, self.first_seq - 1, -1):
            chunk = self.chunks[seq]
            if chunk.start <= offset:
                return seq, offset - chunk.start
        return self.first_seq, 0

    def latest_keyframe(self) -> int | None:
        """Offset of the latest PAT followed by a PMT and a keyframe."""
        for point in reversed(self._access):
            if point.keyframe:
                return point.offset
        return None

    def join_offset(self) -> int:
        """Where a new viewer starts: latest keyframe point, else latest PAT,
        else the start of the newest chunk (always a packet boundary)."""
        fallback = None
        for point in reversed(self._access):
            if point.keyframe:
                return point.offset
            if fallback is None:
                fallback = point.offset
        if fallback is not None:
            return fallback
        if self.next_seq > self.first_seq:
            return self.chunks[self.next_seq - 1].start
        return self.tail

    def access_points(self) -> list[AccessPoint]:
        return list(self._access)


class UpstreamControl(Protocol):
    """What the fan-out needs from the channel's upstream reader."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


@implementer(IPushProducer)
class Viewer:
    """One client of a channel: a push producer with a cursor into the ring.

    Holds no stream data of its own. ``detach`` is idempotent and may be
    reached through ``stopProducing``, the request's ``notifyFinish``
    errback, a cancel, an eviction or the channel closing, in any order.
    """

    def __init__(
        self,
        fanout: Fanout,
        consumer: IConsumer,
        *,
        user: str = "",
        address: str = "",
        abort: Callable[[], Any] | None = None,
        finish: Callable[[], Any] | None = None,
        write: Callable[[bytes | memoryview], Any] | None = None,
    ) -> None:
        self.fanout = fanout
        self.consumer = consumer
        # Memoryviews go to a direct writer only (and Twisted's consumers take any
        # buffer, although IConsumer.write says bytes).
        self._write: Callable[[bytes | memoryview], Any] = write or consumer.write  # type: ignore[assignment]
        #: A writer that reports short writes (see xrelay.http.sockwrite).
        self._direct = write is not None
        self.user = user
        self.address = address
        self.started = fanout.clock.seconds()
        self.paused = False
        self.paused_since = 0.0
        self.detached = False
        self.evicted = False
        self.seq = 0
        self.pos = 0
        self.start_offset = 0
        #: Joined before the channel showed a keyframe: waits for the first.
        self.waiting = False
        self.bytes_sent = 0
        self._abort = abort
        self._finish = finish
        self._on_detach: list[Callable[[Viewer], Any]] = []

    def __repr__(self) -> str:
        return f"<Viewer {self.user}@{self.address} on {self.fanout.name}>"

    # IPushProducer

    def pauseProducing(self) -> None:
        if self.paused or self.detached:
            return
        self.paused = True
        self.paused_since = self.fanout.clock.seconds()
        self.fanout._viewer_paused(self)

    def resumeProducing(self) -> None:
        if self.detached:
            return
        if self.paused:
            self.paused = False
            self.fanout._viewer_resumed(self)
        # Not written from here: the transport calls this while handling a
        # batch of socket events; the fan-out's budgeted turns do the writing.
        self.fanout._wake(self)

    def stopProducing(self) -> None:
        self.detach("stopped")

    # stream position

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte this viewer will write."""
        chunk = self.fanout.ring.chunks.get(self.seq)
        return chunk.start + self.pos if chunk is not None else self.fanout.ring.tail

    def behind(self) -> int:
        """Bytes between this viewer's cursor and live."""
        return self.fanout.ring.tail - self.offset

    def on_detach(self, callback: Callable[[Viewer], Any]) -> None:
        if self.detached:
            callback(self)
        else:
            self._on_detach.append(callback)

    def drain(self) -> int:
        """Write from the cursor towards live until caught up or paused;
        returns the number of bytes written.

        ``consumer.write`` may call :meth:`pauseProducing` (or even detach
        us) before it returns, so the flags are re-checked after each write.
        """
        ring = self.fanout.ring
        chunks = ring.chunks
        write = self._write
        written = 0
        while not self.paused and not self.detached and not self.waiting:
            seq = self.seq
            chunk = chunks.get(seq)
            if chunk is None:
                if seq < ring.first_seq:
                    self.evict()
                break
            pos = self.pos
            if not pos:
                data: bytes | memoryview = chunk.data
            elif self._direct:
                data = memoryview(chunk.data)[pos:]
            else:
                # Consumers' writeSequence wants bytes: a joining viewer's
                # first write copies the rest of one chunk, once.
                data = chunk.data[pos:]
            size = len(data)
            taken = write(data)
            if taken is None or taken >= size:
                taken = size
                self.seq = seq + 1
                self.pos = 0
            else:
                # The socket is full: the cursor stays where the kernel
                # stopped and the writer has paused us until it is writable.
                self.pos = pos + taken
            self.bytes_sent += taken
            written += taken
            if taken < size:
                break
        return written

    # leaving

    def evict(self) -> None:
        """Drop a viewer that fell too far behind live: abort, never linger."""
        if self.detached:
            return
        self.evicted = True
        self.fanout.evictions += 1
        log.info(
            "evicted {viewer} from {channel}: more than {seconds}s behind live"
            " ({behind} bytes), {sent} bytes sent",
            viewer=f"{self.user}@{self.address}",
            channel=self.fanout.name,
            seconds=self.fanout.ring.max_behind,
            behind=self.behind(),
            sent=self.bytes_sent,
        )
        self.detach("evicted")
        self._call_abort()

    def close(self, reason: str = "closed") -> None:
        """End this viewer's stream cleanly (channel closed, limit reached)."""
        if self.detached:
            return
        log.info(
            "closing {viewer} on {channel}: {reason}",
            viewer=f"{self.user}@{self.address}",
            channel=self.fanout.name,
            reason=reason,
        )
        self.detach(reason)
        if self._finish is not None:
            try:
                self._finish()
            except Exception:
                log.failure("finishing {viewer}", viewer=repr(self))
                self._call_abort()

    def detach(self, reason: str = "detached") -> None:
        if self.detached:
            return
        self.detached = True
        self.fanout._remove(self)
        try:
            self.consumer.unregisterProducer()
        except Exception:
            # A request whose connection is gone has no channel any more.
            pass
        callbacks, self._on_detach = self._on_detach, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.failure("detach callback for {viewer}", viewer=repr(self))

    def _call_abort(self) -> None:
        abort = self._abort
        if abort is None:
            transport = getattr(self.consumer, "transport", None) or self.consumer
            abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()


class Fanout:
    """A channel's ring, its viewers and the upstream's pause state."""

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        *,
        max_behind: float = DEFAULT_MAX_BEHIND,
        max_bytes: int = DEFAULT_MAX_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        chunk_delay: float = DEFAULT_CHUNK_DELAY,
        drain_batch: int = DEFAULT_DRAIN_BATCH,
        drain_budget: int = DEFAULT_DRAIN_BUDGET,
        keyframe_wait: float = DEFAULT_KEYFRAME_WAIT,
    ) -> None:
        self.name = name
        self.clock = clock
        self.ring = StreamRing(clock, max_behind=max_behind, max_bytes=max_bytes)
        self.aligner = PacketAligner()
        self.chunk_bytes = chunk_bytes
        self.chunk_delay = chunk_delay
        self.viewers: set[Viewer] = set()
        self._paused: set[Viewer] = set()
        self.drain_batch = drain_batch
        self.drain_budget = drain_budget
        self.keyframe_wait = keyframe_wait
        self._waiting: set[Viewer] = set()
        self._keyframe_call: IDelayedCall | None = None
        #: False once waiting for a first keyframe timed out (no keyframes
        #: detectable in this stream); true again when one shows up.
        self._expect_keyframes = True
        self._queue: deque[Viewer] = deque()
        self._queued: set[Viewer] = set()
        self._drain_call: IDelayedCall | None = None
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._seal_call: IDelayedCall | None = None
        self._stall_call: IDelayedCall | None = None
        self._upstream: UpstreamControl | None = None
        self.upstream_paused = False
        self.bytes_in = 0
        self.evictions = 0
        self.on_empty: Callable[[Fanout], Any] | None = None
        #: Called with a reason when a new upstream connection begins.
        self.on_reset: list[Callable[[str], Any]] = []
        #: Set while someone other than the viewers reads the stream: the
        #: upstream is then never paused.
        self.keep_flowing = False

    # upstream side

    def set_upstream(self, upstream: UpstreamControl | None) -> None:
        """Attach the reader of a (new) upstream connection; it inherits the
        current pause state."""
        self._upstream = upstream
        if upstream is not None and self.upstream_paused:
            upstream.pauseProducing()

    def feed(self, data: bytes) -> None:
        """Raw upstream bytes, any size, any alignment."""
        packets = self.aligner.feed(data)
        if packets:
            self._take(packets)

    def feed_packets(self, packets: bytes) -> None:
        """Bytes already known to be whole, sync-checked packets (a provider's
        HLS segment): published without the aligner holding the last packet
        back, in chunks of at most ``chunk_bytes``."""
        step = max(PACKET_SIZE, self.chunk_bytes // PACKET_SIZE * PACKET_SIZE)
        for start in range(0, len(packets), step):
            self._take(packets[start : start + step] if len(packets) > step else packets)

    def _take(self, packets: bytes) -> None:
        self.bytes_in += len(packets)
        self._pending.append(packets)
        self._pending_len += len(packets)
        if self._pending_len >= self.chunk_bytes:
            self.flush()
        elif self._seal_call is None:
            self._seal_call = self.clock.callLater(self.chunk_delay, self.flush)

    def upstream_reset(self, reason: str = "the upstream reconnected") -> None:
        """A new upstream connection begins: publish what the old one sent,
        forget a partial packet and tell the ``on_reset`` hooks."""
        self.flush()
        self.aligner.reset()
        for hook in list(self.on_reset):
            try:
                hook(reason)
            except Exception:
                log.failure("upstream reset hook of {channel}", channel=self.name)

    def set_keep_flowing(self, flowing: bool) -> None:
        """Keep the upstream flowing whatever the viewers do (or stop that)."""
        if flowing == self.keep_flowing:
            return
        self.keep_flowing = flowing
        if flowing:
            self._set_upstream_paused(False)
        elif self.viewers and len(self._paused) == len(self.viewers):
            self._set_upstream_paused(True)

    def flush(self) -> None:
        """Publish the pending data as one chunk and write it to viewers."""
        if self._seal_call is not None:
            if self._seal_call.active():
                self._seal_call.cancel()
            self._seal_call = None
        if not self._pending:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_len = 0
        ring = self.ring
        first = ring.first_seq
        ring.append(data)
        if self._waiting or not self._expect_keyframes:
            keyframe = ring.latest_keyframe()
            if keyframe is not None:
                self._expect_keyframes = True
                self._start_waiting(keyframe)
        if ring.first_seq != first and self._paused:
            for viewer in [v for v in self._paused if v.seq < ring.first_seq]:
                viewer.evict()
        queued = self._queued
        for viewer in self.viewers:
            if not viewer.paused and viewer not in queued:
                queued.add(viewer)
                self._queue.append(viewer)
        self._drain_some()

    def _wake(self, viewer: Viewer) -> None:
        """Queue a viewer that has data to write for the next turn."""
        if viewer.seq >= self.ring.next_seq or viewer in self._queued:
            return
        self._queued.add(viewer)
        self._queue.append(viewer)
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain_some)

    def _drain_some(self) -> None:
        """Write the new data to the next batch of waiting viewers."""
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()
        queue, queued = self._queue, self._queued
        budget = self.drain_budget
        for _ in range(min(self.drain_batch, len(queue))):
            viewer = queue.popleft()
            queued.discard(viewer)
            budget -= viewer.drain()
            if budget <= 0:
                break
        if queue and self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain_some)

    # viewer side

    def attach(
        self,
        consumer: IConsumer,
        *,
        user: str = "",
        address: str = "",
        abort: Callable[[], Any] | None = None,
        finish: Callable[[], Any] | None = None,
        write: Callable[[bytes | memoryview], Any] | None = None,
    ) -> Viewer:
        """Register a new viewer on ``consumer`` and send it its burst.

        ``write`` replaces ``consumer.write`` for the stream data (see
        :mod:`xrelay.http.sockwrite`); the consumer still paces the viewer."""
        viewer = Viewer(self, consumer, user=user, address=address, abort=abort, finish=finish,
                        write=write)
        ring = self.ring
        if ring.latest_keyframe() is None and self._expect_keyframes and self.keyframe_wait > 0:
            # Nothing decodable yet (a channel that just opened): start this
            # viewer at the first keyframe instead of in the middle of a GOP.
            viewer.waiting = True
            viewer.seq = ring.next_seq
            self._waiting.add(viewer)
            if self._keyframe_call is None:
                self._keyframe_call = self.clock.callLater(self.keyframe_wait, self._no_keyframe)
            start = ring.tail
        else:
            start = ring.join_offset()
            viewer.seq, viewer.pos = ring.locate(start)
        viewer.start_offset = start
        self.viewers.add(viewer)
        consumer.registerProducer(viewer, True)
        if self.upstream_paused:
            self._set_upstream_paused(False)
        log.debug(
            "{viewer} joined {channel} {behind} bytes behind live",
            viewer=f"{user}@{address}",
            channel=self.name,
            behind=self.ring.tail - start,
        )
        viewer.drain()
        return viewer

    def _start_waiting(self, offset: int) -> None:
        """Start the viewers waiting for a first keyframe at ``offset``."""
        if self._keyframe_call is not None:
            if self._keyframe_call.active():
                self._keyframe_call.cancel()
            self._keyframe_call = None
        waiting, self._waiting = self._waiting, set()
        seq, pos = self.ring.locate(offset)
        for viewer in waiting:
            if viewer.detached:
                continue
            viewer.waiting = False
            viewer.seq, viewer.pos = seq, pos
            viewer.start_offset = offset
            self._wake(viewer)

    def _no_keyframe(self) -> None:
        self._keyframe_call = None
        log.info("channel {channel}: no keyframe within {seconds}s; starting viewers anyway",
                 channel=self.name, seconds=self.keyframe_wait)
        self._expect_keyframes = False
        self._start_waiting(self.ring.join_offset())

    def close(self, reason: str = "channel closed") -> None:
        """Close every viewer cleanly."""
        for viewer in list(self.viewers):
            viewer.close(reason)
        self._cancel_timers()

    def _viewer_paused(self, viewer: Viewer) -> None:
        self._paused.add(viewer)
        if len(self._paused) == len(self.viewers):
            self._set_upstream_paused(True)

    def _viewer_resumed(self, viewer: Viewer) -> None:
        self._paused.discard(viewer)
        if self.upstream_paused:
            self._set_upstream_paused(False)

    def _remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        self._paused.discard(viewer)
        self._waiting.discard(viewer)
        self._queued.discard(viewer)  # a stale queue entry is skipped by drain()
        if not self.viewers:
            self._set_upstream_paused(False)
            if self.on_empty is not None:
                self.on_empty(self)
        elif len(self._paused) == len(self.viewers):
            self._set_upstream_paused(True)

    def _set_upstream_paused(self, paused: bool) -> None:
        if paused == self.upstream_paused or (paused and self.keep_flowing):
            return
        self.upstream_paused = paused
        if paused:
            # Nothing arrives while paused, so the ring cannot drop what a
            # stalled viewer needs: time the stall instead.
            oldest = min((v.paused_since for v in self._paused), default=self.clock.seconds())
            delay = max(0.0, oldest + self.ring.max_behind - self.clock.seconds())
            self._stall_call = self.clock.callLater(delay, self._evict_stalled)
        elif self._stall_call is not None:
            if self._stall_call.active():
                self._stall_call.cancel()
            self._stall_call = None
        if self._upstream is not None:
            if paused:
                self._upstream.pauseProducing()
            else:
                self._upstream.resumeProducing()

    def _evict_stalled(self) -> None:
        self._stall_call = None
        limit = self.clock.seconds() - self.ring.max_behind
        for viewer in [v for v in self._paused if v.paused_since <= limit]:
            viewer.evict()
        if self.upstream_paused and self._stall_call is None:
            oldest = min(v.paused_since for v in self._paused)
            delay = max(0.0, oldest + self.ring.max_behind - self.clock.seconds())
            self._stall_call = self.clock.callLater(delay, self._evict_stalled)

    def _cancel_timers(self) -> None:
        for call in (self._seal_call, self._stall_call, self._drain_call, self._keyframe_call):
            if call is not None and call.active():
                call.cancel()
        self._seal_call = self._stall_call = self._drain_call = self._keyframe_call = None
        self._queue.clear()
        self._queued.clear()

    def iter_viewers(self) -> Iterator[Viewer]:
        return iter(sorted(self.viewers, key=lambda v: v.started))
