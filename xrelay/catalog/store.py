"""The cache in the data directory, and how it is replaced without loss.

Layout::

    DATA_DIR/
      current -> generations/G        the last good ingest (a symlink)
      served -> generations/G         the one the daemon serves (kept when pruning)
      bundle.json -> current/bundle.json
      live.m3u    -> current/live.m3u
      full.m3u    -> current/full.m3u
      guide.xml   -> current/guide.xml
      ingests.json                    the record of the last ingests
      ingest.lock                     locked by the process running an ingest here
      generations/G/                  one complete ingest
        bundle.json live.m3u full.m3u guide.xml
        api/                          what the daemon serves (xrelay.catalog.prepare)
        details/vod/ID.json details/series/ID.json   (fetched on demand)
      staging/                        an ingest in progress

An ingest writes a whole new generation into ``staging/``, fsyncs every
file and the directory, renames it into ``generations/`` and then swaps the
``current`` symlink with one atomic ``rename``.  Until that rename the old
generation is untouched; after it the new one is complete.  A power cut,
a full disk or a refused download at any point leaves the previous cache
byte for byte as it was.  Later, only ``details/`` grows and ``api/`` may be
prepared again (a generation from an older xrelay, a stale EPG index),
each file atomically and the manifest last.

Two ingests never run on one data directory at once, whoever starts them
(the daemon's ingest process, ``xrelay ingest``): each holds an exclusive
lock on ``ingest.lock`` (:meth:`CacheStore.lock_ingest`) from before it
touches ``staging/`` until it is done; the kernel releases it when its
process ends, however it ends.

Every method here blocks on the disk: call them through ``deferToThread``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from xrelay.core import jsonparse

__all__ = ["CacheStore", "Staging", "CACHE_FILES", "IngestLock", "IngestLocked"]

CACHE_FILES = ("bundle.json", "live.m3u", "full.m3u", "guide.xml")
HISTORY_FILE = "ingests.json"
LOCK_FILE = "ingest.lock"
HISTORY_LENGTH = 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write *data* to *path* via a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


class Staging:
    """A generation being written.  Nothing is visible until :meth:`commit`."""

    def __init__(self, store: "CacheStore", name: str) -> None:
        self.store = store
        self.name = name
        self.dir = store.staging_dir / name
        self.dir.mkdir(parents=True)

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def commit(self) -> Path:
        """Make this generation the current one, atomically."""
        for top, dirs, files in os.walk(self.dir, topdown=False):
            for name in files:
                with open(os.path.join(top, name), "rb") as f:
                    os.fsync(f.fileno())
            fsync_dir(Path(top))
        final = self.store.generations_dir / self.name
        os.rename(self.dir, final)
        fsync_dir(self.store.generations_dir)
        previous = self.store.current()
        self.store._point_current_at(final)
        self.store._prune(keep={final, previous})
        return final

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class IngestLocked(Exception):
    """Another ingest holds the data directory's lock."""


class IngestLock:
    """The data directory's ingest lock, held until :meth:`release` (or the
    end of the process)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None


class CacheStore:
    """The data directory."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir)
        self.generations_dir = self.root / "generations"
        self.staging_dir = self.root / "staging"
        self.current_link = self.root / "current"
        self.served_link = self.root / "served"

    def prepare(self) -> None:
        """Create the layout and sweep what an interrupted ingest left."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.generations_dir.mkdir(exist_ok=True)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.staging_dir.mkdir()
        for name in CACHE_FILES:
            link = self.root / name
            if not link.is_symlink():
                if link.exists():
                    link.unlink()
                link.symlink_to(Path("current") / name)

    def lock_ingest(self) -> IngestLock:
        """Take the ingest lock, or raise :class:`IngestLocked` at once."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IngestLocked(f"another ingest is running on {self.root}") from None
        except BaseException:
            os.close(fd)
            raise
        return IngestLock(fd)  # the file stays empty: only its lock matters

    def begin(self) -> Staging:
        self.prepare_staging()
        name = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
        return Staging(self, name)

    def prepare_staging(self) -> None:
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def current(self) -> Path | None:
        """The directory of the last good generation, if any."""
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        path = (self.root / target).resolve()
        return path if (path / "bundle.json").is_file() else None

    def _point_current_at(self, generation: Path) -> None:
        self._link(self.current_link, generation)

    def _link(self, link: Path, generation: Path) -> None:
        tmp = self.root / f".{link.name}.tmp-{os.getpid()}"
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        tmp.symlink_to(generation.resolve().relative_to(self.root.resolve()))
        os.replace(tmp, link)
        fsync_dir(self.root)

    def mark_served(self, generation: Path) -> None:
        """Record the generation the daemon serves from (``served``): an
        ingest never prunes it, even when a newer one failed to load."""
        self._link(self.served_link, generation)

    def _prune(self, keep: set[Path | None]) -> None:
        """Remove every generation but the new current one, the one before
        it and the one being served."""
        try:
            keep = keep | {(self.root / os.readlink(self.served_link))}
        except OSError:
            pass
        kept = {p.resolve() for p in keep if p is not None}
        for old in self.generations_dir.iterdir():
            if old.is_dir() and old.resolve() not in kept:
                shutil.rmtree(old, ignore_errors=True)

    # -- reading ----------------------------------------------------------

    def load_bundle(self) -> tuple[Path, dict[str, Any]] | None:
        current = self.current()
        if current is None:
            return None
        with open(current / "bundle.json", "rb") as f:
            return current, jsonparse.loads(f.read())

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the current generation was written, or None."""
        current = self.current()
        if current is None:
            return None
        now = time.time() if now is None else now
        return max(0.0, now - (current / "bundle.json").stat().st_mtime)

    # -- item details, cached until the next ingest -----------------------

    def detail_path(self, generation: Path, kind: str, ident: int) -> Path:
        return generation / "details" / kind / f"{int(ident)}.json"

    def read_detail(self, generation: Path, kind: str, ident: int) -> bytes | None:
        try:
            with open(self.detail_path(generation, kind, ident), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write_detail(self, generation: Path, kind: str, ident: int, data: bytes) -> None:
        path = self.detail_path(generation, kind, ident)
        if not generation.is_dir():
            return  # that generation was replaced meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)

    # -- ingest history ---------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        try:
            with open(self.root / HISTORY_FILE, "rb") as f:
                data = json.load(f)
            return data if isinstance(data, list) else []
        except (OSError, ValueError):
            return []

    def record(self, entry: dict[str, Any]) -> None:
        entries = (self.history() + [entry])[-HISTORY_LENGTH:]
        write_atomic(self.root / HISTORY_FILE, json.dumps(entries, indent=1).encode())
