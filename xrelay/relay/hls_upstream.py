"""A live channel's upstream read from the provider's HLS.

Some providers serve a channel only as HLS (its ``.ts`` URL is refused or
answers with a playlist, or the account does not allow ``ts``). For those
channels :class:`HlsUpstream` takes the place of
:class:`~xrelay.relay.upstream.Upstream`: it follows the provider's live media
playlist and fetches each new segment once, in order, feeding its bytes to the
channel's :class:`~xrelay.relay.fanout.Fanout` as one continuous,
packet-aligned MPEG-TS stream. TS viewers, HLS viewers and joiners of the
channel then behave exactly as with a TS upstream, and the provider sees one
client whatever the number of viewers.

* A master playlist is followed to its variant with the highest
  ``BANDWIDTH`` (the hub carries one rendition).
* The first load starts ``start_segments`` segments before the live edge, so
  that a cold channel has a few seconds of stream at once.
* A segment tagged ``#EXT-X-DISCONTINUITY``, a gap in the media sequence
  (segments missed while paused or after a failure) or a media sequence that
  went back (the provider restarted) resets the fan-out, which marks a
  discontinuity in xrelay's own HLS.
* The playlist is reloaded a target duration after the previous load began
  (half of it when nothing was new), as RFC 8216 asks of clients. A playlist
  that does not advance for ``silence_timeout`` seconds (at least three target
  durations), a failed load or fetch, are retried from the entry URL with
  backoff for up to ``reconnect_bound`` seconds; then ``on_give_up`` is called.
* What the hub cannot carry, encrypted segments (``#EXT-X-KEY``) and segments
  that are not MPEG-TS (``#EXT-X-MAP``, fMP4), fails :meth:`HlsUpstream.start`
  with :class:`HlsNotCarried`: such channels are left to the rewrite-and-proxy
  path (:mod:`xrelay.media.hls_proxy`).
* The fan-out pauses it like a TS upstream: while paused nothing is fetched.

Provider URLs carry the account's credentials: they are never logged, and
errors name what failed, never where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urljoin

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from xrelay.provider.client import ProviderError, collect_body, discard_body, final_url
from xrelay.relay.fanout import Fanout
from xrelay.relay.mpegts import PACKET_SIZE, SYNC_BYTE, is_aligned
from xrelay.relay.upstream import State, UpstreamError

__all__ = ["HlsUpstream", "HlsNotCarried", "ProviderPlaylist", "MediaSegment", "parse_playlist"]

log = Logger()

#: Biggest playlist and segment accepted from the provider, bytes.
MAX_PLAYLIST = 2 * 1024 * 1024
MAX_SEGMENT = 48 * 1024 * 1024
#: Seconds to wait for the provider's response headers, and without data
#: while reading a body.
FETCH_TIMEOUT = 15.0
#: Segments before the live edge a first load starts with.
START_SEGMENTS = 3

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


class HlsNotCarried(UpstreamError):
    """The provider's HLS cannot feed a TS buffer (encrypted or not MPEG-TS)."""


@dataclass(frozen=True)
class MediaSegment:
    sequence: int
    #: Absolute URL (the provider's: never shown).
    url: str
    duration: float
    discontinuity: bool


@dataclass(frozen=True)
class ProviderPlaylist:
    """What the hub needs of one provider playlist."""

    target: float
    segments: tuple[MediaSegment, ...]
    #: A master playlist's variants: (bandwidth, absolute URL).
    variants: tuple[tuple[int, str], ...]
    ended: bool
    #: Why the hub cannot carry this stream ("" when it can).
    not_carried: str = ""

    @property
    def is_master(self) -> bool:
        return bool(self.variants) and not self.segments


def _attributes(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(line.split(":", 1)[-1])}


def parse_playlist(text: str, base_url: str) -> ProviderPlaylist:
    """Read an M3U8 playlist (URIs resolved against ``base_url``, its final URL)."""
    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise UpstreamError("the provider's answer is not an HLS playlist")
    target = 0.0
    sequence = 0
    duration: float | None = None
    discontinuity = False
    stream_inf: dict[str, str] | None = None
    segments: list[MediaSegment] = []
    variants: list[tuple[int, str]] = []
    ended = False
    not_carried = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            tag = line.split(":", 1)[0].upper()
            value = line.split(":", 1)[1] if ":" in line else ""
            if tag == "#EXT-X-TARGETDURATION":
                target = _number(value, 0.0)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                sequence = int(_number(value, 0))
            elif tag == "#EXTINF":
                duration = _number(value.split(",", 1)[0], 0.0)
            elif tag == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "#EXT-X-ENDLIST":
                ended = True
            elif tag == "#EXT-X-STREAM-INF":
                stream_inf = _attributes(line)
            elif tag == "#EXT-X-KEY" and _attributes(line).get("METHOD", "NONE").upper() != "NONE":
                not_carried = not_carried or "its segments are encrypted"
            elif tag == "#EXT-X-MAP":
                not_carried = not_carried or "its segments are not MPEG-TS (fMP4)"
            continue
        url = urljoin(base_url, line)
        if stream_inf is not None:
            variants.append((int(_number(stream_inf.get("BANDWIDTH", "0"), 0)), url))
            stream_inf = None
            continue
        segments.append(MediaSegment(sequence, url, duration or target, discontinuity))
        sequence += 1
        duration = None
        discontinuity = False
    return ProviderPlaylist(target or max((s.duration for s in segments), default=6.0),
                            tuple(segments), tuple(variants), ended, not_carried)


def _number(text: str, default: float) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return default


def _whole_packets(data: bytes) -> bytes:
    """``data`` cut to whole packets (a segment always starts on one)."""
    extra = len(data) % PACKET_SIZE
    return data[: len(data) - extra] if extra else data


class _Stopped(Exception):
    pass


class HlsUpstream:
    """The provider's HLS behind a live channel; see the module docstring.

    Its face is :class:`~xrelay.relay.upstream.Upstream`'s: ``start()``,
    ``stop()``, the pause calls of the fan-out, and the same counters.
    """

    #: What it reads from the provider.
    format = "hls"

    def __init__(
        self,
        clock: IReactorTime,
        open_url: Callable[[str], Deferred[IResponse]],
        url: str,
        fanout: Fanout,
        *,
        name: str = "",
        silence_timeout: float = 10.0,
        reconnect_bound: float = 30.0,
        backoff: Callable[[int], float] | None = None,
        on_give_up: Callable[[str], Any] | None = None,
        start_segments: int = START_SEGMENTS,
        fetch_timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._clock = clock
        self._open_url = open_url
        self._url = url
        self.fanout = fanout
        self.name = name or fanout.name
        self.silence_timeout = silence_timeout
        self.reconnect_bound = reconnect_bound
        self._backoff = backoff or backoffPolicy(initialDelay=0.25, maxDelay=4.0, factor=2.0,
                                                 jitter=lambda: 0.0)
        self.on_give_up = on_give_up
        self.start_segments = max(1, start_segments)
        self.fetch_timeout = fetch_timeout
        self.state = State.IDLE
        #: Times the entry playlist was opened (the first time and reconnects).
        self.connections = 0
        self.reconnects = 0
        self.redirected = False
        self.last_error = ""
        self.bytes_in = 0
        self.segments_fetched = 0
        self.segments_missed = 0
        self.target = 0.0
        self._media_url: str | None = None
        self._last_sequence: int | None = None
        self._progressed = False
        self._paused = False
        self._unpaused: Deferred[None] | None = None
        self._current: Deferred[Any] | None = None
        self._stopped = False
        self._loop: Deferred[None] | None = None
        self._first: Deferred[None] | None = Deferred()

    # -- public ------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Begin; fires once the first segment was fed to the fan-out, or
        fails with :class:`UpstreamError` (:class:`HlsNotCarried` when the
        stream cannot be carried)."""
        first = self._first
        assert first is not None, "start() called twice"
        self.fanout.set_upstream(self)
        self._loop = Deferred.fromCoroutine(self._run())
        return first

    def stop(self) -> Deferred[None]:
        """Stop for good; fires once no request of ours is left open."""
        if self._stopped:
            return succeed(None)
        self._stopped = True
        if self.state is not State.FAILED:
            self.state = State.STOPPED
        self._fail_first(UpstreamError("the channel was closed"))
        current, self._current = self._current, None
        if current is not None and not current.called:
            current.cancel()
        if self._unpaused is not None and not self._unpaused.called:
            self._unpaused.cancel()
        loop = self._loop
        if loop is None or loop.called:
            return succeed(None)
        done: Deferred[None] = Deferred()
        loop.addBoth(lambda _: done.callback(None))
        return done

    # -- called by the fan-out -----------------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        waiting, self._unpaused = self._unpaused, None
        if waiting is not None and not waiting.called:
            waiting.callback(None)

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        failing_since: float | None = None
        attempt = 0
        while not self._stopped:
            self.connections += 1
            self.state = State.CONNECTING
            self._media_url = None
            try:
                await self._follow()
            except _Stopped:
                return
            except CancelledError:
                if self._stopped:
                    return
                reason = f"no answer within {self.fetch_timeout:g} s"
            except HlsNotCarried as e:
                self._not_carried(e)
                return
            except (UpstreamError, ProviderError) as e:
                reason = str(e)
            except Exception as e:  # never let the channel's loop die silently
                log.failure("channel {channel}: HLS upstream", channel=self.name)
                reason = type(e).__name__
            if self._stopped:
                return
            self.last_error = reason
            if self._first is not None:
                # Nobody watches yet: tell the waiting requests now.
                self.state = State.FAILED
                self._fail_first(UpstreamError(reason))
                return
            now = self._clock.seconds()
            if self._progressed or failing_since is None:
                # a new episode of failures begins
                failing_since = now
                attempt = 0
            elapsed = now - failing_since
            if elapsed >= self.reconnect_bound:
                self.state = State.FAILED
                log.warn("channel {channel}: giving up on the provider's HLS after {elapsed:.1f} s:"
                         " {reason}", channel=self.name, elapsed=elapsed, reason=reason)
                if self.on_give_up is not None:
                    self.on_give_up(reason)
                return
            delay = min(self._backoff(attempt), self.reconnect_bound - elapsed)
            attempt += 1
            self.reconnects += 1
            self.state = State.BACKOFF
            log.info("channel {channel}: provider HLS lost ({reason}); reloading in {delay:.2f} s",
                     channel=self.name, reason=reason, delay=delay)
            try:
                await self._sleep(delay)
            except (CancelledError, _Stopped):
                return

    async def _follow(self) -> None:
        """Load the playlist and feed new segments until something fails."""
        self._progressed = False
        quiet_since = self._clock.seconds()
        while True:
            await self._until_resumed()
            began = self._clock.seconds()
            playlist = await self._load()
            self.state = State.STREAMING
            fed = await self._feed_new(playlist)
            now = self._clock.seconds()
            if fed:
                quiet_since = now
                self._progressed = True
            elif playlist.ended:
                raise UpstreamError("the provider ended the stream")
            elif now - quiet_since > max(self.silence_timeout, 3 * playlist.target):
                raise UpstreamError(f"the provider's playlist did not advance for {now - quiet_since:.0f} s")
            wait = playlist.target if fed else playlist.target / 2
            await self._sleep(max(0.0, began + wait - self._clock.seconds()))
            if self._paused:
                await self._until_resumed()
                quiet_since = self._clock.seconds()

    async def _load(self) -> ProviderPlaylist:
        """The media playlist (through a master playlist the first time)."""
        url = self._media_url or self._url
        text, final = await self._fetch_text(url)
        playlist = parse_playlist(text, final)
        if self._media_url is None:
            if final != self._url and not self.redirected:
                self.redirected = True
                log.info("channel {channel}: the provider redirected the HLS stream", channel=self.name)
            if playlist.is_master:
                _, variant = max(playlist.variants, key=lambda v: v[0])
                text, final = await self._fetch_text(variant)
                playlist = parse_playlist(text, final)
                if playlist.is_master:
                    raise UpstreamError("the provider's HLS variant is itself a master playlist")
            self._media_url = final
        if playlist.not_carried:
            raise HlsNotCarried(f"the provider's HLS cannot be relayed as one stream: {playlist.not_carried}")
        self.target = playlist.target
        return playlist

    async def _feed_new(self, playlist: ProviderPlaylist) -> int:
        """Fetch and feed the segments not fed yet; how many were fed."""
        segments = list(playlist.segments)
        last = self._last_sequence
        if last is not None and segments and segments[-1].sequence < last:
            log.info("channel {channel}: the provider's media sequence went back", channel=self.name)
            last = self._last_sequence = None
        if last is None:
            new = segments[-self.start_segments:]
            reset = "the provider's HLS began"
        else:
            new = [s for s in segments if s.sequence > last]
            reset = ""
            if new and new[0].sequence > last + 1:
                self.segments_missed += new[0].sequence - last - 1
                reset = "segments of the provider's HLS were missed"
        fed = 0
        for segment in new:
            await self._until_resumed()
            data = await self._fetch_segment(segment)
            if data is None:  # expired at the provider: a gap
                self.segments_missed += 1
                reset = "a segment of the provider's HLS was missing"
                continue
            if segment.discontinuity and not reset:
                reset = "the provider's HLS has a discontinuity"
            if reset:
                self.fanout.upstream_reset(reset)
                reset = ""
            self._feed(data)
            self._last_sequence = segment.sequence
            fed += 1
        return fed

    def _feed(self, data: bytes) -> None:
        if self._stopped:
            raise _Stopped()
        if data[:1] != bytes([SYNC_BYTE]) or (len(data) >= 2 * PACKET_SIZE
                                              and data[PACKET_SIZE] != SYNC_BYTE):
            raise HlsNotCarried("the provider's HLS cannot be relayed as one stream: "
                                "its segments are not MPEG-TS")
        self.bytes_in += len(data)
        self.segments_fetched += 1
        data = _whole_packets(data)
        if is_aligned(data):
            self.fanout.feed_packets(data)
        else:  # damaged: let the aligner resync, and drop what it holds back
            self.fanout.feed(data)
            self.fanout.aligner.reset()
        self.fanout.flush()
        if self._first is not None:
            first, self._first = self._first, None
            log.info("channel {channel}: streaming from the provider's HLS", channel=self.name)
            first.callback(None)

    # -- provider requests ---------------------------------------------------------------------

    async def _get(self, url: str, what: str) -> IResponse:
        response: IResponse = await self._wait(self._open_url(url))
        if response.code != 200:
            discard_body(response)
            raise UpstreamError(f"{what}: the provider answered HTTP {response.code}")
        return response

    async def _fetch_text(self, url: str) -> tuple[str, str]:
        response = await self._get(url, "HLS playlist")
        body: bytes = await self._wait(Deferred.fromCoroutine(
            collect_body(self._clock, response, MAX_PLAYLIST, self.fetch_timeout, "HLS playlist")))
        return body.decode("utf-8", "replace"), final_url(response, url)

    async def _fetch_segment(self, segment: MediaSegment) -> bytes | None:
        response: IResponse = await self._wait(self._open_url(segment.url))
        if response.code in (404, 410):
            discard_body(response)
            return None
        if response.code != 200:
            discard_body(response)
            raise UpstreamError(f"HLS segment: the provider answered HTTP {response.code}")
        data: bytes = await self._wait(Deferred.fromCoroutine(
            collect_body(self._clock, response, MAX_SEGMENT, self.fetch_timeout, "HLS segment")))
        return data

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, d: Deferred[Any]) -> Any:
        """Await ``d``; :meth:`stop` cancels it."""
        if self._stopped:
            d.cancel()
            raise _Stopped()
        self._current = d
        try:
            return await d
        finally:
            if self._current is d:
                self._current = None

    async def _sleep(self, seconds: float) -> None:
        await self._wait(deferLater(self._clock, seconds, lambda: None))

    async def _until_resumed(self) -> None:
        while self._paused and not self._stopped:
            self._unpaused = Deferred()
            try:
                await self._unpaused
            except CancelledError:
                raise _Stopped()
        if self._stopped:
            raise _Stopped()

    def _not_carried(self, error: HlsNotCarried) -> None:
        self.last_error = str(error)
        self.state = State.FAILED
        log.info("channel {channel}: {reason}", channel=self.name, reason=str(error))
        if self._first is not None:
            self._fail_first(error)
        elif self.on_give_up is not None:
            self.on_give_up(str(error))

    def _fail_first(self, error: UpstreamError) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            first.errback(error)
