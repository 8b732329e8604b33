"""The `remedy-ledger` command: worker, topics, publish, wait, finance and projections."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from pathlib import Path

from streams.errors import RemedyLedgerError, ValidationError

# Longest `wait` blocks by default before it gives up and says how far it got.
WAIT_TIMEOUT_S_DEFAULT = 300
# Modules that add subcommands: each has register(subparsers).
EXTENSION_MODULES = ("projections.cli", "streams.commands.workload", "streams.commands.review",
                     "streams.commands.dead_letters", "streams.commands.audit")
# How often `wait` polls the projections.
WAIT_POLL_S = 0.5


def _settings():
    from streams.runtime.settings import load_settings

    return load_settings()


def cmd_worker(args) -> int:
    """Run the worker (decides, enforces limits and projects) until stopped."""
    import asyncio
    import logging

    from projections.store import Store
    from streams.runtime.app import Worker, parse_roles
    from streams.runtime.kafka_io import ensure_topics

    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    # aiokafka's per-rebalance INFO lines are useful; its DEBUG is not, even at --loglevel debug.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
    roles = parse_roles(args.roles)
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    created = ensure_topics(settings)
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    if not settings.embedded_clickhouse:
        store = Store(settings.clickhouse_dsn, settings.clickhouse_database)
        store.migrate()
        store.close()
    from streams.runtime.policy_log import in_force

    applied = in_force(settings)
    return asyncio.run(Worker(settings, applied.policy if applied else settings.policy, roles).run())


def cmd_topics(args) -> int:
    """Create the project's topics with explicit configs (idempotent)."""
    from streams.runtime.kafka_io import ensure_topics, topic_names

    settings = _settings()
    created = ensure_topics(settings)
    for name, partitions, configs in topic_names(settings).all_with_configs(settings.topic_partitions):
        state = "created" if name in created else "exists"
        print(f"{state:8} {name}  partitions={partitions}  {configs}")
    return 0


def cmd_publish(args) -> int:
    """Validate a JSON-lines file completely, then publish it; nothing is published if any line is bad."""
    from streams.core.inbound import TimeBounds
    from streams.runtime.upstream import publish_file, validate_file

    path = Path(args.file)
    bounds = TimeBounds(future_ms_max=args.future_ms_max)
    if args.validate_only:
        count = validate_file(path, bounds=bounds)
        print(f"{path}: {count} events, all valid")
        return 0
    started = time.monotonic()
    progress = lambda stage, n: print(f"  {stage} {n:,} events", file=sys.stderr, flush=True)
    count = publish_file(path, _settings(), progress=progress, bounds=bounds)
    elapsed = time.monotonic() - started
    print(f"published {count} events from {path} in {elapsed:.1f}s")
    return 0


def cmd_wait(args) -> int:
    """Wait until the worker has processed everything published and projected every decision."""
    from projections import finance
    from streams.runtime.kafka_io import worker_lag
    from streams.runtime.upstream import read_events, validate_file

    settings = _settings()
    expected = args.decisions or 0
    if args.file:
        validate_file(Path(args.file))
        expected = len({d["request_id"] for name, d in read_events(Path(args.file)) if name == "RemedyRequested"})
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        count, lag = finance.decision_count(settings), worker_lag(settings)
        if (count, lag) != last:
            print(f"  decisions projected: {count} (at least {expected} expected), messages not yet processed: {lag}",
                  file=sys.stderr, flush=True)
            last = (count, lag)
        if count >= expected and lag == 0:
            return 0
        if time.monotonic() > deadline:
            print(f"gave up after {args.timeout}s: {count} decisions projected, {lag} messages unprocessed",
                  file=sys.stderr)
            return 1
        time.sleep(WAIT_POLL_S)


def _hours_as_ms(text: str) -> int:
    """A number of hours from the command line, as integer ms (argparse reports a bad one)."""
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of hours, got {text!r}") from None
    if not math.isfinite(hours):
        raise argparse.ArgumentTypeError(f"expected a finite number of hours, got {text!r}")
    return round(hours * 3_600_000)


def parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    root = argparse.ArgumentParser(prog="remedy-ledger", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help=cmd_worker.__doc__)
    worker.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    worker.add_argument("--roles", default="decide,limits,project",
                        help="comma-separated roles: decide, limits, project (with embedded chDB exactly one "
                             "worker may project; others run --roles decide,limits)")
    worker.set_defaults(run=cmd_worker)

    topics = sub.add_parser("topics", help=cmd_topics.__doc__)
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(run=cmd_topics)

    publish = sub.add_parser("publish", help=cmd_publish.__doc__)
    publish.add_argument("file")
    publish.add_argument("--validate-only", action="store_true", help="check the file, publish nothing")
    publish.add_argument("--future-hours-max", dest="future_ms_max", type=_hours_as_ms, default=_hours_as_ms("24"),
                         help="how far ahead of this machine's clock an event may be dated (default 24; 1/60 to 168)")
    publish.set_defaults(run=cmd_publish)

    wait = sub.add_parser("wait", help=cmd_wait.__doc__)
    target = wait.add_mutually_exclusive_group(required=True)
    target.add_argument("--decisions", type=int, help="number of decisions to wait for")
    target.add_argument("--file", help="wait until every request in this publish file is decided")
    wait.add_argument("--timeout", type=float, default=WAIT_TIMEOUT_S_DEFAULT, help="seconds")
    wait.set_defaults(run=cmd_wait)

    # Subcommands owned by other packages register themselves here.
    for module_name in EXTENSION_MODULES:
        importlib.import_module(module_name).register(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; errors print one clear message and exit non-zero."""
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ValidationError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{len(error.problems)} problem(s); nothing was published", file=sys.stderr)
        return 2
    except RemedyLedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
