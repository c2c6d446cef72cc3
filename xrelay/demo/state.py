"""What the demo provider's request handlers use of the provider.

:class:`~xrelay.demo.panel.PanelHandlers` and
:class:`~xrelay.demo.streams.StreamHandlers` are given the provider as a
:class:`ProviderState`, so that they depend on this description and not on
:mod:`xrelay.demo.provider`, which builds them.
"""

from __future__ import annotations

from typing import Protocol
from zoneinfo import ZoneInfo

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from .catalog import Context, DemoCatalog
from .faults import DemoFaults
from .settings import DemoSettings
from .stats import DemoStats

__all__ = ["ProviderState"]


class ProviderState(Protocol):
    reactor: IReactorTime
    settings: DemoSettings
    catalog: DemoCatalog
    stats: DemoStats
    faults: DemoFaults
    tz: ZoneInfo

    def token(self, kind: str, stream_id: int) -> str:
        """The opaque path token of redirected stream URLs."""

    def check(self, username: str | None, password: str | None) -> bool:
        """Whether these are the provider account's credentials."""

    def context(self, request: Request) -> tuple[Context, str, str, str]:
        """(render context, host, port, scheme) from the request's Host."""
