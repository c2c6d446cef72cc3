"""Listening for the emulated devices: UDP discovery, and their own ports.

* :class:`DiscoveryService` answers SiliconDust's UDP discovery (port
  65001) while the daemon runs, when a device asks for it;
* :func:`device_endpoint` is the endpoint string of a device's own port,
  on the interface xrelay's main port listens on;
* :class:`RecordingEndpoint` remembers which port xrelay's main endpoint
  got (``tcp:0``, socket activation), for the base URLs the discovery
  replies carry.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from xrelay.hdhr.discovery import DISCOVER_PORT

__all__ = ["DiscoveryService", "RecordingEndpoint", "device_endpoint"]

log = Logger()

_FIELDS = re.compile(r"(?<!\\):")


def device_endpoint(listen: str, port: int) -> str:
    """``tcp:PORT``, with the ``interface=`` of xrelay's *listen* string if it has one."""
    _, _, rest = listen.partition(":")
    for part in _FIELDS.split(rest):
        if part.startswith("interface="):
            return f"tcp:{port}:{part}"
    return f"tcp:{port}"


class DiscoveryService(Service):
    """Listens for discover requests on UDP *port* (65001) while running.

    A port that cannot be had (taken, not permitted) is logged, not fatal:
    entering the base URL by hand is the supported path anyway.
    """

    name = "hdhr-discovery"

    def __init__(self, reactor: Any, protocol: DatagramProtocol, *, port: int = DISCOVER_PORT,
                 interface: str = "") -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.port_number = port
        self.interface = interface
        self.listening: Any = None

    def startService(self) -> None:
        super().startService()
        try:
            self.listening = self.reactor.listenUDP(self.port_number, self.protocol,
                                                    interface=self.interface)
        except Exception as e:  # CannotListenError, PermissionError...
            log.error("HDHomeRun discovery: cannot listen on UDP port {port}: {error}",
                      port=self.port_number, error=str(e))
            return
        log.info("HDHomeRun discovery: answering on UDP port {port}",
                 port=self.listening.getHost().port)

    def stopService(self) -> Any:
        super().stopService()
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()
        return None


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    """An endpoint that remembers the port number it listens on."""

    def __init__(self, inner: IStreamServerEndpoint) -> None:
        self.inner = inner
        self.port: int | None = None

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self.port = getattr(port.getHost(), "port", None)
            return port

        return self.inner.listen(factory).addCallback(listening)
