"""What stops the reactor thread while an ingest runs, with stacks.

    python bench/api_ingest_stalls.py [--live 50000 --vod 100000 --series 10000 --epg-hours 4]
                                      [--freeze-gc] [--no-gc-during-ingest]

Starts the demo provider as a child process, builds xrelay in this process
(``xrelay.tap.build``, no web clients), runs a first ingest, then a second
one while measuring:

* reactor lag: a 10 ms LoopingCall records every wake-up later than 100 ms;
* cyclic GC: every collection longer than 50 ms (``gc.callbacks``);
* what the worker threads were doing just before each lag (a sampler thread
  takes their stacks every 20 ms).

``--freeze-gc`` runs ``gc.collect(); gc.freeze()`` after the first ingest
(the catalog leaves the collector's view); ``--no-gc-during-ingest`` also
disables the cyclic collector during the second ingest.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.logger import formatEvent, globalLogPublisher  # noqa: E402

from xrelay.core.config import Config, IngestConfig, RelayConfig, ServerConfig, UpstreamConfig, UserConfig  # noqa: E402
from xrelay.tap import build  # noqa: E402

from big_catalog import PROVIDER_PASS, PROVIDER_USER, add_catalog_options, demo_command, free_port  # noqa: E402


class Recorder:
    def __init__(self) -> None:
        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, list[str]]] = []
        self.lags: list[tuple[float, float]] = []
        self.collections: list[tuple[float, int, float]] = []
        self.events: list[tuple[float, str]] = []
        self._gc_started = 0.0
        self._last = time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._sample, daemon=True).start()
        task.LoopingCall(self._tick).start(0.01)
        gc.callbacks.append(self._gc)
        globalLogPublisher.addObserver(lambda e: self.events.append((time.monotonic(), formatEvent(e)[:110])))

    def clear(self) -> None:
        self.samples.clear(), self.lags.clear(), self.collections.clear(), self.events.clear()

    def _sample(self) -> None:
        me = threading.get_ident()
        while True:
            time.sleep(0.02)
            stacks = [traceback.format_stack(f)[-1].strip().replace("\n", " | ")
                      for tid, f in sys._current_frames().items() if tid not in (self.main, me)]
            self.samples.append((time.monotonic(), [s for s in stacks if "in wait" not in s and "_worker" not in s]))

    def _tick(self) -> None:
        now = time.monotonic()
        lag = now - self._last - 0.01
        self._last = now
        if lag > 0.1:
            self.lags.append((now, lag))

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        elif time.monotonic() - self._gc_started > 0.05:
            self.collections.append((time.monotonic(), info["generation"], time.monotonic() - self._gc_started))

    def report(self, t0: float) -> None:
        print(f"reactor lags > 100 ms: {len(self.lags)}, total {sum(l for _, l in self.lags):.2f} s, "
              f"worst {max((l for _, l in self.lags), default=0) * 1000:.0f} ms")
        for at, lag in self.lags:
            gcs = [d for t, g, d in self.collections if at - lag - 0.02 <= t <= at + 0.02]
            what = f"GC {gcs[0] * 1000:.0f} ms" if gcs else ""
            if not gcs:
                before = [s for t, s in self.samples if at - lag - 0.06 <= t <= at - lag + 0.03 and s]
                what = "; ".join(before[-1]) if before else "?"
            print(f"  {at - t0:6.2f} s  lag {lag * 1000:5.0f} ms  {what[:160]}")
        print(f"GC collections > 50 ms: {len(self.collections)}")
        for at, text in self.events:
            if "GET /" not in text:
                print(f"  {at - t0:6.2f} s  {text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_catalog_options(ap)
    ap.add_argument("--freeze-gc", action="store_true")
    ap.add_argument("--no-gc-during-ingest", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrelay-stalls-"))
    port = free_port()
    demo = subprocess.Popen(
        demo_command(port, args),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    demo.stdout.readline()  # "demo provider at ..." once it listens
    config = Config(
        upstream=UpstreamConfig(url=f"http://127.0.0.1:{port}", username=PROVIDER_USER, password=PROVIDER_PASS),
        server=ServerConfig(listen="tcp:0:interface=127.0.0.1"),
        ingest=IngestConfig(data_dir=work / "data", interval=86400, timeout=1800),
        users=(UserConfig("bench", "benchpw", 4),), relay=RelayConfig(), source="<bench>")
    service, xr = build(reactor, config)
    xr.ingest_service.disownServiceParent()
    recorder = Recorder()

    async def run() -> None:
        service.startService()
        first = await xr.ingest_service.trigger("first")
        print(f"first ingest: ok={first.ok} {first.duration:.1f} s", flush=True)
        await task.deferLater(reactor, 10, lambda: None)  # the API precomputes meanwhile
        if args.freeze_gc:
            gc.collect()
            gc.freeze()
        recorder.start()
        recorder.clear()
        if args.no_gc_during_ingest:
            gc.disable()
        t0 = time.monotonic()
        second = await xr.ingest_service.trigger("second")
        await task.deferLater(reactor, 10, lambda: None)
        gc.enable()
        print(f"second ingest: ok={second.ok} {second.duration:.1f} s; options {vars(args)}")
        recorder.report(t0)
        await defer.maybeDeferred(service.stopService)

    d = defer.ensureDeferred(run())
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: (demo.terminate(), shutil.rmtree(work, ignore_errors=True), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()
