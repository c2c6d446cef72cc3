"""Images on the provider's host (logos, posters), fetched for the ``/asset/`` proxy.

:class:`ImageFetcher` asks the provider for one path (no credentials are
added) and returns ``(status, body, content type)``: 200 with the image, or
404/502 with a short reason.  Only raster images of at most
:data:`MAX_IMAGE` bytes are accepted, and only when their first bytes are an
image's (:func:`image_type`: PNG, JPEG, GIF, WebP, BMP, ICO, AVIF); the type
sent is the one the bytes show, never the provider's.  SVG is refused: it
can carry scripts, and would run them from xrelay's own address.  Nothing of
the provider's answer but the image is returned.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from xrelay.provider.client import ProviderClient, ProviderError, collect_body, discard_body

__all__ = ["ImageFetcher", "MAX_IMAGE", "ALLOWED_TYPES", "image_type"]

#: Largest image passed through, bytes (posters and backdrops included).
MAX_IMAGE = 4 * 1024 * 1024
#: Provider Content-Types worth reading (the bytes decide after).
ALLOWED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
#: Seconds without data while reading an image.
IDLE_TIMEOUT = 15.0


def image_type(data: bytes) -> bytes | None:
    """The Content-Type of a raster image from its first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return b"image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return b"image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return b"image/webp"
    if data[:2] == b"BM" and len(data) >= 26:
        return b"image/bmp"
    if data[:4] == b"\x00\x00\x01\x00" and len(data) >= 22:
        return b"image/x-icon"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return b"image/avif"
    return None


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
        if not ctype.decode("latin-1").startswith(ALLOWED_TYPES) or ctype.startswith(b"image/svg"):
            discard_body(response)
            return 502, b"not an image", b""
        if isinstance(response.length, int) and response.length > self.max_bytes:
            discard_body(response)
            return 502, b"image too large", b""
        try:
            data = await collect_body(self.clock, response, self.max_bytes, IDLE_TIMEOUT, "asset")
        except ProviderError as e:
            return 502, (b"image too large" if "larger than" in str(e) else b"image unavailable"), b""
        kind = image_type(data)
        if kind is None:
            return 502, b"not an image", b""
        return 200, data, kind
