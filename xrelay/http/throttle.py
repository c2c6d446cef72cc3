"""Failed-login throttle per client address: a growing delay, then 429 for a while.

One :class:`LoginThrottle` per login realm (the Xtream API, the admin
pages), so that a correct login in one realm never forgives guesses in the
other.  A route uses it in three steps::

    refusal = throttle.check(address)
    if refusal is not None:
        return refusal.render(request)          # 429, even for the right password
    if not credentials_ok:
        await throttle.failed(address)          # the growing delay, then answer 401
        return refuse(request)
    throttle.succeeded(address)                 # never delayed

An address's first ``free_failures`` failures cost nothing; each later one
is answered after ``base_delay`` seconds, doubled per failure up to
``max_delay``.  At ``lockout_after`` failures the address is refused with
429 for ``lockout`` seconds (logged once when the lockout starts), and
its count is kept, so that after the lockout one more failure locks it out
again.  An address with no failure for ``forget_after`` seconds is
forgotten; a success forgets it at once.  Only the failing address is ever
delayed or refused: another address, and a player whose logins are
correct, never are.  The table holds at most ``max_addresses`` entries (the
least recently failing is dropped first), so memory stays bounded
whatever the number of addresses.  The clock is passed in, so tests drive
it with :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.iweb import IRequest

__all__ = ["ThrottlePolicy", "Refusal", "ThrottleCounters", "LoginThrottle", "client_key"]

log = Logger()


def client_key(host: str) -> str:
    """The identity of a client address: the address itself, with an
    IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) read as IPv4 and IPv6
    written in one canonical form.  Anything that is not an IP address
    (a UNIX socket's ``-``) is kept as it is."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True)
class ThrottlePolicy:
    """When failed logins are delayed and refused (seconds, counts)."""

    #: Failures of an address answered without delay.
    free_failures: int = 5
    #: Delay of the first delayed failure; doubled for each later one.
    base_delay: float = 0.5
    #: Longest delay of one failed login's answer.
    max_delay: float = 8.0
    #: Failures after which the address is refused with 429.
    lockout_after: int = 20
    #: How long a lockout lasts.
    lockout: float = 300.0
    #: An address without a failure for this long is forgotten.
    forget_after: float = 3600.0
    #: Most addresses remembered at once.
    max_addresses: int = 4096

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.lockout_after < 1 or self.max_addresses < 1:
            raise ValueError("free_failures must be >= 0, lockout_after and max_addresses >= 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay or self.lockout < 0:
            raise ValueError("delays must be >= 0 and max_delay >= base_delay")
        if self.forget_after < self.lockout:
            raise ValueError("forget_after must be at least as long as lockout")

    def delay(self, failures: int) -> float:
        """Seconds to wait before answering an address's ``failures``-th failure."""
        excess = failures - self.free_failures
        if excess <= 0:
            return 0.0
        # 2**excess overflows a float long before it matters: cap the exponent
        return min(self.max_delay, self.base_delay * 2.0 ** min(excess - 1, 64))


@dataclass(frozen=True)
class Refusal:
    """A login refused without looking at the credentials (429)."""

    #: Whole seconds until the lockout ends (the ``Retry-After`` value).
    retry_after: int
    code: int = 429
    message: str = "too many failed logins from this address: try again later"

    def render(self, request: IRequest) -> bytes:
        """Set the status and headers on *request*; the body to return."""
        request.setResponseCode(self.code)
        request.setHeader(b"retry-after", str(self.retry_after).encode())
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return (self.message + "\n").encode()


@dataclass
class ThrottleCounters:
    """Totals since start, for ``/metrics``."""

    #: Failed logins reported.
    failures: int = 0
    #: Failed logins answered after a delay.
    delayed: int = 0
    #: Logins refused with 429 during a lockout.
    refused: int = 0
    #: Lockouts started.
    lockouts: int = 0
    #: Addresses dropped from a full table.
    evicted: int = 0


class _Entry:
    __slots__ = ("failures", "last_failure", "locked_until")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.locked_until = 0.0


class LoginThrottle:
    """Failed logins of one realm, per client address (see the module docs)."""

    def __init__(self, clock: IReactorTime, policy: ThrottlePolicy | None = None,
                 realm: str = "login") -> None:
        self.clock = clock
        self.policy = policy or ThrottlePolicy()
        self.realm = realm
        self.counters = ThrottleCounters()
        # least recently failing first
        self._table: OrderedDict[str, _Entry] = OrderedDict()

    # -- the three calls of a login ---------------------------------------------

    def check(self, address: str) -> Refusal | None:
        """A :class:`Refusal` while *address* is locked out, else None."""
        entry = self._table.get(client_key(address))
        if entry is None:
            return None
        now = self.clock.seconds()
        if entry.locked_until <= now:
            return None
        self.counters.refused += 1
        return Refusal(retry_after=max(1, math.ceil(entry.locked_until - now)))

    def failed(self, address: str) -> Deferred[None]:
        """Record a failed login from *address*; the Deferred fires when its
        answer may be sent (at once for the first few failures)."""
        now = self.clock.seconds()
        self._forget_expired(now)
        key = client_key(address)
        entry = self._table.get(key)
        if entry is None:
            while len(self._table) >= self.policy.max_addresses:
                self._table.popitem(last=False)
                self.counters.evicted += 1
            entry = self._table[key] = _Entry()
        else:
            self._table.move_to_end(key)
        entry.failures += 1
        entry.last_failure = now
        self.counters.failures += 1
        if entry.failures >= self.policy.lockout_after and entry.locked_until <= now:
            entry.locked_until = now + self.policy.lockout
            self.counters.lockouts += 1
            log.warn("{realm}: {address} is refused for {seconds:.0f} s after {failures} failed logins",
                     realm=self.realm, address=key, seconds=self.policy.lockout,
                     failures=entry.failures, event="login_lockout")
        delay = self.policy.delay(entry.failures)
        if delay <= 0:
            return succeed(None)
        self.counters.delayed += 1
        return deferLater(self.clock, delay, lambda: None)

    def succeeded(self, address: str) -> None:
        """A correct login from *address*: its failures are forgotten (a
        lockout in progress stays: :meth:`check` refused the login anyway)."""
        key = client_key(address)
        entry = self._table.get(key)
        if entry is not None and entry.locked_until <= self.clock.seconds():
            del self._table[key]

    def failures(self, address: str) -> int:
        """Failed logins remembered for *address*."""
        entry = self._table.get(client_key(address))
        return entry.failures if entry is not None else 0

    def next_delay(self, address: str) -> float:
        """The delay *address*'s next failure would be answered after (0:
        at once), without recording anything."""
        return self.policy.delay(self.failures(address) + 1)

    # -- for /metrics and /admin --------------------------------------------------

    def tracked(self) -> int:
        """Addresses with failures remembered."""
        return len(self._table)

    def locked(self) -> list[str]:
        """Addresses locked out now."""
        now = self.clock.seconds()
        return [key for key, entry in self._table.items() if entry.locked_until > now]

    # -- housekeeping ---------------------------------------------------------------

    def _forget_expired(self, now: float) -> None:
        """Drop the addresses without a failure for ``forget_after`` seconds
        (the table is ordered by last failure, so they are at its front)."""
        horizon = now - self.policy.forget_after
        while self._table:
            key, entry = next(iter(self._table.items()))
            if entry.last_failure > horizon or entry.locked_until > now:
                return
            del self._table[key]
