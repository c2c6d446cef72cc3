"""get.php (M3U) and xmltv.php (XMLTV) bodies, generated in chunks.

The M3U follows the XC device templates (CRLF line endings, explicit port,
``timeshift="N"`` on archive channels, one line per series episode named
``"Title S01E03"``).  Quirky catalogs spell the attribute ``tvg-ID`` as the
XC 2.x seed does.  The XMLTV guide lists each distinct ``epg_channel_id``
once, then ``epg_hours`` of programmes per channel, with times in the
provider's timezone offset like XC 2.x.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from .catalog import ARCHIVE_DAYS, Context, DemoCatalog

_BATCH = 500


def _clean(name: str) -> str:
    return name.replace("\r", " ").replace("\n", " ")


def m3u_chunks(catalog: DemoCatalog, ctx: Context, output: str = "ts",
               plus: bool = True) -> Iterator[bytes]:
    """The playlist: live channels, then movies, then series episodes."""
    ext = "m3u8" if output in ("m3u8", "hls") else "ts"
    tvg_id = "tvg-ID" if catalog.quirky else "tvg-id"
    u, p, base = ctx.username, ctx.password, ctx.base
    lines: list[str] = ["#EXTM3U"]

    def entry(name: str, url: str, logo: str, group: str, epg: str = "", extra: str = "") -> None:
        name = _clean(name)
        if plus:
            lines.append(
                f'#EXTINF:-1 {extra}{tvg_id}="{epg}" tvg-name="{name}" tvg-logo="{logo}" '
                f'group-title="{group}",{name}'
            )
        else:
            lines.append(f"#EXTINF:-1,{name}")
        lines.append(url)

    def flush() -> bytes:
        data = ("\r\n".join(lines) + "\r\n").encode()
        lines.clear()
        return data

    live_groups = catalog.category_names("live")
    for i in range(catalog.live):
        sid = i + 1
        row = catalog.live_row(i, ctx)
        extra = f'timeshift="{ARCHIVE_DAYS}" ' if row["tv_archive"] else ""
        group = live_groups.get(catalog._item_categories("live", i)[0], "")
        entry(row["name"], f"{base}/live/{u}/{p}/{sid}.{ext}", row["stream_icon"] or "", group,
              row["epg_channel_id"] or "", extra)
        if len(lines) >= _BATCH:
            yield flush()
    vod_groups = catalog.category_names("vod")
    for i in range(catalog.vod):
        row = catalog.vod_row(i, ctx)
        sid = row["stream_id"]
        group = vod_groups.get(int(row["category_id"]), "")
        entry(row["name"], f"{base}/movie/{u}/{p}/{sid}.{row['container_extension']}",
              row["stream_icon"] or "", group)
        if len(lines) >= _BATCH:
            yield flush()
    series_groups = catalog.category_names("series")
    for _i, series, ep in catalog.episodes_flat(ctx):
        name = f"{series['name']} S{ep['season']:02d}E{int(ep['episode_num']):02d}"
        group = series_groups.get(int(series["category_id"]), "")
        entry(name, f"{base}/series/{u}/{p}/{ep['id']}.{ep['container_extension']}",
              series["cover"], group)
        if len(lines) >= _BATCH:
            yield flush()
    if lines:
        yield flush()


def xmltv_time(epoch: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, tz).strftime("%Y%m%d%H%M%S %z")


def xmltv_chunks(catalog: DemoCatalog, ctx: Context, now: float, tz: ZoneInfo,
                 batch: int = 50) -> Iterator[bytes]:
    """The guide, a few channels per chunk, so the first byte leaves at once."""
    yield (
        '<?xml version="1.0" encoding="utf-8" ?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
        f'<tv generator-info-name="xrelay demo provider" generator-info-url={quoteattr(ctx.base)}>\n'
    ).encode()
    channels = list(catalog.epg_channels())
    for n in range(0, len(channels), batch * 4):
        parts = []
        for epg, i in channels[n : n + batch * 4]:
            parts.append(
                f"  <channel id={quoteattr(epg)}><display-name>{escape(catalog.live_name(i))}"
                f"</display-name><icon src={quoteattr(f'{ctx.base}/images/live/{i + 1}.png')} />"
                "</channel>\n"
            )
        yield "".join(parts).encode()
    window = catalog.epg_window(now)  # every channel shares the programme times
    times = {t: xmltv_time(t, tz) for t in [*window, window[-1] + window.step]}
    for n in range(0, len(channels), batch):
        parts = []
        for epg, _i in channels[n : n + batch]:
            for prog in catalog.programmes(epg, now):
                parts.append(
                    f'  <programme start="{times[prog.start]}" '
                    f'stop="{times[prog.stop]}" channel={quoteattr(epg)}>'
                    f'<title lang="en">{escape(prog.title)}</title>'
                    f'<desc lang="en">{escape(prog.description)}</desc></programme>\n'
                )
        yield "".join(parts).encode()
    yield b"</tv>\n"


def xmltv_chunk_count(catalog: DemoCatalog, batch: int = 50) -> int:
    """How many chunks ``xmltv_chunks`` yields (for the "cut midway" faults)."""
    n = sum(1 for _ in catalog.epg_channels())
    return 2 + -(-n // (batch * 4)) + -(-n // batch)
