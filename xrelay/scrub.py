"""Keeping the provider's secrets away from clients, files and logs.

The provider's username, password and address never leave xrelay.  Catalog
data comes back from the provider full of them (``direct_source``, logo URLs
on the panel's own host, ``server_info``), so everything ingested passes
through a :class:`Scrubber` before it is written to the data directory.

URLs that point at the provider's host (channel logos, posters) are kept
working by rewriting them to xrelay's ``/asset/`` proxy, written with the
:data:`BASE_MARKER` placeholder that the API replaces with xrelay's own base
URL when it answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .config import UpstreamConfig

#: Stands for xrelay's public base URL (``http://host:port``) in cached files.
BASE_MARKER = "@XRELAY_BASE@"
#: Stand for the requesting user's credentials in cached playlists.
USER_MARKER = "@XRELAY_USER@"
PASS_MARKER = "@XRELAY_PASS@"

#: Path prefix of the asset proxy for provider-hosted images.
ASSET_PREFIX = "/asset"


class Scrubber:
    """Removes one provider account's secrets from text and catalog data."""

    def __init__(self, upstream: UpstreamConfig) -> None:
        self.set_origin(upstream.url)
        self.username = upstream.username
        self.password = upstream.password

    def set_origin(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = (parts.hostname or "").lower()
        self.netloc = parts.netloc.lower()

    # -- text (logs, error messages) ------------------------------------

    def text(self, message: str) -> str:
        """Mask every secret in a free-form message."""
        for secret in self._secrets():
            if secret and secret in message:
                message = message.replace(secret, "***")
        return message

    def _secrets(self) -> list[str]:
        # Longest first so that a host containing the username is masked whole.
        values = {self.netloc, self.host, self.password}
        if len(self.username) >= 3:
            values.add(self.username)
        return sorted((v for v in values if v), key=len, reverse=True)

    def leaks(self, data: str | bytes) -> list[str]:
        """Which secrets *data* contains (for tests and self-checks)."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        lowered = data.lower()
        found = []
        if self.host and self.host in lowered:
            found.append("host")
        if self.password and self.password in data:
            found.append("password")
        if len(self.username) >= 3 and (f"/{self.username}/" in data or f"={self.username}&" in data
                                         or f"={self.username}\"" in data):
            found.append("username")
        return found

    # -- catalog values ---------------------------------------------------

    def url(self, value: str) -> str:
        """Rewrite one string value that may hold a provider URL.

        Provider-hosted URLs become ``@XRELAY_BASE@/asset/PATH``; any other
        mention of the provider's address or credentials blanks the value.
        """
        if not value:
            return value
        lowered = value.lower()
        if self.host and self.host in lowered:
            parts = urlsplit(value.strip())
            if parts.scheme in ("http", "https") and (parts.hostname or "").lower() == self.host:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                if self._has_credentials(path):
                    return ""
                return f"{BASE_MARKER}{ASSET_PREFIX}{path}"
            return ""
        if self._has_credentials(value):
            return ""
        return value

    def _has_credentials(self, value: str) -> bool:
        if self.password and self.password in value:
            return True
        return bool(self.username) and (
            f"/{self.username}/" in value or f"={self.username}" in value
        )

    def tree(self, data: Any) -> Any:
        """Scrub every string in a JSON-like tree (returns a new tree)."""
        if isinstance(data, str):
            return self.url(data)
        if isinstance(data, dict):
            return {k: ("" if k == "direct_source" else self.tree(v)) for k, v in data.items()}
        if isinstance(data, list):
            return [self.tree(v) for v in data]
        return data

    def bytes_(self, chunk: bytes) -> bytes:
        """Scrub a chunk of XML/M3U text: provider origins become asset URLs."""
        for scheme in (b"http://", b"https://"):
            origin = scheme + self.netloc.encode()
            if origin in chunk:
                chunk = chunk.replace(origin + b"/", (BASE_MARKER + ASSET_PREFIX + "/").encode())
                chunk = chunk.replace(origin, BASE_MARKER.encode())
        for secret in (self.password, self.host):
            if secret and secret.encode() in chunk:
                chunk = chunk.replace(secret.encode(), b"")
        return chunk

    @property
    def overlap(self) -> int:
        """Bytes to carry between chunks so that no secret is split."""
        return max(len(s) for s in ("https://" + self.netloc, self.password, self.host)) + 1
