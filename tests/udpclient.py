"""A UDP client for the discovery tests: the first reply datagram, as a Deferred."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol


class FirstReply(DatagramProtocol):
    """Fires :attr:`replies` with the first datagram it receives."""

    def __init__(self) -> None:
        self.replies: defer.Deferred[bytes] = defer.Deferred()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.replies.called:
            self.replies.callback(data)
