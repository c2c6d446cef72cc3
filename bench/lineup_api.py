"""Lineups benchmark: the API targets for lineup users, against nginx serving the same bytes.

    python bench/lineup_api.py [--live 50000 --vod 100000 --series 10000 --epg-hours 4]
                               [--clients 20 --seconds 10] [--keep]

Runs the demo provider with the big catalog, ``twistd -n xrelay`` with four
lineups (``all``: everything; ``country``: two countries, adult hidden,
favourites and renames; ``kids``: narrowing ``country``; ``tuner``: 400
channels) and one user per lineup plus one without, and nginx (Debian's, on
loopback, with its own temporary configuration and one worker process, like
xrelay's one process) serving files holding the very answers xrelay sent.
The same load generator (``bench/api_loadgen.c``) and the same socket reader
then measure both in the same run:

* full ``get_live_streams`` (gzip accepted, and not) per user: p50/p99 and
  answers per second, and xrelay's ratio to nginx;
* ``get.php`` m3u_plus: time to the first byte and MB/s, both servers;
* a lineup user's mixed API load (5 s windows) while an ingest of the same
  catalog runs and the lineups' views are built again;
* xrelay's resident memory, the lineup builds' duration and their child
  process's peak memory.

Prints a Markdown-ready summary for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from api_load import build_loadgen, fetch_timed, loadgen, rss, wait_for_log
from big_catalog import PROVIDER_PASS, PROVIDER_USER, add_catalog_options, demo_command, free_port
from lineup_selections import LINEUPS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: user -> lineup (None: the whole catalog)
USERS = {"whole": None, "u_all": "all", "u_country": "country", "u_kids": "kids", "u_tuner": "tuner"}
PASSWORD = "benchpw"
VIEWS_READY = r"lineups: 4 views ready in [0-9.]+ s[^\n]*"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def config_text(demo_port: int, port: int, data: Path, access_log: bool = True) -> str:
    lines = [f"""
[upstream]
url = "http://127.0.0.1:{demo_port}"
username = "{PROVIDER_USER}"
password = "{PROVIDER_PASS}"

[server]
listen = "tcp:{port}:interface=127.0.0.1"

[ingest]
data_dir = "{data}"
interval = 86400
timeout = 1800

[log]
access = {"true" if access_log else "false"}
"""]
    for user, lineup in USERS.items():
        lines.append(f'[[users]]\nusername = "{user}"\npassword = "{PASSWORD}"\nmax_connections = 4\n'
                     + (f'lineup = "{lineup}"\n' if lineup else ""))
    for name, table in LINEUPS.items():
        lines.append(f"[lineups.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


def target(user: str, **params: Any) -> str:
    return "/player_api.php?" + urlencode({"username": user, "password": PASSWORD, **params})


def playlist(user: str) -> str:
    return "/get.php?" + urlencode({"username": user, "password": PASSWORD, "type": "m3u_plus", "output": "ts"})


def raw_body(port: int, path: str, gz: bool) -> bytes:
    """One answer's body exactly as sent (not decompressed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gz else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}")
    return body


def start_nginx(work: Path, root: Path) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix = work / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"""{user}worker_processes 1;
daemon off;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'logs' / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 120;
  client_body_temp_path {prefix / 'tmp'};
  proxy_temp_path {prefix / 'tmp'};
  fastcgi_temp_path {prefix / 'tmp'};
  uwsgi_temp_path {prefix / 'tmp'};
  scgi_temp_path {prefix / 'tmp'};
  default_type application/json;
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
""")
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
        try:
            raw_body(port, "/ready", False)
            return proc, port
        except (OSError, RuntimeError):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"nginx did not start; see {prefix / 'logs' / 'error.log'}")
            time.sleep(0.1)  # polling another process's port


def compare(exe: str, port: int, nginx_port: int, clients: int, seconds: float, gz: bool,
            xrelay_path: str, nginx_path: str) -> dict[str, Any]:
    ours = loadgen(exe, port, clients, seconds, gz, [xrelay_path])
    theirs = loadgen(exe, nginx_port, clients, seconds, gz, [nginx_path])
    return {"xrelay": ours, "nginx": theirs,
            "p99_ratio": round(ours["p99_ms"] / theirs["p99_ms"], 2) if theirs["p99_ms"] else None,
            "rps_ratio": round(ours["rps"] / theirs["rps"], 2) if theirs["rps"] else None}


def best_of(port: int, path: str, gz: bool = False, runs: int = 3) -> dict[str, float]:
    timed = [fetch_timed(port, path, gz) for _ in range(runs)]
    best = min(timed, key=lambda r: r[1])
    return {"ttfb_ms": round(min(r[0] for r in timed) * 1000, 1), "ttfb_ms_max": round(max(r[0] for r in timed) * 1000, 1),
            "mb": round(best[2] / 1e6, 1), "mb_per_s": round(best[2] / 1e6 / best[1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_catalog_options(ap)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-access-log", action="store_true",
                    help="xrelay with [log] access = false, as nginx runs here (access_log off)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xrelay-bench-lineups-"))
    os.chmod(work, 0o755)
    exe = build_loadgen(work)
    demo_port, port = free_port(), free_port()
    # a private temporary directory: the ingest's scratch is nobody else's to sweep
    (work / "tmp").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(work / "tmp")}
    config = work / "xrelay.toml"
    config.write_text(config_text(demo_port, port, work / "data", access_log=not args.no_access_log))
    twistd = shutil.which("twistd") or str(Path(sys.executable).with_name("twistd"))
    demo_log, xrelay_log = work / "demo.log", work / "xrelay.log"
    demo = subprocess.Popen(demo_command(demo_port, args), env=env, stdout=open(demo_log, "w"),
                            stderr=subprocess.STDOUT)
    relay = nginx = None
    results: dict[str, Any] = {}
    try:
        wait_for_log(demo_log, r"demo provider at", 0, 60, demo)
        relay = subprocess.Popen([twistd, "-n", "--pidfile=", "xrelay", "--config", str(config)], env=env,
                                 cwd=work, stdout=open(xrelay_log, "w"), stderr=subprocess.STDOUT)
        results["ingest"] = wait_for_log(xrelay_log, r"ingest succeeded in [0-9.]+ s[^\n]*", 0, 1800, relay)[0]
        results["api_ready"] = wait_for_log(xrelay_log, r"API ready in [0-9.]+ s[^\n]*", 0, 600, relay)[0]
        results["views_first"] = wait_for_log(xrelay_log, VIEWS_READY, 0, 900, relay)[0]
        results["rss_idle_mb"] = rss(relay.pid)

        # the very answers xrelay sends, as files for nginx
        root = work / "www"
        answers: dict[str, tuple[str, str]] = {}  # name -> (xrelay path, nginx path)
        for user in ("whole", "u_all", "u_country", "u_kids"):
            for gz in (True, False):
                name = f"{user}/live.json" + (".gz" if gz else "")
                answers[name] = (target(user, action="get_live_streams"), "/" + name)
            answers[f"{user}/m3u"] = (playlist(user), f"/{user}/m3u")
        sizes = {}
        for name, (path, _) in answers.items():
            body = raw_body(port, path, name.endswith(".gz"))
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(body)
            sizes[name] = round(len(body) / 1e6, 2)
        results["answer_mb"] = sizes
        (root / "ready").write_bytes(b"ok")
        for path in root.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        nginx, nginx_port = start_nginx(work, root)

        # full get_live_streams, 20 clients: xrelay then nginx, same bytes
        for user in ("whole", "u_all", "u_country", "u_kids"):
            for gz in (True, False):
                name = f"{user}/live.json" + (".gz" if gz else "")
                if not gz and user in ("u_kids",):
                    continue
                xpath, npath = answers[name]
                loadgen(exe, port, 1, 1, gz, [xpath])  # warm the per-base caches
                results[f"live {user} gzip={gz}"] = compare(exe, port, nginx_port, args.clients, args.seconds, gz,
                                                            xpath, npath)
        results["rss_after_lists_mb"] = rss(relay.pid)

        # get.php: first byte and MB/s
        for user in ("whole", "u_all", "u_country"):
            xpath, npath = answers[f"{user}/m3u"]
            results[f"get.php {user}"] = {"xrelay": best_of(port, xpath), "nginx": best_of(nginx_port, npath)}
        results["rss_after_playlists_mb"] = rss(relay.pid)

        # a lineup user's mixed load while an ingest runs and the views are built again
        user = "u_country"
        mixed = [target(user), target(user, action="get_live_categories"),
                 target(user, action="get_short_epg", stream_id=101),
                 target(user, action="get_vod_streams", category_id=61),
                 target(user, action="get_simple_data_table", stream_id=151), answers[f"{user}/live.json.gz"][0]]
        results["mixed_no_ingest"] = loadgen(exe, port, args.clients, 10, True, mixed)
        start = len(xrelay_log.read_text(errors="replace"))
        relay.send_signal(signal.SIGHUP)
        began = time.time()
        during: list[dict[str, float]] = []
        while time.time() - began < 1800:
            during.append(loadgen(exe, port, args.clients, 5, True, mixed))
            text = xrelay_log.read_text(errors="replace")[start:]
            api = re.search(r"API ready in [0-9.]+ s", text)
            if api and re.search(VIEWS_READY, text[api.end():]):
                break
        for _ in range(3):
            during.append(loadgen(exe, port, args.clients, 5, True, mixed))
        text = xrelay_log.read_text(errors="replace")[start:]
        results["during_ingest"] = {
            "windows": len(during), "requests": sum(d["requests"] for d in during),
            "errors": sum(d["errors"] for d in during),
            "p99_ms_per_window": [d["p99_ms"] for d in during],
            "max_ms": max(d["max_ms"] for d in during), "seconds": round(time.time() - began, 1),
            "views": (re.findall(VIEWS_READY, text) or [""])[-1],
        }
        results["rss_after_ingest_mb"] = rss(relay.pid)
        results["ingest_child_peak_mb"] = re.findall(r"the ingest process used at most ([0-9]+) MB",
                                                     xrelay_log.read_text(errors="replace"))
    finally:
        for proc in (nginx, relay, demo):
            if proc is not None:
                proc.send_signal(signal.SIGQUIT if proc is nginx else signal.SIGINT)
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
