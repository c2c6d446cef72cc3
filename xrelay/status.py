"""``GET /status``: what the relay is doing, as JSON, for the admin.

Protected by HTTP Basic auth with ``[admin] username`` and ``password``.
Lists the live channels (upstream state, buffer, viewers with user, address,
bytes and start time), the provider slots used and allowed, and eviction,
reconnect and handover counts. Never includes provider URLs or secrets.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from twisted.web.iweb import IRequest

from .web import text_error

__all__ = ["StatusPage", "check_admin"]


def check_admin(request: IRequest, admin: Any) -> bool:
    """True when the request carries the admin's Basic credentials."""
    if admin is None:
        return False
    user = request.getUser() or b""
    password = request.getPassword() or b""
    ok_user = hmac.compare_digest(user, admin.username.encode())
    ok_password = hmac.compare_digest(password, admin.password.encode())
    return ok_user and ok_password


class StatusPage:
    def __init__(self, xr: Any) -> None:
        self.xr = xr
        self.started = time.time()

    def snapshot(self) -> dict[str, Any]:
        xr = self.xr
        out: dict[str, Any] = {
            "time": time.time(),
            "started": self.started,
            "catalog_loaded": bool(getattr(xr.cache, "loaded", False)),
        }
        if xr.relay is not None:
            out.update(xr.relay.snapshot())
        return out

    def render(self, request: IRequest) -> bytes:
        admin = self.xr.config.admin
        if admin is None:
            return text_error(request, 403, "no [admin] account is configured")
        if not check_admin(request, admin):
            request.setHeader(b"www-authenticate", b'Basic realm="xrelay", charset="UTF-8"')
            return text_error(request, 401, "admin login required")
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.snapshot(), indent=1).encode() + b"\n"
