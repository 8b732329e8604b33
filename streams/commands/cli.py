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
                     "streams.commands.dead_letters", "streams.commands.audit", "streams.commands.privacy")
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

    from streams.redaction import LogGuard

    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    # aiokafka's per-rebalance INFO lines are useful; its DEBUG is not, even at --loglevel debug.
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
    roles = parse_roles(args.roles)
    from streams.runtime.privacy import with_privacy_key

    settings = with_privacy_key(_settings())  # the key of erased customers' pseudonyms (docs/privacy.md)
    guard = LogGuard(settings.secrets())
    for handler in logging.getLogger().handlers:
        handler.addFilter(guard)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    import schemas

    schemas.prepare()  # registry mode: a registry that is down or refuses a schema stops the worker here
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
    for name, partitions, configs in topic_names(settings).all_with_configs(settings.topic_partitions, settings.min_insync_replicas):
        state = "created" if name in created else "exists"
        print(f"{state:8} {name}  partitions={partitions}  {configs}")
    return 0


def cmd_openapi(args) -> int:
    """Print the worker's HTTP API as an OpenAPI 3.1 document (also served at /openapi.json)."""
    import json

    from streams.runtime.openapi import document
    from streams.runtime.web import ROUTE_ROLES

    print(json.dumps(document(ROUTE_ROLES), indent=2, sort_keys=True))
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
    """Wait until every request of --file has a decision (or --decisions were made), the worker has
    processed everything published, and every decision is projected; exit 1 naming what still waits."""
    from projections import finance
    from streams.runtime.kafka_io import worker_lag

    settings = _settings()
    if args.file:
        return _wait_for_file(settings, Path(args.file), args.timeout)
    expected = args.decisions or 0
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


def _wait_for_file(settings, path: Path, timeout_s: float) -> int:
    """`wait --file`: exit 0 only once every request id of the file has a decision on the decision
    topic, the worker has nothing left to process, and the projection holds every decision there."""
    from projections import finance
    from streams.runtime.kafka_io import worker_lag
    from streams.runtime.upstream import read_events, validate_file

    validate_file(path)
    # The file's request ids in file order (a repeated request id is one request).
    requests = list(dict.fromkeys(d["request_id"] for name, d in read_events(path) if name == "RemedyRequested"))
    deadline = time.monotonic() + timeout_s
    decided: set[str] = set()
    on_topic = 0  # distinct decision ids on the decision topic at the last read
    read_at = shown = None
    while True:
        count, lag = finance.decision_count(settings), worker_lag(settings)
        # The decision topic is read only when the worker is idle and something moved since the
        # last read: with nothing left to process, what is on it now is all there will be.
        if lag == 0 and (count, lag) != read_at:
            decided, on_topic = _wait_decided(settings, set(requests))
            read_at = (count, lag)
        undecided = len(requests) - len(decided)
        if (count, lag, undecided, on_topic) != shown:
            told = f"{len(decided)} of {len(requests)}" if read_at is not None else f"? of {len(requests)}"
            print(f"  requests of the file decided: {told}; decisions projected: {count}"
                  f"{f' of {on_topic} on the topic' if read_at is not None else ''}; "
                  f"messages not yet processed: {lag}", file=sys.stderr, flush=True)
            shown = (count, lag, undecided, on_topic)
        if read_at == (count, lag) and not undecided and count >= on_topic:
            return 0
        if time.monotonic() > deadline:
            decided, on_topic = _wait_decided(settings, set(requests))
            _wait_gave_up(settings, path, timeout_s, requests, decided, count, on_topic, lag)
            return 1
        time.sleep(WAIT_POLL_S)


# Undecided request ids `wait --file` names when it gives up; the rest are counted.
WAIT_NAMED_MAX = 20
# Longest `wait` reads the decision or dead-letter topic to its end.
WAIT_READ_TIMEOUT_S = 120


def _wait_decided(settings, requests: set[str]) -> tuple[set[str], int]:
    """(request ids of `requests` with a decision on the decision topic, distinct decision ids there)."""
    import schemas
    from streams.errors import DecodeError
    from streams.runtime.kafka_io import read_topic, topic_names

    decided, decision_ids = set(), set()
    for record in read_topic(settings.kafka, topic_names(settings).decisions, WAIT_READ_TIMEOUT_S,
                             "remedy-wait", missing_ok=True):
        try:
            name, decision = schemas.decode(record.value) if record.value is not None else (None, None)
        except DecodeError:
            continue
        if name != "RemedyDecided":
            continue
        decision_ids.add(decision["decision_id"])
        if decision["request_id"] in requests:
            decided.add(decision["request_id"])
    return decided, len(decision_ids)


def _wait_dead_lettered(settings, wanted: set[str]) -> dict[str, str]:
    """request id -> where and why the worker dead-lettered a RemedyRequested carrying it."""
    import schemas
    from streams.commands.dead_letters import read_letters
    from streams.errors import DecodeError

    found = {}
    for letter in read_letters(settings):
        if letter.datum is None:
            continue
        try:
            name, original = schemas.decode(letter.datum["original_value"])
        except DecodeError:
            continue
        if name == "RemedyRequested" and original["request_id"] in wanted:
            reason = letter.datum["reason"]
            reason = reason if reason.isprintable() else repr(reason)[1:-1]
            found[original["request_id"]] = f"dead-lettered (dead-letters show {letter.position}): {reason}"
    return found


def _wait_found_on_requests(settings, wanted: set[str]) -> dict[str, tuple[int, int, dict]]:
    """request id -> (partition, offset, datum) of its newest record on the requests topic."""
    import schemas
    from streams.errors import DecodeError
    from streams.runtime.kafka_io import read_topic, topic_names

    found: dict[str, tuple[int, int, int, dict]] = {}
    for record in read_topic(settings.kafka, topic_names(settings).requests, WAIT_READ_TIMEOUT_S,
                             "remedy-wait", missing_ok=True):
        try:
            name, datum = schemas.decode(record.value) if record.value is not None else (None, None)
        except DecodeError:
            continue
        if name == "RemedyRequested" and datum["request_id"] in wanted:
            # A forwarded copy (a record on a wrong partition) is newer than the original.
            if datum["request_id"] not in found or record.timestamp >= found[datum["request_id"]][0]:
                found[datum["request_id"]] = (record.timestamp, record.partition, record.offset, datum)
    return {request_id: (partition, offset, datum) for request_id, (_, partition, offset, datum) in found.items()}


def _wait_committed(settings, topic: str) -> dict[int, int | None]:
    """Per partition of `topic`: the worker group's committed offset (None before its first commit)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.runtime.kafka_auth import kafka_python_options

    consumer = KafkaConsumer(**kafka_python_options(settings.kafka), group_id=settings.app_id,
                             enable_auto_commit=False, client_id="remedy-wait")
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(consumer.partitions_for_topic(topic) or [])}
    finally:
        consumer.close()


def _wait_why(request_id: str, dead: dict[str, str], found: dict, committed: dict, topic: str) -> str:
    """Why one request of the file has no decision yet, as far as the topics tell."""
    if request_id in found:
        partition, offset, datum = found[request_id]
        done = committed.get(partition)
        if done is None or done <= offset:  # a copy published again after a dead letter is newer
            return (f"not consumed yet: at {partition}:{offset} of {topic}, the worker has processed "
                    f"{'nothing' if done is None else f'up to offset {done}'} there")
    if request_id in dead:
        return dead[request_id]
    if request_id not in found:
        return f"not on {topic} (not published yet?)"
    waits_for = [f"{what} {datum[field]}" for what, field in (("order", "order_id"), ("incident", "incident_id"))
                 if datum.get(field)]
    return (f"parked at the worker: consumed at {partition}:{offset}, no decision yet (waiting for "
            f"{' or '.join(waits_for + ['a limit check'])}; a wait ends after the policy's order_wait_ms_max "
            "of event time on its partition)")


def _wait_gave_up(settings, path: Path, timeout_s: float, requests: list[str], decided: set[str],
                  count: int, on_topic: int, lag: int) -> None:
    """Say on stderr which requests of the file have no decision, and why each waits where known."""
    from streams.runtime.kafka_io import topic_names

    undecided = [request_id for request_id in requests if request_id not in decided]
    projection = f"{count} decisions projected of {on_topic} on the decision topic, {lag} messages unprocessed"
    if not undecided:
        print(f"gave up after {timeout_s}s: every request of {path} is decided, but {projection}", file=sys.stderr)
        return
    print(f"gave up after {timeout_s}s: {len(undecided)} of {len(requests)} requests of {path} have no decision "
          f"({projection}):", file=sys.stderr)
    named = undecided[:WAIT_NAMED_MAX]
    topic = topic_names(settings).requests
    dead = _wait_dead_lettered(settings, set(named))
    found = _wait_found_on_requests(settings, set(named))
    committed = _wait_committed(settings, topic)
    for request_id in named:
        shown = request_id if request_id.isprintable() else repr(request_id)[1:-1]
        print(f"  {shown}: {_wait_why(request_id, dead, found, committed, topic)}", file=sys.stderr)
    if len(undecided) > len(named):
        print(f"  ... and {len(undecided) - len(named)} more", file=sys.stderr)


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

    openapi = sub.add_parser("openapi", help=cmd_openapi.__doc__)
    openapi.set_defaults(run=cmd_openapi)

    publish = sub.add_parser("publish", help=cmd_publish.__doc__)
    publish.add_argument("file")
    publish.add_argument("--validate-only", action="store_true", help="check the file, publish nothing")
    publish.add_argument("--future-hours-max", dest="future_ms_max", type=_hours_as_ms, default=_hours_as_ms("24"),
                         help="how far ahead of this machine's clock an event may be dated (default 24; 1/60 to 168)")
    publish.set_defaults(run=cmd_publish)

    wait = sub.add_parser("wait", help=cmd_wait.__doc__)
    target = wait.add_mutually_exclusive_group(required=True)
    target.add_argument("--decisions", type=int, help="number of decisions to wait for")
    target.add_argument("--file", help="wait until every request id of this publish file has a decision on the "
                                       "decision topic (exit 1 naming those still undecided, and why)")
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
        _use_schema_registry()
        return args.run(args)
    except ValidationError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"{len(error.problems)} problem(s); nothing was published", file=sys.stderr)
        return 2
    except RemedyLedgerError as error:
        print(f"error: {_scrubbed(str(error))}", file=sys.stderr)
        return 1


def _use_schema_registry() -> None:
    """Registry mode for every command when REMEDY_SCHEMA_REGISTRY_URL is set (schemas/README.md)."""
    from streams.runtime.schema_registry import use_registry

    use_registry(_settings())


def _scrubbed(text: str) -> str:
    """An error message with every configured secret masked."""
    from streams.redaction import scrubbed

    try:
        return scrubbed(text, *_settings().secrets())
    except RemedyLedgerError:
        return text


if __name__ == "__main__":
    sys.exit(main())
