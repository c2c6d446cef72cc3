"""Connection-slot accounting: provider connections and per-user streams.

Both limits hand out :class:`Lease` objects. A lease is held by whatever
owns a connection (a live channel's upstream, one client's VOD stream) and
carries two callbacks supplied by its owner:

``revoke()``
    close the connection now (returns a Deferred if closing takes time);
    the owner releases the lease when it is closed, or the pool does.
``yields_to(user, address)``
    whether the owner would give its slot up to a new request from that
    client: :data:`Yield.IDLE` (nobody is using it, e.g. a lingering channel),
    :data:`Yield.SAME_CLIENT` (its only user is that very client: a zap or a
    seek), or :data:`Yield.NO`.

:class:`ProviderSlots` never grants more than ``capacity`` leases. At
capacity it hands a slot over from an idle owner, or else from one used
only by the same client, closing it first and waiting ``handover_pause``
seconds so the provider notices; otherwise it refuses with
:class:`SlotsExhausted` (the caller answers 503).

:class:`UserStreams` counts each user's open streams; opening one more than
the user's ``max_connections`` succeeds and revokes that user's oldest.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

DEFAULT_HANDOVER_PAUSE = 0.3


class Yield(enum.IntEnum):
    NO = 0
    SAME_CLIENT = 1
    IDLE = 2


def _never(user: str, address: str) -> Yield:
    return Yield.NO


def _nothing() -> None:
    return None


_serial = itertools.count(1)


@dataclass(eq=False)
class Lease:
    """One granted slot. ``release`` is idempotent."""

    key: Hashable
    user: str = ""
    address: str = ""
    revoke: Callable[[], Any] = _nothing
    yields_to: Callable[[str, str], Yield] = _never
    granted_at: float = 0.0
    serial: int = field(default_factory=lambda: next(_serial))
    released: bool = False
    _on_release: Callable[[Lease], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._on_release is not None:
            self._on_release(self)


class SlotsExhausted(Exception):
    """No slot can be granted; ``str()`` is a short reason for the client."""


class ProviderSlots:
    """The provider account's connection pool."""

    def __init__(
        self,
        clock: IReactorTime,
        capacity: int = 1,
        handover_pause: float = DEFAULT_HANDOVER_PAUSE,
    ) -> None:
        self._clock = clock
        self.capacity = capacity
        self.handover_pause = handover_pause
        self.leases: list[Lease] = []
        self._reserved = 0
        self.handovers = 0
        self.refusals = 0

    @property
    def used(self) -> int:
        """Slots held or promised to a request waiting out a handover."""
        return len(self.leases) + self._reserved

    def set_capacity(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))

    def acquire(
        self,
        key: Hashable,
        *,
        user: str = "",
        address: str = "",
        revoke: Callable[[], Any] = _nothing,
        yields_to: Callable[[str, str], Yield] = _never,
        pause: float | None = None,
    ) -> Deferred[Lease]:
        """A Deferred firing with a lease, or failing with SlotsExhausted.

        It fires at once when a slot is free; after closing another owner's
        connection and the handover pause (``pause`` overrides the pool's)
        when one can be handed over. Cancelling it while it waits returns
        the promised slot.
        """

        def grant() -> Lease:
            lease = Lease(
                key,
                user=user,
                address=address,
                revoke=revoke,
                yields_to=yields_to,
                granted_at=self._clock.seconds(),
                _on_release=self._released,
            )
            self.leases.append(lease)
            return lease

        if self.used < self.capacity:
            return succeed(grant())
        victim = self._pick_victim(user, address)
        if victim is None:
            self.refusals += 1
            return fail(
                SlotsExhausted(
                    f"all {self.capacity} provider connection(s) are in use"
                )
            )
        self.handovers += 1
        log.info(
            "handing provider slot of {old} over to {new} for {user}@{address}",
            old=victim.key,
            new=key,
            user=user,
            address=address,
        )
        # The victim's slot becomes a reservation at once, so that nobody
        # else can pick the same victim while it closes.
        self._reserved += 1
        victim.release()
        state: dict[str, Any] = {"call": None, "done": False, "closed": False, "abandoned": False}

        def cancel(d: Deferred[Lease]) -> None:
            call: IDelayedCall | None = state["call"]
            if call is not None and call.active():
                call.cancel()
            if state["done"]:
                return
            if not state["closed"]:
                # The victim's provider connection is still closing: keep the
                # reservation until it is gone, or a new request could be
                # granted while both connections are open.
                state["abandoned"] = True
                return
            state["done"] = True
            self._reserved -= 1

        result: Deferred[Lease] = Deferred(cancel)

        def closed(_: object) -> None:
            state["closed"] = True
            if state["abandoned"] and not state["done"]:
                state["done"] = True
                self._reserved -= 1
                return
            if state["done"]:
                return
            delay = self.handover_pause if pause is None else pause
            state["call"] = self._clock.callLater(delay, finish)

        def finish() -> None:
            state["done"] = True
            self._reserved -= 1
            result.callback(grant())

        closing = maybeDeferred(victim.revoke)
        closing.addErrback(
            lambda f: log.failure("closing {key} for a handover", f, key=victim.key)
        )
        closing.addCallback(closed)
        return result

    def _pick_victim(self, user: str, address: str) -> Lease | None:
        best: Lease | None = None
        best_rank = Yield.NO
        for lease in self.leases:  # oldest first
            rank = lease.yields_to(user, address)
            if rank > best_rank:
                best, best_rank = lease, rank
        return best

    def _released(self, lease: Lease) -> None:
        try:
            self.leases.remove(lease)
        except ValueError:
            pass


class UserStreams:
    """Per-user stream counting: the newest stream wins, the oldest goes."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.by_user: dict[str, list[Lease]] = {}
        self.closed_for_limit = 0

    def count(self, user: str) -> int:
        return len(self.by_user.get(user, ()))

    def open(
        self,
        user: str,
        limit: int | None,
        *,
        key: Hashable = None,
        address: str = "",
        revoke: Callable[[], Any] = _nothing,
    ) -> Lease:
        """Count a new stream for ``user``; revoke the oldest ones beyond
        ``limit`` (None or 0 means unlimited)."""
        leases = self.by_user.setdefault(user, [])
        if limit:
            while len(leases) >= limit:
                oldest = leases[0]
                self.closed_for_limit += 1
                log.info(
                    "{user} is over max_connections={limit}: closing the oldest"
                    " stream {key}",
                    user=user,
                    limit=limit,
                    key=oldest.key,
                )
                oldest.release()
                try:
                    oldest.revoke()
                except Exception:
                    log.failure("closing {key}", key=oldest.key)
            leases = self.by_user.setdefault(user, [])
        lease = Lease(
            key,
            user=user,
            address=address,
            revoke=revoke,
            granted_at=self._clock.seconds(),
            _on_release=self._released,
        )
        leases.append(lease)
        return lease

    def _released(self, lease: Lease) -> None:
        leases = self.by_user.get(lease.user)
        if leases is None:
            return
        try:
            leases.remove(lease)
        except ValueError:
            pass
        if not leases:
            del self.by_user[lease.user]


#: Treated as "no limit" when the provider says max_connections is 0.
UNLIMITED_SLOTS = 10_000


def capacity_refresher(slots: ProviderSlots, override: int | None,
                       account: Callable[[], dict[str, Any] | None]) -> Callable[[], None]:
    """A function that sets *slots*' capacity from ``[upstream]
    max_connections`` (*override*) or else from the provider's account
    (its ``max_connections``; 0 means unlimited)."""

    def refresh() -> None:
        if override:
            slots.set_capacity(override)
            return
        value = (account() or {}).get("max_connections")
        if isinstance(value, int):
            slots.set_capacity(value if value > 0 else UNLIMITED_SLOTS)

    return refresh
