"""``GET /status``: what the relay is doing, as JSON, for the admin.

Protected by HTTP Basic auth with ``[admin] username`` and ``password``.
Lists the live channels (upstream state, buffer, viewers with user, address,
bytes and start time), the provider slots used and allowed, and eviction,
reconnect and handover counts. Never includes provider URLs or secrets.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.web.iweb import IRequest

from xrelay.http.auth import require_admin

__all__ = ["StatusPage"]


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
        denied = require_admin(request, self.xr.config.admin)
        if denied is not None:
            return denied
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.snapshot(), indent=1).encode() + b"\n"
