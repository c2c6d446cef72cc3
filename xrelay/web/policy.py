"""``[server]``'s limits as the HTTP layer's records.

:func:`limits_from` gives the :class:`~xrelay.http.limits.Limits` of the
site (deadlines, sizes, connections per address), :func:`throttle_policy_from`
the :class:`~xrelay.http.throttle.ThrottlePolicy` of the failed-login
throttles.  README's "Limits" section describes them.
"""

from __future__ import annotations

from xrelay.core.config import ServerConfig
from xrelay.http.limits import Limits
from xrelay.http.throttle import ThrottlePolicy

__all__ = ["limits_from", "throttle_policy_from"]


def limits_from(server: ServerConfig) -> Limits:
    """What one request and one client address may cost."""
    return Limits(
        header_timeout=server.header_timeout,
        body_timeout=server.body_timeout,
        idle_timeout=server.idle_timeout,
        max_body=server.max_body,
        max_request_line=server.max_request_line,
        max_header_line=min(Limits.max_header_line, server.max_header_size),
        max_header_size=server.max_header_size,
        max_per_address=server.max_connections_per_address,
        cap_loopback=server.cap_loopback,
    )


def throttle_policy_from(server: ServerConfig) -> ThrottlePolicy:
    """When failed logins are delayed, then refused."""
    default = ThrottlePolicy()
    lockout_after = max(server.login_lockout_after, 1)
    return ThrottlePolicy(
        free_failures=server.login_free_failures,
        base_delay=min(default.base_delay, server.login_max_delay),
        max_delay=server.login_max_delay,
        lockout_after=lockout_after,
        lockout=server.login_lockout,
        forget_after=max(default.forget_after, server.login_lockout),
    )
