"""The routes of one emulated HDHomeRun device, wherever it is mounted.

:class:`DeviceRoutes` serves one device as one request reaches it: under
``/hdhr/TOKEN/`` of xrelay's port (a branch of :class:`~xrelay.web.routes.WebApp`)
or at the root of the device's own port (:func:`device_port_resource`).
The answers are :class:`~xrelay.hdhr.server.HdhrServer`'s.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from xrelay.core.config import HdhrDevice
from xrelay.hdhr.server import DeviceAt, HdhrServer
from xrelay.web.answers import ANSWERED_ERRORS, error_answer

__all__ = ["DeviceRoutes", "device_port_resource"]

ANY = ["GET", "POST", "HEAD"]
READ = ["GET", "HEAD"]


class DeviceRoutes:
    """One device's endpoints, for one request."""

    app = Klein()

    def __init__(self, hdhr: HdhrServer, at: DeviceAt) -> None:
        self.hdhr = hdhr
        self.at = at

    @app.route("/discover.json", methods=READ)
    def discover(self, request: IRequest) -> Any:
        return self.hdhr.discover(request, self.at)

    @app.route("/lineup.json", methods=READ)
    def lineup(self, request: IRequest) -> Any:
        return self.hdhr.lineup(request, self.at)

    @app.route("/lineup_status.json", methods=READ)
    def lineup_status(self, request: IRequest) -> Any:
        return self.hdhr.lineup_status(request)

    @app.route("/lineup.post", methods=ANY)
    def lineup_post(self, request: IRequest) -> Any:
        """A scan request (``scan=start``, ``scan=abort``...): nothing to scan."""
        return self.hdhr.lineup_post(request)

    @app.route("/device.xml", methods=READ)
    def device_xml(self, request: IRequest) -> Any:
        return self.hdhr.device_xml(request, self.at)

    @app.route("/guide.xml", methods=READ)
    def guide(self, request: IRequest) -> Any:
        return self.hdhr.guide(request, self.at)

    @app.route("/auto/v<number>", methods=READ)
    def auto(self, request: IRequest, number: str) -> Any:
        return self.hdhr.tune(request, self.at, number)

    @app.route("/tuner<int:tuner>/v<number>", methods=READ)
    def tuner(self, request: IRequest, tuner: int, number: str) -> Any:
        return self.hdhr.tune(request, self.at, number, tuner)

    @app.handle_errors(*ANSWERED_ERRORS)
    def error(self, request: IRequest, failure: Failure) -> bytes:
        return error_answer(request, failure)


class _DevicePort(Resource):
    """The root of a device's own port: the device, at ``/``."""

    isLeaf = True

    def __init__(self, hdhr: HdhrServer, device: HdhrDevice) -> None:
        super().__init__()
        self.hdhr = hdhr
        self.device = device

    def render(self, request: IRequest) -> Any:
        routes = DeviceRoutes(self.hdhr, self.hdhr.at_port(request, self.device))
        return routes.app.resource().render(request)


def device_port_resource(hdhr: HdhrServer, device: HdhrDevice) -> Resource:
    """The resource a device's own port serves."""
    return _DevicePort(hdhr, device)
