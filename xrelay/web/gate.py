"""The body gate: a request with a body whose login is refused is answered
before its body is read.

:class:`~xrelay.http.limits.LimitedSite` calls :class:`LoginGate` once the
headers of a request with a body are in.  Where the credentials are visible
already (the query string or the path of the Xtream API's URLs, the admin's
``Authorization`` header), the gate checks them as the route guards would
(:mod:`xrelay.web.guards`, the same throttles):

* an address locked out gets 429 at once;
* a refused login gets 401 (or 403) at once, as long as the throttle would
  answer it without delay (its first free failures); a later failure is let
  through, so that its body (at most ``[server] max_body`` bytes) is read and
  the guard delays its answer like any other;
* a login that succeeds, credentials in the form body, and every other
  route are read and routed as usual.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote

from xrelay.http.auth import admin_challenge, admin_disabled, admin_login
from xrelay.http.errors import HTTPError
from xrelay.http.limits import EarlyAnswer, RequestHead
from xrelay.http.request import AUTH_FAILED
from xrelay.web.guards import COUNTED_FAILURES, Guarded, count_failure, locked_out

__all__ = ["LoginGate"]

#: Routes taking the user's credentials in the query (or the form body).
_QUERY_LOGIN = frozenset({b"/player_api.php", b"/panel_api.php", b"/get.php", b"/xmltv.php"})
#: Routes taking them in the path: ``/player_api/USER/PASS[/...]``.
_PATH_LOGIN = frozenset({b"player_api", b"playlist"})
#: Routes behind the admin's Basic credentials.
_ADMIN = (b"/admin", b"/status", b"/metrics")


def _answer(error: HTTPError) -> EarlyAnswer:
    headers = tuple(error.headers.items())
    if error.body is not None:
        return EarlyAnswer(error.code, error.body, headers + ((b"content-type", error.content_type),))
    return EarlyAnswer(error.code, (error.message + "\n").encode(), headers)


class LoginGate:
    """Answers a request with a body when its visible login is refused."""

    def __init__(self, site: Guarded) -> None:
        self.site = site

    def __call__(self, head: RequestHead) -> EarlyAnswer | None:
        path = head.path
        address = str(getattr(head.client, "host", "") or "")
        if path == _ADMIN[0] or path.startswith(_ADMIN[0] + b"/") or path in _ADMIN[1:]:
            return self._admin(head, address)
        credentials = _credentials(head)
        if credentials is None:
            return None
        return self._user(address, *credentials)

    def _admin(self, head: RequestHead, address: str) -> EarlyAnswer | None:
        throttle = self.site.throttles.admin
        lockout = throttle.check(address)
        if lockout is not None:
            return _answer(locked_out(lockout, "text"))
        values = head.headers.getRawHeaders(b"authorization")
        header = values[-1] if values else None  # the one the route's guard reads
        outcome = admin_login(header, self.site.admin)
        if outcome == "ok":
            return None
        if outcome == "disabled":
            return _answer(admin_disabled())
        if outcome == "wrong":
            if throttle.next_delay(address) > 0:
                return None  # the guard answers it, after the delay
            count_failure(self.site, throttle, address, None, "wrong admin credentials")
        return _answer(admin_challenge())

    def _user(self, address: str, username: str, password: str) -> EarlyAnswer | None:
        throttle = self.site.throttles.users
        lockout = throttle.check(address)
        if lockout is not None:
            return _answer(locked_out(lockout, "json"))
        result = self.site.users.authenticate(username, password)
        if result.ok:
            return None
        if result.reason in COUNTED_FAILURES:
            if throttle.next_delay(address) > 0:
                return None  # the guard answers it, after the delay
            count_failure(self.site, throttle, address, username, result.reason)
        return EarlyAnswer(401, AUTH_FAILED, ((b"content-type", b"application/json"),))


def _credentials(head: RequestHead) -> tuple[str, str] | None:
    """``(username, password)`` when the request shows both before its body."""
    path = head.path
    if path in _QUERY_LOGIN:
        query = head.uri.partition(b"?")[2].decode("latin-1")
        try:
            args = parse_qs(query, keep_blank_values=True, max_num_fields=200, encoding="utf-8",
                            errors="replace")
        except ValueError:
            return None
        if "username" in args and "password" in args:
            return args["username"][0], args["password"][0]
        return None
    parts = path.split(b"/")
    if len(parts) >= 4 and parts[0] == b"" and parts[1] in _PATH_LOGIN:
        return (unquote(parts[2].decode("latin-1"), errors="replace"),
                unquote(parts[3].decode("latin-1"), errors="replace"))
    return None
