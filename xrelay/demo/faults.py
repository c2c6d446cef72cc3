"""Faults the demo provider can be told to show, at runtime.

Set the fields of ``provider.faults`` (a ``DemoFaults``); ``None`` is healthy.

``api`` (player_api.php; only for ``api_action`` when that is set):
    ``"html"`` an HTML page with status 200; ``"bad_json"`` JSON cut in the
    middle; ``"auth0"`` ``{"user_info":{"auth":0}}``; ``"http500"`` a 500;
    ``"hang"`` never answer; ``"shrink"`` lists keep one item in five;
    ``"expired"`` every call answers the account info with ``status``
    ``"Expired"`` instead of the list asked for (XC 2.x).
``xmltv``:
    ``"truncated"`` send about half of the guide, then drop the connection;
    ``"hang_midway"`` send about half, then nothing more; ``"http500"``.
``get_php``:
    ``"refuse"`` answer 404; ``"reset"`` drop the connection unanswered.
``live`` (live TS bodies, direct or after the redirect):
    ``"drop_after_bytes:N"`` cut each connection after N bytes;
    ``"silent"`` connections opened meanwhile get the headers, then nothing
    ever (zombies); connections already open send nothing (and fall no
    further behind) until the fault is cleared;
    ``"refuse"`` answer 404, to ``.m3u8`` entry URLs too (a channel the
    provider fails in every format).  ``provider.drop_streams()`` cuts the
    open ones.
``vod``:
    ``"drop_after_bytes:N"`` cut each movie/episode body after N bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

API_FAULTS = frozenset({"html", "bad_json", "auth0", "http500", "hang", "shrink", "expired"})
XMLTV_FAULTS = frozenset({"truncated", "hang_midway", "http500"})
GET_PHP_FAULTS = frozenset({"refuse", "reset"})
LIVE_FAULTS = frozenset({"silent", "refuse"})


@dataclass
class DemoFaults:
    api: str | None = None
    api_action: str | None = None
    xmltv: str | None = None
    get_php: str | None = None
    live: str | None = None
    vod: str | None = None

    def clear(self) -> None:
        self.api = self.api_action = self.xmltv = self.get_php = self.live = self.vod = None

    def api_fault(self, action: str) -> str | None:
        """The player_api fault that applies to ``action`` ("" = account info)."""
        if self.api is None or (self.api_action is not None and self.api_action != action):
            return None
        if self.api not in API_FAULTS:
            raise ValueError(f"unknown api fault {self.api!r}")
        return self.api

    @staticmethod
    def drop_after(fault: str | None) -> int | None:
        """N from ``"drop_after_bytes:N"``, else None."""
        if fault and fault.startswith("drop_after_bytes:"):
            return int(fault.split(":", 1)[1])
        return None
