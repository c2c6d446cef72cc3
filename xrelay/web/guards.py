"""Route guards: the login checks every user route and admin route shares.

A route decorated with :func:`user_login` receives the logged-in
:class:`~xrelay.core.config.UserConfig` instead of the credentials, taken
from the path (``/live/USER/PASS/...``) or from the query or form
(``username=...&password=...``).  A refused login raises the refusal; the
route never runs.  :func:`admin_only` does the same with the ``[admin]``
HTTP Basic credentials.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.core.config import AdminConfig, UserConfig
from xrelay.core.scrub import Scrubber
from xrelay.core.users import UserDB
from xrelay.http.auth import require_admin
from xrelay.http.errors import HTTPError, Unauthorized
from xrelay.http.request import AUTH_FAILED, client_address, request_args

__all__ = ["AccountExpired", "Guarded", "user_login", "admin_only", "login"]

log = Logger()

P = ParamSpec("P")
R = TypeVar("R")

#: How a refused login is answered: the Xtream API's JSON, or plain text.
Refusal = Literal["json", "text"]

_DENIED = {"disabled": "this account is disabled", "expired": "this account has expired"}


class AccountExpired(HTTPError):
    """403: the right password of an expired account (*account*), refused."""

    def __init__(self, account: UserConfig) -> None:
        super().__init__(403, _DENIED["expired"])
        self.account = account


class Guarded(Protocol):
    """What the guards need of the object whose routes they guard."""

    users: UserDB
    admin: AdminConfig | None
    scrubber: Scrubber


def login(site: Guarded, request: IRequest, username: str | None, password: str | None,
          refusal: Refusal) -> UserConfig:
    """The user these credentials log in, or raise the refusal."""
    result = site.users.authenticate(username, password)
    if result.user is not None:
        return result.user
    # scrubbed: someone may try the provider's own username here
    log.info("login refused for {user!r} from {address}: {reason}",
             user=site.scrubber.text((username or "")[:64]), address=client_address(request),
             reason=result.reason, event="login_refused")
    if refusal == "json":
        raise Unauthorized(body=AUTH_FAILED)
    account = site.users.get(username or "")
    if result.reason == "expired" and account is not None:
        raise AccountExpired(account)
    if result.reason in _DENIED:
        raise HTTPError(403, _DENIED[result.reason])
    raise Unauthorized()


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
            return route(self, request, account, *args, **kwargs)

        return guarded

    return decorate


def admin_only(route: Callable[Concatenate[G, IRequest, P], R]) -> Callable[Concatenate[G, IRequest, P], R]:
    """Run the route only for the admin (HTTP Basic, ``[admin]`` credentials)."""

    @functools.wraps(route)
    def guarded(self: G, request: IRequest, *args: P.args, **kwargs: P.kwargs) -> R:
        require_admin(request, self.admin)
        return route(self, request, *args, **kwargs)

    return guarded
