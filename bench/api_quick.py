"""A quick API check: one checkout's daemon, one answer, 20 clients.

    python bench/api_quick.py [--code DIR] [--category N] [--rounds 2] [--seconds 10]

Starts the demo provider with the API benchmark's catalog (50 000 live,
100 000 movies, 10 000 series), ``twistd -n xrelay`` from the checkout
*DIR* (default: this one) ingesting from it, and then loads the full
``get_live_streams`` (gzip accepted; ``--category N``: that category's
slice instead) with ``bench/api_loadgen.c``, printing each round's figures.
Run it for two checkouts one after the other to compare them on the same
machine (what ``bench/api_load.py`` measures in full, in about a third of
the time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from api_load import build_loadgen, loadgen, wait_for_log
from big_catalog import PROVIDER_PASS, PROVIDER_USER, add_catalog_options, demo_command, free_port

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_catalog_options(ap)
    ap.add_argument("--code", default=str(ROOT), help="the checkout whose xrelay runs")
    ap.add_argument("--category", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrelay-bench-quick-"))
    exe = build_loadgen(work)
    demo_port, port = free_port(), free_port()
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
username = "bench"
password = "benchpw"
max_connections = 4
""")
    env = {**os.environ, "PYTHONPATH": args.code, "TMPDIR": str(work)}
    demo_log, log = work / "demo.log", work / "xrelay.log"
    demo = subprocess.Popen(demo_command(demo_port, args), env={**env, "PYTHONPATH": str(ROOT)},
                            stdout=open(demo_log, "w"), stderr=subprocess.STDOUT)
    relay = None
    try:
        wait_for_log(demo_log, r"demo provider at", 0, 60, demo)
        twistd = shutil.which("twistd") or "twistd"
        relay = subprocess.Popen([twistd, "-n", "--pidfile=", "xrelay", "--config", str(config)], env=env,
                                 cwd=work, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_for_log(log, r"API ready in [0-9.]+ s[^\n]*", 0, 1800, relay)
        params = {"username": "bench", "password": "benchpw", "action": "get_live_streams"}
        if args.category is not None:
            params["category_id"] = str(args.category)
        target = "/player_api.php?" + urlencode(params)
        loadgen(exe, port, 1, 2, True, [target])  # the first request builds the answer
        print(f"code {args.code}, {target.split('&')[-1]}")
        for _ in range(args.rounds):
            print(loadgen(exe, port, 20, args.seconds, True, [target]), flush=True)
    finally:
        for proc in (relay, demo):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
