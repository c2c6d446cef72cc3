"""Ingest: download the provider's catalog and swap it into the cache.

Everything is downloaded into a private scratch directory and checked
first (JSON parses, login accepted, XMLTV well formed and complete, the
catalog did not suddenly shrink); only then is a new generation written and
swapped in by :class:`~xrelay.catalog.store.CacheStore`.  Any failure leaves the
previous cache byte-identical, is logged in one line and is recorded in
``ingests.json``.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from xml.parsers import expat

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from xrelay.catalog import rows as catalog_rows
from xrelay.core import jsonparse
from xrelay.core.config import IngestConfig
from xrelay.core.deferreds import Shared
from xrelay.core.reactor import IReactor
from xrelay.catalog.epg import parse_xmltv_time
from xrelay.catalog.m3u import episodes_from_playlist
from xrelay.catalog.prepare import Preparer
from xrelay.provider.client import JsonText, ProviderClient, ProviderError
from xrelay.core.scrub import Scrubber
from xrelay.catalog.store import CacheStore, IngestLocked

__all__ = ["IngestError", "IngestResult", "Ingester", "IngestService"]

log = Logger()

LISTS = (
    # bundle key, action, kind of rows ("categories" or a catalog_rows.STREAM_KINDS key)
    ("live_categories", "get_live_categories", "categories"),
    ("vod_categories", "get_vod_categories", "categories"),
    ("series_categories", "get_series_categories", "categories"),
    ("live_streams", "get_live_streams", "live"),
    ("vod_streams", "get_vod_streams", "vod"),
    ("series", "get_series", "series"),
)
#: Lists whose sudden shrinkage is refused; tiny catalogs are not checked.
SHRINK_CHECKED = ("live_streams", "vod_streams", "series")
SHRINK_MINIMUM = 20


class IngestError(Exception):
    """An ingest was refused; the message is safe to log."""


@dataclass
class IngestResult:
    ok: bool
    started: float
    duration: float
    counts: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    generation: str | None = None
    trigger: str = "schedule"

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


class Ingester:
    """Runs ingests, one at a time."""

    def __init__(self, reactor: IReactor, client: ProviderClient, store: CacheStore,
                 config: IngestConfig, scrubber: Scrubber | None = None) -> None:
        self.reactor = reactor
        self.client = client
        self.store = store
        self.config = config
        self.scrubber = scrubber or client.scrubber
        self.running: Shared[IngestResult] | None = None
        self.listeners: list[Callable[[IngestResult], Any]] = []
        self.last: IngestResult | None = None

    def run(self, trigger: str = "schedule", force: bool = False) -> defer.Deferred[IngestResult]:
        """Start an ingest, or join the one running.  Never fails."""
        if self.running is not None:
            return self.running.wait()
        started = self.reactor.seconds()
        wall = time.time()
        log.info("ingest started ({trigger})", trigger=trigger)
        d = defer.Deferred.fromCoroutine(self._ingest(force))
        d.addTimeout(self.config.timeout, self.reactor)

        def done(counts_gen: tuple[dict[str, int], str]) -> IngestResult:
            counts, generation = counts_gen
            return IngestResult(True, wall, self.reactor.seconds() - started, counts,
                                None, generation, trigger)

        def failed(f: Failure) -> IngestResult:
            if f.check(defer.TimeoutError, defer.CancelledError):
                reason = f"timed out after {self.config.timeout:g} s" if f.check(defer.TimeoutError) else "cancelled"
            elif f.check(IngestError, ProviderError, catalog_rows.AuthRefused):
                reason = str(f.value)
            elif isinstance(f.value, OSError):
                reason = f"disk error: {f.value.strerror or f.value}"
            else:
                log.failure("unexpected ingest failure", f)
                reason = f"internal error: {type(f.value).__name__}"
            return IngestResult(False, wall, self.reactor.seconds() - started, {},
                                self.scrubber.text(reason), None, trigger)

        ended = d.addCallbacks(done, failed).addCallback(
            lambda result: defer.Deferred.fromCoroutine(self._finish(result)))
        shared = Shared(ended)
        if not shared.done:
            self.running = shared
        return shared.wait()

    def cancel(self) -> None:
        if self.running is not None:
            self.running.cancel()

    async def _finish(self, result: IngestResult) -> IngestResult:
        self.running = None
        return await self._report(result)

    async def _report(self, result: IngestResult) -> IngestResult:
        self.last = result
        if result.ok:
            log.info("ingest succeeded in {duration:.1f} s: {live} live, {vod} movies, "
                     "{series} series, {episodes} episodes, {programmes} programmes",
                     duration=result.duration, live=result.counts.get("live_streams", 0),
                     vod=result.counts.get("vod_streams", 0), series=result.counts.get("series", 0),
                     episodes=result.counts.get("episodes", 0),
                     programmes=result.counts.get("programmes", 0), outcome="ok")
        else:
            log.warn("ingest failed after {duration:.1f} s, previous cache kept: {reason}",
                     duration=result.duration, reason=result.reason, outcome="failed")
        try:
            await threads.deferToThread(self.store.record, result.as_record())
        except OSError as e:
            log.warn("cannot record the ingest in the data directory: {error}", error=e.strerror)
        for listener in list(self.listeners):
            try:
                await defer.maybeDeferred(listener, result)
            except Exception:
                log.failure("ingest listener failed")
        return result

    # -- the work -------------------------------------------------------------

    async def _ingest(self, force: bool) -> tuple[dict[str, int], str]:
        try:
            lock = await threads.deferToThread(self.store.lock_ingest)
        except IngestLocked as e:
            raise IngestError(str(e)) from None
        try:
            return await self._locked_ingest(force)
        finally:
            lock.release()

    async def _locked_ingest(self, force: bool) -> tuple[dict[str, int], str]:
        await threads.deferToThread(self.store.prepare)
        await threads.deferToThread(_sweep_scratch, 2 * self.config.timeout)
        scratch = await threads.deferToThread(tempfile.mkdtemp, prefix=SCRATCH_PREFIX)
        staging = None
        try:
            # Everything goes into a private staging directory, list by list
            # (xrelay.catalog.prepare), and becomes visible only with the commit.
            staging = await threads.deferToThread(self.store.begin)
            preparer, counts = await self._download_catalog(scratch, staging.dir)
            previous = await threads.deferToThread(self._previous_counts)
            if not force:
                _check_shrink(previous, counts, self.config.max_shrink)
            counts.update(await self._ingest_guide(scratch, staging.path("guide.xml")))
            await threads.deferToThread(preparer.finish, counts)
            final = await threads.deferToThread(staging.commit)
            staging = None
            return counts, final.name
        finally:
            if staging is not None:
                await threads.deferToThread(staging.discard)
            shutil.rmtree(scratch, ignore_errors=True)

    async def _download_catalog(self, scratch: str, directory: Path) -> tuple[Preparer, dict[str, int]]:
        """Download, check, normalise and scrub each list in turn, and hand
        it to the :class:`~xrelay.catalog.prepare.Preparer` before the next one, so
        that one list at a time is held in memory."""
        raw_account = await self.client.get_json(None, timeout=60)
        account = self.scrubber.tree(catalog_rows.normalise_account(raw_account))
        preparer = await threads.deferToThread(Preparer, directory, int(time.time()), account)
        counts: dict[str, int] = {}
        for key, action, kind in LISTS:
            text = await self.client.get_json_text(action, timeout=300, scratch_dir=scratch,
                                                   max_bytes=self.config.max_download)
            rows = await threads.deferToThread(_read_list, text, kind, self.scrubber)
            del text
            await threads.deferToThread(preparer.add, key, rows)
            counts[key] = len(rows)
            del rows
        episodes = await self._episodes(scratch)
        await threads.deferToThread(preparer.add_episodes, episodes)
        counts["episodes"] = len(episodes)
        return preparer, counts

    async def _episodes(self, scratch: str) -> list[dict[str, Any]]:
        """Series episodes from the provider's playlist (empty if it refuses one)."""
        path = os.path.join(scratch, "provider.m3u")
        try:
            await self.client.download(self.client.playlist_url(), path, what="get.php",
                                       timeout=300, max_bytes=self.config.max_download)
            return await threads.deferToThread(_read_episodes, path, self.scrubber)
        except ProviderError as e:
            log.warn("the provider's playlist is unusable ({reason}); building playlists "
                     "from the API lists without series episodes", reason=str(e))
            return []

    async def _ingest_guide(self, scratch: str, dest: Path) -> dict[str, int]:
        raw = os.path.join(scratch, "guide.raw")
        await self.client.download(self.client.xmltv_url(), raw, what="xmltv.php", timeout=300,
                                   idle_timeout=120, max_bytes=self.config.max_download)
        return await threads.deferToThread(_check_and_copy_guide, raw, dest, self.scrubber)

    def _previous_counts(self) -> dict[str, int]:
        for entry in reversed(self.store.history()):
            if entry.get("ok") and isinstance(entry.get("counts"), dict):
                return entry["counts"]
        return {}


SCRATCH_PREFIX = "xrelay-ingest-"


def _sweep_scratch(older_than: float) -> None:
    """Remove what an ingest killed outright left in the temporary directory
    (raw provider answers, which name the provider): a later run cleans up."""
    root = tempfile.gettempdir()
    now = time.time()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            if name.startswith(SCRATCH_PREFIX) and now - os.stat(path).st_mtime > older_than:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _check_shrink(previous: dict[str, int], counts: dict[str, int], max_shrink: float) -> None:
    for key in SHRINK_CHECKED:
        before, now = previous.get(key, 0), counts.get(key, 0)
        if before >= SHRINK_MINIMUM and now < before * (1 - max_shrink):
            lost = 100 * (before - now) / before
            raise IngestError(
                f"{key} dropped from {before} to {now} ({lost:.0f}% lost); refusing to replace "
                f"the cache (run `xrelay ingest --force` to accept it)")


def _read_episodes(path: str, scrubber: Scrubber) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \r\n\t")
    if not head.startswith(b"#EXTM3U"):
        raise ProviderError("get.php: not an M3U playlist")
    with open(path, encoding="utf-8", errors="replace") as f:
        return episodes_from_playlist(f, scrubber)


_ZONED_TIME = re.compile(rb'( (?:start|stop)=")(\d{14}) ?([+-]\d{4})"')


def utc_times(data: bytes) -> bytes:
    """Programme times in UTC (``20250101060000 +0000``), as every client
    reads them (docs/xtream-api.md, "Guide times": some ignore the offset)."""

    def convert(m: "re.Match[bytes]") -> bytes:
        if m.group(3) == b"+0000":
            return m.group(0)
        epoch = parse_xmltv_time(f"{m.group(2).decode()} {m.group(3).decode()}")
        if epoch is None:
            return m.group(0)
        return m.group(1) + time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)).encode() + b' +0000"'

    return _ZONED_TIME.sub(convert, data)


def _check_and_copy_guide(raw: str, dest: Path, scrubber: Scrubber) -> dict[str, int]:
    """Check that the guide is complete, well-formed XMLTV while copying it
    (decompressed, secrets scrubbed) to *dest*.  Raises ProviderError."""
    with open(raw, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    counts = {"channels": 0, "programmes": 0}
    depth = [0]
    root = [""]

    def start(name: str, attrs: Any) -> None:
        if depth[0] == 0:
            root[0] = name
        elif depth[0] == 1:
            if name == "channel":
                counts["channels"] += 1
            elif name == "programme":
                counts["programmes"] += 1
        depth[0] += 1

    def end(name: str) -> None:
        depth[0] -= 1

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    carry = b""
    overlap = max(scrubber.overlap, 64)  # a programme's time attribute is shorter
    try:
        with opener(raw, "rb") as src, open(dest, "wb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                parser.Parse(chunk, False)
                data = utc_times(scrubber.bytes_(carry + chunk))
                # keep a tail back so a secret split across chunks is still caught
                cut = max(0, len(data) - overlap)
                out.write(data[:cut])
                carry = data[cut:]
            parser.Parse(b"", True)
            out.write(utc_times(scrubber.bytes_(carry)))
            out.flush()
            os.fsync(out.fileno())
    except expat.ExpatError as e:
        raise ProviderError(f"xmltv.php: not well-formed or cut off ({expat.ErrorString(e.code)} "
                            f"at line {e.lineno})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise ProviderError("xmltv.php: compressed guide is cut off or corrupt") from None
    if root[0] != "tv":
        raise ProviderError(f"xmltv.php: root element is <{root[0]}>, not <tv>")
    return counts


def _read_list(answer: JsonText, kind: str, scrubber: Scrubber) -> Any:
    """A list answer parsed, normalised and scrubbed row by row (blocking):
    category lists as rows, stream lists as :class:`~xrelay.catalog.rows.EncodedRows`.
    The text is released once parsed."""
    action, text = answer.what, answer.text
    answer.text = ""
    try:
        shape, items = jsonparse.iter_rows(text)
        del text
        if shape not in ("list", "object"):
            raise IngestError(f"{action}: expected a list, got {shape}")
        rows = _values(items, action)
        if kind == "categories":
            return scrubber.tree(catalog_rows.normalise_categories(list(rows)))
        return catalog_rows.normalise_encoded(rows, kind, scrubber.tree)
    except ValueError:
        raise answer.malformed() from None


def _values(items: Iterator[tuple[str | None, Any]], action: str) -> Iterator[Any]:
    """The rows of a list answer; an object keyed by ids is a list too, but
    the account object (XC's answer to every action when the line is not
    valid) is refused."""
    for key, value in items:
        if key == "user_info" and isinstance(value, dict):
            catalog_rows.normalise_account({"user_info": value})  # auth 0: say so
            raise IngestError(f"{action}: the provider answered with the account object, not a list")
        yield value


class IngestService(Service):
    """Runs an ingest at start-up when the cache is missing or stale, then
    every interval.  A failed run never stops later ones."""

    name = "ingest"

    def __init__(self, reactor: IReactorTime, ingester: Ingester, interval: float) -> None:
        self.reactor = reactor
        self.ingester = ingester
        self.interval = interval
        self._timer: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        age = self.ingester.store.age()
        if age is None or age >= self.interval:
            self._timer = self.reactor.callLater(0, self._tick, "start-up")
        else:
            log.info("cache is {age:.0f} s old; next ingest in {delay:.0f} s",
                     age=age, delay=self.interval - age)
            self._timer = self.reactor.callLater(self.interval - age, self._tick, "schedule")

    def trigger(self, why: str = "request") -> defer.Deferred[IngestResult]:
        """Ingest now (SIGHUP, the admin page); the schedule restarts after it."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        d = self.ingester.run(why)
        d.addCallback(self._reschedule)
        return d

    def _tick(self, why: str) -> None:
        self._timer = None
        self.trigger(why)

    def _reschedule(self, result: IngestResult) -> IngestResult:
        if self.running and (self._timer is None or not self._timer.active()):
            self._timer = self.reactor.callLater(self.interval, self._tick, "schedule")
        return result

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running = self.ingester.running
        if running is None:
            return None
        log.info("stopping: cancelling the running ingest (the cache is not touched)")
        self.ingester.cancel()
        return running.wait().addBoth(lambda _: None)
