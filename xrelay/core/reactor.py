"""The reactor, as the components that use several of its interfaces take it.

A Twisted reactor provides many interfaces and zope.interface has no
intersection type, so a component that needs more than one (the provider
client: connections, timers and the thread pool) takes :class:`IReactor`,
and one that needs a single interface takes that one (``IReactorTime``...).
Twisted declares ``twisted.internet.reactor`` with only its most common
interfaces; :func:`installed_reactor` gives it with all of these.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (IReactorCore, IReactorPluggableNameResolver, IReactorProcess,
                                         IReactorTCP, IReactorThreads, IReactorTime, IReactorUDP)

__all__ = ["IReactor", "installed_reactor"]


class IReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorUDP, IReactorProcess,
               IReactorThreads, IReactorPluggableNameResolver):
    """Every reactor interface xrelay uses; the reactors it runs on
    (epoll, poll, select) provide them all."""


def installed_reactor() -> IReactor:
    """The global reactor (installing the default one if none is)."""
    from twisted.internet import reactor

    return cast(IReactor, reactor)
