"""A deterministic, made-up Xtream catalog of any size.

Nothing is stored per item: every row is computed from its index, the sizes
and the seed, so a catalog of 100k channels costs nothing until a list is
rendered.  Field types follow the XC-era panels (docs/xtream-api.md,
"Field types"): ints for ``stream_id``/``num``/``tv_archive``/``series_id``,
numeric strings for ``category_id``/``added``/``last_modified``.

With ``quirky=True`` the catalog also shows what real panels send and
tolerant consumers must survive:

* live: ``stream_type`` ``created_live`` (every 13th) and ``radio_streams``
  (every 17th); ``epg_channel_id`` null (every 10th, index 9 mod 10) or
  shared with the previous channel (index 8 mod 10); ``tv_archive_duration``
  as a numeric string; ``stream_id`` as a numeric string (every 19th);
  ``category_id`` null (every 29th); empty ``stream_icon`` (every 7th); a
  name with double quotes (every 23rd); a separator channel name.
* every stream row has a non-empty ``direct_source`` holding the provider's
  own stream URL with its credentials (XC 2.x style).
* rows duplicated once per category (index 5 mod 11 is also in the next
  category, XUI ``show_category_duplicates``).
* VOD: ``rating`` null or ``""``, ``stream_icon`` null, ``info: []`` from
  get_vod_info (every 7th, index 2 mod 7).
* series: the first series has seasons 0..n-1, so its ``episodes`` encode as
  a list of lists; ``backdrop_path`` null or a bare string; episode
  ``info: []`` and ``episode_num`` as a string for some episodes;
  ``"seasons": []`` (index 3 mod 4) or seasons without ``id`` (index 2 mod 4).

Icons and covers point at the provider's own host (``{base}/images/...``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator

Row = dict[str, Any]

#: Epoch of the made-up catalog (``added``, ``last_modified``, Last-Modified).
CATALOG_EPOCH = 1_700_000_000
#: Length of one EPG programme, seconds.
PROGRAMME_SECONDS = 1800
#: Catch-up depth of archive channels, days.
ARCHIVE_DAYS = 7

_REGIONS = ("UK", "DE", "FR", "ES", "IT", "NL", "PT", "PL", "US", "AR")
_GENRES = ("News", "Sport", "Movies", "Kids", "Music", "Documentary", "Entertainment", "Cinéma")
_WORDS = (
    "Alpha", "Harbour", "Zürich", "Crimson", "Meridian", "Nova", "Atlas", "Échelle",
    "Summit", "Lumen", "Orbit", "Willow", "Falcon", "Quartz", "Delta", "Ember",
)
_SHOWS = (
    "Morning News", "Café Culture", "Sport & Weather", "Nachrichten – Überblick",
    "<Live> Match Night", "Wildlife Documentary", "Late Movie", "Kids Club",
    "Top 20 Countdown", "Evening Headlines", "Cooking \"Live\"", "Crime Scene",
)
CONTAINERS = ("mp4", "mkv", "ts", "mp4", "mkv")


def _mix(seed: int, salt: int, i: int) -> int:
    """A cheap deterministic hash of (seed, salt, i) to 32 bits."""
    x = (i * 0x9E3779B1 + seed * 0x85EBCA77 + salt * 0xC2B2AE3D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    return x ^ (x >> 12)


def b64(text: str) -> str:
    """Standard padded base64 of UTF-8, as panels store EPG titles."""
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Context:
    """What a rendered row depends on besides the catalog."""

    base: str  # "http://host:port" of the provider, no trailing slash
    username: str
    password: str


@dataclass(frozen=True)
class Programme:
    start: int  # UTC epoch
    stop: int
    title: str
    description: str
    row_id: int


@dataclass(frozen=True)
class DemoCatalog:
    """Sizes and seed of a made-up catalog, and the rows they imply."""

    live: int = 20
    vod: int = 30
    series: int = 6
    seasons: int = 2
    episodes: int = 4
    epg_hours: int = 12
    seed: int = 1
    quirky: bool = False

    # ----- categories ---------------------------------------------------
    @property
    def live_category_count(self) -> int:
        return max(1, min(60, -(-self.live // 25)))

    @property
    def vod_category_count(self) -> int:
        return max(1, min(40, -(-self.vod // 40)))

    @property
    def series_category_count(self) -> int:
        return max(1, min(20, -(-self.series // 10)))

    @cached_property
    def _category_ranges(self) -> dict[str, range]:
        lc, vc, sc = self.live_category_count, self.vod_category_count, self.series_category_count
        return {
            "live": range(1, lc + 1),
            "vod": range(lc + 1, lc + vc + 1),
            "series": range(lc + vc + 1, lc + vc + sc + 1),
        }

    def _category_ids(self, kind: str) -> range:
        return self._category_ranges[kind]

    @cached_property
    def adult_category_id(self) -> int | None:
        """The last live category holds adult channels (when there are several)."""
        ids = self._category_ids("live")
        return ids[-1] if len(ids) > 1 else None

    def categories(self, kind: str) -> list[Row]:
        """get_live_categories / get_vod_categories / get_series_categories."""
        rows = []
        for n, cid in enumerate(self._category_ids(kind)):
            region = _REGIONS[n % len(_REGIONS)]
            genre = _GENRES[(n // len(_REGIONS) + n) % len(_GENRES)]
            name = f"{region} | {genre}"
            if kind == "live" and cid == self.adult_category_id:
                name = "XXX | Adult"
            elif kind != "live":
                name = f"{'Movies' if kind == 'vod' else 'Series'} | {genre} {n + 1}"
            rows.append({"category_id": str(cid), "category_name": name, "parent_id": 0})
        return rows

    def category_names(self, kind: str) -> dict[int, str]:
        return {int(r["category_id"]): r["category_name"] for r in self.categories(kind)}

    def _item_categories(self, kind: str, i: int) -> list[int]:
        ids = self._category_ids(kind)
        first = ids[i % len(ids)]
        if self.quirky and i % 11 == 5 and len(ids) > 1:
            return [first, ids[(i + 1) % len(ids)]]
        return [first]

    # ----- id ranges ----------------------------------------------------
    @property
    def first_vod_id(self) -> int:
        return self.live + 1

    @property
    def first_episode_id(self) -> int:
        return self.live + self.vod + 1

    def live_ids(self) -> range:
        return range(1, self.live + 1)

    def vod_ids(self) -> range:
        return range(self.first_vod_id, self.first_vod_id + self.vod)

    def episode_ids(self) -> range:
        total = self.series * self.seasons * self.episodes
        return range(self.first_episode_id, self.first_episode_id + total)

    def series_ids(self) -> range:
        return range(1, self.series + 1)

    def is_live(self, stream_id: int) -> bool:
        return stream_id in self.live_ids()

    def is_vod(self, stream_id: int) -> bool:
        return stream_id in self.vod_ids()

    def is_episode(self, stream_id: int) -> bool:
        return stream_id in self.episode_ids()

    def container(self, stream_id: int) -> str:
        return CONTAINERS[stream_id % len(CONTAINERS)]

    # ----- live ---------------------------------------------------------
    def live_name(self, i: int) -> str:
        sid = i + 1
        region = _REGIONS[i % self.live_category_count % len(_REGIONS)]
        word = _WORDS[_mix(self.seed, 1, i) % len(_WORDS)]
        if self.quirky and i % 23 == 22:
            return f'The "Best" {word} {sid}'
        if self.quirky and i == 1:
            return f"##### {region} #####"
        return f"{region}: {word} {_GENRES[i % len(_GENRES)]} {sid}"

    def epg_channel_id(self, i: int) -> str | None:
        """The XMLTV id of live channel index ``i`` (shared or null when quirky)."""
        if self.quirky and i % 10 == 9:
            return None
        if self.quirky and i % 10 == 8 and i > 0:
            i -= 1
        return f"ch{i + 1}.demo"

    def has_archive(self, i: int) -> bool:
        return i % 5 == 0

    def live_row(self, i: int, ctx: Context, category_id: int | None = None) -> Row:
        sid = i + 1
        cats = self._item_categories("live", i)
        cid = category_id if category_id is not None else cats[0]
        quirky = self.quirky
        stream_type = "live"
        if quirky and i % 13 == 12:
            stream_type = "created_live"
        elif quirky and i % 17 == 16:
            stream_type = "radio_streams"
        archive = self.has_archive(i)
        return {
            "num": 0,
            "name": self.live_name(i),
            "stream_type": stream_type,
            "stream_id": str(sid) if quirky and i % 19 == 18 else sid,
            "stream_icon": "" if quirky and i % 7 == 3 else f"{ctx.base}/images/live/{sid}.png",
            "epg_channel_id": self.epg_channel_id(i),
            "added": str(CATALOG_EPOCH + i * 37),
            "is_adult": "1" if cid == self.adult_category_id else "0",
            "category_id": None if quirky and i % 29 == 28 else str(cid),
            "category_ids": cats,
            "custom_sid": "",
            "tv_archive": 1 if archive else 0,
            "direct_source": (
                f"{ctx.base}/live/{ctx.username}/{ctx.password}/{sid}.ts" if quirky else ""
            ),
            "tv_archive_duration": (
                (str(ARCHIVE_DAYS) if quirky else ARCHIVE_DAYS) if archive else 0
            ),
            "thumbnail": "",
        }

    # ----- VOD ----------------------------------------------------------
    def vod_title(self, i: int) -> tuple[str, int]:
        h = _mix(self.seed, 2, i)
        year = 1970 + h % 55
        words = f"{_WORDS[h % len(_WORDS)]} {_WORDS[(h >> 8) % len(_WORDS)]}"
        return f"The {words} {i + 1}", year

    def vod_row(self, i: int, ctx: Context, category_id: int | None = None) -> Row:
        sid = self.first_vod_id + i
        cats = self._item_categories("vod", i)
        title, year = self.vod_title(i)
        h = _mix(self.seed, 3, i)
        rating: Any = f"{(h % 90) / 10 + 1:.1f}"
        if self.quirky and i % 6 == 1:
            rating = None if i % 12 == 1 else ""
        r5 = round(float(rating) / 2, 1) if rating else 0
        return {
            "num": 0,
            "name": f"{title} ({year})",
            "stream_type": "movie",
            "stream_id": sid,
            "stream_icon": None if self.quirky and i % 8 == 4 else f"{ctx.base}/images/vod/{sid}.jpg",
            "rating": rating,
            "rating_5based": r5,
            "added": str(CATALOG_EPOCH + i * 53),
            "is_adult": "0",
            "category_id": str(category_id if category_id is not None else cats[0]),
            "category_ids": cats,
            "container_extension": self.container(sid),
            "custom_sid": "",
            "direct_source": (
                f"{ctx.base}/movie/{ctx.username}/{ctx.password}/{sid}.{self.container(sid)}"
                if self.quirky
                else ""
            ),
        }

    def vod_info(self, stream_id: int, ctx: Context) -> Row:
        """get_vod_info: ``{"info": [...]}`` alone for an unknown id."""
        if not self.is_vod(stream_id):
            return {"info": []}
        i = stream_id - self.first_vod_id
        row = self.vod_row(i, ctx)
        title, year = self.vod_title(i)
        minutes = 80 + _mix(self.seed, 4, i) % 70
        info: Any = {
            "tmdb_id": 10_000 + i,
            "name": title,
            "o_name": title,
            "cover_big": f"{ctx.base}/images/vod/{stream_id}_big.jpg",
            "movie_image": f"{ctx.base}/images/vod/{stream_id}.jpg",
            "releasedate": f"{year}-0{1 + i % 9}-1{i % 9}",
            "episode_run_time": minutes,
            "youtube_trailer": f"demo{i:07d}",
            "director": "A. Director",
            "actors": "First Actor, Second Actor",
            "cast": "First Actor, Second Actor",
            "description": f"A made-up film about {title.lower()}.",
            "plot": f"A made-up film about {title.lower()}.",
            "age": "",
            "country": _REGIONS[i % len(_REGIONS)],
            "genre": _GENRES[i % len(_GENRES)],
            "backdrop_path": [f"{ctx.base}/images/vod/{stream_id}_backdrop.jpg"],
            "duration_secs": minutes * 60,
            "duration": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
            "video": {},
            "audio": {},
            "bitrate": 0,
            "rating": row["rating_5based"] * 2,
        }
        if self.quirky and i % 7 == 2:
            info = []
        movie_data = {
            k: row[k]
            for k in ("stream_id", "name", "added", "category_id", "category_ids",
                      "container_extension", "custom_sid", "direct_source")
        }
        movie_data["title"], movie_data["year"] = title, str(year)
        return {"info": info, "movie_data": movie_data}

    # ----- series -------------------------------------------------------
    def series_title(self, i: int) -> str:
        h = _mix(self.seed, 5, i)
        return f"{_WORDS[h % len(_WORDS)]} {('Files', 'Stories', 'Chronicles', 'Lane')[h % 4]} {i + 1}"

    def season_numbers(self, i: int) -> list[int]:
        """Seasons of series index ``i``: 0..n-1 for the first quirky series."""
        start = 0 if self.quirky and i == 0 else 1
        return list(range(start, start + self.seasons))

    def episode_id(self, series_index: int, season_index: int, episode_index: int) -> int:
        n = (series_index * self.seasons + season_index) * self.episodes + episode_index
        return self.first_episode_id + n

    def series_row(self, i: int, ctx: Context, category_id: int | None = None) -> Row:
        sid = i + 1
        cats = self._item_categories("series", i)
        rating = 1 + _mix(self.seed, 6, i) % 9
        backdrop: Any = [f"{ctx.base}/images/series/{sid}_backdrop.jpg"]
        if self.quirky and i % 4 == 1:
            backdrop = None if i % 8 == 1 else backdrop[0]
        return {
            "num": 0,
            "name": self.series_title(i),
            "series_id": sid,
            "cover": f"{ctx.base}/images/series/{sid}.jpg",
            "plot": f"A made-up series number {sid}.",
            "cast": "Lead Actor, Support Actor",
            "director": "S. Director",
            "genre": _GENRES[i % len(_GENRES)],
            "releaseDate": f"{2000 + i % 25}-09-24",
            "last_modified": str(CATALOG_EPOCH + i * 71),
            "rating": str(rating),
            "rating_5based": rating / 2,
            "backdrop_path": backdrop,
            "youtube_trailer": f"series{i:06d}",
            "episode_run_time": "42",
            "category_id": str(category_id if category_id is not None else cats[0]),
            "category_ids": cats,
        }

    def series_info(self, series_id: int, ctx: Context) -> Row | list[Any]:
        """get_series_info: the whole answer is ``[]`` for an unknown id."""
        if series_id not in self.series_ids():
            return []
        i = series_id - 1
        row = self.series_row(i, ctx)
        title = row["name"]
        seasons, episodes = [], {}
        for k, number in enumerate(self.season_numbers(i)):
            cover = f"{ctx.base}/images/series/{series_id}_s{number}.jpg"
            seasons.append({
                "air_date": f"{2000 + i % 25}-09-24", "episode_count": self.episodes,
                "id": series_id * 100 + number, "name": f"Season {number}", "overview": "",
                "season_number": number, "cover": cover, "cover_big": cover,
            })
            eps = []
            for e in range(self.episodes):
                eid = self.episode_id(i, k, e)
                ext = self.container(eid)
                info: Any = {
                    "tmdb_id": 500_000 + eid, "releasedate": f"{2000 + i % 25}-10-{1 + e % 28:02d}",
                    "plot": f"Episode {e + 1} of season {number}.", "duration_secs": 2580,
                    "duration": "00:43:00", "movie_image": f"{ctx.base}/images/series/e{eid}.jpg",
                    "bitrate": 0, "rating": 7.1, "season": number,
                    "name": f"Episode {e + 1}", "cover_big": f"{ctx.base}/images/series/e{eid}.jpg",
                }
                quirk = self.quirky and e % 3 == 2
                if self.quirky and (eid % 5 == 4):
                    info = []
                eps.append({
                    "id": str(eid),
                    "episode_num": str(e + 1) if quirk else e + 1,
                    "title": f"{title} - S{number:02d}E{e + 1:02d} - Episode {e + 1}",
                    "container_extension": ext,
                    "info": info,
                    "custom_sid": "",
                    "added": str(CATALOG_EPOCH + eid * 11),
                    "season": number,
                    "direct_source": (
                        f"{ctx.base}/series/{ctx.username}/{ctx.password}/{eid}.{ext}"
                        if self.quirky else ""
                    ),
                })
            episodes[number] = eps
        keys = sorted(episodes)
        encoded: Any
        if keys == list(range(len(keys))):
            encoded = [episodes[k] for k in keys]  # PHP json_encode of a 0-based array
        else:
            encoded = {str(k): episodes[k] for k in keys}
        info_block = {k: row[k] for k in (
            "name", "cover", "plot", "cast", "director", "genre", "releaseDate", "last_modified",
            "rating", "rating_5based", "backdrop_path", "youtube_trailer", "episode_run_time",
            "category_id", "category_ids")}
        if self.quirky and i % 4 == 3:
            seasons = []  # some panels have no season data at all
        elif self.quirky and i % 4 == 2:
            for season in seasons:
                del season["id"]  # ...or seasons without ids
        return {"seasons": seasons, "info": info_block, "episodes": encoded}

    def episodes_flat(self, ctx: Context) -> Iterator[tuple[int, Row, Row]]:
        """(series index, series row, episode) for every episode, in order."""
        for i in range(self.series):
            info = self.series_info(i + 1, ctx)
            assert isinstance(info, dict)
            eps = info["episodes"]
            for season in (eps if isinstance(eps, list) else eps.values()):
                for ep in season:
                    yield i, self.series_row(i, ctx), ep

    # ----- lists ----------------------------------------------------------
    def list_rows(self, kind: str, ctx: Context, category_id: int | None = None,
                  keep: int = 1) -> list[Row]:
        """Rows of get_live_streams / get_vod_streams / get_series.

        ``category_id`` 0/None means all.  ``keep`` > 1 keeps one item in
        ``keep`` (the provider's "shrink" fault).  ``num`` is sequential.
        """
        count = {"live": self.live, "vod": self.vod, "series": self.series}[kind]
        make = {"live": self.live_row, "vod": self.vod_row, "series": self.series_row}[kind]
        rows = []
        for i in range(0, count, keep):
            cats = self._item_categories(kind, i)
            if category_id:
                if category_id in cats:
                    rows.append(make(i, ctx, category_id))
            else:
                rows.extend(make(i, ctx, c) for c in cats)
        for n, row in enumerate(rows, 1):
            row["num"] = n
        return rows

    # ----- EPG ------------------------------------------------------------
    def epg_window(self, now: float) -> range:
        """Start times (UTC epoch) of the programmes around ``now``."""
        half = self.epg_hours * 3600 // 2
        first = (int(now) - half) // PROGRAMME_SECONDS * PROGRAMME_SECONDS
        last = (int(now) + half) // PROGRAMME_SECONDS * PROGRAMME_SECONDS
        return range(first, last + 1, PROGRAMME_SECONDS)

    def programmes(self, epg_channel_id: str, now: float) -> list[Programme]:
        """The guide of one XMLTV channel: ``epg_hours`` around ``now``."""
        salt = sum(epg_channel_id.encode())
        out = []
        for start in self.epg_window(now):
            slot = start // PROGRAMME_SECONDS
            show = _SHOWS[_mix(self.seed, salt, slot) % len(_SHOWS)]
            out.append(Programme(
                start, start + PROGRAMME_SECONDS, show,
                f"{show}: made-up programme {slot % 1000} on {epg_channel_id}.",
                (slot % 100_000) * 100_000 + salt,
            ))
        return out

    def epg_channels(self) -> Iterator[tuple[str, int]]:
        """Each distinct epg_channel_id once, with the first live index using it."""
        seen: set[str] = set()
        for i in range(self.live):
            epg = self.epg_channel_id(i)
            if epg is not None and epg not in seen:
                seen.add(epg)
                yield epg, i
