"""Status clips: a short MPEG-TS card played to a player instead of a bare refusal.

A player shown a 503 spins or freezes; one shown a few seconds of video that
says "All connections are in use" tells its viewer why. The clips are small
MPEG-TS files made once by ``tools/make_status_clips.sh`` and shipped as
package data (no ffmpeg at run time); a directory of replacements may be
configured. Each is checked when loaded (:func:`parse_clip`): whole 188-byte
packets, PAT then PMT before any elementary stream, the first video packet a
keyframe, timestamps that give a loop period.

:class:`ClipProducer` writes one clip to a consumer at real time (paced by
the clip's PCR, driven by the clock it is given), looping it for a bounded
time and then finishing. Each loop keeps every PID's continuity counter
running, adds the loop period to PTS, DTS and PCR, and carries the
discontinuity indicator on the first packet of every PID, so a player sees
one continuous stream. :class:`StatusClips` answers a request with one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from xrelay.relay.mpegts import (
    NULL_PID,
    PACKET_SIZE,
    PAT_PID,
    VIDEO_STREAM_TYPES,
    is_aligned,
    is_random_access,
    packet_pid,
    parse_pat,
    parse_pmt,
)

__all__ = [
    "BUSY",
    "CLIP_REASONS",
    "Clip",
    "ClipError",
    "ClipProducer",
    "DEFAULT_LIMIT",
    "EXPIRED",
    "StatusClips",
    "UNAVAILABLE",
    "load_clip",
    "load_clips",
    "parse_clip",
]

log = Logger()

BUSY = "busy"  #: no provider slot after the zap rule
UNAVAILABLE = "unavailable"  #: the provider failed the channel before its first packet
EXPIRED = "expired"  #: the user's account expired
CLIP_REASONS = (BUSY, UNAVAILABLE, EXPIRED)

#: Seconds of clip played before the response ends.
DEFAULT_LIMIT = 20.0
#: Seconds of stream sent ahead of real time (the player's start-up buffer).
DEFAULT_LEAD = 1.0
#: Seconds between two writes.
DEFAULT_TICK = 0.2
#: Seconds past the limit a stalled client is given before it is dropped.
DEFAULT_GRACE = 10.0

MAX_CLIP_BYTES = 4 * 1024 * 1024
MIN_PERIOD = 0.5
MAX_PERIOD = 60.0

_TS_WRAP = 1 << 33
_PCR_HZ = 27_000_000
_PTS_HZ = 90_000
#: DVB service information PIDs (NIT, SDT, EIT...) that may precede the PAT.
_SI_PIDS = range(0x10, 0x20)
#: PES stream ids without the optional header (so without timestamps).
_NO_PES_HEADER = frozenset({0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF})


class ClipError(ValueError):
    """A clip file that cannot be played; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class _Packet:
    """Where one packet of a clip is and what must be rewritten in it."""

    offset: int  # in Clip.data
    pid: int
    payload: bool  # carries a payload (its continuity counter counts)
    send: float  # seconds after the loop's start when it is due
    pcr_at: int  # offset of the PCR in the packet, or -1
    pts_at: int  # offset of the PTS in the packet, or -1
    dts_at: int  # offset of the DTS in the packet, or -1


@dataclass(frozen=True)
class Clip:
    """A validated clip, ready to be looped."""

    name: str
    data: bytes
    packets: tuple[_Packet, ...]
    #: Loop period in 90 kHz ticks (added to every timestamp at each wrap).
    period: int

    @property
    def duration(self) -> float:
        """Seconds of one loop."""
        return self.period / _PTS_HZ

    def __repr__(self) -> str:
        return f"<Clip {self.name} {len(self.data)} bytes {self.duration:.2f} s>"


# -- parsing ---------------------------------------------------------------


def _adaptation(packet: bytes | bytearray) -> tuple[int, int]:
    """(adaptation_field_control, offset of the payload)."""
    afc = (packet[3] >> 4) & 0x3
    pos = 4
    if afc & 0x2:
        pos += 1 + packet[4]
    return afc, pos


def _read_ts(b: bytes | bytearray, at: int) -> int:
    return (
        ((b[at] >> 1) & 0x07) << 30
        | b[at + 1] << 22
        | (b[at + 2] >> 1) << 15
        | b[at + 3] << 7
        | b[at + 4] >> 1
    )


def _write_ts(b: bytearray, at: int, value: int) -> None:
    value %= _TS_WRAP
    b[at] = (b[at] & 0xF0) | ((value >> 29) & 0x0E) | 0x01
    b[at + 1] = (value >> 22) & 0xFF
    b[at + 2] = ((value >> 14) & 0xFE) | 0x01
    b[at + 3] = (value >> 7) & 0xFF
    b[at + 4] = ((value << 1) & 0xFE) | 0x01


def _read_pcr_base(b: bytes | bytearray, at: int) -> int:
    return b[at] << 25 | b[at + 1] << 17 | b[at + 2] << 9 | b[at + 3] << 1 | b[at + 4] >> 7


def _read_pcr(b: bytes | bytearray, at: int) -> int:
    """The PCR at ``at`` in 27 MHz units."""
    return _read_pcr_base(b, at) * 300 + (((b[at + 4] & 0x01) << 8) | b[at + 5])


def _write_pcr_base(b: bytearray, at: int, base: int) -> None:
    base %= _TS_WRAP
    b[at] = (base >> 25) & 0xFF
    b[at + 1] = (base >> 17) & 0xFF
    b[at + 2] = (base >> 9) & 0xFF
    b[at + 3] = (base >> 1) & 0xFF
    b[at + 4] = ((base << 7) & 0x80) | (b[at + 4] & 0x7F)


def _pcr_offset(packet: bytes | bytearray) -> int:
    afc = (packet[3] >> 4) & 0x3
    if afc & 0x2 and packet[4] >= 7 and packet[5] & 0x10:
        return 6
    return -1


def _pes_offsets(packet: bytes | bytearray) -> tuple[int, int]:
    """Offsets of the PTS and DTS in a packet starting a PES (-1 if none)."""
    if not packet[1] & 0x40:
        return -1, -1
    afc, pos = _adaptation(packet)
    if not afc & 0x1 or pos + 14 > PACKET_SIZE:
        return -1, -1
    if packet[pos : pos + 3] != b"\x00\x00\x01" or packet[pos + 3] in _NO_PES_HEADER:
        return -1, -1
    if packet[pos + 3] < 0xBD or packet[pos + 6] & 0xC0 != 0x80:
        return -1, -1
    flags = packet[pos + 7] >> 6
    pts = pos + 9 if flags & 0x2 else -1
    dts = pos + 14 if flags == 0x3 and pos + 19 <= PACKET_SIZE else -1
    return pts, dts


def _marker_packet(pid: int) -> bytes:
    """An adaptation-field-only packet carrying the discontinuity indicator."""
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, 0x20])
    return header + bytes([183, 0x80]) + b"\xff" * 182


def _mark_discontinuities(data: bytes) -> bytes:
    """The clip with the discontinuity indicator on each PID's first packet.

    A first packet with an adaptation field gets the flag set; one without
    is preceded by an adaptation-field-only packet that carries it.
    """
    out: list[bytes] = []
    seen: set[int] = set()
    for off in range(0, len(data), PACKET_SIZE):
        packet = data[off : off + PACKET_SIZE]
        pid = packet_pid(packet)
        if pid not in seen and pid != NULL_PID:
            seen.add(pid)
            if (packet[3] & 0x20) and packet[4] >= 1:
                marked = bytearray(packet)
                marked[5] |= 0x80
                packet = bytes(marked)
            else:
                out.append(_marker_packet(pid))
        out.append(packet)
    return b"".join(out)


def parse_clip(name: str, data: bytes) -> Clip:
    """Check a clip and index it for looping; raises :class:`ClipError`."""
    if not data:
        raise ClipError(f"{name}: empty")
    if len(data) > MAX_CLIP_BYTES:
        raise ClipError(f"{name}: {len(data)} bytes, more than {MAX_CLIP_BYTES}")
    if not is_aligned(data):
        raise ClipError(f"{name}: not whole 188-byte MPEG-TS packets")
    video_pid = _check_start(name, data)
    data = _mark_discontinuities(data)
    count = len(data) // PACKET_SIZE

    pcrs: list[tuple[int, int]] = []  # (packet index, 27 MHz)
    stamps: dict[int, list[int]] = {}  # pid -> PTS values
    dts_anchor: list[tuple[int, int]] = []  # (packet index, 90 kHz) of PES starts
    raw: list[tuple[int, int, bool, int, int, int]] = []
    pcr_pid: int | None = None
    for i in range(count):
        off = i * PACKET_SIZE
        packet = data[off : off + PACKET_SIZE]
        pid = packet_pid(packet)
        pcr_at = _pcr_offset(packet)
        if pcr_at >= 0:
            if pcr_pid is None:
                pcr_pid = pid
            if pid == pcr_pid:
                pcrs.append((i, _read_pcr(packet, pcr_at)))
            else:
                pcr_at = -1  # a second PCR PID: left alone
        pts_at, dts_at = _pes_offsets(packet)
        if pts_at >= 0:
            pts = _read_ts(packet, pts_at)
            stamps.setdefault(pid, []).append(pts)
            dts_anchor.append((i, _read_ts(packet, dts_at) if dts_at >= 0 else pts))
        raw.append((off, pid, bool(packet[3] & 0x10), pcr_at, pts_at, dts_at))

    if not stamps:
        raise ClipError(f"{name}: no PES timestamps")
    if video_pid not in stamps:
        raise ClipError(f"{name}: no video timestamps")
    period = _loop_period(stamps, video_pid)
    if not MIN_PERIOD * _PTS_HZ <= period <= MAX_PERIOD * _PTS_HZ:
        raise ClipError(f"{name}: a loop of {period / _PTS_HZ:.2f} s, not between"
                        f" {MIN_PERIOD:g} and {MAX_PERIOD:g} s")
    if len(pcrs) >= 2:
        anchors = [(i, (v - pcrs[0][1]) / _PCR_HZ) for i, v in pcrs]
        if pcrs[-1][1] - pcrs[0][1] >= period * 300:
            raise ClipError(f"{name}: its PCR spans more than its timestamps")
    else:
        base = dts_anchor[0][1]
        anchors = [(i, (v - base) / _PTS_HZ) for i, v in dts_anchor]
    if any(b[1] < a[1] for a, b in zip(anchors, anchors[1:])):
        raise ClipError(f"{name}: its timestamps go backwards")
    sends = _interpolate(anchors, count, period / _PTS_HZ)
    packets = tuple(
        _Packet(off, pid, payload, sends[k], pcr_at, pts_at, dts_at)
        for k, (off, pid, payload, pcr_at, pts_at, dts_at) in enumerate(raw)
    )
    return Clip(name=name, data=data, packets=packets, period=period)


def _check_start(name: str, data: bytes) -> int:
    """PAT, then PMT, before any elementary stream; video starts on a keyframe.

    Returns the PID of the (first) video stream.
    """
    pmt_pids: frozenset[int] = frozenset()
    streams: dict[int, int] | None = None
    for off in range(0, len(data), PACKET_SIZE):
        packet = data[off : off + PACKET_SIZE]
        pid = packet_pid(packet)
        if pid == NULL_PID or pid in _SI_PIDS:
            continue
        if pid == PAT_PID:
            pmt_pids = pmt_pids or parse_pat(packet)
            continue
        if not pmt_pids:
            raise ClipError(f"{name}: does not start with a PAT")
        if pid in pmt_pids and streams is None:
            streams = parse_pmt(packet)
            if streams is not None and not any(t in VIDEO_STREAM_TYPES for t in streams.values()):
                raise ClipError(f"{name}: its PMT lists no video stream")
            continue
        if streams is None:
            raise ClipError(f"{name}: an elementary stream packet before the PMT")
        if streams.get(pid) in VIDEO_STREAM_TYPES:
            if not is_random_access(packet, streams[pid]):
                raise ClipError(f"{name}: the video does not start on a keyframe")
            return pid
    raise ClipError(f"{name}: no video packet")


def _loop_period(stamps: dict[int, list[int]], video_pid: int) -> int:
    """The loop period in 90 kHz ticks: from the earliest timestamp of any
    stream to the end of the last video frame (a PES of audio may hold many
    frames, so its end cannot be read from its timestamps). A stream whose
    timestamps span more than that stretches the loop, so that timestamps
    keep increasing across a wrap."""
    start = min(min(v) for v in stamps.values())
    video = sorted(set(stamps[video_pid]))
    frame = min((b - a for a, b in zip(video, video[1:])), default=0)
    period = video[-1] + frame - start
    for values in stamps.values():
        ordered = sorted(set(values))
        span = ordered[-1] - ordered[0]
        if span >= period:
            step = min((b - a for a, b in zip(ordered, ordered[1:])), default=1)
            period = span + step
    return period


def _interpolate(anchors: list[tuple[int, float]], count: int, period: float) -> list[float]:
    """A send time for every packet, linear between the anchors' times."""
    sends = [0.0] * count
    first_i, first_t = anchors[0]
    last_i, last_t = anchors[-1]
    for i in range(first_i):
        sends[i] = first_t
    for (ai, at), (bi, bt) in zip(anchors, anchors[1:]):
        span = bi - ai
        for i in range(ai, bi + 1):
            sends[i] = at + (bt - at) * (i - ai) / span if span else bt
    rate = (last_t - first_t) / (last_i - first_i) if last_i > first_i else 0.0
    for i in range(last_i + 1, count):
        sends[i] = min(last_t + rate * (i - last_i), period)
    return sends


# -- loading ---------------------------------------------------------------


def load_clip(path: Path, name: str | None = None) -> Clip:
    """Read and check one clip file (blocking: at start-up only)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ClipError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_clip(name or str(path), data)


def load_clips(directory: Path | None = None) -> dict[str, Clip]:
    """The clip of every reason: from ``directory`` where it holds
    ``REASON.ts``, otherwise the built-in one (blocking: at start-up only)."""
    clips: dict[str, Clip] = {}
    builtin = resources.files(__package__ or "xrelay.relay").joinpath("clips")
    for reason in CLIP_REASONS:
        replacement = directory / f"{reason}.ts" if directory is not None else None
        if replacement is not None and replacement.exists():
            clips[reason] = load_clip(replacement)
        else:
            data = builtin.joinpath(f"{reason}.ts").read_bytes()
            clips[reason] = parse_clip(f"built-in {reason}.ts", data)
    return clips


# -- playing ---------------------------------------------------------------


@implementer(IPushProducer)
class ClipProducer:
    """Writes a clip to ``consumer`` at real time, looped for ``limit`` seconds.

    :meth:`start` registers it with the consumer and returns :attr:`done`,
    which fires with ``"complete"`` after ``limit`` seconds of stream were
    written, ``"stopped"`` when the consumer stopped it, or ``"stalled"``
    when the consumer stayed paused ``grace`` seconds past the limit. The
    producer is unregistered by then; ending the response is the caller's.
    """

    def __init__(self, clip: Clip, consumer: IConsumer, clock: IReactorTime, *,
                 limit: float = DEFAULT_LIMIT, lead: float = DEFAULT_LEAD,
                 tick: float = DEFAULT_TICK, grace: float = DEFAULT_GRACE) -> None:
        self.clip = clip
        self.consumer = consumer
        self.clock = clock
        self.limit = limit
        self.lead = lead
        self.tick = tick
        self.grace = grace
        self.done: Deferred[str] = Deferred()
        self.bytes_sent = 0
        self.loops = 0  # completed wraps
        self.paused = False
        self._index = 0
        self._cc: dict[int, int] = {}
        self._started = 0.0
        self._call: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._finished = False

    def start(self) -> Deferred[str]:
        self._started = self.clock.seconds()
        self.consumer.registerProducer(self, True)
        self._deadline = self.clock.callLater(self.limit + self.lead + self.grace,
                                              self._end, "stalled")
        self._pump()
        return self.done

    # IPushProducer
    def pauseProducing(self) -> None:
        self.paused = True
        self._cancel_tick()

    def resumeProducing(self) -> None:
        if self._finished:
            return
        self.paused = False
        if self._call is None:
            self._pump()

    def stopProducing(self) -> None:
        self._end("stopped", unregister=False)

    # internals
    def _pump(self) -> None:
        self._call = None
        if self._finished or self.paused:
            return
        horizon = min(self.clock.seconds() - self._started + self.lead, self.limit)
        packets = self.clip.packets
        duration = self.clip.duration
        out: list[bytes] = []
        complete = False
        while True:
            packet = packets[self._index]
            due = self.loops * duration + packet.send
            if due >= self.limit:
                complete = True
                break
            if due > horizon:
                break
            out.append(self._rewrite(packet))
            self._index += 1
            if self._index == len(packets):
                self._index = 0
                self.loops += 1
        if out:
            chunk = b"".join(out)
            self.bytes_sent += len(chunk)
            self.consumer.write(chunk)  # may pause us, or stop us
        if complete:
            self._end("complete")
        elif not self._finished and not self.paused:
            self._call = self.clock.callLater(self.tick, self._pump)

    def _rewrite(self, p: _Packet) -> bytes:
        b = bytearray(self.clip.data[p.offset : p.offset + PACKET_SIZE])
        following = self._cc.get(p.pid, 0)
        if p.payload:
            cc = following
            self._cc[p.pid] = (following + 1) & 0x0F
        else:  # no payload: the counter repeats the last one
            cc = (following - 1) & 0x0F
        b[3] = (b[3] & 0xF0) | cc
        if self.loops:
            shift = self.loops * self.clip.period
            if p.pcr_at >= 0:
                _write_pcr_base(b, p.pcr_at, _read_pcr_base(b, p.pcr_at) + shift)
            if p.pts_at >= 0:
                _write_ts(b, p.pts_at, _read_ts(b, p.pts_at) + shift)
            if p.dts_at >= 0:
                _write_ts(b, p.dts_at, _read_ts(b, p.dts_at) + shift)
        return bytes(b)

    def _cancel_tick(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _end(self, outcome: str, unregister: bool = True) -> None:
        if self._finished:
            return
        self._finished = True
        self._cancel_tick()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if unregister:
            self.consumer.unregisterProducer()
        self.done.callback(outcome)


class StatusClips:
    """The clips of this xrelay, and the answer that plays one.

    ``served`` counts the clips started, by reason (for ``/metrics``);
    ``playing`` is how many are being written now.
    """

    def __init__(self, clock: IReactorTime, clips: Mapping[str, Clip], *,
                 limit: float = DEFAULT_LIMIT) -> None:
        missing = [r for r in CLIP_REASONS if r not in clips]
        if missing:
            raise ValueError(f"no clip for {', '.join(missing)}")
        self.clock = clock
        self.clips = dict(clips)
        self.limit = limit
        self.served: Counter[str] = Counter()
        self.playing = 0

    def play(self, request: Request, reason: str) -> Any:
        """Answer ``request`` with the clip for ``reason`` (NOT_DONE_YET).

        The caller has already decided that this request may get a clip
        (a live TS request from a player, no Range, clips not switched off).
        """
        clip = self.clips[reason]
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"video/mp2t")
        request.setHeader(b"cache-control", b"no-store")
        if request.method == b"HEAD":
            return b""
        self.served[reason] += 1
        self.playing += 1
        producer = ClipProducer(clip, request, self.clock, limit=self.limit)
        request.notifyFinish().addBoth(lambda _: producer.stopProducing())

        def ended(outcome: str) -> None:
            self.playing -= 1
            transport = getattr(request, "transport", None)
            if outcome == "stalled":
                if transport is not None:
                    transport.abortConnection()
            elif outcome == "complete":
                if not getattr(request, "_disconnected", False) and not getattr(request, "finished", False):
                    request.finish()
                if transport is not None:
                    transport.loseConnection()

        producer.start().addCallback(ended)
        return NOT_DONE_YET

    def resource(self, reason: str) -> Resource:
        """A resource answering with the clip for ``reason`` (for a route
        or a Deferred that returns a resource)."""
        if reason not in self.clips:
            raise ValueError(f"no clip for {reason!r}")
        return _ClipResource(self, reason)

    def snapshot(self) -> dict[str, Any]:
        """Clips served by reason (every reason listed) and clips playing now."""
        return {"served": {reason: self.served[reason] for reason in CLIP_REASONS},
                "playing": self.playing}


class _ClipResource(Resource):
    isLeaf = True

    def __init__(self, clips: StatusClips, reason: str) -> None:
        super().__init__()
        self.clips = clips
        self.reason = reason

    def render_GET(self, request: Request) -> Any:
        return self.clips.play(request, self.reason)
