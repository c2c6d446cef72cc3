"""Tests for xrelay.relay.slots: the provider pool with handover, per-user limits."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from xrelay.relay.slots import Lease, ProviderSlots, SlotsExhausted, UserStreams, Yield


class Owner:
    """A stand-in for a live channel or a VOD stream holding a lease."""

    def __init__(self, name: str, viewers: list[tuple[str, str]], close_delay: Deferred | None = None):
        self.name = name
        self.viewers = viewers
        self.revoked = 0
        self.close_delay = close_delay
        self.lease: Lease | None = None

    def yields_to(self, user: str, address: str) -> Yield:
        if not self.viewers:
            return Yield.IDLE
        if self.viewers == [(user, address)]:
            return Yield.SAME_CLIENT
        return Yield.NO

    def revoke(self):
        self.revoked += 1
        self.viewers = []
        if self.lease is not None:
            self.lease.release()
        return self.close_delay


def take(slots: ProviderSlots, owner: Owner, user="u", address="1.1.1.1") -> Deferred:
    d = slots.acquire(owner.name, user=user, address=address, revoke=owner.revoke, yields_to=owner.yields_to)

    def got(lease):
        owner.lease = lease
        return lease

    return d.addCallback(got)


def result_of(d: Deferred):
    out = []
    d.addBoth(out.append)
    return out


def test_grants_up_to_capacity_then_refuses_other_users():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=2)
    a, b, c = Owner("a", [("u1", "x")]), Owner("b", [("u2", "y")]), Owner("c", [])
    assert isinstance(result_of(take(slots, a, "u1", "x"))[0], Lease)
    assert isinstance(result_of(take(slots, b, "u2", "y"))[0], Lease)
    assert slots.used == 2
    refused = result_of(take(slots, c, "u3", "z"))
    refused[0].trap(SlotsExhausted)
    assert "2 provider connection" in str(refused[0].value)
    assert a.revoked == b.revoked == 0
    assert slots.refusals == 1


def test_release_frees_a_slot_and_is_idempotent():
    slots = ProviderSlots(Clock(), capacity=1)
    a = Owner("a", [("u", "x")])
    lease = result_of(take(slots, a))[0]
    lease.release()
    lease.release()
    assert slots.used == 0
    assert isinstance(result_of(take(slots, Owner("b", [])))[0], Lease)
    assert slots.used == 1


def test_zap_handover_waits_for_the_pause_on_the_clock():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1, handover_pause=0.3)
    old = Owner("old", [("u", "10.0.0.5")])
    take(slots, old, "u", "10.0.0.5")
    new = Owner("new", [])
    out = result_of(take(slots, new, "u", "10.0.0.5"))
    assert old.revoked == 1  # closed first
    assert out == []  # but not granted yet: the provider needs a moment
    assert slots.used == 1
    clock.advance(0.29)
    assert out == []
    clock.advance(0.02)
    assert isinstance(out[0], Lease) and out[0].key == "new"
    assert slots.used == 1 and slots.handovers == 1


def test_handover_pause_starts_after_the_old_connection_is_closed():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1, handover_pause=0.3)
    closing = Deferred()
    old = Owner("old", [("u", "a")], close_delay=closing)
    take(slots, old, "u", "a")
    out = result_of(take(slots, Owner("new", []), "u", "a"))
    clock.advance(1)
    assert out == []
    closing.callback(None)
    clock.advance(0.3)
    assert isinstance(out[0], Lease)


def test_no_handover_from_another_user_or_another_device():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1)
    old = Owner("old", [("u", "10.0.0.5")])
    take(slots, old, "u", "10.0.0.5")
    for user, address in (("other", "10.0.0.5"), ("u", "10.0.0.6")):
        out = result_of(take(slots, Owner("new", []), user, address))
        out[0].trap(SlotsExhausted)
    # A channel with two viewers (even the same user's) is not handed over.
    old.viewers = [("u", "10.0.0.5"), ("v", "10.0.0.7")]
    result_of(take(slots, Owner("new", []), "u", "10.0.0.5"))[0].trap(SlotsExhausted)
    assert old.revoked == 0


def test_lingering_channel_is_preferred_and_gives_its_slot_up():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=2, handover_pause=0.3)
    zap = Owner("zap", [("u", "a")])
    idle = Owner("idle", [])
    take(slots, zap, "u", "a")
    take(slots, idle, "w", "b")
    out = result_of(take(slots, Owner("new", [("u", "a")]), "u", "a"))
    assert idle.revoked == 1 and zap.revoked == 0
    clock.advance(0.3)
    assert isinstance(out[0], Lease)
    # Now both slots carry viewers: another client is refused.
    out = result_of(take(slots, Owner("third", []), "x", "c"))
    out[0].trap(SlotsExhausted)


def test_a_victim_is_handed_over_once_even_with_concurrent_requests():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1)
    old = Owner("old", [])
    take(slots, old)
    first = result_of(take(slots, Owner("n1", []), "u", "a"))
    second = result_of(take(slots, Owner("n2", []), "u", "a"))
    second[0].trap(SlotsExhausted)
    clock.advance(1)
    assert isinstance(first[0], Lease)
    assert old.revoked == 1
    assert slots.used == 1


def test_cancelling_a_waiting_request_returns_the_slot():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1)
    take(slots, Owner("old", []))
    waiting = take(slots, Owner("new", []))
    out = result_of(waiting)
    waiting.cancel()
    assert slots.used == 0
    clock.advance(1)
    assert len(out) == 1  # only the cancellation, no late grant


def test_capacity_can_be_changed():
    slots = ProviderSlots(Clock(), capacity=1)
    slots.set_capacity(3)
    for name in "abc":
        assert isinstance(result_of(take(slots, Owner(name, [("x", name)])))[0], Lease)
    slots.set_capacity(0)
    assert slots.capacity == 1


def test_user_streams_close_the_oldest_beyond_the_limit():
    clock = Clock()
    streams = UserStreams(clock)
    closed = []
    leases = []
    for i in range(3):
        leases.append(streams.open("alice", 2, key=i, revoke=lambda i=i: closed.append(i)))
        clock.advance(1)
    assert closed == [0]
    assert streams.count("alice") == 2
    assert leases[0].released
    streams.open("bob", 2, key="b")  # another user is counted apart
    assert closed == [0]
    streams.open("alice", 2, key=3, revoke=lambda: closed.append(3))
    assert closed == [0, 1]
    assert [lease.key for lease in streams.by_user["alice"]] == [2, 3]


def test_user_streams_release_and_unlimited():
    streams = UserStreams(Clock())
    leases = [streams.open("u", None, key=i) for i in range(10)]
    assert streams.count("u") == 10
    for lease in leases:
        lease.release()
        lease.release()
    assert streams.count("u") == 0 and "u" not in streams.by_user


def test_user_limit_one_with_a_zap_revokes_the_old_stream_first():
    streams = UserStreams(Clock())
    order = []
    streams.open("u", 1, key="old", revoke=lambda: order.append("revoke old"))
    streams.open("u", 1, key="new")
    order.append("new counted")
    assert order == ["revoke old", "new counted"]


@pytest.mark.parametrize("bad_close", [True, False])
def test_a_failing_revoke_does_not_break_the_limit(bad_close, fail_on_logged_errors):
    streams = UserStreams(Clock())

    def boom():
        if bad_close:
            raise RuntimeError("close failed")

    streams.open("u", 1, key="old", revoke=boom)
    streams.open("u", 1, key="new")
    assert [lease.key for lease in streams.by_user["u"]] == ["new"]
    assert len(fail_on_logged_errors.errors) == int(bad_close)
    fail_on_logged_errors.errors.clear()


def test_a_handover_pause_can_be_given_per_request():
    clock = Clock()
    slots = ProviderSlots(clock, capacity=1, handover_pause=0.3)
    take(slots, Owner("seek-1", [("u", "a")]), "u", "a")
    new = Owner("seek-2", [])
    out = result_of(slots.acquire("seek-2", user="u", address="a", revoke=new.revoke,
                                  yields_to=new.yields_to, pause=0.05))
    clock.advance(0.05)
    assert isinstance(out[0], Lease)


def test_cancelling_a_handover_keeps_the_slot_until_the_old_connection_is_gone() -> None:
    """A zapping client that hangs up before the old channel has closed must
    not let a third request in while the old provider connection is open."""
    from twisted.internet.defer import CancelledError, Deferred as D
    from twisted.internet.task import Clock

    from xrelay.relay.slots import ProviderSlots, SlotsExhausted, Yield

    clock = Clock()
    pool = ProviderSlots(clock, capacity=1, handover_pause=0.3)
    closing: D[None] = D()
    first = pool.acquire("A", user="u", address="a", revoke=lambda: closing,
                         yields_to=lambda user, address: Yield.SAME_CLIENT)
    assert first.called
    zap = pool.acquire("B", user="u", address="a")
    zap.addErrback(lambda f: f.trap(CancelledError))
    zap.cancel()
    third = pool.acquire("C", user="v", address="b")
    failures: list[object] = []
    third.addErrback(lambda f: failures.append(f.trap(SlotsExhausted)))
    assert failures, "granted while A's provider connection was still open"
    closing.callback(None)  # A is gone now
    assert pool.used == 0
    again = pool.acquire("C", user="v", address="b")
    assert again.called
