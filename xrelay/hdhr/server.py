"""The emulated HDHomeRun devices at work: their answers and their streams.

:class:`HdhrServer` serves every ``[[hdhr]]`` device, under
``/hdhr/TOKEN/`` on xrelay's port (:meth:`HdhrServer.at_path`) and at the
root of the device's own port (:meth:`HdhrServer.at_port`); the routes
(:mod:`xrelay.web.hdhr_routes`) hand it the request and the device as that
request sees it (:class:`DeviceAt`).

A tuner streams through the shared live relay
(:meth:`~xrelay.relay.channels.LiveRelay.tune`): the same upstream as every
other viewer of the channel, the same provider slots.  Each tuner stream
joins as the user ``hdhr:NAME`` from an address of its own, so the zap rule
never hands one tuner's slot to another tuner of the device (the media
server may be recording on both), other users' zaps never take it (their
name differs), and a tuner may still take a lingering channel's slot.  No
slot, or every tuner busy: ``503`` with ``X-HDHomeRun-Error: 805``, never
a status clip (a DVR would record it).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, cast

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from xrelay.core.config import UserConfig
from xrelay.core.config import HdhrDevice
from xrelay.hdhr import answers
from xrelay.hdhr.channels import ChannelsFor, Lineup, TunerChannel
from xrelay.hdhr.discovery import DiscoveryAnswer, local_address_for
from xrelay.hdhr.guide import DeviceGuides
from xrelay.hdhr.tuners import TunerBusy, Tuners, Tuning
from xrelay.http.errors import HTTPError, NotFound, Unavailable
from xrelay.http.request import public_base
from xrelay.relay.channels import ChannelBusy, LiveRelay

__all__ = ["DeviceAt", "HdhrServer", "TUNERS_IN_USE"]

log = Logger()

#: The header HDHomeRun devices refuse a stream with when no tuner is free.
TUNERS_IN_USE = b"805 All Tuners In Use"
JSON = b"application/json"
MAX_TUNERS = 255


def all_tuners_in_use() -> HTTPError:
    return HTTPError(503, "All Tuners In Use", headers={b"x-hdhomerun-error": TUNERS_IN_USE})


@dataclass(frozen=True)
class DeviceAt:
    """A device as one request reaches it."""

    device: HdhrDevice
    device_id: str
    #: The device's base URL: ``scheme://host:port/hdhr/TOKEN``, or
    #: ``scheme://host:port`` on the device's own port.
    base_url: str
    #: xrelay's own base URL (channel icons are served by its ``/asset/``).
    site_base: str


class HdhrServer:
    """Every configured device."""

    def __init__(self, clock: Any, devices: Sequence[HdhrDevice], device_ids: Mapping[str, str],
                 channels_for: ChannelsFor, relay: LiveRelay, guides: DeviceGuides, *,
                 provider_connections: Callable[[], int], public_url: str | None,
                 web_port: Callable[[], int | None]) -> None:
        self.clock = clock
        self.devices = tuple(devices)
        self.device_ids = dict(device_ids)
        self.channels_for = channels_for
        self.relay = relay
        self.guides = guides
        self.provider_connections = provider_connections
        self.public_url = public_url
        self.web_port = web_port
        self._by_token = {d.token: d for d in self.devices}
        self.tuners = {d.name: Tuners(functools.partial(self.tuner_count, d)) for d in self.devices}
        self._streams = itertools.count(1)

    # -- where a request reaches a device -------------------------------------------

    def at_path(self, request: IRequest, token: str) -> DeviceAt:
        """The device of ``/hdhr/TOKEN/...``; an unknown token is 404."""
        device = self._by_token.get(token)
        if device is None:
            raise NotFound()
        site = public_base(request, self.public_url)
        return DeviceAt(device, self.device_ids[device.name], f"{site}/hdhr/{token}", site)

    def at_port(self, request: IRequest, device: HdhrDevice) -> DeviceAt:
        """*device* at the root of its own port."""
        base = public_base(request, None)
        site = self.public_url
        if site is None:
            scheme, _, hostport = base.partition("://")
            host = hostport.rsplit(":", 1)[0]
            site = f"{scheme}://{host}:{self.web_port() or 80}"
        return DeviceAt(device, self.device_ids[device.name], base, site)

    # -- answers ----------------------------------------------------------------------

    def tuner_count(self, device: HdhrDevice) -> int:
        """The tuners *device* announces: its ``tuners``, else the provider's limit."""
        if device.tuners is not None:
            return device.tuners
        return max(1, min(MAX_TUNERS, self.provider_connections()))

    def channels(self, device: HdhrDevice) -> Lineup:
        return self.channels_for(device.lineup)

    def discover(self, request: IRequest, at: DeviceAt) -> bytes:
        return _json(request, answers.discover(name=at.device.name, device_id=at.device_id,
                                               base_url=at.base_url,
                                               tuner_count=self.tuner_count(at.device)))

    def lineup(self, request: IRequest, at: DeviceAt) -> Deferred[bytes]:
        """``lineup.json``, built in a thread (a whole catalog is tens of thousands of channels)."""
        self._need_catalog()
        channels = self.channels(at.device)

        def build() -> Any:
            listed = [(c.number, c.name) for c in channels]
            return answers.encode(answers.lineup(listed, at.base_url, warn=False))

        answers.warn_if_too_big(at.device.name, len(channels))
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"cache-control", b"no-cache")
        return threads.deferToThread(build)

    def lineup_status(self, request: IRequest) -> bytes:
        return _json(request, answers.lineup_status())

    def lineup_post(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"cache-control", b"no-store")
        return answers.LINEUP_POST_ANSWER

    def device_xml(self, request: IRequest, at: DeviceAt) -> bytes:
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        return answers.device_xml(name=at.device.name, device_id=at.device_id, base_url=at.base_url)

    def guide(self, request: IRequest, at: DeviceAt) -> Deferred[Any]:
        self._need_catalog()
        return Deferred.fromCoroutine(
            self.guides.serve(request, at.device_id, self.channels(at.device), at.site_base))

    # -- streams -----------------------------------------------------------------------

    def tune(self, request: IRequest, at: DeviceAt, number: str, tuner: int | None = None) -> Any:
        """``auto/vNUMBER`` (*tuner* None) or ``tunerK/vNUMBER``: the channel as MPEG-TS."""
        self._need_catalog()
        channel = self._channel(at.device, number)
        tuners = self.tuners[at.device.name]
        if tuner is not None and not tuners.exists(tuner):
            raise NotFound("no such tuner")
        request.setHeader(b"content-type", b"video/mp2t")
        if request.method == b"HEAD":
            return b""
        try:
            tuning = tuners.take(tuner)
        except TunerBusy as e:
            log.info("HDHomeRun {device}: channel {number} refused: {why}", device=at.device.name,
                     number=number, why=str(e))
            raise all_tuners_in_use() from None
        # Released when the stream ends, or when the client leaves while it opens.
        cast(Request, request).notifyFinish().addBoth(lambda _: tuning.release())
        peer = getattr(request.getClientAddress(), "host", "")
        viewer = UserConfig(username=f"hdhr:{at.device.name}", password="", max_connections=0)
        joined = self.relay.tune(request, viewer, f"{peer}#{next(self._streams)}", channel.stream_id,
                                 duration=_duration(request))
        joined.addErrback(self._refused, tuning, at.device, number)
        return joined

    def _refused(self, failure: Failure, tuning: Tuning, device: HdhrDevice, number: str) -> Failure:
        tuning.release()
        if failure.check(ChannelBusy):
            log.info("HDHomeRun {device}: channel {number} refused: no provider connection free",
                     device=device.name, number=number)
            raise all_tuners_in_use()
        return failure

    def _channel(self, device: HdhrDevice, number: str) -> TunerChannel:
        channel = self.channels(device).find(number)
        if channel is None:
            raise NotFound("unknown channel")
        return channel

    def _need_catalog(self) -> None:
        if not self.relay.catalog.loaded:
            raise Unavailable("the channel list is not loaded yet, try again soon", retry_after=10)

    # -- UDP discovery -----------------------------------------------------------------

    def discovery_answers(self, peer: str) -> list[DiscoveryAnswer]:
        """The answers of the devices with ``udp_discovery`` to a LAN host at *peer*."""
        found = [d for d in self.devices if d.udp_discovery]
        if not found:
            return []
        host = local_address_for(peer)
        out = []
        for device in found:
            if self.public_url is not None:
                base = f"{self.public_url}/hdhr/{device.token}"
            elif device.port is not None:
                base = f"http://{host}:{device.port}"
            elif (port := self.web_port()) is not None:
                base = f"http://{host}:{port}/hdhr/{device.token}"
            else:
                continue
            out.append(DiscoveryAnswer(self.device_ids[device.name], self.tuner_count(device), base))
        return out


def _json(request: IRequest, value: Any) -> bytes:
    request.setHeader(b"content-type", JSON)
    request.setHeader(b"cache-control", b"no-cache")
    return answers.encode(value)


def _duration(request: IRequest) -> float | None:
    """``duration=SECONDS`` (a recording's length), if given and sensible."""
    raw = (request.args or {}).get(b"duration", [b""])[0]
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if 0 < seconds < 7 * 86400 else None
