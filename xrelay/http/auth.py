"""HTTP Basic authentication for the admin endpoints (/status, /metrics, /admin).

The web front's ``admin_only`` guard (:mod:`xrelay.web.guards`) calls
:func:`admin_login` before an admin route runs and raises the refusal as an
:class:`~xrelay.http.errors.HTTPError` (401 with a challenge, or 403),
throttling failed logins per address; :func:`require_admin` is the same
check without the throttle::

    require_admin(request, config.admin)   # raises unless the admin is logged in

Credentials come from ``[admin]`` in the configuration.  Both the username
and the password are compared in constant time, and both comparisons always
run, so the answer's timing reveals neither.  Without an ``[admin]`` section
the endpoints answer 403.  Refusals are logged with the client's address
only (by the guard, once per address): never the submitted username or
password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Literal

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.core.config import AdminConfig
from xrelay.http.errors import HTTPError

__all__ = ["REALM", "parse_basic", "parse_basic_header", "check_admin", "admin_login", "require_admin",
           "admin_challenge", "admin_disabled"]

log = Logger()

REALM = "xrelay admin"


def parse_basic(request: IRequest) -> tuple[bytes, bytes] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, or None."""
    return parse_basic_header(request.getHeader(b"authorization"))


def parse_basic_header(header: bytes | None) -> tuple[bytes, bytes] | None:
    """``(username, password)`` from an ``Authorization`` header's value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


def check_admin(request: IRequest, admin: AdminConfig | None) -> bool:
    """Whether *request* carries the admin credentials (constant time)."""
    return admin_login(request.getHeader(b"authorization"), admin) == "ok"


#: What an ``Authorization`` header does for the admin: ``ok``; ``missing``
#: (no Basic credentials: a browser's first request); ``wrong`` (a failed
#: login, which the throttle counts); ``disabled`` (no ``[admin]`` section).
AdminLogin = Literal["ok", "missing", "wrong", "disabled"]


def admin_login(header: bytes | None, admin: AdminConfig | None) -> AdminLogin:
    """Check an ``Authorization`` header's value against ``[admin]``.  Both
    the username and the password are compared, in constant time."""
    if admin is None:
        return "disabled"
    given = parse_basic_header(header)
    user, password = given if given is not None else (b"", b"")
    user_ok = hmac.compare_digest(user, admin.username.encode())
    password_ok = hmac.compare_digest(password, admin.password.encode())
    if given is None:
        return "missing"
    return "ok" if user_ok and password_ok else "wrong"


def admin_challenge() -> HTTPError:
    """401 asking for the admin's Basic credentials."""
    return HTTPError(401, "admin login required",
                     headers={b"www-authenticate": f'Basic realm="{REALM}", charset="UTF-8"'.encode()})


def admin_disabled() -> HTTPError:
    """403: no ``[admin]`` section."""
    return HTTPError(403, "admin pages are disabled: set [admin] username and password in the configuration")


def require_admin(request: IRequest, admin: AdminConfig | None) -> None:
    """Return if the admin is authenticated; otherwise raise the refusal:
    401 with ``WWW-Authenticate``, or 403 when no ``[admin]`` is configured
    (without throttling: the routes use :mod:`xrelay.web.guards`)."""
    outcome = admin_login(request.getHeader(b"authorization"), admin)
    if outcome == "ok":
        return
    if outcome == "disabled":
        raise admin_disabled()
    if outcome == "wrong":
        address = getattr(request.getClientAddress(), "host", "-")
        log.info("admin login refused from {address}", address=address, event="admin_refused")
    raise admin_challenge()
