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

import re
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from xrelay.core.config import UpstreamConfig

#: Stands for xrelay's public base URL (``http://host:port``) in cached files.
BASE_MARKER = "@XRELAY_BASE@"
#: Stand for the requesting user's credentials in cached playlists.
USER_MARKER = "@XRELAY_USER@"
PASS_MARKER = "@XRELAY_PASS@"

#: Path prefix of the asset proxy for provider-hosted images.
ASSET_PREFIX = "/asset"

#: A username shorter than this is masked only as a URL path segment or query value.
SHORT = 3


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Scrubber:
    """Removes one provider account's secrets from text and catalog data."""

    def __init__(self, upstream: UpstreamConfig) -> None:
        self.username = upstream.username
        self.password = upstream.password
        self.set_origin(upstream.url)

    def set_origin(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = (parts.hostname or "").lower()
        self.netloc = parts.netloc.lower()
        self._pw_forms = self._forms(self.password)
        self._user_forms = self._forms(self.username)
        self._short_pattern = self._short()
        self._pattern = self._compile()

    def _forms(self, value: str) -> set[str]:
        """A credential as it may appear: raw, or URL-encoded in a path or query."""
        return {value, quote(value, safe=""), quote_plus(value, safe="")} if value else set()

    def _compile(self) -> "re.Pattern[str]":
        # Longest first so that a host containing the username is masked whole.
        # A provider on a loopback address (the built-in demo, a relay on the
        # same box) is masked with its port: the bare address is xrelay's own
        # too, and masking it would hide xrelay's URLs in its own log.
        host = "" if _is_loopback(self.host) and self.netloc != self.host else self.host
        values = {self.netloc, host} | self._forms(self.password)
        if len(self.username) >= SHORT:
            values |= self._forms(self.username)
        ordered = sorted((v for v in values if v), key=len, reverse=True)
        alternatives = [re.escape(v) for v in ordered]
        if self._short_pattern is not None:
            alternatives.append(self._short_pattern.pattern)
        return re.compile("|".join(alternatives) or r"(?!)", re.IGNORECASE)

    def _short(self) -> "re.Pattern[str] | None":
        """A username shorter than :data:`SHORT` as a whole URL path segment
        (``/ab/``, ``/ab?``, ``/ab`` at the end) or query value (``=ab&``,
        ``=ab`` at the end): masking it anywhere would mask every word
        containing it, so it is masked only where a URL carries it."""
        if not self.username or len(self.username) >= SHORT:
            return None
        forms = "|".join(re.escape(f) for f in sorted(self._user_forms, key=len, reverse=True))
        segment_end = r"""(?=[/?#;\s"'<>]|$)"""
        value_end = r"""(?=[&#;\s"'<>]|$)"""
        return re.compile(rf"(?<=/)(?:{forms}){segment_end}|(?<==)(?:{forms}){value_end}", re.IGNORECASE)

    # -- text (logs, error messages) ------------------------------------

    def text(self, message: str) -> str:
        """Mask every secret in a free-form message (any case, raw or URL-encoded);
        a username shorter than :data:`SHORT` only where a URL carries it."""
        return self._pattern.sub("***", message)

    def leaks(self, data: str | bytes) -> list[str]:
        """Which secrets *data* contains (for tests and self-checks)."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        lowered = data.lower()
        found = []
        if self.host and self.host in lowered:
            found.append("host")
        if any(form in data for form in self._pw_forms):
            found.append("password")
        if len(self.username) >= SHORT and any(
                f"/{form}/" in data or f"={form}&" in data or f"={form}\"" in data
                or data.endswith(f"={form}") for form in self._user_forms):
            found.append("username")
        elif self._short_pattern is not None and self._short_pattern.search(data):
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
        if any(form in value for form in self._pw_forms):
            return True
        return any(f"/{form}/" in value or f"={form}" in value for form in self._user_forms)

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
        """Scrub a chunk of XML/M3U text: provider origins (any case) become
        asset URLs; any other mention of the host or a credential is removed."""
        if self.netloc:
            origin = re.compile(rb"https?://" + re.escape(self.netloc.encode()) + rb"(/?)", re.IGNORECASE)
            chunk = origin.sub(lambda m: (BASE_MARKER + (ASSET_PREFIX + "/" if m.group(1) else "")).encode(),
                               chunk)
        secrets = {self.host} | self._forms(self.password)
        if len(self.username) >= SHORT:
            secrets |= {f"/{form}/" for form in self._forms(self.username)}
        for secret in sorted((v for v in secrets if v), key=len, reverse=True):
            pattern = re.compile(re.escape(secret.encode()), re.IGNORECASE)
            chunk = pattern.sub(b"/" if secret.startswith("/") else b"", chunk)
        return chunk

    @property
    def overlap(self) -> int:
        """Bytes to carry between chunks so that no secret is split."""
        forms = self._forms(self.password) | self._forms(self.username)
        return max(len(s) for s in ("https://" + self.netloc, self.host, *forms)) + 2
