"""The ``ops`` service: the start-up line, the ingest record, user reloads.

Reload policy (SIGHUP): a viewer keeps streaming while its user still
exists with the same password and is neither disabled nor expired; the
streams of a user who was removed, disabled, expired or whose password
changed are closed cleanly (their URL no longer logs in).  A lowered
``max_connections`` applies to the next stream the user opens.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

from xrelay import __version__
from xrelay.catalog.lineup_service import Lineups, stream_of_key
from xrelay.core.config import Config, UserConfig
from xrelay.core.users import UserDB
from xrelay.ops.overview import Overview
from xrelay.relay.slots import UserStreams

__all__ = ["OpsService", "revoked_users", "close_revoked", "close_outside_lineups"]

log = Logger()


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


def close_revoked(users: UserDB, overview: Overview, previous: dict[str, UserConfig]) -> None:
    """After a reload: close the streams of users removed, disabled,
    expired or with a new password."""
    gone = revoked_users(previous, users)
    if not gone:
        return
    closed = overview.close_streams_of(gone, "the user was removed or changed by a reload")
    log.info("reload: {closed} streams of {count} removed or changed users closed",
             closed=closed, count=len(gone), event="users_revoked")


def close_outside_lineups(streams: UserStreams, users: UserDB, lineups: Lineups) -> int:
    """After the lineups or the users changed: close every stream a user's
    lineup no longer holds (live, HLS, catch-up, movie, episode); how many."""
    closed = 0
    for username, leases in list(streams.by_user.items()):
        user = users.get(username)
        if user is None or user.lineup is None:
            continue
        for lease in list(leases):
            target = stream_of_key(lease.key)
            if target is None or lineups.may_keep(user, *target):
                continue
            log.info("{user}'s lineup {lineup} no longer holds {kind} {ident}: closing that stream",
                     user=username, lineup=user.lineup, kind=target[0], ident=target[1],
                     event="lineup_stream_closed")
            lease.release()
            try:
                lease.revoke()
            except Exception:
                log.failure("closing {key}", key=lease.key)
            closed += 1
    return closed


class OpsService(Service):
    """Logs the start-up line and loads the ingest record; closes the
    provider's idle connections when the reactor shuts down."""

    name = "ops"

    def __init__(self, reactor: IReactorCore, config: Config, users: UserDB, overview: Overview,
                 close_provider_connections: Callable[[], Any]) -> None:
        self.reactor = reactor
        self.config = config
        self.users = users
        self.overview = overview
        self.close_provider_connections = close_provider_connections
        self._trigger: Any = None

    def startService(self) -> None:
        super().startService()
        config = self.config
        log.info("xrelay {version} starting: listen {listen}, {users} users, data in {data_dir}, "
                 "admin pages {admin}", version=__version__, listen=config.server.listen,
                 users=len(self.users), data_dir=str(config.ingest.data_dir),
                 admin="on" if config.admin is not None else "off (no [admin])", event="start")
        self.overview.load_history()
        if self._trigger is None:
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._close_pool)

    def stopService(self) -> None:
        super().stopService()
        log.info("xrelay stopping: closing the port, viewers' streams, upstreams and any ingest",
                 event="stop")

    def _close_pool(self) -> Any:
        self._trigger = None
        return self.close_provider_connections()
