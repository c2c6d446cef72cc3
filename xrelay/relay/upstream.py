"""A live channel's single upstream connection to the provider.

:class:`Upstream` opens the provider's stream URL with treq (unbuffered,
redirects followed), reads the body with its own protocol through
``response.deliverBody`` and pushes every byte into the channel's
:class:`~xrelay.relay.fanout.Fanout`. The fan-out pauses and resumes it through
the body transport.

It keeps the final URL a redirect led to and asks it first on reconnect
(falling back to the original URL when that fails: redirect tokens
expire). A watchdog reopens a connection that stays silent for
``silence_timeout`` seconds while not paused; a dropped or failed
connection is reopened with backoff for up to ``reconnect_bound`` seconds,
after which ``on_give_up`` is called and the channel closes its viewers.

URLs contain the provider's credentials: they are never logged.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

from twisted.application.internet import backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from xrelay.provider.client import discard_body
from xrelay.relay.fanout import Fanout

log = Logger()

#: Seconds to wait for the provider's response headers.
CONNECT_TIMEOUT = 10.0
#: Bytes read from the provider socket per reactor iteration. Twisted reads
#: 64 KiB per iteration by default; with thousands of viewers an iteration
#: takes long enough that 64 KiB per iteration falls below the stream's
#: bitrate, so the upstream connection reads more at a time.
UPSTREAM_READ_SIZE = 1024 * 1024


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    STOPPED = "stopped"
    FAILED = "failed"


class UpstreamError(Exception):
    """Why the provider did not deliver; safe to show (no URL, no secret)."""


class NotMpegTs(UpstreamError):
    """The provider refused the channel's MPEG-TS (an HTTP error) or answered
    it with a playlist: its HLS may serve instead."""


def is_playlist_answer(content_type: bytes | None, url: str | None) -> bool:
    """Does a stream answer's Content-Type or (final) URL say "HLS playlist"?"""
    if content_type is not None and b"mpegurl" in content_type.lower():
        return True
    return url is not None and url.split("?", 1)[0].lower().endswith((".m3u8", ".m3u"))


def looks_like_playlist(data: bytes) -> bool:
    """Do a stream body's first bytes say "HLS playlist" rather than TS?"""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:7] == b"#EXTM3U"


class _Body(Protocol):
    """Receives one response body and hands it to its Upstream."""

    #: A response body's protocol is connected to a producer (IResponse.deliverBody).
    transport: IPushProducer | None  # type: ignore[assignment]

    def __init__(self, owner: Upstream) -> None:
        self.owner = owner
        self.closed: Deferred[None] = Deferred()
        self.active = True

    def connectionMade(self) -> None:
        # deliverBody's transport proxies the TCP connection; widen its reads.
        tcp = getattr(self.transport, "_producer", None)
        if tcp is not None and isinstance(getattr(tcp, "bufferSize", None), int):
            tcp.bufferSize = max(tcp.bufferSize, UPSTREAM_READ_SIZE)

    def dataReceived(self, data: bytes) -> None:
        if self.active:
            self.owner._data(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        was_active, self.active = self.active, False
        if was_active:
            self.owner._lost(self, reason)
        if not self.closed.called:
            self.closed.callback(None)


class Upstream:
    """The one provider connection behind a live channel."""

    #: What it reads from the provider (:class:`~xrelay.relay.hls_upstream.HlsUpstream` says "hls").
    format = "ts"

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
        connect_timeout: float = CONNECT_TIMEOUT,
        backoff: Callable[[int], float] | None = None,
        on_give_up: Callable[[str], Any] | None = None,
        on_not_ts: Callable[[str], Any] | None = None,
    ) -> None:
        self._clock = clock
        self._open_url = open_url
        self._url = url
        self.final_url: str | None = None
        self.fanout = fanout
        self.name = name or fanout.name
        self.silence_timeout = silence_timeout
        self.reconnect_bound = reconnect_bound
        self.connect_timeout = connect_timeout
        self._backoff = backoff or backoffPolicy(initialDelay=0.25, maxDelay=4.0, factor=2.0,
                                                 jitter=lambda: 0.0)
        self.on_give_up = on_give_up
        #: Given, answers that are not MPEG-TS (an HTTP error on the first
        #: connection, or a playlist) fail ``start()`` with :class:`NotMpegTs`;
        #: a playlist found later stops the upstream and calls this hook.
        self.on_not_ts = on_not_ts
        self.state = State.IDLE
        self.connections = 0
        self.reconnects = 0
        self.redirected = False
        self.last_error = ""
        self.bytes_in = 0
        self._body: _Body | None = None
        self._pending: Deferred[IResponse] | None = None
        self._retry: IDelayedCall | None = None
        self._watchdog: IDelayedCall | None = None
        self._failing_since: float | None = None
        self._attempt = 0
        self._paused = False
        self._got_data = False
        self._first: Deferred[None] | None = Deferred()

    # -- public ------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Connect; the Deferred fires once the provider answers 200 (or
        fails with UpstreamError when it never does within the bound)."""
        first = self._first
        assert first is not None, "start() called twice"
        self.fanout.set_upstream(self)
        self._connect()
        return first

    def stop(self) -> Deferred[None]:
        """Close the connection for good; fires once it is closed."""
        if self.state in (State.STOPPED, State.FAILED) and self._body is None:
            return succeed(None)
        self.state = State.STOPPED
        self._cancel_timers()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()
        self._fail_first("the channel was closed")
        body, self._body = self._body, None
        if body is None:
            return succeed(None)
        body.active = False
        if body.transport is not None:
            body.transport.stopProducing()
        return body.closed

    # -- called by the fan-out -----------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self._stop_watchdog()
        if self._body is not None and self._body.transport is not None:
            self._body.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self._body is not None and self._body.transport is not None:
            self._body.transport.resumeProducing()
            self._arm_watchdog()

    # -- connection --------------------------------------------------------

    def _connect(self) -> None:
        if self.state in (State.STOPPED, State.FAILED):
            return
        self.state = State.CONNECTING
        self._retry = None
        use_final = self.final_url is not None
        url = self.final_url if use_final else self._url
        assert url is not None
        self.connections += 1
        d = self._open_url(url)
        self._pending = d
        timeout = self._clock.callLater(self.connect_timeout, d.cancel)

        def done(result: Any) -> Any:
            if timeout.active():
                timeout.cancel()
            if self._pending is d:
                self._pending = None
            return result

        d.addBoth(done)
        d.addCallback(self._response, use_final)
        d.addErrback(self._connect_failed, use_final)

    def _response(self, response: IResponse, used_final: bool) -> None:
        if self.state is State.STOPPED:
            discard_body(response)
            return
        final = _final_uri(response)
        if response.code != 200:
            discard_body(response)
            if self.on_not_ts is not None and self._first is not None and _refuses_ts(response.code):
                raise NotMpegTs(f"the provider refused the MPEG-TS stream (HTTP {response.code})")
            raise UpstreamError(f"the provider answered HTTP {response.code}")
        if self.on_not_ts is not None and is_playlist_answer(
                (response.headers.getRawHeaders(b"content-type") or [None])[0], final):
            discard_body(response)
            raise NotMpegTs("the provider answered the MPEG-TS URL with an HLS playlist")
        if final is not None and final != self._url:
            if not self.redirected:
                log.info("channel {channel}: the provider redirected the stream", channel=self.name)
            self.redirected = True
            self.final_url = final
        self.state = State.STREAMING
        self._got_data = False
        self.fanout.upstream_reset()
        body = _Body(self)
        self._body = body
        response.deliverBody(body)
        if self._paused and body.transport is not None:
            body.transport.pauseProducing()
        else:
            self._arm_watchdog()
        if self._first is not None:
            first, self._first = self._first, None
            first.callback(None)

    def _connect_failed(self, failure: Failure, used_final: bool) -> None:
        if self.state is State.STOPPED:
            return
        if failure.check(NotMpegTs):
            self._not_ts(str(failure.value))
            return
        if failure.check(CancelledError):
            reason = f"no answer within {self.connect_timeout:g} s"
        elif failure.check(UpstreamError):
            reason = str(failure.value)
        else:
            # ProviderClient errors are already scrubbed; others: type only.
            reason = str(failure.value) if type(failure.value).__name__ == "ProviderError" \
                else type(failure.value).__name__
        if used_final:
            # A redirect target (token) may have expired: ask the original URL.
            self.final_url = None
        self._failed(reason, retry_now=used_final)

    def _data(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if not self._got_data:
            if self.on_not_ts is not None and looks_like_playlist(data):
                self._not_ts("the provider answered the MPEG-TS URL with an HLS playlist")
                return
            self._got_data = True
            self._failing_since = None
            self._attempt = 0
        if self._watchdog is not None:
            self._watchdog.reset(self.silence_timeout)
        self.fanout.feed(data)

    def _lost(self, body: _Body, reason: Failure | None) -> None:
        if body is not self._body:
            return
        self._body = None
        self._stop_watchdog()
        if self.state is State.STOPPED:
            return
        self._failed("the provider closed the stream")

    def _silent(self) -> None:
        self._watchdog = None
        body, self._body = self._body, None
        if body is not None:
            body.active = False
            if body.transport is not None:
                body.transport.stopProducing()
        self._failed(f"no data for {self.silence_timeout:g} s")

    def _failed(self, reason: str, retry_now: bool = False) -> None:
        self.last_error = reason
        if self._first is not None and not retry_now:
            # Nobody is watching yet: tell the waiting viewers now rather
            # than keep them waiting through the reconnect bound.
            self.state = State.FAILED
            self._cancel_timers()
            self._fail_first(reason)
            return
        now = self._clock.seconds()
        if self._failing_since is None:
            self._failing_since = now
        elapsed = now - self._failing_since
        if elapsed >= self.reconnect_bound:
            self.state = State.FAILED
            log.warn(
                "channel {channel}: giving up on the provider after {elapsed:.1f} s: {reason}",
                channel=self.name, elapsed=elapsed, reason=reason,
            )
            self._fail_first(reason)
            if self.on_give_up is not None:
                self.on_give_up(reason)
            return
        delay = 0.0 if retry_now else min(self._backoff(self._attempt),
                                           self.reconnect_bound - elapsed)
        self._attempt += 0 if retry_now else 1
        self.reconnects += 1
        self.state = State.BACKOFF
        log.info(
            "channel {channel}: upstream lost ({reason}); reconnecting in {delay:.2f} s",
            channel=self.name, reason=reason, delay=delay,
        )
        self._retry = self._clock.callLater(delay, self._connect)

    def _not_ts(self, reason: str) -> None:
        """The answer is not MPEG-TS: stop for good and say so."""
        log.info("channel {channel}: {reason}", channel=self.name, reason=reason)
        self.last_error = reason
        self.state = State.FAILED
        self._cancel_timers()
        body, self._body = self._body, None
        if body is not None:
            body.active = False
            transport: Any = body.transport  # the body's transport is a producer
            if transport is not None:
                transport.stopProducing()
        if self._first is not None:
            self._fail_first(reason, NotMpegTs(reason))
        elif self.on_not_ts is not None:
            self.on_not_ts(reason)

    def _fail_first(self, reason: str, error: UpstreamError | None = None) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            first.errback(error or UpstreamError(reason))

    # -- timers --------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        if self._paused or self.state is not State.STREAMING:
            return
        if self._watchdog is None or not self._watchdog.active():
            self._watchdog = self._clock.callLater(self.silence_timeout, self._silent)
        else:
            self._watchdog.reset(self.silence_timeout)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _cancel_timers(self) -> None:
        self._stop_watchdog()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None


def _final_uri(response: IResponse) -> str | None:
    request = getattr(response, "request", None)
    uri = getattr(request, "absoluteURI", None)
    if isinstance(uri, bytes):
        return uri.decode("latin-1")
    return uri


#: Refusals that say nothing of the format: a login, a timeout, a rate or
#: connection limit (tried again, never a reason to switch to HLS for good).
_PASSING_REFUSALS = frozenset({401, 408, 429})


def _refuses_ts(code: int) -> bool:
    """Whether the provider's answer to the first MPEG-TS request refuses
    the format (the ``auto`` upstream then tries the channel's HLS)."""
    return 400 <= code < 500 and code not in _PASSING_REFUSALS
