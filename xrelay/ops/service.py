"""Operations wiring: /metrics, /admin, the start-up line, user reloads.

Called by :func:`xrelay.tap.build` like every feature module.  It sets
``xr.metrics`` and ``xr.admin``, listens to the ingester (for the ingest
record the admin sees) and to user reloads (SIGHUP), and returns the
``ops`` service.

Reload policy (SIGHUP): a viewer keeps streaming while its user still
exists with the same password and is neither disabled nor expired; the
streams of a user who was removed, disabled, expired or whose password
changed are closed cleanly (their URL no longer logs in).  A lowered
``max_connections`` applies to the next stream the user opens.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from xrelay import __version__
from xrelay.ops.admin import AdminPage
from xrelay.core.config import UserConfig
from xrelay.ops.metrics import Metrics
from xrelay.ops.overview import Overview

__all__ = ["OpsService", "wire", "revoked_users"]

log = Logger()


def wire(reactor: Any, xr: Any) -> "OpsService":
    overview = Overview(xr)
    xr.ingester.listeners.append(overview.on_ingest)
    xr.metrics = Metrics(xr, overview)
    xr.admin = AdminPage(xr, overview)
    listeners = getattr(xr, "user_listeners", None)
    if listeners is not None:
        listeners.append(lambda previous: close_revoked(xr, overview, previous))
    return OpsService(reactor, xr, overview)


def revoked_users(previous: dict[str, UserConfig], users: Any, now: float | None = None) -> set[str]:
    """Users of *previous* whose streams must end after a reload."""
    now = time.time() if now is None else now
    gone = set()
    for name, old in previous.items():
        new = users.get(name)
        if (new is None or new.password != old.password or not new.enabled
                or (new.exp_date is not None and new.exp_date <= now)):
            gone.add(name)
    return gone


def close_revoked(xr: Any, overview: Overview, previous: dict[str, UserConfig]) -> None:
    gone = revoked_users(previous, xr.users)
    if not gone:
        return
    closed = overview.close_streams_of(gone, "the user was removed or changed by a reload")
    log.info("reload: {closed} streams of {count} removed or changed users closed",
             closed=closed, count=len(gone), event="users_revoked")


class OpsService(Service):
    """Logs the start-up line and loads the ingest record; closes the
    provider's idle connections when the reactor shuts down."""

    name = "ops"

    def __init__(self, reactor: Any, xr: Any, overview: Overview) -> None:
        self.reactor = reactor
        self.xr = xr
        self.overview = overview
        self._trigger: Any = None

    def startService(self) -> None:
        super().startService()
        config = self.xr.config
        log.info("xrelay {version} starting: listen {listen}, {users} users, data in {data_dir}, "
                 "admin pages {admin}", version=__version__, listen=config.server.listen,
                 users=len(self.xr.users), data_dir=str(config.ingest.data_dir),
                 admin="on" if config.admin is not None else "off (no [admin])", event="start")
        self.overview.load_history()
        if self._trigger is None and hasattr(self.reactor, "addSystemEventTrigger"):
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._close_pool)

    def stopService(self) -> None:
        super().stopService()
        log.info("xrelay stopping: closing the port, viewers' streams, upstreams and any ingest",
                 event="stop")

    def _close_pool(self) -> Any:
        self._trigger = None
        return self.xr.client.close()
