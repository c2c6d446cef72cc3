"""``GET /status``: what the relay is doing, as JSON, for the admin.

Behind HTTP Basic auth with ``[admin] username`` and ``password`` (the route checks it).
Lists the live channels (upstream state, buffer, viewers with user, address,
bytes and start time), the provider slots used and allowed, eviction,
reconnect and handover counts, and each user's lineup with its counts. Never includes provider URLs or secrets.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.web.iweb import IRequest

from xrelay.ops.overview import Overview

__all__ = ["StatusPage"]


class StatusPage:
    def __init__(self, overview: Overview) -> None:
        self.overview = overview
        self.started = time.time()

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": time.time(),
            "started": self.started,
            "catalog_loaded": self.overview.catalog.loaded,
        }
        out.update(self.overview.live.snapshot())
        out["lineups"] = self.overview.lineup_state()
        return out

    def render(self, request: IRequest) -> bytes:
        """The answer for an admin (the route has checked the login)."""
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(self.snapshot(), indent=1).encode() + b"\n"
