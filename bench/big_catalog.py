"""The big demo catalog the API and ingest benchmarks share.

``bench/api_load.py``, ``bench/api_ingest_stalls.py`` and
``bench/ingest_memory.py`` all run the demo provider with the same catalog
sizes (50k live, 100k movies, 10k series, a 109 MB guide by default):
the options and the provider's command line are here once.
"""

from __future__ import annotations

import argparse
import socket
import sys

__all__ = ["add_catalog_options", "demo_command", "free_port", "PROVIDER_USER", "PROVIDER_PASS"]

#: The demo provider's own login (xrelay.demo's defaults).
PROVIDER_USER, PROVIDER_PASS = "provider-user", "provider-pass"


def add_catalog_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--live", type=int, default=50000)
    ap.add_argument("--vod", type=int, default=100000)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--epg-hours", type=int, default=4)


def demo_command(port: int, args: argparse.Namespace) -> list[str]:
    """The demo provider on loopback *port* with the catalog of *args*."""
    return [sys.executable, "-m", "xrelay.demo", "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--live", str(args.live), "--vod", str(args.vod), "--series", str(args.series),
            "--epg-hours", str(args.epg_hours), "--max-connections", "0", "--no-redirect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
