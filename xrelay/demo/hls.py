"""The demo provider's HLS: live media playlists, a master playlist, segments.

``/live/U/P/ID.m3u8`` answers 302 to ``/hls/TOKEN/ID/index.m3u8`` (or
``master.m3u8``).  The media playlist is a sliding window of ``WINDOW``
segments of ``SEGMENT_SECONDS``; its media sequence is ``now //
SEGMENT_SECONDS`` of the provider's reactor clock.  Segment ``n`` is a
2-second slice of the sample clip cut on keyframes (two slices alternate),
with its timestamps moved so that segment ``n`` starts at ``2n`` seconds:
consecutive segments play as one continuous stream.

The URI form depends on the channel, ``style(stream_id)``, cycling over
stream ids 1, 2, 3, ...:

1. ``absolute``: ``http://host:port/hls/TOKEN/ID/seg_N.ts``
2. ``host_relative``: ``/hls/TOKEN/ID/seg_N.ts``
3. ``relative``: ``seg_N.ts``
4. ``master``: a master playlist with variants ``v0/index.m3u8``
   (relative; relative segments) and ``/hls/TOKEN/ID/v1/index.m3u8``
   (host-relative; host-relative segments)
5. ``key``: AES-128 encrypted segments (relative URIs) with
   ``#EXT-X-KEY:METHOD=AES-128,URI="http://host:port/hls/TOKEN/ID/key.bin"``
   (absolute) and no IV, so the IV is the media sequence number.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .sample import retime, sample_clip

SEGMENT_SECONDS = 2
WINDOW = 6
STYLES = ("absolute", "host_relative", "relative", "master", "key")
VARIANTS = (("v0", 1_100_000), ("v1", 2_200_000))
CONTENT_TYPE = b"application/x-mpegurl"


def style(stream_id: int) -> str:
    return STYLES[(stream_id - 1) % len(STYLES)]


def media_sequence(now: float) -> int:
    return int(now // SEGMENT_SECONDS)


def entry_name(stream_id: int) -> str:
    """The playlist the ``.m3u8`` redirect points at."""
    return "master.m3u8" if style(stream_id) == "master" else "index.m3u8"


def master_playlist(prefix: str) -> str:
    """``prefix`` is ``/hls/TOKEN/ID``."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    uris = ("v0/index.m3u8", f"{prefix}/v1/index.m3u8")  # relative, host-relative
    for (_name, bandwidth), uri in zip(VARIANTS, uris):
        lines.append(
            f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION=640x360,'
            'CODECS="avc1.4d401e,mp4a.40.2"'
        )
        lines.append(uri)
    return "\n".join(lines) + "\n"


def media_playlist(base: str, prefix: str, stream_id: int, now: float,
                   variant: str | None = None) -> str:
    """The live window.  ``base`` is ``http://host:port``."""
    kind = style(stream_id)
    last = media_sequence(now)
    first = max(0, last - WINDOW + 1)
    lines = [
        "#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
    ]
    if kind == "key":
        lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{base}{prefix}/key.bin"')
    directory = f"{prefix}/{variant}" if variant else prefix
    for n in range(first, last + 1):
        name = f"seg_{n}.ts"
        if kind == "absolute":
            uri = f"{base}{directory}/{name}"
        elif kind == "host_relative" or (kind == "master" and variant == "v1"):
            uri = f"{directory}/{name}"
        else:
            uri = name
        lines += [f"#EXTINF:{SEGMENT_SECONDS}.000,", uri]
    return "\n".join(lines) + "\n"


def segment_exists(n: int, now: float) -> bool:
    """Segments of the current window and a little history exist."""
    return media_sequence(now) - 10 * WINDOW <= n <= media_sequence(now)


def key_for(token: str, stream_id: int) -> bytes:
    return hashlib.sha256(f"key:{token}:{stream_id}".encode()).digest()[:16]


@lru_cache(maxsize=4)
def plain_segment(n_mod: int) -> bytes:
    clip = sample_clip()
    per = max(1, len(clip.keyframe_offsets) // 2)
    return clip.slice_between_keyframes(n_mod * per, per)


@lru_cache(maxsize=32)
def timed_segment(n: int) -> bytes:
    """Segment ``n``, timestamps starting ``n * SEGMENT_SECONDS`` after slice 0."""
    slice_index = n % 2
    return retime(plain_segment(slice_index), (n - slice_index) * SEGMENT_SECONDS * 90_000)


def segment_bytes(n: int, key: bytes | None = None) -> bytes:
    """Segment ``n``; AES-128-CBC (PKCS#7, IV = n) when ``key`` is given."""
    data = timed_segment(n)
    if key is None:
        return data
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(n.to_bytes(16, "big"))).encryptor()
    return enc.update(padded) + enc.finalize()
