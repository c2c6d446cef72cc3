"""Hostile clients against the real daemon, on loopback only (issue 14).

    python bench/hostile_clients.py [--only body,trickle,fds,guesses] [--no-cap-loopback]
                                    [--guess-seconds 60] [--source CHECKOUT]

Starts the demo provider (``python -m xrelay.demo``, a small catalog) and the
daemon exactly as systemd would (``twistd -n xrelay --config FILE``), both
on 127.0.0.1, then measures, while a live viewer reads a channel and an API
user asks ``get_live_categories`` every 50 ms:

* ``body``: one anonymous ``POST /player_api.php`` announcing and sending
  500 MB, then one announcing ``Content-Length: 10 GB`` and sending as fast
  as it can: the answer, how long until it came, how much the client could
  send, the daemon's peak memory (VmRSS sampled every 20 ms, and VmHWM),
  the viewer's longest gap between two reads and the API user's slowest
  answer, each against a quiet baseline;
* ``trickle``: how long a connection lives that sends nothing, one that
  trickles its request line one byte a second, and one that trickles its
  body one byte a second;
* ``fds``: 1000 connections from 127.0.0.1 that send one byte and stop: the
  daemon's open file descriptors over time (``/proc/PID/fd``), how many
  connections were refused at once, when the last one closed;
* ``guesses``: wrong passwords as fast as one client (and 32 parallel
  clients) can send them for 60 s: answers per status and per second,
  when the 429s start.

Everything runs on this machine: the figures include the load generator's
own CPU.  ``--no-cap-loopback`` runs the daemon with ``cap_loopback =
false`` (as behind a reverse proxy on the same machine); ``--source`` runs
the daemon of another checkout (an older xrelay, for a before/after).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from big_catalog import PROVIDER_PASS, PROVIDER_USER, free_port  # noqa: E402

USER, PASSWORD = "viewer", "viewerpw"
MB = 1024 * 1024


# -- the daemon and the provider ---------------------------------------------------------------

class Daemon:
    def __init__(self, workdir: Path, cap_loopback: bool, source: Path = ROOT) -> None:
        self.workdir = workdir
        self.provider_port, self.port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(source)}
        self.provider = subprocess.Popen(
            [sys.executable, "-m", "xrelay.demo", "--listen", f"tcp:{self.provider_port}:interface=127.0.0.1",
             "--live", "20", "--vod", "20", "--series", "4", "--max-connections", "0", "--no-redirect"],
            env=env, cwd=source, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = workdir / "xrelay.toml"
        config.write_text(textwrap.dedent(f"""
            [upstream]
            url = "http://127.0.0.1:{self.provider_port}"
            username = "{PROVIDER_USER}"
            password = "{PROVIDER_PASS}"
            [server]
            listen = "tcp:{self.port}:interface=127.0.0.1"
            {"" if cap_loopback else "cap_loopback = false"}
            [ingest]
            data_dir = "{workdir / 'data'}"
            [[users]]
            username = "{USER}"
            password = "{PASSWORD}"
            max_connections = 4
        """))
        self.log = open(workdir / "daemon.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "xrelay", "--config", str(config)], env=env, cwd=source, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Waits for the first ingest; returns a live channel id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = get(self.port, f"/player_api.php?username={USER}&password={PASSWORD}"
                                              "&action=get_live_streams")
                rows = json.loads(body) if status == 200 else []
                if rows:
                    return int(rows[0]["stream_id"])
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise SystemExit("the daemon did not serve its catalog in time (see daemon.log)")

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        values = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, kb, _ = line.split()
                    values[name] = int(kb) / 1024
        return values["VmRSS:"], values["VmHWM:"]

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> None:
        for process in (self.process, self.provider):
            process.terminate()
        for process in (self.process, self.provider):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- the innocent bystanders ------------------------------------------------------------------

class Bystanders:
    """A live viewer (longest gap between two reads) and an API user (slowest answer)."""

    def __init__(self, port: int, channel: int) -> None:
        self.port, self.channel = port, channel
        self.stop = threading.Event()
        self.window_gap = 0.0
        self.window_api = 0.0
        self.api_errors = 0
        self.viewer_bytes = 0
        threading.Thread(target=self._viewer, daemon=True).start()
        threading.Thread(target=self._api, daemon=True).start()

    def reset(self) -> None:
        self.window_gap = self.window_api = 0.0
        self.api_errors = 0

    def _viewer(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(f"GET /live/{USER}/{PASSWORD}/{self.channel}.ts HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        last = time.monotonic()
        first = True
        while not self.stop.is_set():
            data = sock.recv(65536)
            if not data:
                break
            now = time.monotonic()
            if not first:
                self.window_gap = max(self.window_gap, now - last)
            first = False
            last = now
            self.viewer_bytes += len(data)
        sock.close()

    def _api(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        path = f"/player_api.php?username={USER}&password={PASSWORD}&action=get_live_categories"
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.api_errors += 1
            except (OSError, http.client.HTTPException):
                self.api_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.window_api = max(self.window_api, time.monotonic() - started)
            time.sleep(0.05)


class MemorySampler:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.peak = 0.0
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.daemon.rss_mb()[0])
            time.sleep(0.02)


def under_watch(daemon: Daemon, bystanders: Bystanders, attack: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *attack*; the daemon's memory and the bystanders' worst moments meanwhile."""
    before = daemon.rss_mb()[0]
    bystanders.reset()
    memory = MemorySampler(daemon)
    result = attack()
    time.sleep(0.5)  # the aftermath counts too
    memory.stop.set()
    return {**result, "rss_before_mb": round(before, 1), "rss_peak_mb": round(memory.peak, 1),
            "rss_hwm_mb": round(daemon.rss_mb()[1], 1), "viewer_worst_gap_s": round(bystanders.window_gap, 3),
            "api_slowest_s": round(bystanders.window_api, 3), "api_errors": bystanders.api_errors}


# -- body ---------------------------------------------------------------------------------------

def big_body(port: int, announced: int, send: int) -> dict[str, Any]:
    """POST /player_api.php announcing *announced* bytes and sending up to *send*."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(60)
    head = (f"POST /player_api.php HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {announced}\r\n\r\n").encode()
    started = time.monotonic()
    sock.sendall(head)
    chunk = b"a" * MB
    sent, answer = 0, b""
    sock.setblocking(False)
    answered_at = None
    while sent < send:
        try:
            sent += sock.send(chunk[: min(len(chunk), send - sent)])
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break  # the daemon closed the connection
        try:
            data = sock.recv(65536)
            if data:
                answer += data
                answered_at = answered_at or time.monotonic()
            else:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
    sock.settimeout(10)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
            answered_at = answered_at or time.monotonic()
    except OSError:
        pass
    closed = time.monotonic()
    sock.close()
    return {"status": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
            "answered_after_s": round((answered_at or closed) - started, 3),
            "client_sent_mb": round(sent / MB, 1), "closed_after_s": round(closed - started, 3)}


# -- trickle ---------------------------------------------------------------------------------------

def lifetime(port: int, head: bytes, trickle: bytes, every: float) -> dict[str, Any]:
    """Send *head*, then one byte of *trickle* every *every* seconds; how long until the daemon closes."""
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    sock.sendall(head)
    sock.settimeout(every)
    answer = b""
    i = 0
    while True:
        try:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        except socket.timeout:
            if i < len(trickle):
                try:
                    sock.send(trickle[i:i + 1])
                except OSError:
                    break
                i += 1
        except OSError:
            break
        if time.monotonic() - started > 300:
            break
    sock.close()
    return {"lived_s": round(time.monotonic() - started, 2),
            "answer": answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed without an answer)"}


# -- fds ---------------------------------------------------------------------------------------

def many_trickling(daemon: Daemon, count: int) -> dict[str, Any]:
    socks = []
    fds_before = daemon.fds()
    started = time.monotonic()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", daemon.port))
        s.sendall(b"G")
        socks.append(s)
    timeline, peak = [], 0
    refused_at_once = None
    while time.monotonic() - started < 40:
        open_fds = daemon.fds()
        peak = max(peak, open_fds)
        alive = 0
        for s in socks:
            if s.fileno() < 0:
                continue
            s.setblocking(False)
            try:
                while s.recv(65536):  # an answer (408), then the end
                    pass
                s.close()  # closed by the daemon
            except BlockingIOError:
                alive += 1
            except OSError:
                s.close()
        if refused_at_once is None and time.monotonic() - started > 1:
            refused_at_once = count - alive
        timeline.append((round(time.monotonic() - started, 1), open_fds, alive))
        if alive == 0:
            break
        time.sleep(0.5)
    for s in socks:
        s.close()
    return {"connections": count, "daemon_fds_before": fds_before, "daemon_fds_peak": peak,
            "closed_within_1s": refused_at_once, "all_closed_after_s": timeline[-1][0],
            "timeline_s_fds_alive": timeline[:: max(1, len(timeline) // 12)]}


# -- guesses ---------------------------------------------------------------------------------------

def guesses(port: int, workers: int, seconds: float) -> dict[str, Any]:
    counts: dict[int, int] = {}
    per_second: dict[int, int] = {}
    first_429: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def guess() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() - started < seconds:
            n += 1
            try:
                conn.request("GET", f"/player_api.php?username={USER}&password=guess{n}")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            at = time.monotonic() - started
            with lock:
                counts[status] = counts.get(status, 0) + 1
                if status == 401:
                    per_second[int(at)] = per_second.get(int(at), 0) + 1
                if status == 429 and not first_429:
                    first_429.append(at)
        conn.close()

    threads = [threading.Thread(target=guess) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    status, _ = get(port, f"/player_api.php?username={USER}&password={PASSWORD}")
    return {"workers": workers, "seconds": round(elapsed, 1), "answers_by_status": counts,
            "wrong_passwords_checked": counts.get(401, 0),
            "checked_per_second_overall": round(counts.get(401, 0) / elapsed, 2),
            "first_429_after_s": round(first_429[0], 2) if first_429 else None,
            "429_per_second": round(counts.get(429, 0) / elapsed, 1),
            "right_password_from_that_address_then": status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="body,trickle,fds,guesses")
    ap.add_argument("--no-cap-loopback", action="store_true")
    ap.add_argument("--guess-seconds", type=float, default=60.0)
    ap.add_argument("--source", type=Path, default=ROOT, help="the checkout whose daemon runs")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="xrelay-hostile-") as tmp:
        daemon = Daemon(Path(tmp), cap_loopback=not args.no_cap_loopback, source=args.source)
        try:
            channel = daemon.wait_ready()
            out: dict[str, Any] = {"cap_loopback": not args.no_cap_loopback}
            if "body" in parts or "trickle" in parts:
                bystanders = Bystanders(daemon.port, channel)
                time.sleep(3)
                out["baseline"] = under_watch(daemon, bystanders, lambda: (time.sleep(10), {})[1])
                if "body" in parts:
                    out["body_500MB"] = under_watch(daemon, bystanders, lambda: big_body(daemon.port, 500 * MB, 500 * MB))
                    out["content_length_10GB"] = under_watch(
                        daemon, bystanders, lambda: big_body(daemon.port, 10 * 1024 * MB, 2048 * MB))
                bystanders.stop.set()
            if "trickle" in parts:
                login = f"/player_api.php?username={USER}&password={PASSWORD}".encode()
                request = b"GET " + login + b" HTTP/1.1\r\nHost: bench\r\n\r\n"
                out["silent_connection"] = lifetime(daemon.port, b"", b"", 1.0)
                out["request_line_1_byte_per_s"] = lifetime(daemon.port, request[:1], request[1:], 1.0)
                out["request_line_1_byte_per_15s"] = lifetime(daemon.port, request[:1], request[1:], 15.0)
                post = (b"POST " + login + b" HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                        b"application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n")
                out["body_1_byte_per_s"] = lifetime(daemon.port, post, b"a" * 1000, 1.0)
            if "fds" in parts:
                out["fds_1000_trickling"] = many_trickling(daemon, 1000)
            if "guesses" in parts:
                out["guesses_1_client"] = guesses(daemon.port, 1, args.guess_seconds)
                daemon.stop()  # a fresh daemon: the first client's lockout is its own
                again = Path(tmp) / "again"
                again.mkdir()
                daemon = Daemon(again, cap_loopback=not args.no_cap_loopback, source=args.source)
                daemon.wait_ready()
                out["guesses_32_clients"] = guesses(daemon.port, 32, args.guess_seconds)
            print(json.dumps(out, indent=1))
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
