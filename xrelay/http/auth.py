"""HTTP Basic authentication for the admin endpoints (/status, /metrics, /admin).

The web front's ``admin_only`` guard (:mod:`xrelay.web.guards`) calls
:func:`require_admin` before an admin route runs; it raises the refusal as
an :class:`~xrelay.http.errors.HTTPError` (401 with a challenge, or 403)::

    require_admin(request, config.admin)   # raises unless the admin is logged in

Credentials come from ``[admin]`` in the configuration.  Both the username
and the password are compared in constant time, and both comparisons always
run, so the answer's timing reveals neither.  Without an ``[admin]`` section
the endpoints answer 403.  Refusals are logged with the client's address
only: never the submitted username or password.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from xrelay.core.config import AdminConfig
from xrelay.http.errors import HTTPError

__all__ = ["REALM", "parse_basic", "check_admin", "require_admin"]

log = Logger()

REALM = "xrelay admin"


def parse_basic(request: IRequest) -> tuple[bytes, bytes] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, or None."""
    header = request.getHeader(b"authorization")
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
    if admin is None:
        return False
    given = parse_basic(request)
    user, password = given if given is not None else (b"", b"")
    user_ok = hmac.compare_digest(user, admin.username.encode())
    password_ok = hmac.compare_digest(password, admin.password.encode())
    return given is not None and user_ok and password_ok


def require_admin(request: IRequest, admin: AdminConfig | None) -> None:
    """Return if the admin is authenticated; otherwise raise the refusal:
    401 with ``WWW-Authenticate``, or 403 when no ``[admin]`` is configured."""
    if admin is None:
        raise HTTPError(403, "admin pages are disabled: set [admin] username and password in the configuration")
    if check_admin(request, admin):
        return
    if request.getHeader(b"authorization"):
        address = getattr(request.getClientAddress(), "host", "-")
        log.info("admin login refused from {address} on {path}", address=address,
                 path=(getattr(request, "path", None) or b"").decode("latin-1", "replace"), event="admin_refused")
    raise HTTPError(401, "admin login required",
                    headers={b"www-authenticate": f'Basic realm="{REALM}", charset="UTF-8"'.encode()})
