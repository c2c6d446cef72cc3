"""The ``xrelay`` command: one-off jobs beside the daemon.

* ``xrelay ingest --config FILE [--force]``: one ingest now, then exit
  (status 0 on success; otherwise 1 and a one-line reason on stderr).
* ``xrelay check-config --config FILE``: check the configuration and print
  it with secrets masked.
* ``xrelay lineup show NAME --config FILE``: a lineup's counts and first
  rows, applied to the current cache (a dry run: nothing is written).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Sequence

from xrelay.core.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from xrelay.core.reactor import IReactor
    from xrelay.ingest.ingester import IngestResult

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrelay", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="download the provider's catalog now, then exit")
    ingest.add_argument("--config", "-c", required=True, help="the TOML configuration file")
    ingest.add_argument("--force", action="store_true",
                        help="accept a catalog that shrank by more than [ingest] max_shrink")
    check = sub.add_parser("check-config", help="check the configuration and print it, secrets masked")
    check.add_argument("--config", "-c", required=True, help="the TOML configuration file")
    lineup = sub.add_parser("lineup", help="lineups applied to the current cache")
    lineup_sub = lineup.add_subparsers(dest="lineup_command", required=True)
    show = lineup_sub.add_parser("show", help="a lineup's counts and first rows (nothing is written)")
    show.add_argument("name", help="the lineup ([lineups.NAME])")
    show.add_argument("--config", "-c", required=True, help="the TOML configuration file")
    show.add_argument("--rows", type=int, default=20, help="rows shown per kind (default 20)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"xrelay: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps(config.masked(), indent=2))
        return 0
    if args.command == "lineup":
        return _lineup_show(config, args.name, args.rows)
    return _ingest(config, args.force)


def _lineup_show(config: Config, name: str, rows: int) -> int:
    from xrelay.catalog.generation import NotPrepared, load_generation
    from xrelay.catalog.lineup_preview import preview
    from xrelay.catalog.store import CacheStore

    if name not in config.lineups:
        known = ", ".join(sorted(config.lineups)) or "none defined"
        print(f"xrelay: {config.source}: no lineup {name!r} ({known})", file=sys.stderr)
        return 2
    current = CacheStore(config.ingest.data_dir).current()
    if current is None:
        print(f"xrelay: no cached catalog in {config.ingest.data_dir} yet: run an ingest first", file=sys.stderr)
        return 1
    try:
        generation = load_generation(current)
    except (NotPrepared, OSError, ValueError) as e:
        print(f"xrelay: the cached catalog is not ready to read ({e}): start the daemon once", file=sys.stderr)
        return 1
    for line in preview(generation, config.lineups, name, config.ingest.data_dir, max(0, rows)):
        print(line)
    return 0


def _ingest(config: Config, force: bool) -> int:
    from twisted.internet import defer, task

    from xrelay.ingest.ingester import Ingester
    from xrelay.provider.client import ProviderClient
    from xrelay.core.scrub import Scrubber
    from xrelay.catalog.store import CacheStore

    async def run(reactor: IReactor) -> None:
        scrubber = Scrubber(config.upstream)
        client = ProviderClient(reactor, config.upstream, scrubber, persistent=False)
        ingester = Ingester(reactor, client, CacheStore(config.ingest.data_dir), config.ingest, scrubber)
        result = await ingester.run("command line", force=force)
        await client.close()
        raise SystemExit(_report(result))

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0  # not reached: react() exits with the code raised above


def _report(result: IngestResult) -> int:
    if result.ok:
        c = result.counts
        print(f"ingest ok in {result.duration:.1f} s: {c.get('live_streams', 0)} live, "
              f"{c.get('vod_streams', 0)} movies, {c.get('series', 0)} series, "
              f"{c.get('programmes', 0)} programmes")
        return 0
    print(f"xrelay: ingest failed, previous cache kept: {result.reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
