"""xrelay's own users: who may log in, and with how many streams.

These are the people and devices on the LAN; they never see the provider's
account.  The table is replaced whole on reload (SIGHUP), so a lookup always
sees one consistent set.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from xrelay.core.config import UserConfig

__all__ = ["AuthResult", "UserDB"]


@dataclass(frozen=True)
class AuthResult:
    user: UserConfig | None
    #: Why the login failed (for logs and metrics; not shown to clients).
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.user is not None


class UserDB:
    def __init__(self, users: Iterable[UserConfig]) -> None:
        self.replace(users)

    def replace(self, users: Iterable[UserConfig]) -> None:
        self._users = {u.username: u for u in users}

    def __len__(self) -> int:
        return len(self._users)

    def __iter__(self) -> Iterator[UserConfig]:
        return iter(self._users.values())

    def get(self, username: str) -> UserConfig | None:
        return self._users.get(username)

    def authenticate(self, username: str | None, password: str | None,
                     now: float | None = None) -> AuthResult:
        if not username or password is None:
            return AuthResult(None, "missing credentials")
        user = self._users.get(username)
        if user is None:
            # compare anyway so that timing does not reveal which names exist
            hmac.compare_digest(password.encode(), b"x" * max(1, len(password)))
            return AuthResult(None, "unknown user")
        if not hmac.compare_digest(password.encode(), user.password.encode()):
            return AuthResult(None, "wrong password")
        if not user.enabled:
            return AuthResult(None, "disabled")
        now = time.time() if now is None else now
        if user.exp_date is not None and user.exp_date <= now:
            return AuthResult(None, "expired")
        return AuthResult(user)
