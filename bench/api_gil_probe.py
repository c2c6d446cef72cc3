"""Which catalog work stalls the reactor thread, and for how long.

    python bench/api_gil_probe.py DATA_DIR

The first line is what the daemon does at each reload since the ingest
prepares its files (:mod:`xrelay.catalog.prepare`); the other steps now run in the
ingest's child process, and are kept here to show what they would cost in
the daemon.  Runs each step of an ingest-and-reload (on the cached files of DATA_DIR,
e.g. a ``bench/api_load.py --keep`` work dir's ``data``) in a worker thread,
as xrelay does, while the main thread plays the reactor: it sleeps 1 ms in
a loop and records how late it wakes up.  A step that holds the GIL inside
one long C call (``json.load`` of the whole bundle) shows up as one long
stall; Python loops only cost the switch interval.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xrelay.api.player_api import SWITCH_INTERVAL  # noqa: E402
from xrelay.catalog.list_template import ListTemplate  # noqa: E402
from xrelay.catalog.lists import build_templates  # noqa: E402
from xrelay.catalog.m3u_templates import write_templates  # noqa: E402
from xrelay.catalog.epg import build_index  # noqa: E402
from xrelay.catalog.generation import load_generation  # noqa: E402
from xrelay.catalog.store import CacheStore  # noqa: E402


def probe(name: str, fn: Callable[[], Any]) -> None:
    done = threading.Event()
    gaps: list[float] = []

    def run() -> None:
        fn()
        done.set()

    worker = threading.Thread(target=run)
    started = time.perf_counter()
    worker.start()
    last = time.perf_counter()
    while not done.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    gaps.sort()
    print(f"| {name} | {time.perf_counter() - started:.2f} s | {gaps[-1] * 1000:.0f} ms | "
          f"{gaps[int(len(gaps) * 0.99)] * 1000:.1f} ms |")


def main() -> None:
    data = Path(sys.argv[1])
    current = data / "current"
    sys.setswitchinterval(SWITCH_INTERVAL)
    out = Path(tempfile.mkdtemp(prefix="xrelay-gil-"))
    held: dict[str, Any] = {}
    print("| step (in a thread) | took | longest reactor stall | p99 stall |\n|---|---|---|---|")
    probe("daemon: load_generation (the prepared files)", lambda: load_generation(current.resolve()))
    probe("json.load(bundle.json) in one call", lambda: json.load(open(current / "bundle.json", "rb")))
    probe("cache: CacheStore.load_bundle()", lambda: held.setdefault("b", CacheStore(data).load_bundle()[1]))
    bundle = held["b"]
    probe("ingest: json.dumps(bundle)", lambda: json.dumps(bundle, separators=(",", ":"), ensure_ascii=False))
    probe("api: list templates", lambda: build_templates(bundle, out))
    probe("api: playlist templates", lambda: write_templates(bundle, out))
    probe("api: EPG index", lambda: build_index(current / "guide.xml"))
    vod = ListTemplate.build(bundle["vod_streams"], out / "vod.json")
    probe("api: gzip of the movie list for one base", lambda: vod.full_gzip(b"http://192.168.1.2:8080"))


if __name__ == "__main__":
    main()
