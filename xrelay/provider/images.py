"""Images on the provider's host (logos, posters), fetched for the ``/asset/`` proxy.

:class:`ImageFetcher` asks the provider for one path (no credentials are
added) and returns ``(status, body, content type)``: 200 with the image, or
404/502 with a short reason.  Only images of a bounded size are accepted;
nothing of the provider's answer but the image and its type is returned.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from xrelay.provider.client import ProviderClient, ProviderError, collect_body, discard_body

__all__ = ["ImageFetcher", "MAX_IMAGE", "ALLOWED_TYPES"]

#: Largest image passed through, bytes.
MAX_IMAGE = 8 * 1024 * 1024
ALLOWED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
#: Seconds without data while reading an image.
IDLE_TIMEOUT = 15.0


class ImageFetcher:
    def __init__(self, clock: IReactorTime, client: ProviderClient, max_bytes: int = MAX_IMAGE) -> None:
        self.clock = clock
        self.client = client
        self.max_bytes = max_bytes

    async def __call__(self, path: str) -> tuple[int, bytes, bytes]:
        client = self.client
        try:
            response = await client.request(client.asset_url(path), timeout=20, what="asset")
        except ProviderError:
            return 502, b"image unavailable", b""
        if response.code != 200:
            discard_body(response)
            if response.code in (404, 410):
                return 404, b"image not found", b""
            return 502, b"image unavailable", b""
        ctype = (response.headers.getRawHeaders(b"content-type") or [b"application/octet-stream"])[0]
        ctype = ctype.split(b";", 1)[0].strip().lower()
        if not ctype.decode("latin-1").startswith(ALLOWED_TYPES):
            discard_body(response)
            return 502, b"not an image", b""
        if isinstance(response.length, int) and response.length > self.max_bytes:
            discard_body(response)
            return 502, b"image too large", b""
        try:
            data = await collect_body(self.clock, response, self.max_bytes, IDLE_TIMEOUT, "asset")
        except ProviderError as e:
            return 502, (b"image too large" if "larger than" in str(e) else b"image unavailable"), b""
        return 200, data, ctype
