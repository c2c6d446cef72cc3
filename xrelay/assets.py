"""``/asset/PATH``: provider-hosted images (logos, posters) through xrelay.

The cached catalog points provider-hosted images at ``BASE/asset/PATH``
(see :mod:`xrelay.scrub`).  This fetches ``PATH`` from the provider (no
credentials are added), checks that it is an image of bounded size, and
answers with the image and its content type only: no provider header
(Server, Set-Cookie, Location...) reaches the client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IRequest

from .provider import ProviderError
from .scrub import ASSET_PREFIX

__all__ = ["AssetProxy"]

log = Logger()

#: Largest image passed through, bytes.
MAX_ASSET = 8 * 1024 * 1024
ALLOWED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


class _TooBig(Exception):
    pass


class _Collect(Protocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.done.errback(_TooBig())
            self.transport.stopProducing()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:
        if self.done.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(ProviderError("asset: connection lost"))


class _Drop(Protocol):
    """Reads and forgets a body we do not pass on."""

    def dataReceived(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


def _text(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return message.encode() + b"\n"


class AssetProxy:
    def __init__(self, xr: Any, max_bytes: int = MAX_ASSET) -> None:
        self.xr = xr
        self.max_bytes = max_bytes

    def path_of(self, request: IRequest) -> str | None:
        """The provider path (and query) asked for, or None if unusable."""
        uri = request.uri.decode("latin-1")
        prefix = ASSET_PREFIX + "/"
        if not uri.startswith(prefix):
            return None
        path = uri[len(prefix):]
        plain = unquote(path.split("?", 1)[0])
        if (not plain or len(path) > 2048 or ".." in plain.split("/") or "\\" in plain
                or any(ord(c) < 32 for c in plain)):
            return None
        return path

    def render(self, request: IRequest) -> Any:
        path = self.path_of(request)
        if path is None:
            return _text(request, 404, "not found")
        return defer.Deferred.fromCoroutine(self._fetch(request, path))

    async def _fetch(self, request: IRequest, path: str) -> bytes:
        client = self.xr.client
        try:
            response = await client.request(client.asset_url(path), timeout=20, what="asset")
        except ProviderError:
            return _text(request, 502, "image unavailable")
        if response.code != 200:
            response.deliverBody(_Drop())
            if response.code in (404, 410):
                return _text(request, 404, "image not found")
            return _text(request, 502, "image unavailable")
        ctype = (response.headers.getRawHeaders(b"content-type") or [b"application/octet-stream"])[0]
        ctype = ctype.split(b";", 1)[0].strip().lower()
        if not ctype.decode("latin-1").startswith(ALLOWED_TYPES):
            response.deliverBody(_Drop())
            return _text(request, 502, "not an image")
        if response.length is not None and isinstance(response.length, int) \
                and response.length > self.max_bytes:
            response.deliverBody(_Drop())
            return _text(request, 502, "image too large")
        body = _Collect(self.max_bytes)
        response.deliverBody(body)
        try:
            data = await body.done
        except _TooBig:
            return _text(request, 502, "image too large")
        except ProviderError:
            return _text(request, 502, "image unavailable")
        request.setHeader(b"content-type", ctype)
        request.setHeader(b"content-length", str(len(data)).encode())
        request.setHeader(b"cache-control", b"public, max-age=86400")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return data
