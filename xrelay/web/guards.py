"""Route guards: the one place logins are checked, and failed logins throttled.

A route decorated with :func:`user_login` receives the logged-in
:class:`~xrelay.core.config.UserConfig` instead of the credentials, taken
from the path (``/live/USER/PASS/...``) or from the query or form
(``username=...&password=...``).  A refused login raises the refusal; the
route never runs.  :func:`admin_only` does the same with the ``[admin]``
HTTP Basic credentials.

Failed logins are throttled per client address (:class:`LoginThrottles`,
one :class:`~xrelay.http.throttle.LoginThrottle` for the users and one for
the admin): a wrong username or password is answered after a delay that
grows with the address's failures, and an address with too many failures
gets 429 for a while, even with the right password.  Only that address is
slowed: a player on another address, or one whose logins are correct, never
waits.  A correct login does not erase its address's failures (the throttle
forgets them after an hour without one): otherwise a client with one valid
account could interleave its own login with guesses at another's password
and never be slowed.  Missing credentials (a player's first probe, a browser before its
Basic prompt), a disabled or an expired account are refused without counting.
The first failure of an address is logged (and the throttle logs its
lockout), so a guessing client cannot flood the log.  The comparisons stay
constant-time (:meth:`~xrelay.core.users.UserDB.authenticate`,
:func:`~xrelay.http.auth.admin_login`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Concatenate, Literal, ParamSpec, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.core.config import AdminConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.http.auth import admin_challenge, admin_disabled, admin_login
from xrelay.http.errors import HTTPError, Unauthorized
from xrelay.http.request import AUTH_FAILED, client_address, request_args
from xrelay.http.throttle import LoginThrottle
from xrelay.http.throttle import Refusal as Lockout

__all__ = ["AccountExpired", "Guarded", "LoginThrottles", "user_login", "admin_only", "login",
           "count_failure", "locked_out", "COUNTED_FAILURES"]

log = Logger()

P = ParamSpec("P")
R = TypeVar("R")

#: How a refused login is answered: the Xtream API's JSON, or plain text.
Refusal = Literal["json", "text"]

_DENIED = {"disabled": "this account is disabled", "expired": "this account has expired"}
#: The failures the throttle counts (guesses); the others need no guessing.
COUNTED_FAILURES = frozenset({"unknown user", "wrong password"})


class AccountExpired(HTTPError):
    """403: the right password of an expired account (*account*), refused."""

    def __init__(self, account: UserConfig) -> None:
        super().__init__(403, _DENIED["expired"])
        self.account = account


@dataclass(frozen=True)
class LoginThrottles:
    """Failed logins per client address, one throttle per realm: a correct
    login in one never forgives guesses in the other."""

    #: The users' logins: the Xtream API, playlists, guide and streams.
    users: LoginThrottle
    #: The ``[admin]`` login: /admin, /status, /metrics.
    admin: LoginThrottle


class Guarded(Protocol):
    """What the guards need of the object whose routes they guard."""

    users: UserDB
    admin: AdminConfig | None
    scrubber: Scrubber
    throttles: LoginThrottles


def locked_out(lockout: Lockout, refusal: Refusal) -> HTTPError:
    headers = {b"retry-after": str(lockout.retry_after).encode()}
    if refusal == "json":  # JSON-reading players see a refused login too
        return HTTPError(lockout.code, lockout.message, headers=headers, body=AUTH_FAILED)
    return HTTPError(lockout.code, lockout.message, headers=headers)


def _refuse_after(wait: Deferred[None], error: HTTPError) -> Deferred[Any]:
    """*error* now if *wait* has fired, else a Deferred failing with it once it fires."""
    if wait.called:
        raise error

    def refuse(_: None) -> Any:
        raise error

    return wait.addCallback(refuse)


def login(site: Guarded, request: IRequest, username: str | None, password: str | None,
          refusal: Refusal) -> UserConfig | Deferred[Any]:
    """The user these credentials log in; otherwise raise the refusal, or
    return a Deferred that fails with it after the throttle's delay."""
    address = client_address(request)
    throttle = site.throttles.users
    lockout = throttle.check(address)
    if lockout is not None:
        raise locked_out(lockout, refusal)
    result = site.users.authenticate(username, password)
    if result.user is not None:
        return result.user  # never delayed; the address's failures are kept (see the module docs)
    if refusal == "json":
        error: HTTPError = Unauthorized(body=AUTH_FAILED)
    elif result.reason == "expired" and (account := site.users.get(username or "")) is not None:
        error = AccountExpired(account)  # the live route answers it with a clip
    elif result.reason in _DENIED:
        error = HTTPError(403, _DENIED[result.reason])
    else:
        error = Unauthorized()
    if result.reason not in COUNTED_FAILURES:
        if result.reason in _DENIED:
            log.info("login refused for {user!r} from {address}: {reason}",
                     user=site.scrubber.text((username or "")[:64]), address=address,
                     reason=result.reason, event="login_refused")
        raise error
    return _refuse_after(count_failure(site, throttle, address, username, result.reason), error)


def count_failure(site: Guarded, throttle: LoginThrottle, address: str, username: str | None,
                  reason: str) -> Deferred[None]:
    """Tell *throttle* of a failed login (logged if it is the address's
    first); the Deferred fires when the refusal may be answered."""
    wait = throttle.failed(address)
    if throttle.failures(address) == 1:
        # scrubbed: someone may try the provider's own username here
        who = "" if username is None else f" for {site.scrubber.text(username[:64])!r}"
        log.info("{realm} refused{who} from {address}: {reason} (later failures from this "
                 "address are counted in /metrics, not logged)", realm=throttle.realm, who=who,
                 address=address, reason=reason, event="login_refused")
    return wait


G = TypeVar("G", bound=Guarded)


def user_login(refusal: Refusal = "text") -> Callable[
        [Callable[Concatenate[G, IRequest, UserConfig, P], R]], Callable[..., R]]:
    """Log the user in before the route runs and pass it as the argument
    after the request.  The credentials are the route's ``user`` and
    ``password`` path arguments when it has them, else the request's
    ``username`` and ``password`` parameters."""

    def decorate(route: Callable[Concatenate[G, IRequest, UserConfig, P], R]) -> Callable[..., R]:
        @functools.wraps(route)
        def guarded(self: G, request: IRequest, *args: Any, **kwargs: Any) -> R:
            if "user" in kwargs:
                username, password = kwargs.pop("user"), kwargs.pop("password")
            else:
                given = request_args(request)
                username, password = given.get("username"), given.get("password")
            account = login(self, request, username, password, refusal)
            if isinstance(account, Deferred):
                return cast(R, account)  # fails with the refusal after the delay
            return route(self, request, account, *args, **kwargs)

        return guarded

    return decorate


def admin_only(route: Callable[Concatenate[G, IRequest, P], R]) -> Callable[Concatenate[G, IRequest, P], R]:
    """Run the route only for the admin (HTTP Basic, ``[admin]`` credentials)."""

    @functools.wraps(route)
    def guarded(self: G, request: IRequest, *args: P.args, **kwargs: P.kwargs) -> R:
        address = client_address(request)
        throttle = self.throttles.admin
        lockout = throttle.check(address)
        if lockout is not None:
            raise locked_out(lockout, "text")
        outcome = admin_login(request.getHeader(b"authorization"), self.admin)
        if outcome == "ok":
            return route(self, request, *args, **kwargs)
        if outcome == "disabled":
            raise admin_disabled()
        if outcome == "missing":
            raise admin_challenge()
        wait = count_failure(self, throttle, address, None, "wrong admin credentials")
        return cast(R, _refuse_after(wait, admin_challenge()))

    return guarded
