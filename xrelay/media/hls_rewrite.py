"""M3U8 playlist rewriting: every URI a playlist names, replaced.

:func:`rewrite_playlist` resolves each URI (media segments, variant
playlists, and the ``URI="..."`` attributes of ``#EXT-X-KEY``,
``#EXT-X-MAP``, ``#EXT-X-MEDIA``...) against the playlist's own final URL,
whether absolute, relative or host-relative, and hands it to a callback that
returns the URI to write instead.
"""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import urljoin, urlsplit

from twisted.logger import Logger

__all__ = ["rewrite_playlist", "target_duration"]

log = Logger()

_URI_ATTR = re.compile(r'URI="([^"]*)"')
_TARGET = re.compile(r"#EXT-X-TARGETDURATION:\s*(\d+(?:\.\d+)?)")


def _tag_kind(line: str) -> str:
    """What the URI attribute of a tag points at."""
    tag = line.split(":", 1)[0].upper()
    if tag in ("#EXT-X-KEY", "#EXT-X-SESSION-KEY"):
        return "key"
    if tag in ("#EXT-X-MEDIA", "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-RENDITION-REPORT"):
        return "playlist"
    return "segment"  # #EXT-X-MAP, #EXT-X-PART, #EXT-X-PRELOAD-HINT...


def _uri_kind(url: str, after_stream_inf: bool) -> str:
    path = urlsplit(url).path.lower()
    if after_stream_inf or path.endswith((".m3u8", ".m3u")):
        return "playlist"
    return "segment"


def rewrite_playlist(text: str, base_url: str, make_uri: Callable[[str, str], str],
                     leaks: Callable[[str], list[str]] | None = None) -> str:
    """Every URI of an M3U8 playlist replaced by ``make_uri(absolute_url, kind)``.

    ``base_url`` is the playlist's own (final) URL; ``kind`` is ``playlist``,
    ``segment`` or ``key``.  A tag line naming a secret (``leaks``) outside
    its URI attributes is dropped.
    """
    out: list[str] = []
    after_stream_inf = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if leaks is not None and leaks(_URI_ATTR.sub('URI=""', line)):
                log.warn("dropped an HLS tag naming the provider: {tag}",
                         tag=line.split(":", 1)[0])
                continue
            if 'URI="' in line:
                kind = _tag_kind(line)
                line = _URI_ATTR.sub(
                    lambda m: f'URI="{make_uri(urljoin(base_url, m.group(1)), kind)}"', line)
            if line.upper().startswith("#EXT-X-STREAM-INF"):
                after_stream_inf = True
            out.append(line)
            continue
        url = urljoin(base_url, line)
        out.append(make_uri(url, _uri_kind(url, after_stream_inf)))
        after_stream_inf = False
    return "\n".join(out) + "\n"


def target_duration(text: str, default: float = 6.0) -> float:
    m = _TARGET.search(text)
    return float(m.group(1)) if m else default
