"""API benchmark: a big catalog served by a real ``twistd -n xrelay``.

    python bench/api_load.py [--live 50000 --vod 100000 --series 10000 --epg-hours 4]

Runs three processes: the demo provider (``python -m xrelay.demo``) with the
given catalog sizes, xrelay (``twistd -n xrelay --config ...``) ingesting
from it, and the load generator (``bench/api_loadgen.c``, compiled here with
gcc).  Measures:

* full ``get_live_streams`` latency (p50/p90/p99) with 20 concurrent
  keep-alive clients, gzip accepted and not;
* ``get.php`` m3u_plus and ``xmltv.php`` time to first byte and MB/s (one
  client, Python socket reader);
* xrelay's resident memory (VmRSS / VmHWM from /proc);
* API latency with 20 clients while an ingest of the same catalog runs
  (triggered with SIGHUP).

Prints a Markdown summary for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from big_catalog import PROVIDER_PASS, PROVIDER_USER, add_catalog_options, demo_command, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
USER, PASSWORD = "bench", "benchpw"


def build_loadgen(workdir: Path) -> str:
    exe = workdir / "api_loadgen"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(HERE / "api_loadgen.c")], check=True)
    return str(exe)


def loadgen(exe: str, port: int, clients: int, seconds: float, gz: bool, paths: list[str]) -> dict[str, float]:
    out = subprocess.run([exe, "127.0.0.1", str(port), str(clients), str(seconds), "1" if gz else "0", *paths],
                         check=True, capture_output=True, text=True).stdout
    parts = out.split()
    return {parts[i]: float(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}


def path(**params: object) -> str:
    return "/player_api.php?" + urlencode({"username": USER, "password": PASSWORD, **params})


def fetch_timed(port: int, target: str, gz: bool = False) -> tuple[float, float, int]:
    """(seconds to the first body byte, total seconds, body bytes) for one GET."""
    sock = socket.create_connection(("127.0.0.1", port))
    headers = "Accept-Encoding: gzip\r\n" if gz else ""
    t0 = time.perf_counter()
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}\r\n".encode())
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    head = b""
    first = None
    body = 0
    while True:
        n = sock.recv_into(view)
        if n == 0:
            break
        if first is None:
            head += bytes(view[:n])
            if b"\r\n\r\n" in head:
                status = head.split(b"\r\n", 1)[0]
                if b" 200 " not in status:
                    raise RuntimeError(f"{target}: {status!r}")
                rest = len(head) - head.index(b"\r\n\r\n") - 4
                if rest:
                    first = time.perf_counter()
                    body += rest
        else:
            body += n
    total = time.perf_counter() - t0
    sock.close()
    if first is None:
        first = time.perf_counter()
    chunked = b"chunked" in head.lower()
    return first - t0, total, body if not chunked else body  # chunk framing is negligible


def rss(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    get = lambda key: int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) // 1024  # noqa: E731
    return get("VmRSS"), get("VmHWM")


def wait_for_log(log: Path, pattern: str, start: int, timeout: float,
                 proc: subprocess.Popen | None = None) -> tuple[str, int]:
    deadline = time.time() + timeout
    rx = re.compile(pattern)
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}); see {log}")
        text = log.read_text(errors="replace")
        match = rx.search(text, start)
        if match:
            return match.group(0), match.end()
        time.sleep(0.5)  # polling a log file written by another process
    raise TimeoutError(f"no {pattern!r} in {log} after {timeout} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_catalog_options(ap)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xrelay-bench-api-"))
    exe = build_loadgen(work)
    demo_port, port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo_cmd = demo_command(demo_port, args)
    config = work / "xrelay.toml"
    config.write_text(f"""
[upstream]
url = "http://127.0.0.1:{demo_port}"
username = "{PROVIDER_USER}"
password = "{PROVIDER_PASS}"

[server]
listen = "tcp:{port}:interface=127.0.0.1"

[ingest]
data_dir = "{work / 'data'}"
interval = 86400
timeout = 1800

[[users]]
username = "{USER}"
password = "{PASSWORD}"
max_connections = 4
""")
    twistd = shutil.which("twistd") or "twistd"
    xrelay_cmd = [twistd, "-n", "--pidfile=", "xrelay", "--config", str(config)]
    demo_log, xrelay_log = work / "demo.log", work / "xrelay.log"
    demo = subprocess.Popen(demo_cmd, env=env, stdout=open(demo_log, "w"), stderr=subprocess.STDOUT)
    relay = None
    results: dict[str, object] = {}
    try:
        wait_for_log(demo_log, r"demo provider at", 0, 60, demo)
        t0 = time.time()
        relay = subprocess.Popen(xrelay_cmd, env=env, cwd=work, stdout=open(xrelay_log, "w"),
                                 stderr=subprocess.STDOUT)
        line, pos = wait_for_log(xrelay_log, r"ingest succeeded in [0-9.]+ s[^\n]*", 0, 1800, relay)
        results["ingest"] = line
        line, pos = wait_for_log(xrelay_log, r"the ingest process used at most [0-9]+ MB", 0, 60, relay)
        results["ingest_child_peak"] = line
        line, pos = wait_for_log(xrelay_log, r"API ready in [0-9.]+ s[^\n]*", 0, 600, relay)
        results["api_ready"] = line
        results["first_ready_s"] = round(time.time() - t0, 1)
        guide = work / "data" / "guide.xml"
        results["guide_mb"] = round(guide.stat().st_size / 1e6, 1)
        results["rss_idle"] = rss(relay.pid)

        live_all = path(action="get_live_streams")
        # warm the per-base caches (the first request of a base builds them in a thread)
        for gz in (True, False):
            loadgen(exe, port, 1, 2, gz, [live_all])
        for gz in (True, False):
            results[f"live_streams_gz={gz}"] = loadgen(exe, port, args.clients, args.seconds, gz, [live_all])
        results["rss_after_json"] = rss(relay.pid)

        m3u = "/get.php?" + urlencode({"username": USER, "password": PASSWORD, "type": "m3u_plus", "output": "ts"})
        xmltv = "/xmltv.php?" + urlencode({"username": USER, "password": PASSWORD})
        for name, target, gz in (("m3u_plus", m3u, False), ("m3u_plus_gz", m3u, True), ("xmltv", xmltv, False),
                                 ("xmltv_gz", xmltv, True), ("xmltv_gz_cached", xmltv, True)):
            runs = [fetch_timed(port, target, gz) for _ in range(3)]
            best = min(runs, key=lambda r: r[1])
            results[name] = {"ttfb_ms": round(min(r[0] for r in runs) * 1000, 1),
                             "ttfb_ms_max": round(max(r[0] for r in runs) * 1000, 1),
                             "mb": round(best[2] / 1e6, 1), "seconds": round(best[1], 3),
                             "mb_per_s": round(best[2] / 1e6 / best[1], 1)}
        results["rss_after_streams"] = rss(relay.pid)

        # API while an ingest runs
        mixed = [path(), path(action="get_live_categories"), path(action="get_short_epg", stream_id=123),
                 path(action="get_vod_streams", category_id=3), path(action="get_simple_data_table", stream_id=77),
                 live_all]
        results["mixed_no_ingest"] = loadgen(exe, port, args.clients, 10, True, mixed)
        start = len(xrelay_log.read_text(errors="replace"))
        relay.send_signal(signal.SIGHUP)
        t_ingest = time.time()
        during: list[dict[str, float]] = []
        ingest_line = None
        while ingest_line is None and time.time() - t_ingest < 1800:
            during.append(loadgen(exe, port, args.clients, 5, True, mixed))
            text = xrelay_log.read_text(errors="replace")
            found = re.search(r"API ready in [0-9.]+ s[^\n]*", text[start:])
            if found:
                ingest_line = found.group(0)
        # and a few windows after the reload
        for _ in range(3):
            during.append(loadgen(exe, port, args.clients, 5, True, mixed))
        results["during_ingest"] = {
            "windows": len(during),
            "requests": sum(d["requests"] for d in during),
            "errors": sum(d["errors"] for d in during),
            "p99_ms_worst_window": max(d["p99_ms"] for d in during),
            "p99_ms_per_window": [d["p99_ms"] for d in during],
            "max_ms": max(d["max_ms"] for d in during),
            "ingest_s": round(time.time() - t_ingest, 1),
        }
        results["rss_after_ingest"] = rss(relay.pid)
        peaks = re.findall(r"the ingest process used at most ([0-9]+) MB", xrelay_log.read_text(errors="replace"))
        results["ingest_child_peak_mb"] = [int(p) for p in peaks]
    finally:
        for proc in (relay, demo):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print("## results")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")
    for key, value in results.items():
        print(f"- {key}: {value}")
    print(f"(work dir {work})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
