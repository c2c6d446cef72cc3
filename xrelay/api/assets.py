"""``/asset/PATH``: provider-hosted images (logos, posters) through xrelay.

The cached catalog points provider-hosted images at ``BASE/asset/PATH``
(see :mod:`xrelay.core.scrub`).  Only a path the catalog names is served
(*names*: :meth:`CatalogCache.names_asset
<xrelay.catalog.cache.CatalogCache.names_asset>`, the images of the lists,
the guide and the details served); any other is 404 without asking the
provider.  It is fetched from the provider (no credentials are added) and
served only as an image of bounded size whose bytes say which image type
it is (:mod:`xrelay.provider.images`), with that type only: no provider
header (Server, Set-Cookie, Location...) reaches the client.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from xrelay.core.deferreds import Shared
from xrelay.core.scrub import ASSET_PREFIX
from xrelay.http.errors import NotFound, text_error

__all__ = ["AssetProxy"]

log = Logger()

#: ``fetch(path) -> (status, body, content type)``: an image from the
#: provider's host (:class:`xrelay.provider.images.ImageFetcher`): 200 with
#: the image, or 404/502 with a short reason as the body.
ImageFetch = Callable[[str], Awaitable[tuple[int, bytes, bytes]]]


@dataclass
class _Result:
    code: int
    body: bytes
    ctype: bytes = b"text/plain; charset=utf-8"


#: How long fetched images (and "not found" answers) are kept, seconds.
IMAGE_TTL = 24 * 3600
MISSING_TTL = 600
#: Byte budget of the in-memory image cache.
CACHE_BUDGET = 32 * 1024 * 1024


class AssetProxy:
    """Fetches provider images once for every client: concurrent requests
    for one path share a fetch, and results are kept in a small LRU (a TV
    app loading 50k logos must not become 50k provider requests per device)."""

    def __init__(self, clock: IReactorTime, fetch: ImageFetch, names: Callable[[str], bool],
                 budget: int = CACHE_BUDGET) -> None:
        self.clock = clock
        self.fetch = fetch
        #: Whether the catalog names a path (only those are fetched).
        self.names = names
        self.budget = budget
        self._cache: OrderedDict[str, tuple[float, _Result]] = OrderedDict()
        self._size = 0
        self._inflight: dict[str, Shared[_Result]] = {}

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
        if path is None or not self.names(path):
            raise NotFound()
        now = self.clock.seconds()
        key = unquote(path)  # one image, however the client encodes its path
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return self._answer(request, cached[1])
        shared = self._inflight.get(key)
        if shared is None:
            d = defer.Deferred.fromCoroutine(self._fetch(path))

            def settled(result: _Result | Failure) -> _Result | Failure:
                self._inflight.pop(key, None)
                self._keep(key, result)
                return result

            d.addBoth(settled)
            shared = Shared(d)
            if not shared.done:  # a fetch that ended at once is not kept as in flight
                self._inflight[key] = shared
        return shared.wait().addCallback(lambda result: self._answer(request, result))

    def _keep(self, path: str, result: _Result | Failure) -> None:
        if not isinstance(result, _Result) or result.code == 502 or len(result.body) > self.budget // 8:
            return
        ttl = IMAGE_TTL if result.code == 200 else MISSING_TTL
        old = self._cache.pop(path, None)
        if old is not None:
            self._size -= len(old[1].body)
        self._cache[path] = (self.clock.seconds() + ttl, result)
        self._size += len(result.body)
        while self._size > self.budget and self._cache:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._size -= len(dropped.body)

    def _answer(self, request: IRequest, result: _Result) -> bytes:
        if result.code != 200:
            return text_error(request, result.code, result.body.decode())
        request.setHeader(b"content-type", result.ctype)
        request.setHeader(b"content-length", str(len(result.body)).encode())
        request.setHeader(b"cache-control", b"public, max-age=86400")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return result.body

    async def _fetch(self, path: str) -> _Result:
        code, body, ctype = await self.fetch(path)
        return _Result(code, body, ctype or b"text/plain; charset=utf-8")
