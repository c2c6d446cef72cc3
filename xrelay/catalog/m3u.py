"""M3U playlists: reading the provider's, writing xrelay's.

xrelay's playlists are rendered from the catalog bundle, with every stream
URL pointing at xrelay and carrying the requesting user's credentials.  The
provider's own playlist is read only for what the API lists lack: the
series episodes (one line per episode), whose ids are needed for playback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator
from urllib.parse import quote, urlsplit

from xrelay.core.scrub import Scrubber

__all__ = ["M3UEntry", "parse_m3u", "classify_url", "episodes_from_playlist", "render_m3u"]

_ATTR = re.compile(r'([A-Za-z0-9_-]+)="([^"]*)"')


@dataclass
class M3UEntry:
    attrs: dict[str, str]
    name: str
    url: str


def parse_m3u(lines: Iterable[str]) -> Iterator[M3UEntry]:
    """Entries of an extended M3U; attribute names are lower-cased."""
    attrs: dict[str, str] | None = None
    name = ""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXTINF"):
            head, _, name = line.partition(",")
            attrs = {k.lower(): v for k, v in _ATTR.findall(head)}
            name = name.strip()
        elif line.startswith("#"):
            continue
        elif attrs is not None:
            yield M3UEntry(attrs, name, line)
            attrs = None


_STREAM_PATH = re.compile(
    r"^/(?:(?P<kind>live|movie|series)/)?[^/]+/[^/]+/(?P<id>\d+)(?:\.(?P<ext>[A-Za-z0-9]+))?$"
)


def classify_url(url: str) -> tuple[str, int, str] | None:
    """``(kind, id, ext)`` of a provider stream URL, or None."""
    match = _STREAM_PATH.match(urlsplit(url).path)
    if match is None:
        return None
    kind = match.group("kind") or "live"
    return kind, int(match.group("id")), (match.group("ext") or "ts").lower()


def episodes_from_playlist(lines: Iterable[str], scrubber: Scrubber) -> list[dict[str, Any]]:
    """The series episodes listed in a provider playlist, secrets removed."""
    out = []
    seen: set[int] = set()
    for entry in parse_m3u(lines):
        kind_id = classify_url(entry.url)
        if kind_id is None or kind_id[0] != "series" or kind_id[1] in seen:
            continue
        seen.add(kind_id[1])
        out.append({
            "id": kind_id[1],
            "name": _clean(entry.attrs.get("tvg-name") or entry.name),
            "logo": scrubber.url(entry.attrs.get("tvg-logo", "")),
            "group": _clean(entry.attrs.get("group-title", "")),
            "ext": kind_id[2] if kind_id[2].isalnum() else "mp4",
        })
    return out


def _clean(value: Any) -> str:
    """An attribute or name value: no quotes, no line breaks."""
    return str(value or "").replace('"', "'").replace("\r", " ").replace("\n", " ")


def render_m3u(bundle: dict[str, Any], *, base: str, username: str, password: str,
               plus: bool = True, output: str = "ts",
               kinds: tuple[str, ...] = ("live", "movie", "series"),
               quoted: bool = False, header: bool = True,
               live_ext: str | None = None) -> Iterator[str]:
    """The playlist, line by line (each line ends with CRLF, as panels send).

    The credentials are URL-encoded here unless *quoted* says they already
    are (or are placeholders, as in the cached ``live.m3u``/``full.m3u`` and
    the API's templates).  *live_ext* overrides the live channels' extension
    that *output* implies (the API's templates put a placeholder there).
    """
    user = username if quoted else quote(username, safe="")
    pw = password if quoted else quote(password, safe="")
    creds = f"{user}/{pw}"
    if live_ext is None:
        live_ext = "m3u8" if output in ("m3u8", "hls") else "ts"
    if header and plus:
        guide = f"{base}/xmltv.php?username={user}&password={pw}"
        yield f'#EXTM3U url-tvg="{guide}" x-tvg-url="{guide}"\r\n'
    elif header:
        yield "#EXTM3U\r\n"
    if "live" in kinds:
        groups = _group_names(bundle.get("live_categories", []))
        for s in bundle.get("live_streams", []):
            url = f"{base}/live/{creds}/{s['stream_id']}.{live_ext}"
            if plus:
                extra = ""
                if s.get("tv_archive"):
                    days = s.get("tv_archive_duration") or 0
                    extra = f' timeshift="{days}" catchup="xc" catchup-days="{days}"'
                yield (f'#EXTINF:-1{extra} tvg-id="{_clean(s.get("epg_channel_id"))}" '
                       f'tvg-name="{_clean(s["name"])}" tvg-logo="{_clean(s.get("stream_icon"))}" '
                       f'tvg-chno="{s["num"]}" group-title="{_clean(groups.get(s.get("category_id"), ""))}",'
                       f'{_clean(s["name"])}\r\n{url}\r\n')
            else:
                yield f"#EXTINF:-1,{_clean(s['name'])}\r\n{url}\r\n"
    if "movie" in kinds:
        groups = _group_names(bundle.get("vod_categories", []))
        for s in bundle.get("vod_streams", []):
            url = f"{base}/movie/{creds}/{s['stream_id']}.{s['container_extension']}"
            yield _vod_line(plus, s["name"], s.get("stream_icon", ""),
                            groups.get(s.get("category_id"), ""), url)
    if "series" in kinds:
        for e in bundle.get("episodes", []):
            url = f"{base}/series/{creds}/{e['id']}.{e['ext']}"
            yield _vod_line(plus, e["name"], e.get("logo", ""), e.get("group", ""), url)


def _vod_line(plus: bool, name: str, logo: str, group: str, url: str) -> str:
    if plus:
        return (f'#EXTINF:-1 tvg-name="{_clean(name)}" tvg-logo="{_clean(logo)}" '
                f'group-title="{_clean(group)}",{_clean(name)}\r\n{url}\r\n')
    return f"#EXTINF:-1,{_clean(name)}\r\n{url}\r\n"


def _group_names(categories: list[dict[str, Any]]) -> dict[str | None, str]:
    return {c["category_id"]: c["category_name"] for c in categories}
