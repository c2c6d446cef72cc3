"""Live HLS segments cut from a channel's shared stream buffer.

A :class:`Segmenter` is fed every chunk the channel's ring publishes, with
the access points the ring's scanner found in it (:meth:`Segmenter.publish`),
and an explicit :meth:`Segmenter.reset` when the upstream reconnects. It
never copies stream data: a :class:`Segment` is the run of shared chunk bytes
between two cut points (whole chunks as the ring's own ``bytes``, partial ones
as ``memoryview`` slices of them), so it keeps those chunks alive after the
ring dropped them; what it holds is bounded by the window, the grace period
and one open segment.

Cut points
    A segment starts at an access point: a PAT followed by a PMT and a video
    keyframe, so a player can decode it at once. The segmenter cuts at the
    keyframe nearest to the aimed duration (``segment``, default 4 s), and
    earlier if waiting for the next keyframe (at the last GOP length) would
    exceed the target duration. A channel without detectable keyframes
    (``keyframe_wait`` seconds of stream without one: audio-only channels,
    unflagged video) is cut at PES starts of its timing stream instead, each
    segment prefixed with the latest PAT and PMT. Cuts fall on packet
    boundaries only.

Target duration
    ``#EXT-X-TARGETDURATION`` may never change, so it is frozen when the first
    segment is cut: ``target`` if given, else the largest of 1.5 x ``segment``,
    1.25 x the longest GOP seen so far and the first segment's duration
    (rounded up, at most ``max_target``). A segment never lasts longer: when a
    GOP outruns it, the segment is *forced* to end at the last frame start that
    fits and the next one begins there, prefixed with the PAT and PMT (it
    starts mid-GOP: the only case where a segment is not decodable at once).

Time
    Durations come from the stream itself: the DTS/PTS of the timing stream
    (video, else audio), unwrapped and checked for jumps by
    :class:`~xrelay.relay.pes_timing.TimingTracker`. They are exact and
    independent of network jitter and of the upstream being paused. A stream
    that shows no PES timestamp for ``probe`` seconds (scrambled, or
    unusual) falls back to the arrival times of the chunks (``Chunk.stamp``).
    ``#EXT-X-PROGRAM-DATE-TIME`` is the arrival time of the first segment
    after each start or break, then advances by the segments' durations (it is
    re-anchored on arrival time when the two drift apart by more than one
    target duration).

Breaks
    An upstream reconnect (:meth:`Segmenter.reset`), a timestamp jump (back
    by more than 1 s or forward by more than 5 s), or a change of timing
    source ends the open segment where the old stream ended; the next segment
    starts at the next access point and carries ``#EXT-X-DISCONTINUITY``.
    Media sequence numbers only grow (``first_sequence`` lets a reopened
    channel continue its old numbering).

Window
    The playlist lists the newest ``window`` segments (more when those last
    less than three target durations, RFC 8216 6.2.2). A segment that left it
    stays fetchable for its duration plus the playlist's duration (or
    ``grace`` seconds if given), then :meth:`Segmenter.get` answers None;
    sooner, oldest first, while the window and those segments hold more than
    ``max_held_bytes``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from xrelay.relay.fanout import Chunk
from xrelay.relay.mpegts import AccessPoint
from xrelay.relay.pes_timing import Mark, TimingTracker

log = Logger()

DEFAULT_SEGMENT = 4.0
DEFAULT_WINDOW = 6
DEFAULT_MAX_TARGET = 15
DEFAULT_KEYFRAME_WAIT = 5.0
DEFAULT_PROBE = 3.0
DEFAULT_MAX_SEGMENT_BYTES = 48 * 1024 * 1024
#: RFC 8216 6.2.2: a live playlist lasts at least this many target durations.
MIN_PLAYLIST_TARGETS = 3
#: The window never holds more than this many times ``window`` segments.
MAX_WINDOW_FACTOR = 4
#: No keyframe cut makes a segment shorter than this (or half the aim):
#: after a forced cut, the keyframe just after it stays inside the segment.
MIN_SEGMENT = 1.0
#: Durations closer than this are equal (timestamps are 90 kHz ticks and
#: arrival times floats).
EPSILON = 0.001

Piece = bytes | memoryview


@dataclass(frozen=True, eq=False)
class Segment:
    """One media segment: shared stream bytes and what the playlist says."""

    sequence: int
    #: The data, in order: an optional PAT+PMT prefix, then chunk slices.
    pieces: tuple[Piece, ...]
    size: int
    duration: float
    #: Wall-clock time (UNIX seconds) of its first byte.
    program_time: float
    #: ``#EXT-X-DISCONTINUITY`` precedes it.
    discontinuity: bool
    #: Its discontinuity sequence number (counting tagged segments).
    discontinuity_number: int
    #: It starts at a PAT, PMT and keyframe.
    keyframe: bool
    #: Cut early to respect the target duration (starts mid-GOP).
    forced: bool = False

    def slice(self, first: int = 0, end: int | None = None) -> list[Piece]:
        """The pieces covering bytes ``first`` to ``end`` (exclusive) of the
        segment (for a Range request); views, never copies."""
        stop = self.size if end is None else min(end, self.size)
        if first <= 0 and stop >= self.size:
            return list(self.pieces)
        out: list[Piece] = []
        pos = 0
        for piece in self.pieces:
            size = len(piece)
            lo, hi = max(first - pos, 0), min(stop - pos, size)
            if lo < hi:
                out.append(piece if (lo, hi) == (0, size) else memoryview(piece)[lo:hi])
            pos += size
            if pos >= stop:
                break
        return out


@dataclass(frozen=True)
class PlaylistWindow:
    """What one media playlist shows (see :func:`xrelay.relay.hls_live.render_playlist`)."""

    target: int
    media_sequence: int
    discontinuity_sequence: int
    segments: tuple[Segment, ...]
    #: Grows with every change of the window (for caching rendered text).
    version: int


class _Slice(NamedTuple):
    data: bytes
    base: int  # absolute offset of data[0]
    lo: int  # absolute offsets of the part held
    hi: int
    stamp: float

    def piece(self) -> Piece:
        if self.lo == self.base and self.hi == self.base + len(self.data):
            return self.data
        return memoryview(self.data)[self.lo - self.base : self.hi - self.base]


class _Open:
    """The segment being built: where it starts and what is known of it."""

    __slots__ = ("start", "prefix", "discontinuity", "keyframe", "forced", "start_time", "stamp")

    def __init__(self, start: int, prefix: bytes, *, discontinuity: bool, keyframe: bool,
                 forced: bool, start_time: float | None, stamp: float) -> None:
        self.start = start
        self.prefix = prefix
        self.discontinuity = discontinuity
        self.keyframe = keyframe
        self.forced = forced
        #: Media time of its first mark (None until one was seen).
        self.start_time = start_time
        #: Arrival time of its first byte.
        self.stamp = stamp


class Segmenter:
    """One channel's live HLS segments; see the module docstring."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        name: str = "",
        segment: float = DEFAULT_SEGMENT,
        window: int = DEFAULT_WINDOW,
        target: int | None = None,
        max_target: int = DEFAULT_MAX_TARGET,
        grace: float | None = None,
        keyframe_wait: float = DEFAULT_KEYFRAME_WAIT,
        probe: float = DEFAULT_PROBE,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        first_sequence: int = 0,
        discontinuity_sequence: int = 0,
        discontinuous_start: bool = False,
        timing: TimingTracker | None = None,
        max_held_bytes: int | None = None,
    ) -> None:
        if segment <= 0 or window < 1:
            raise ValueError("segment must be positive and window at least 1")
        self.clock = clock
        self.name = name
        self.aim = segment
        self.window_size = window
        self.max_target = max(max_target, math.ceil(segment))
        #: EXT-X-TARGETDURATION, frozen when the first segment is cut.
        self.target: int | None = target
        self.grace = grace
        self.keyframe_wait = keyframe_wait
        self.probe = probe
        self.max_segment_bytes = max_segment_bytes
        #: Segments that left the window are forgotten early (oldest first)
        #: while the window and they hold more than this.
        self.max_held_bytes = max_held_bytes
        self.timing = timing or TimingTracker()
        self.next_sequence = first_sequence
        self._dseq = discontinuity_sequence
        self._next_discontinuity = discontinuous_start
        self.window: deque[Segment] = deque()
        self._window_duration = 0.0
        self._retired: dict[int, tuple[Segment, float]] = {}
        self.version = 0
        self.closed = False
        self.close_reason = ""
        self._listeners: list[Callable[[Segment | None], Any]] = []
        # what is held: the open segment's data, or (waiting) recent data
        self._slices: list[_Slice] = []
        self._marks: list[Mark] = []
        self._seg: _Open | None = None
        self._lookahead: list[Mark] = []
        self._deferred: AccessPoint | None = None
        self._stamp = 0.0
        self._keyframe_mode = True
        self._wait_since: float | None = None
        self._last_pat: int | None = None
        self._timebase = "pts"
        self._pts_seen_at: float | None = None
        self._data_since: float | None = None
        self._gop: float | None = None
        #: Media time of the latest keyframe (None after a break).
        self._key_time: float | None = None
        self._gop_max = 0.0
        # counters
        self.segments_cut = 0
        self.forced_cuts = 0
        self.discontinuities = 0

    # -- observers ---------------------------------------------------------------

    def listen(self, callback: Callable[[Segment | None], Any]) -> None:
        """Call ``callback(segment)`` for each new segment, and
        ``callback(None)`` once when the segmenter closes."""
        if self.closed:
            callback(None)
        else:
            self._listeners.append(callback)

    def unlisten(self, callback: Callable[[Segment | None], Any]) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            pass

    # -- reading -------------------------------------------------------------------

    @property
    def latest(self) -> Segment | None:
        return self.window[-1] if self.window else None

    @property
    def media_sequence(self) -> int:
        """Sequence number of the first segment listed (next one if none)."""
        return self.window[0].sequence if self.window else self.next_sequence

    @property
    def discontinuity_sequence(self) -> int:
        if not self.window:
            return self._dseq
        first = self.window[0]
        return first.discontinuity_number - (1 if first.discontinuity else 0)

    def playlist(self) -> PlaylistWindow | None:
        """The current window, or None before the first segment."""
        if not self.window or self.target is None:
            return None
        return PlaylistWindow(self.target, self.media_sequence, self.discontinuity_sequence,
                              tuple(self.window), self.version)

    def get(self, sequence: int) -> Segment | None:
        """A segment in the window or still in its grace period, else None."""
        window = self.window
        if window:
            index = sequence - window[0].sequence
            if 0 <= index < len(window):
                return window[index]
        found = self._retired.get(sequence)
        if found is None:
            return None
        segment, expires = found
        if self.clock.seconds() >= expires:
            del self._retired[sequence]
            return None
        return segment

    def continuation(self) -> dict[str, Any]:
        """Keyword arguments for the segmenter of the same channel reopened
        later, so that its playlist's numbers never go back."""
        return {"first_sequence": self.next_sequence, "discontinuity_sequence": self._dseq,
                "discontinuous_start": self.segments_cut > 0 or self._next_discontinuity}

    def held_bytes(self) -> int:
        """Stream bytes referenced by the window, the grace list and the open
        segment (a chunk shared by two segments counts twice)."""
        held = sum(s.size for s in self.window) + sum(s.size for s, _ in self._retired.values())
        return held + sum(s.hi - s.lo for s in self._slices)

    def snapshot(self) -> dict[str, Any]:
        return {
            "target_duration": self.target,
            "media_sequence": self.media_sequence,
            "discontinuity_sequence": self.discontinuity_sequence,
            "segments": len(self.window),
            "window_seconds": round(self._window_duration, 3),
            "segments_cut": self.segments_cut,
            "forced_cuts": self.forced_cuts,
            "discontinuities": self.discontinuities,
            "keyframes": self._keyframe_mode,
            "timebase": self._timebase,
            "held_bytes": self.held_bytes(),
        }

    # -- feeding ---------------------------------------------------------------------

    def publish(self, chunk: Chunk, points: Sequence[AccessPoint] = ()) -> None:
        """A chunk the ring just sealed, with the access points found in it
        (an access point's offset may lie in an earlier chunk)."""
        if self.closed:
            return
        stamp = chunk.stamp
        self._stamp = stamp
        if self._data_since is None:
            self._data_since = stamp
        if self._wait_since is None and self._seg is None:
            self._wait_since = stamp
        marks = self.timing.scan(chunk.data, chunk.start)
        self._choose_timebase(marks, stamp)
        if self._timebase == "clock":
            marks = [Mark(chunk.start, stamp)]
        seg = self._seg
        if seg is not None and self._held_size() + len(chunk.data) > self.max_segment_bytes:
            self._break(chunk.start, self._end_time(), "a segment grew too big")
        self._slices.append(_Slice(chunk.data, chunk.start, chunk.start, chunk.end, stamp))
        if (self._seg is None and self._keyframe_mode and self.keyframe_wait >= 0
                and self._wait_since is not None and stamp - self._wait_since > self.keyframe_wait):
            self._keyframe_mode = False
            log.info("HLS {channel}: no keyframe in {seconds}s of stream; cutting at frame starts",
                     channel=self.name, seconds=self.keyframe_wait)
        events: list[tuple[int, int, Mark | AccessPoint]] = [(m.offset, 1, m) for m in marks]
        events.extend((p.offset, 0, p) for p in points)
        events.sort(key=lambda e: (e[0], e[1]))
        self._lookahead = marks
        for _, kind, event in events:
            if kind:
                assert isinstance(event, Mark)
                self._on_mark(event)
            else:
                assert isinstance(event, AccessPoint)
                self._on_access(event)
        self._lookahead = []
        if self._seg is None:
            self._trim_waiting(chunk.start)

    def prime(self, chunks: Iterable[Chunk], points: Iterable[AccessPoint]) -> None:
        """Replay what a running channel's ring still holds (oldest first), so
        that a first HLS client need not wait for fresh segments."""
        pending = sorted(points, key=lambda p: p.offset)
        index = 0
        for chunk in chunks:
            mine = []
            while index < len(pending) and pending[index].offset < chunk.end:
                if pending[index].offset >= chunk.start:
                    mine.append(pending[index])
                index += 1
            self.publish(chunk, mine)

    def reset(self, reason: str = "the upstream reconnected") -> None:
        """The stream continues from a new source: end the open segment here;
        the next one starts at the next access point, with a discontinuity."""
        if self.closed:
            return
        tail = self._slices[-1].hi if self._slices else 0
        if self._seg is not None:
            self._break(tail, self._end_time(), reason)
        else:
            self._slices.clear()
            self._marks.clear()
            self._next_discontinuity = self._next_discontinuity or self.segments_cut > 0
        self.timing.reset()
        self._deferred = None
        self._last_pat = None
        self._wait_since = None
        self._data_since = None
        self._pts_seen_at = None

    def close(self, reason: str = "the channel closed") -> None:
        """Forget every segment and tell the listeners (with None)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.window.clear()
        self._retired.clear()
        self._slices.clear()
        self._marks.clear()
        self._seg = None
        listeners, self._listeners = self._listeners, []
        for callback in listeners:
            try:
                callback(None)
            except Exception:
                log.failure("HLS {channel}: close listener", channel=self.name)

    # -- timing ------------------------------------------------------------------------

    def _choose_timebase(self, marks: list[Mark], stamp: float) -> None:
        if marks:
            self._pts_seen_at = stamp
            if self._timebase == "clock":
                self._switch_timebase("pts", "the stream shows timestamps again")
            return
        if self._timebase != "pts":
            return
        since = self._pts_seen_at if self._pts_seen_at is not None else self._data_since
        if since is not None and stamp - since > self.probe:
            self._switch_timebase("clock", f"no timestamps for {self.probe:g}s")

    def _switch_timebase(self, timebase: str, reason: str) -> None:
        log.info("HLS {channel}: timing segments by {timebase}: {reason}", channel=self.name,
                 timebase="arrival time" if timebase == "clock" else "stream timestamps",
                 reason=reason)
        if self._seg is not None:
            tail = self._slices[-1].hi if self._slices else 0
            self._break(tail, self._end_time(), reason)
        self._timebase = timebase
        self._marks.clear()
        self._deferred = None

    def _end_time(self) -> float:
        """Media time just after the last data held (for a break)."""
        if self._timebase == "clock":
            return self._stamp
        if self._marks:
            return self._marks[-1].time + self.timing.frame
        return self._seg.start_time if self._seg is not None and self._seg.start_time else 0.0

    def _time_at(self, offset: int) -> float | None:
        """Media time of the first mark at or after ``offset``."""
        marks = self._marks
        i = bisect_left(marks, offset, key=lambda m: m.offset)
        if i < len(marks):
            return marks[i].time
        for mark in self._lookahead:
            if mark.offset >= offset:
                return mark.time
        return None

    def _limit(self) -> float:
        return float(self.target if self.target is not None else self.max_target)

    # -- events ---------------------------------------------------------------------------

    def _on_access(self, point: AccessPoint) -> None:
        if point.keyframe and not self._keyframe_mode:
            log.info("HLS {channel}: keyframes found; cutting at keyframes", channel=self.name)
            self._keyframe_mode = True
        seg = self._seg
        if seg is None:
            if point.keyframe or not self._keyframe_mode:
                self._start(point.offset, keyframe=point.keyframe, prefix=b"")
            else:
                self._last_pat = point.offset
            return
        if not point.keyframe or point.offset <= seg.start:
            return
        time = self._time_at(point.offset)
        if time is None:
            if self._timebase == "clock":
                time = self._stamp
            else:
                self._deferred = point  # decided at the keyframe's own PES start
                return
        self._keyframe(point.offset, time)

    def _keyframe(self, offset: int, time: float) -> None:
        seg = self._seg
        assert seg is not None
        if seg.start_time is None:
            return
        elapsed = time - seg.start_time
        if elapsed <= 0:
            return
        if elapsed > self._limit() + EPSILON:
            # This GOP outran the target: end at the last frame start that fits.
            self._force(offset)
            seg = self._seg
            if seg is None or seg.start_time is None:
                return
            elapsed = time - seg.start_time
            if elapsed <= 0:
                return
        last = self._key_time
        self._key_time = time
        if last is not None and time > last:
            self._gop = time - last
            self._gop_max = max(self._gop_max, self._gop)
        gop = self._gop
        aim = self.aim - EPSILON
        if elapsed >= min(MIN_SEGMENT, self.aim / 2) and (
                elapsed >= aim
                or (gop is not None and elapsed + gop / 2 >= aim)
                or (gop is not None and elapsed + gop > self._limit() + EPSILON)):
            self._cut(offset, time, keyframe=True, prefix=b"")

    def _on_mark(self, mark: Mark) -> None:
        deferred = self._deferred
        if deferred is not None and mark.offset >= deferred.offset:
            self._deferred = None
            if self._seg is not None and deferred.offset > self._seg.start:
                self._keyframe(deferred.offset, mark.time)
        if mark.jump:
            self._break(mark.offset, mark.time, "the stream's timestamps jumped")
        seg = self._seg
        if seg is None:
            self._marks.append(mark)
            if not self._keyframe_mode:
                self._start(mark.offset, keyframe=False, prefix=self.timing.psi)
            return
        if seg.start_time is None:
            seg.start_time = mark.time
            if seg.keyframe:
                self._key_time = mark.time
        elapsed = mark.time - seg.start_time
        if elapsed > self._limit() + EPSILON:
            self._force(mark.offset)
        elif (not self._keyframe_mode and mark.offset > seg.start
              and elapsed + self.timing.frame / 2 >= self.aim - EPSILON):
            self._cut(mark.offset, mark.time, keyframe=False, prefix=self.timing.psi)
        self._marks.append(mark)
        seg = self._seg
        if seg is not None and seg.start_time is None:
            seg.start_time = mark.time

    # -- cutting ------------------------------------------------------------------------------

    def _held_size(self) -> int:
        return sum(s.hi - s.lo for s in self._slices)

    def _start(self, offset: int, *, keyframe: bool, prefix: bytes, forced: bool = False,
               start_time: float | None = None) -> None:
        """Open a segment at ``offset`` (dropping the data held before it)."""
        slices = self._slices
        if not slices or offset < slices[0].lo or offset > slices[-1].hi:
            return  # that data is gone (or not here yet)
        before, after = _split(slices, offset)
        self._slices = after
        self._marks = [m for m in self._marks if m.offset >= offset]
        if start_time is None and self._marks:
            start_time = self._marks[0].time
        if start_time is None and self._timebase == "clock":
            start_time = self._stamp
        stamp = after[0].stamp if after else self._stamp
        self._seg = _Open(offset, prefix, discontinuity=self._next_discontinuity, keyframe=keyframe,
                          forced=forced, start_time=start_time, stamp=stamp)
        if keyframe and start_time is not None:
            self._key_time = start_time
        self._next_discontinuity = False
        self._wait_since = None

    def _cut(self, offset: int, time: float, *, keyframe: bool, prefix: bytes,
             forced: bool = False) -> None:
        """Close the open segment at ``offset`` (media time ``time``) and
        open the next one there."""
        seg = self._seg
        assert seg is not None and seg.start_time is not None
        before, after = _split(self._slices, offset)
        self._finish(seg, before, time - seg.start_time)
        self._slices = after
        self._marks = [m for m in self._marks if m.offset >= offset]
        stamp = after[0].stamp if after else self._stamp
        self._seg = _Open(offset, prefix, discontinuity=False, keyframe=keyframe, forced=forced,
                          start_time=time, stamp=stamp)

    def _force(self, before: int) -> None:
        """End the open segment at the last mark before ``before`` that
        is later than its start (the longest piece within the target)."""
        seg = self._seg
        assert seg is not None and seg.start_time is not None
        candidates = [m for m in self._marks if seg.start < m.offset < before and m.time > seg.start_time]
        if candidates:
            at = candidates[-1]
            offset, time = at.offset, at.time
        else:
            # Not a single frame start inside: end just before ``before``.
            found = self._time_at(before)
            if found is None or before <= seg.start:
                return
            offset, time = before, found
        log.debug("HLS {channel}: forced cut ({limit}s target reached before a keyframe)",
                  channel=self.name, limit=self._limit())
        self._cut(offset, time, keyframe=False, prefix=self.timing.psi, forced=True)

    def _break(self, offset: int, end_time: float, reason: str) -> None:
        """End the open segment at ``offset``; wait for a new start point."""
        seg = self._seg
        log.info("HLS {channel}: discontinuity: {reason}", channel=self.name, reason=reason)
        if seg is not None:
            before, after = _split(self._slices, offset)
            if seg.start_time is not None and end_time > seg.start_time and before:
                self._finish(seg, before, end_time - seg.start_time)
            self._slices = after
            self._marks = [m for m in self._marks if m.offset >= offset]
        self._seg = None
        self._deferred = None
        self._wait_since = None
        self._last_pat = None
        self._key_time = None
        self._next_discontinuity = self._next_discontinuity or self.segments_cut > 0

    def _trim_waiting(self, chunk_start: int) -> None:
        """While waiting for a start point keep only what one could use: data
        from the latest PAT on (else the newest chunk)."""
        keep = self._last_pat if self._last_pat is not None else chunk_start
        if self._slices and self._slices[0].lo < keep:
            _, self._slices = _split(self._slices, keep)
            self._marks = [m for m in self._marks if m.offset >= keep]

    def _finish(self, seg: _Open, slices: list[_Slice], duration: float) -> None:
        """Publish a closed segment."""
        pieces: list[Piece] = [seg.prefix] if seg.prefix else []
        pieces.extend(s.piece() for s in slices)
        size = sum(len(p) for p in pieces)
        if not size or duration <= 0:
            return
        previous = self.window[-1] if self.window else None
        if self.target is None:
            target = max(math.ceil(self.aim * 1.5), math.ceil(self._gop_max * 1.25),
                         math.ceil(duration - 1e-6))
            self.target = min(self.max_target, target)
            log.info("HLS {channel}: target duration {target}s (GOP {gop:.2f}s)", channel=self.name,
                     target=self.target, gop=self._gop_max)
        program_time = seg.stamp
        if previous is not None and not seg.discontinuity:
            expected = previous.program_time + previous.duration
            if abs(expected - seg.stamp) <= self.target:
                program_time = expected
        if seg.discontinuity:
            self._dseq += 1
            self.discontinuities += 1
        segment = Segment(
            sequence=self.next_sequence,
            pieces=tuple(pieces),
            size=size,
            duration=duration,
            program_time=program_time,
            discontinuity=seg.discontinuity,
            discontinuity_number=self._dseq,
            keyframe=seg.keyframe,
            forced=seg.forced,
        )
        self.next_sequence += 1
        self.segments_cut += 1
        if seg.forced:
            self.forced_cuts += 1
        self._push(segment)

    def _push(self, segment: Segment) -> None:
        window = self.window
        window.append(segment)
        self._window_duration += segment.duration
        now = self.clock.seconds()
        assert self.target is not None
        floor = MIN_PLAYLIST_TARGETS * self.target
        cap = self.window_size * MAX_WINDOW_FACTOR
        while len(window) > self.window_size:
            rest = self._window_duration - window[0].duration
            if rest < floor and len(window) <= cap:
                break
            old = window.popleft()
            self._window_duration = rest
            grace = self.grace if self.grace is not None else old.duration + rest
            self._retired[old.sequence] = (old, now + grace)
        for sequence in [s for s, (_, t) in self._retired.items() if t <= now]:
            del self._retired[sequence]
        if self.max_held_bytes is not None and self._retired:
            held = sum(s.size for s in window) + sum(s.size for s, _ in self._retired.values())
            for sequence in sorted(self._retired):
                if held <= self.max_held_bytes:
                    break
                held -= self._retired.pop(sequence)[0].size
        self.version += 1
        for callback in list(self._listeners):
            try:
                callback(segment)
            except Exception:
                log.failure("HLS {channel}: segment listener", channel=self.name)


def _split(slices: list[_Slice], offset: int) -> tuple[list[_Slice], list[_Slice]]:
    """The slices before and from absolute ``offset``, splitting one if needed."""
    for i, s in enumerate(slices):
        if s.hi <= offset:
            continue
        if s.lo >= offset:
            return slices[:i], slices[i:]
        return slices[:i] + [s._replace(hi=offset)], [s._replace(lo=offset)] + slices[i + 1 :]
    return list(slices), []
