"""HLS viewers as viewers: sessions that live while the player keeps fetching.

An HLS player never holds a connection open: it asks for the playlist about
once per target duration and fetches each new segment. :class:`HlsSessions`
turns those requests into sessions keyed by (user, address, channel): the
first request starts one (``on_start``), every request refreshes it, and
``idle_timeout`` seconds (for example three target durations) without a
request end it (``on_end``), on the passed clock. The relay hangs on those
callbacks what a TS viewer's connection does: a stream of the user's
``max_connections``, the channel's viewer count (linger), the zap handover
rule, ``/status`` and the admin's disconnect button.

A session can also be *revoked* (the user opened more streams than allowed,
an administrator disconnected it): it ends at once (``on_end``), but its key
stays known as revoked while the client keeps asking, so that a player
polling in the background does not take its stream back from the newer one
(the caller answers its requests 403); it is forgotten after
``idle_timeout`` without a request, like any session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

DEFAULT_IDLE_TIMEOUT = 12.0

SessionKey = tuple[str, str, Hashable]


@dataclass(eq=False)
class HlsSession:
    """One player (user at an address) fetching one channel's HLS."""

    user: str
    address: str
    channel: Hashable
    started: float
    last_seen: float
    requests: int = 0
    segments: int = 0
    bytes_sent: int = 0
    #: Why it ended ("" while it lives).
    ended: str = ""
    #: Why it was revoked ("" unless it was): its client is refused.
    revoked: str = ""
    #: Whatever the relay holds for it (its user-stream lease).
    lease: Any = None
    _timer: IDelayedCall | None = field(default=None, repr=False)

    @property
    def key(self) -> SessionKey:
        return (self.user, self.address, self.channel)

    @property
    def alive(self) -> bool:
        return not self.ended


class HlsSessions:
    """Every HLS session of this xrelay."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        idle_timeout: float | Callable[[Hashable], float] = DEFAULT_IDLE_TIMEOUT,
        on_start: Callable[[HlsSession], Any] | None = None,
        on_end: Callable[[HlsSession, str], Any] | None = None,
    ) -> None:
        self.clock = clock
        self._idle = idle_timeout
        self.on_start = on_start
        self.on_end = on_end
        #: Every session known, revoked ones included.
        self._sessions: dict[SessionKey, HlsSession] = {}
        #: The live ones by channel, oldest first.
        self._channels: dict[Hashable, dict[SessionKey, HlsSession]] = {}
        self.started = 0
        self.expired = 0
        self.revoked = 0

    def idle_timeout(self, channel: Hashable) -> float:
        idle = self._idle
        return idle(channel) if callable(idle) else idle

    # -- requests -------------------------------------------------------------------

    def touch(self, user: str, address: str, channel: Hashable, *, segment_bytes: int | None = None
              ) -> HlsSession:
        """Note a request (playlist, or a segment of ``segment_bytes``) of
        this client; start its session if it has none. A revoked session is
        returned as it is (check ``session.revoked``)."""
        now = self.clock.seconds()
        key = (user, address, channel)
        session = self._sessions.get(key)
        if session is None:
            session = HlsSession(user, address, channel, started=now, last_seen=now)
            self._sessions[key] = session
            self._channels.setdefault(channel, {})[key] = session
            self.started += 1
            self._note(session, now, segment_bytes)
            log.info("{viewer} started HLS of channel {channel}", viewer=f"{user}@{address}",
                     channel=channel, event="hls_session_started")
            if self.on_start is not None:
                try:
                    self.on_start(session)
                except Exception:
                    log.failure("starting HLS session {key}", key=key)
            return session
        self._note(session, now, segment_bytes)
        return session

    def note_sent(self, session: HlsSession, size: int) -> None:
        """Bytes of a segment actually written to the client."""
        session.bytes_sent += size

    def _note(self, session: HlsSession, now: float, segment_bytes: int | None) -> None:
        session.last_seen = now
        session.requests += 1
        if segment_bytes is not None:
            session.segments += 1
        idle = self.idle_timeout(session.channel)
        timer = session._timer
        if timer is not None and timer.active():
            timer.reset(idle)
        else:
            session._timer = self.clock.callLater(idle, self._expire, session)

    def _expire(self, session: HlsSession) -> None:
        session._timer = None
        idle = self.idle_timeout(session.channel)
        left = session.last_seen + idle - self.clock.seconds()
        if left > 0:  # the timeout grew since the timer was set
            session._timer = self.clock.callLater(left, self._expire, session)
            return
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        if not session.ended:
            self.expired += 1
            self._end(session, f"no request for {idle:g} s")

    # -- ending ---------------------------------------------------------------------

    def end(self, session: HlsSession, reason: str) -> None:
        """End and forget a session (its channel closed, xrelay stops...)."""
        self._cancel(session)
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        self._end(session, reason)

    def revoke(self, session: HlsSession, reason: str) -> None:
        """End a session by policy; its client stays refused while it asks."""
        if session.revoked or self._sessions.get(session.key) is not session:
            if not session.ended:
                self._end(session, reason)
            return
        session.revoked = reason
        self.revoked += 1
        self._end(session, reason)

    def _end(self, session: HlsSession, reason: str) -> None:
        if session.ended:
            return
        session.ended = reason
        live = self._channels.get(session.channel)
        if live is not None and live.get(session.key) is session:
            del live[session.key]
            if not live:
                del self._channels[session.channel]
        log.info("{viewer} left HLS of channel {channel}: {reason}",
                 viewer=f"{session.user}@{session.address}", channel=session.channel,
                 reason=reason, event="hls_session_ended")
        if self.on_end is not None:
            try:
                self.on_end(session, reason)
            except Exception:
                log.failure("ending HLS session {key}", key=session.key)

    def _cancel(self, session: HlsSession) -> None:
        timer, session._timer = session._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def close_channel(self, channel: Hashable, reason: str) -> None:
        """End every session of a channel, revoked ones included."""
        for session in [s for s in list(self._sessions.values()) if s.channel == channel]:
            self.end(session, reason)

    def close_all(self, reason: str) -> None:
        for session in list(self._sessions.values()):
            self.end(session, reason)

    # -- reading --------------------------------------------------------------------

    def get(self, user: str, address: str, channel: Hashable) -> HlsSession | None:
        return self._sessions.get((user, address, channel))

    def __iter__(self) -> Iterator[HlsSession]:
        """The live sessions, oldest first."""
        every = [s for live in self._channels.values() for s in live.values()]
        return iter(sorted(every, key=lambda s: s.started))

    def __len__(self) -> int:
        return sum(len(live) for live in self._channels.values())

    def count(self, channel: Hashable) -> int:
        """How many live sessions watch ``channel``."""
        live = self._channels.get(channel)
        return len(live) if live else 0

    def of_channel(self, channel: Hashable) -> list[HlsSession]:
        """The live sessions of ``channel``, oldest first."""
        live = self._channels.get(channel)
        return list(live.values()) if live else []

    def of_user(self, user: str) -> list[HlsSession]:
        return [s for s in self if s.user == user]

    def snapshot(self, session: HlsSession) -> dict[str, Any]:
        now = self.clock.seconds()
        return {
            "user": session.user,
            "address": session.address,
            "format": "hls",
            "bytes": session.bytes_sent,
            "started": session.started,
            "seconds": round(now - session.started, 1),
            "idle_seconds": round(now - session.last_seen, 1),
            "segments": session.segments,
        }
