"""Peak memory and time of one ingest of a big catalog.

    python bench/ingest_memory.py [--live 50000 --vod 100000 --series 10000 --epg-hours 4]
                                  [--code DIR] [--runs 1]

Starts the demo provider (``python -m xrelay.demo``, this checkout) with the
given catalog sizes, then runs ``python -m xrelay.cli ingest --force`` against
it, the same ingest code the daemon's child process runs, as a process of its
own; its peak resident memory is the kernel's ``ru_maxrss`` for that child
(``resource.getrusage(RUSAGE_CHILDREN)`` read after each run, one child per
run).  ``--code DIR`` runs the ingest from another checkout of xrelay (a git
worktree of an older commit), to compare versions on the same provider.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from big_catalog import PROVIDER_PASS, PROVIDER_USER, add_catalog_options, demo_command, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if re.search(pattern, path.read_text(errors="replace")):
            return
        if proc.poll() is not None:
            raise SystemExit(f"the demo provider exited: {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    raise SystemExit("the demo provider did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_catalog_options(ap)
    ap.add_argument("--code", type=Path, default=ROOT, help="the xrelay checkout whose ingest runs")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrelay-bench-ingest-"))
    port = free_port()
    demo_log = work / "demo.log"
    demo = subprocess.Popen(
        demo_command(port, args),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=open(demo_log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for(demo_log, r"demo provider at", demo)
        config = work / "xrelay.toml"
        config.write_text(f"""
[upstream]
url = "http://127.0.0.1:{port}"
username = "{PROVIDER_USER}"
password = "{PROVIDER_PASS}"

[ingest]
data_dir = "{work / 'data'}"
timeout = 1800

[[users]]
username = "bench"
password = "benchpw"
""")
        env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
        for run in range(1, args.runs + 1):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "xrelay.cli", "ingest", "--config", str(config), "--force"],
                                  env=env, cwd=work, capture_output=True, text=True)
            seconds = time.monotonic() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if done.returncode != 0:
                raise SystemExit(f"the ingest failed: {(done.stdout + done.stderr)[-2000:]}")
            # ru_maxrss of the children is the largest so far: a run that peaks
            # lower than an earlier one shows the earlier figure (say so)
            note = "" if peak > before else " (not above an earlier run's peak)"
            print(f"run {run}: ingest {seconds:.1f} s, peak RSS {peak / 1024:.0f} MB{note}; "
                  f"{done.stdout.strip() or done.stderr.strip()}")
        print(f"code: {args.code.resolve()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")
    finally:
        demo.terminate()
        demo.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
