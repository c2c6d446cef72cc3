"""``python -m xrelay.demo``: run the demo provider alone.

    python -m xrelay.demo --listen tcp:9000 --live 1000 --vod 5000 \\
        --series 200 --bitrate 8000000 --max-connections 2

Prints the account and the URLs to try, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from .provider import DemoProvider, DemoSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = DemoSettings()
    parser = argparse.ArgumentParser(prog="python -m xrelay.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="tcp:9000:interface=127.0.0.1",
                        help="Twisted endpoint string (default %(default)s)")
    parser.add_argument("--live", type=int, default=d.live)
    parser.add_argument("--vod", type=int, default=d.vod)
    parser.add_argument("--series", type=int, default=d.series)
    parser.add_argument("--seasons", type=int, default=d.seasons)
    parser.add_argument("--episodes", type=int, default=d.episodes)
    parser.add_argument("--epg-hours", type=int, default=d.epg_hours)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--quirky", action="store_true", help="serve real-panel quirks")
    parser.add_argument("--bitrate", type=float, default=None,
                        help="live bitrate in bit/s (default: the sample's own)")
    parser.add_argument("--max-connections", type=int, default=d.max_connections,
                        help="account limit, 0 = unlimited (default %(default)s)")
    parser.add_argument("--username", default=d.username)
    parser.add_argument("--password", default=d.password)
    parser.add_argument("--timezone", default=d.timezone)
    parser.add_argument("--no-redirect", action="store_true",
                        help="serve stream URLs directly instead of a 302")
    parser.add_argument("--pad", action="store_true",
                        help="reach --bitrate with null packets (timestamps stay real time)")
    parser.add_argument("--hls-only", default="",
                        help='channels served as HLS only: "all" or ids, comma separated')
    parser.add_argument("--hls-only-answer", choices=("playlist", "refuse"), default="playlist",
                        help="what their MPEG-TS URL answers (default %(default)s)")
    return parser.parse_args(argv)


def hls_only(value: str) -> str | tuple[int, ...]:
    """``--hls-only`` as ``DemoSettings.hls_only``."""
    if value.strip() == "all":
        return "all"
    return tuple(int(v) for v in value.split(",") if v.strip())


async def _run(reactor: object, args: argparse.Namespace) -> None:
    settings = DemoSettings(
        username=args.username, password=args.password, max_connections=args.max_connections,
        live=args.live, vod=args.vod, series=args.series, seasons=args.seasons,
        episodes=args.episodes, epg_hours=args.epg_hours, seed=args.seed, quirky=args.quirky,
        bitrate_bps=args.bitrate, timezone=args.timezone, redirect_streams=not args.no_redirect,
        pad=args.pad, hls_only=hls_only(args.hls_only), hls_only_answer=args.hls_only_answer,
    )
    provider = DemoProvider(reactor, settings)  # type: ignore[arg-type]
    await provider.listen(args.listen)
    creds = f"username={settings.username}&password={settings.password}"
    print(f"demo provider at {provider.url}", flush=True)
    print(f"  account:  {provider.url}/player_api.php?{creds}", flush=True)
    print(f"  playlist: {provider.url}/get.php?{creds}&type=m3u_plus&output=ts", flush=True)
    print(f"  live:     {provider.url}/live/{settings.username}/{settings.password}/1.ts", flush=True)
    await defer.Deferred()  # until interrupted


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    task.react(lambda reactor: defer.ensureDeferred(_run(reactor, args)))


if __name__ == "__main__":
    main()
