"""Live fan-out benchmark: one channel, thousands of clients, and a naive loop.

    python bench/live_fanout.py [--clients 2000] [--bitrate 8e6] [--measure 20]

What it does, all on loopback:

1. builds ``bench/loadgen.c`` with gcc and measures the load generator's own
   ceiling against a C server that sends as fast as it can;
2. starts the demo provider (``python -m xrelay.demo``) at ``--bitrate`` and
   ``twistd -n xrelay`` against it, listening with a large backlog;
3. runs the load generator against one xrelay channel: CLIENTS readers that
   de-chunk and check TS packet alignment, STALLED readers that never read
   (opened when the measurement starts), and PROBES joins spread over the
   measurement to time a join into the running channel (first body byte);
4. samples xrelay's CPU time (utime + stime) over the measurement and its
   resident memory, and reads ``/status`` for evictions;
5. runs the same load against ``bench/naive_fanout.py`` (a plain loop writing
   each upstream chunk to every request), then searches the largest client
   count at which the naive loop holds every client at >= 95% real time
   (halving, then bisecting to within an eighth), and prints
   xrelay's ratios to it: clients held, and CPU seconds per delivered Gbit/s.

Prints a report (and ``--json`` writes the figures to a file).

``--mixed`` (issue 11) runs, in one sitting, against the demo provider at
``--bitrate`` padded with null packets (its timestamps run in real time) and
an account of one connection:

A. a TS-only run: ``--clients`` + ``--hls-clients`` TS readers (as above);
B. a mixed run: ``--clients`` TS readers and ``--hls-clients`` HLS players
   (``bench/hls_loadgen.c``, a second process) on the same channel: each player
   loads ``/live/.../1.m3u8``, starts three segments before its end, fetches
   every new segment and reloads the playlist every target duration; during
   the window PROBES new players join, each timed from its connect() to its
   first segment's first byte.

Each run prints the machine's load average and the share of CPU time the
host stole from this VM meanwhile (``/proc/stat``): the figures move with it.

It first measures the HLS load generator's ceiling against a C HLS server
(``hls_loadgen serve``): the most segment data it reads with players that
never wait, and the playlist and first-segment times it measures itself at the
benchmark's own load (players polling every 4 s for a 4 MB segment).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
USER, PASSWORD = "bench", "benchpw"
ADMIN = ("admin", "benchadmin")
PROVIDER = ("provider-user", "provider-pass")
#: ``twistd`` with this interpreter, whatever the PATH says.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_loadgen(workdir: Path, name: str = "loadgen") -> Path:
    exe = workdir / name
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / f"{name}.c")], check=True)
    return exe


def listen_overflows() -> int:
    """TcpExt ListenOverflows, system wide (connections refused for a full backlog)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return 0


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the machine so far (/proc/stat): on a VM,
    steal is the time the host gave the vCPUs to someone else."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def machine_note(before: tuple[int, int]) -> str:
    """The load average now and the host's steal since *before*."""
    steal, total = cpu_ticks()
    share = 100 * (steal - before[0]) / max(1, total - before[1])
    return f"load average {Path('/proc/loadavg').read_text().split()[0]}, host steal {share:.1f}% of CPU time"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS of a process while the load runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return


def wait_http(url: str, timeout: float = 60.0, auth: tuple[str, str] | None = None,
              check=lambda body: True) -> bytes:
    deadline = time.monotonic() + timeout
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
                body = r.read()
                if check(body):
                    return body
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready: {last}")


def run_loadgen(exe: Path, port: int, path: str, args: argparse.Namespace, clients: int,
                stalled: int, probes: int, server_pid: int | None) -> dict:
    warmup = clients / args.ramp + args.settle
    cmd = [str(exe), "read", "127.0.0.1", str(port), path, str(clients), str(args.ramp),
           str(warmup), str(args.measure), str(stalled), str(probes), str(args.rcvbuf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = None
    cpu0 = cpu1 = 0.0
    if server_pid is not None:
        sampler = Sampler(server_pid)
        sampler.start()
        time.sleep(warmup)
        cpu0 = cpu_seconds(server_pid)
        rss_before_stalled = rss_mb(server_pid)
        time.sleep(args.measure)
        cpu1 = cpu_seconds(server_pid)
    out, _ = proc.communicate()
    if sampler is not None:
        sampler.stop.set()
    result = parse_loadgen(out, args)
    if server_pid is not None:
        result["server_cpu"] = cpu1 - cpu0
        result["server_rss_mb"] = rss_mb(server_pid)
        result["server_peak_rss_mb"] = sampler.peak if sampler else 0.0
        result["server_rss_at_measure_start_mb"] = rss_before_stalled
    return result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def parse_loadgen(out: str, args: argparse.Namespace) -> dict:
    clients, probes = [], []
    summary: dict = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "client":
            clients.append({"bytes": int(parts[2]), "first_ms": float(parts[3]),
                            "align_errors": int(parts[4]), "closed": int(parts[5]),
                            "total": int(parts[6])})
        elif parts[0] == "probe":
            probes.append({"first_ms": float(parts[2]), "align_errors": int(parts[3])})
        elif parts[0] == "summary":
            it = iter(parts[1:])
            summary = {k: float(v) for k, v in zip(it, it)}
    seconds = summary.get("seconds", args.measure)
    real_time = args.bitrate / 8 * seconds
    ratios = [c["bytes"] / real_time for c in clients]
    held = sum(1 for r in ratios if r >= 0.95)
    probe_ms = [p["first_ms"] for p in probes if p["first_ms"] >= 0]
    return {
        "clients": len(clients),
        "held_95": held,
        "min_ratio": min(ratios) if ratios else 0.0,
        "median_ratio": statistics.median(ratios) if ratios else 0.0,
        "align_errors": sum(c["align_errors"] for c in clients) + sum(p["align_errors"] for p in probes),
        "closed": sum(c["closed"] for c in clients),
        "delivered_gbit_s": summary.get("bytes", 0) * 8 / seconds / 1e9,
        "loadgen_cpu": summary.get("cpu", 0.0),
        "stalled_closed": int(summary.get("stalled_closed", 0)),
        "probes": len(probe_ms),
        "join_p50_ms": percentile(probe_ms, 50),
        "join_p99_ms": percentile(probe_ms, 99),
        "join_max_ms": max(probe_ms) if probe_ms else float("nan"),
        "seconds": seconds,
    }


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure_ceiling(exe: Path, args: argparse.Namespace) -> dict:
    blast = subprocess.Popen([str(exe), "blast", "0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(blast.stdout.readline().split()[1])
        cmd = [str(exe), "read", "127.0.0.1", str(port), "/", str(args.clients), "0", "2",
               "5", "0", "0", str(args.rcvbuf)]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        summary = [line for line in out.splitlines() if line.startswith("summary")][0].split()
        fields = dict(zip(summary[1::2], summary[2::2]))
        seconds, total, cpu = float(fields["seconds"]), float(fields["bytes"]), float(fields["cpu"])
        return {"gbit_s": total * 8 / seconds / 1e9, "reader_cpu_per_s": cpu / seconds,
                "clients": args.clients}
    finally:
        blast.terminate()
        blast.wait()


# -- HLS players (issue 11) ------------------------------------------------------------


def hls_command(exe: Path, port: int, path: str, players: int, ramp: float, warmup: float,
                measure: float, probes: int, rcvbuf: int, poll_scale: float) -> list[str]:
    return [str(exe), "play", "127.0.0.1", str(port), path, str(players), str(ramp), str(warmup),
            str(measure), str(probes), str(rcvbuf), str(poll_scale)]


def parse_hls(out: str) -> dict:
    players, probes, loads = [], [], []
    summary: dict = {}
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "player":
            players.append({"announced": float(parts[2]), "completed": float(parts[3]),
                            "missed": int(parts[4]), "bytes": int(parts[5]),
                            "align_errors": int(parts[6]), "closed": int(parts[7]),
                            "target": float(parts[8])})
        elif parts[0] == "probe":
            probes.append({"first_ms": float(parts[2]), "align_errors": int(parts[3])})
        elif parts[0] == "load":
            loads.append(float(parts[1]))
        elif parts[0] == "summary":
            it = iter(parts[1:])
            summary = {k: float(v) for k, v in zip(it, it)}
    ratios = [p["completed"] / p["announced"] if p["announced"] else 0.0 for p in players]
    probe_ms = [p["first_ms"] for p in probes if p["first_ms"] >= 0]
    seconds = summary.get("seconds", 1.0)
    return {
        "players": len(players),
        "held_95": sum(1 for r in ratios if r >= 0.95),
        "min_ratio": min(ratios) if ratios else 0.0,
        "median_ratio": statistics.median(ratios) if ratios else 0.0,
        "announced_s_median": statistics.median(p["announced"] for p in players) if players else 0.0,
        "missed": sum(p["missed"] for p in players),
        "align_errors": sum(p["align_errors"] for p in players) + sum(p["align_errors"] for p in probes),
        "closed": sum(p["closed"] for p in players),
        "target": max((p["target"] for p in players), default=0.0),
        "loads": len(loads),
        "load_p50_ms": percentile(loads, 50),
        "load_p99_ms": percentile(loads, 99),
        "load_max_ms": max(loads) if loads else float("nan"),
        "probes": len(probe_ms),
        "probes_failed": len(probes) - len(probe_ms),
        "first_p50_ms": percentile(probe_ms, 50),
        "first_p99_ms": percentile(probe_ms, 99),
        "first_max_ms": max(probe_ms) if probe_ms else float("nan"),
        "loadgen_cpu": summary.get("cpu", 0.0),
        "delivered_gbit_s": summary.get("bytes", 0) * 8 / seconds / 1e9,
        "seconds": seconds,
    }


def measure_hls_ceiling(exe: Path, args: argparse.Namespace) -> dict:
    """The HLS players against a C HLS server: (a) players that never wait
    (the most they read), (b) players at the benchmark's own load (the
    playlist and first-segment times the generator itself adds)."""
    serve = subprocess.Popen([str(exe), "serve", "0", str(4 * 1024 * 1024)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(serve.stdout.readline().split()[1])
        n = args.hls_clients
        flat_out = subprocess.run(hls_command(exe, port, "/x.m3u8", n, 0, 3, 5, 0, args.rcvbuf, 0),
                                  stdout=subprocess.PIPE, text=True, check=True).stdout
        flat = parse_hls(flat_out)
        started = time.monotonic()
        paced_out = subprocess.run(hls_command(exe, port, "/x.m3u8", n, args.ramp, n / args.ramp + 5, 10,
                                               args.probes // 3, args.rcvbuf, 4),
                                   stdout=subprocess.PIPE, text=True, check=True).stdout
        paced = parse_hls(paced_out)
        return {"players": n, "gbit_s": flat["delivered_gbit_s"],
                "loadgen_cpu_per_s": flat["loadgen_cpu"] / flat["seconds"],
                "paced": {k: paced[k] for k in ("held_95", "players", "load_p50_ms", "load_p99_ms",
                                                "first_p50_ms", "first_p99_ms", "loadgen_cpu", "seconds")},
                "paced_wall_s": time.monotonic() - started}
    finally:
        serve.terminate()
        serve.wait()


def run_mixed(exe: Path, hls_exe: Path, port: int, args: argparse.Namespace, server_pid: int) -> dict:
    """TS readers and HLS players on one channel at once; the server sampled."""
    ramp = args.ramp / 2  # the two generators ramp up together
    warmup = max(args.clients, args.hls_clients) / ramp + args.settle
    ts_cmd = [str(exe), "read", "127.0.0.1", str(port), f"/live/{USER}/{PASSWORD}/1.ts", str(args.clients),
              str(ramp), str(warmup), str(args.measure), "0", str(args.probes), str(args.rcvbuf)]
    hls_cmd = hls_command(hls_exe, port, f"/live/{USER}/{PASSWORD}/1.m3u8", args.hls_clients, ramp, warmup,
                          args.measure, args.probes, args.rcvbuf, 1)
    ts_proc = subprocess.Popen(ts_cmd, stdout=subprocess.PIPE, text=True)
    hls_proc = subprocess.Popen(hls_cmd, stdout=subprocess.PIPE, text=True)
    sampler = Sampler(server_pid)
    sampler.start()
    time.sleep(warmup)
    cpu0 = cpu_seconds(server_pid)
    rss0 = rss_mb(server_pid)
    time.sleep(args.measure)
    cpu1 = cpu_seconds(server_pid)
    hls_out, _ = hls_proc.communicate()
    ts_out, _ = ts_proc.communicate()
    sampler.stop.set()
    ts = parse_loadgen(ts_out, args)
    hls = parse_hls(hls_out)
    # CPU per delivered Gbit/s counts what both kinds of clients received
    ts.update(server_cpu=cpu1 - cpu0, server_rss_mb=rss_mb(server_pid), server_peak_rss_mb=sampler.peak,
              server_rss_at_measure_start_mb=rss0,
              ts_gbit_s=ts["delivered_gbit_s"], hls_gbit_s=hls["delivered_gbit_s"],
              delivered_gbit_s=ts["delivered_gbit_s"] + hls["delivered_gbit_s"])
    return {"ts": ts, "hls": hls}


def report_hls(r: dict) -> None:
    print(f"  hls: {r['held_95']}/{r['players']} players >= 95% real time (min {r['min_ratio']:.3f}, "
          f"median {r['median_ratio']:.3f}; median {r['announced_s_median']:.0f} s of segments announced "
          f"per player in the window), missed segments {r['missed']}, alignment errors {r['align_errors']}, "
          f"reconnects {r['closed']}, target duration {r['target']:g} s", flush=True)
    print(f"  hls: playlist p50 {r['load_p50_ms']:.1f} ms, p99 {r['load_p99_ms']:.1f} ms, "
          f"max {r['load_max_ms']:.1f} ms over {r['loads']} loads; new player's first segment byte "
          f"p50 {r['first_p50_ms']:.1f} ms, p99 {r['first_p99_ms']:.1f} ms, max {r['first_max_ms']:.1f} ms "
          f"over {r['probes']} probes ({r['probes_failed']} failed); loadgen CPU "
          f"{r['loadgen_cpu'] / r['seconds']:.2f} s/s", flush=True)


def relay_status(port: int) -> dict:
    return json.loads(wait_http(f"http://127.0.0.1:{port}/status", auth=ADMIN))


def mixed_main(args: argparse.Namespace, results: dict, workdir: Path) -> None:
    exe = build_loadgen(workdir)
    hls_exe = build_loadgen(workdir, "hls_loadgen")
    total = args.clients + args.hls_clients
    results["ceiling"] = measure_ceiling(exe, argparse.Namespace(**{**vars(args), "clients": total}))
    print(f"TS load generator ceiling: {results['ceiling']['gbit_s']:.1f} Gbit/s with {total} connections "
          f"({results['ceiling']['reader_cpu_per_s']:.2f} CPU s/s)", flush=True)
    hc = results["hls_ceiling"] = measure_hls_ceiling(hls_exe, args)
    print(f"HLS load generator ceiling: {hc['gbit_s']:.1f} Gbit/s of segments with {hc['players']} players "
          f"that never wait ({hc['loadgen_cpu_per_s']:.2f} CPU s/s); at the benchmark's load against a C server: "
          f"{hc['paced']['held_95']}/{hc['paced']['players']} players >= 95%, playlist p50 "
          f"{hc['paced']['load_p50_ms']:.1f} / p99 {hc['paced']['load_p99_ms']:.1f} ms, first segment byte "
          f"p50 {hc['paced']['first_p50_ms']:.1f} / p99 {hc['paced']['first_p99_ms']:.1f} ms", flush=True)
    provider_port, port = free_port(), free_port()
    provider = start([sys.executable, "-m", "xrelay.demo", "--listen",
                      f"tcp:{provider_port}:interface=127.0.0.1", "--bitrate", str(args.bitrate), "--pad",
                      "--max-connections", "1", "--live", "5", "--vod", "2", "--series", "1",
                      "--epg-hours", "1", "--no-redirect"], workdir / "provider.log")
    relay = None
    try:
        wait_http(f"http://127.0.0.1:{provider_port}/player_api.php?username={PROVIDER[0]}"
                  f"&password={PROVIDER[1]}")
        config = write_config(workdir, provider_port, port, argparse.Namespace(**{**vars(args), "clients": total}))
        for name in ("ts_only", "mixed"):
            relay = start([sys.executable, "-c", TWISTD, "-n", "--pidfile=", "xrelay", "--config", str(config)],
                          workdir / f"xrelay-{name}.log")
            wait_http(f"http://127.0.0.1:{port}/status", auth=ADMIN,
                      check=lambda b: json.loads(b).get("catalog_loaded"))
            overflows = listen_overflows()
            ticks = cpu_ticks()
            if name == "ts_only":
                print(f"xrelay, TS only: {total} TS clients at {args.bitrate / 1e6:g} Mbit/s (padded), "
                      f"{args.probes} join probes ...", flush=True)
                r = run_loadgen(exe, port, f"/live/{USER}/{PASSWORD}/1.ts",
                                argparse.Namespace(**{**vars(args), "clients": total}), total, 0, args.probes,
                                relay.pid)
                report("ts-only", r, args)
                out = {"ts": r}
            else:
                print(f"xrelay, mixed: {args.clients} TS clients + {args.hls_clients} HLS players, "
                      f"{args.probes} TS join probes and {args.probes} HLS join probes ...", flush=True)
                out = run_mixed(exe, hls_exe, port, args, relay.pid)
                print(f"  mixed: TS {out['ts']['ts_gbit_s']:.2f} + HLS {out['ts']['hls_gbit_s']:.2f} Gbit/s "
                      f"delivered (the Gbit/s and CPU figures below count both)", flush=True)
                report("mixed", out["ts"], args)
                report_hls(out["hls"])
            status = relay_status(port)
            channel = next(c for c in status["channels"] if c["stream_id"] == 1)
            out["upstream_connections"] = channel["upstream"]["connections"]
            out["upstream_reconnects"] = channel["upstream"]["reconnects"]
            out["hls_segmenter"] = channel.get("hls")
            out["listen_overflows"] = listen_overflows() - overflows
            out["machine"] = machine_note(ticks)
            print(f"  {name}: {out['machine']} (during the run)", flush=True)
            print(f"  {name}: provider connections for the channel {out['upstream_connections']} "
                  f"(reconnects {out['upstream_reconnects']}); listen overflows {out['listen_overflows']}; "
                  f"HLS segmenter holds {((out['hls_segmenter'] or {}).get('held_bytes') or 0) / 1e6:.0f} MB",
                  flush=True)
            results[name] = out
            stop(relay)
            relay = None
            time.sleep(2.0)  # the provider notices the closed connection
    finally:
        for proc in (relay, provider):
            if proc is not None:
                stop(proc)


def write_config(workdir: Path, provider_port: int, port: int, args: argparse.Namespace) -> Path:
    config = workdir / "xrelay.toml"
    config.write_text(f"""
[upstream]
url = "http://127.0.0.1:{provider_port}"
username = "{PROVIDER[0]}"
password = "{PROVIDER[1]}"

[server]
listen = "tcp:{port}:interface=127.0.0.1:backlog={args.backlog}"
# Every load-generator connection comes from 127.0.0.1: the per-address cap
# (64 by default) would close all but the first ones.
cap_loopback = false

[ingest]
data_dir = "{workdir / 'data'}"

[relay]
max_behind = {args.max_behind}

[admin]
username = "{ADMIN[0]}"
password = "{ADMIN[1]}"

[[users]]
username = "{USER}"
password = "{PASSWORD}"
max_connections = {args.clients * 2 + 1000}
""")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--bitrate", type=float, default=8e6)
    parser.add_argument("--measure", type=float, default=20.0)
    parser.add_argument("--ramp", type=float, default=400.0, help="new connections per second")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between ramp end and measuring")
    parser.add_argument("--stalled", type=int, default=20)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--max-behind", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--rcvbuf", type=int, default=512 * 1024,
                        help="readers' SO_RCVBUF (0: kernel autotuning)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--naive-clients", type=int, default=None,
                        help="clients for the naive run (default: --clients)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--mixed", action="store_true",
                        help="issue 11: TS-only, then TS + HLS players, on a padded stream and one connection")
    parser.add_argument("--hls-clients", type=int, default=1000, help="HLS players of --mixed")
    args = parser.parse_args()
    # Stop the child processes (in the finally below) when terminated too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    results: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.mixed:
        with tempfile.TemporaryDirectory(prefix="xrelay-bench-") as tmp:
            mixed_main(args, results, Path(tmp))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="xrelay-bench-") as tmp:
        workdir = Path(tmp)
        exe = build_loadgen(workdir)
        results["ceiling"] = measure_ceiling(exe, args)
        print(f"load generator ceiling: {results['ceiling']['gbit_s']:.1f} Gbit/s with "
              f"{args.clients} connections ({results['ceiling']['reader_cpu_per_s']:.2f} CPU s/s)",
              flush=True)

        provider_port, port, naive_port = free_port(), free_port(), free_port()
        provider = start([sys.executable, "-m", "xrelay.demo", "--listen",
                          f"tcp:{provider_port}:interface=127.0.0.1", "--bitrate", str(args.bitrate),
                          "--max-connections", "2", "--live", "5", "--vod", "2", "--series", "1",
                          "--epg-hours", "1", "--no-redirect"], workdir / "provider.log")
        relay = naive = None
        try:
            wait_http(f"http://127.0.0.1:{provider_port}/player_api.php?username={PROVIDER[0]}"
                      f"&password={PROVIDER[1]}")
            config = write_config(workdir, provider_port, port, args)
            relay = start([sys.executable, "-c", TWISTD, "-n", "--pidfile=", "xrelay",
                           "--config", str(config)],
                          workdir / "xrelay.log")
            wait_http(f"http://127.0.0.1:{port}/status", auth=ADMIN,
                      check=lambda b: json.loads(b).get("catalog_loaded"))
            path = f"/live/{USER}/{PASSWORD}/1.ts"
            print(f"xrelay: {args.clients} clients at {args.bitrate / 1e6:g} Mbit/s, "
                  f"{args.stalled} stalled, {args.probes} join probes ...", flush=True)
            overflows = listen_overflows()
            r = run_loadgen(exe, port, path, args, args.clients, args.stalled, args.probes, relay.pid)
            r["listen_overflows"] = listen_overflows() - overflows
            status = json.loads(wait_http(f"http://127.0.0.1:{port}/status", auth=ADMIN))
            r["evictions"] = status.get("evictions", 0)
            r["upstream_connections"] = sum(c["upstream"]["connections"] for c in status["channels"])
            results["xrelay"] = r
            report("xrelay", r, args)
            stop(relay)
            relay = None

            if not args.skip_naive:
                n = args.naive_clients or args.clients
                naive = start([sys.executable, str(HERE / "naive_fanout.py"),
                               f"http://127.0.0.1:{provider_port}/live/{PROVIDER[0]}/{PROVIDER[1]}/1.ts",
                               str(naive_port)], workdir / "naive.log")
                time.sleep(1.0)
                print(f"naive fan-out: {n} clients ...", flush=True)
                r2 = run_loadgen(exe, naive_port, "/", args, n, 0, args.probes, naive.pid)
                results["naive"] = r2
                report("naive", r2, args)
                stop(naive)
                # How many clients the naive loop does hold (every one >= 95%
                # real time): halve until it does, then bisect twice.
                held, failed = (n, None) if r2["held_95"] == n else (0, n)
                short = argparse.Namespace(**{**vars(args), "measure": min(args.measure, 10.0)})
                steps = 0
                while failed is not None and steps < 6:
                    size = failed // 2 if not held else (held + failed) // 2
                    if size < 25 or (held and failed - held <= n // 8):
                        break
                    naive = start([sys.executable, str(HERE / "naive_fanout.py"),
                                   f"http://127.0.0.1:{provider_port}/live/{PROVIDER[0]}/{PROVIDER[1]}/1.ts",
                                   str(naive_port)], workdir / "naive.log")
                    time.sleep(1.0)
                    r3 = run_loadgen(exe, naive_port, "/", short, size, 0, 0, naive.pid)
                    stop(naive)
                    print(f"  naive with {size} clients: {r3['held_95']}/{size} >= 95% real time "
                          f"(min {r3['min_ratio']:.3f})", flush=True)
                    results.setdefault("naive_search", []).append({"clients": size, **r3})
                    if r3["held_95"] == size:
                        held = size
                    else:
                        failed = size
                    steps += 1
                naive = None
                results["naive_held"] = held
                xrelay_held = results["xrelay"]["clients"] if results["xrelay"]["held_95"] == \
                    results["xrelay"]["clients"] else 0
                results["xrelay_held"] = xrelay_held
                results["ratios"] = ratios(results["xrelay"], r2, xrelay_held, held)
                compare(results["ratios"], xrelay_held, held, n)
        finally:
            for proc in (naive, relay, provider):
                if proc is not None:
                    stop(proc)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def cpu_per_gbit(r: dict) -> float:
    gbit = r["delivered_gbit_s"]
    return (r["server_cpu"] / r["seconds"]) / gbit if gbit else float("inf")


def report(name: str, r: dict, args: argparse.Namespace) -> None:
    print(f"  {name}: {r['held_95']}/{r['clients']} clients >= 95% real time "
          f"(min {r['min_ratio']:.3f}, median {r['median_ratio']:.3f}), "
          f"{r['delivered_gbit_s']:.2f} Gbit/s delivered, alignment errors {r['align_errors']}, "
          f"closed {r['closed']}", flush=True)
    print(f"  {name}: CPU {r['server_cpu'] / r['seconds']:.2f} s/s = {cpu_per_gbit(r):.3f} CPU s per Gbit; "
          f"RSS {r['server_rss_mb']:.0f} MB (peak {r['server_peak_rss_mb']:.0f} MB); "
          f"loadgen CPU {r['loadgen_cpu'] / r['seconds']:.2f} s/s", flush=True)
    print(f"  {name}: join first byte p50 {r['join_p50_ms']:.1f} ms, p99 {r['join_p99_ms']:.1f} ms, "
          f"max {r['join_max_ms']:.1f} ms over {r['probes']} probes", flush=True)
    if "evictions" in r:
        print(f"  {name}: stalled clients evicted {r['evictions']}/{args.stalled}; RSS at measure start "
              f"{r['server_rss_at_measure_start_mb']:.0f} MB; upstream connections {r['upstream_connections']}; "
              f"listen overflows (system wide) {r.get('listen_overflows', '?')}", flush=True)


def ratios(x: dict, naive: dict, x_held: int, naive_held: int) -> dict:
    return {
        "clients_held": x_held / naive_held if naive_held else float("inf"),
        "cpu_per_gbit": cpu_per_gbit(x) / cpu_per_gbit(naive),
    }


def compare(r: dict, x_held: int, naive_held: int, clients: int) -> None:
    print(f"xrelay / naive: clients held {x_held} / {naive_held} = x{r['clients_held']:.1f} "
          f"(all clients >= 95% real time); CPU per delivered Gbit/s x{r['cpu_per_gbit']:.2f} "
          f"(same {clients}-client load)", flush=True)


if __name__ == "__main__":
    main()
