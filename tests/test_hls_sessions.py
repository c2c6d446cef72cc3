"""Tests for xrelay.relay.hls_sessions: HLS players counted as viewers while they fetch."""

from __future__ import annotations

from typing import Hashable

from twisted.internet.task import Clock

from xrelay.relay.hls_sessions import HlsSession, HlsSessions
from xrelay.relay.slots import UserStreams


class Recorder:
    def __init__(self) -> None:
        self.started: list[HlsSession] = []
        self.ended: list[tuple[HlsSession, str]] = []

    def start(self, session: HlsSession) -> None:
        self.started.append(session)

    def end(self, session: HlsSession, reason: str) -> None:
        self.ended.append((session, reason))


def make(idle: float = 12.0) -> tuple[HlsSessions, Recorder, Clock]:
    clock = Clock()
    rec = Recorder()
    return HlsSessions(clock, idle_timeout=idle, on_start=rec.start, on_end=rec.end), rec, clock


def test_first_request_starts_a_session_later_ones_refresh_it() -> None:
    sessions, rec, clock = make()
    first = sessions.touch("tv", "10.0.0.2", 7)
    clock.advance(4)
    again = sessions.touch("tv", "10.0.0.2", 7, segment_bytes=1000)
    assert again is first and rec.started == [first]
    assert first.requests == 2 and first.segments == 1 and first.last_seen == 4
    other = sessions.touch("tv", "10.0.0.3", 7)  # another address: another player
    assert other is not first and len(rec.started) == 2
    assert sessions.count(7) == 2 and [s.address for s in sessions.of_channel(7)] == ["10.0.0.2", "10.0.0.3"]
    assert len(sessions) == 2 and sessions.of_user("tv") == [first, other]


def test_session_expires_after_idle_timeout_without_requests() -> None:
    sessions, rec, clock = make(idle=12)
    session = sessions.touch("tv", "a", 7)
    for _ in range(5):  # polling every 4 s keeps it
        clock.advance(4)
        sessions.touch("tv", "a", 7)
    assert rec.ended == []
    clock.advance(11.9)
    assert rec.ended == []
    clock.advance(0.2)
    assert rec.ended == [(session, "no request for 12 s")]
    assert session.ended and not session.alive
    assert sessions.count(7) == 0 and sessions.get("tv", "a", 7) is None
    assert clock.getDelayedCalls() == []
    # asking again later is a new session
    again = sessions.touch("tv", "a", 7)
    assert again is not session and rec.started == [session, again]


def test_idle_timeout_per_channel_follows_its_target_duration() -> None:
    targets: dict[Hashable, int] = {7: 6}
    clock = Clock()
    ended: list[str] = []
    sessions = HlsSessions(clock, idle_timeout=lambda channel: 3 * targets[channel],
                           on_end=lambda s, why: ended.append(why))
    sessions.touch("tv", "a", 7)
    clock.advance(10)
    targets[7] = 10  # frozen later than the session started (a cold channel)
    clock.advance(8.5)  # 18.5 s: past the 18 s it was set for, not the 30 s it is now
    assert ended == []
    clock.advance(12)
    assert ended == ["no request for 30 s"]


def test_revoked_session_stays_refused_while_its_client_polls() -> None:
    sessions, rec, clock = make(idle=12)
    session = sessions.touch("tv", "a", 7)
    sessions.revoke(session, "the user opened more streams than allowed")
    assert rec.ended == [(session, "the user opened more streams than allowed")]
    assert sessions.count(7) == 0
    clock.advance(5)
    again = sessions.touch("tv", "a", 7)
    assert again is session and again.revoked  # no new session: the caller answers 403
    assert rec.started == [session]
    clock.advance(12.1)  # it stopped polling: forgotten
    fresh = sessions.touch("tv", "a", 7)
    assert fresh is not session and not fresh.revoked and rec.started == [session, fresh]
    assert len(rec.ended) == 1


def test_close_channel_ends_its_sessions_only() -> None:
    sessions, rec, clock = make()
    a = sessions.touch("tv", "a", 7)
    b = sessions.touch("phone", "b", 7)
    c = sessions.touch("tv", "a", 8)
    sessions.revoke(b, "admin disconnect")
    sessions.close_channel(7, "the channel closed")
    assert (a, "the channel closed") in rec.ended
    assert sessions.get("phone", "b", 7) is None  # the revoked one is forgotten too
    assert list(sessions) == [c]
    sessions.close_all("xrelay is stopping")
    assert c.ended == "xrelay is stopping" and len(sessions) == 0
    assert clock.getDelayedCalls() == []


def test_end_is_idempotent() -> None:
    sessions, rec, _ = make()
    session = sessions.touch("tv", "a", 7)
    sessions.end(session, "one")
    sessions.end(session, "two")
    sessions.revoke(session, "three")
    assert rec.ended == [(session, "one")]


def test_sessions_hold_user_streams_newest_wins() -> None:
    """The wiring the relay will use: a session holds one of its user's streams."""
    clock = Clock()
    streams = UserStreams(clock)
    sessions: HlsSessions

    def start(session: HlsSession) -> None:
        session.lease = streams.open(
            session.user, 1, key=("hls", session.channel), address=session.address,
            revoke=lambda: sessions.revoke(session, "the user opened more streams than allowed"))

    def end(session: HlsSession, reason: str) -> None:
        session.lease.release()

    sessions = HlsSessions(clock, idle_timeout=12, on_start=start, on_end=end)
    tablet = sessions.touch("tv", "tablet", 7)
    assert streams.count("tv") == 1
    phone = sessions.touch("tv", "phone", 8)  # one stream allowed: the tablet's goes
    assert tablet.revoked and not phone.revoked and streams.count("tv") == 1
    assert sessions.touch("tv", "tablet", 7).revoked  # and stays refused while it polls
    clock.advance(12.1)
    assert streams.count("tv") == 0  # the phone stopped polling too: its stream is released


def test_snapshot() -> None:
    sessions, _, clock = make()
    session = sessions.touch("tv", "a", 7)
    sessions.note_sent(session, 1234)
    clock.advance(3)
    snap = sessions.snapshot(session)
    assert snap["bytes"] == 1234 and snap["idle_seconds"] == 3 and snap["format"] == "hls"
