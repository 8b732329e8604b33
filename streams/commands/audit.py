"""`remedy-ledger audit`: read the log to its end and prove the money invariants; exit 1 on a difference.

The shell around the pure `streams.core.audit`: it reads the input topics, the dead-letter topic,
the customer-state changelog and the decision topic with kafka-python (no consumer group), decodes
them as the worker does, and renders the report. What each check proves is in docs/audit.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from datetime import datetime, timezone
from typing import Callable, Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

import schemas
from streams.core import audit as ledger_audit
from streams.core.inbound import timestamps_to_ms
from streams.errors import DecodeError, InvariantViolation, TransientError
from streams.runtime.kafka_io import read_topic, topic_names, unreachable, worker_groups
from streams.runtime.policy_log import history
from streams.runtime.kafka_auth import kafka_python_options
from streams.runtime.settings import KafkaConnection, Settings, load_settings
from streams.runtime.topics import EVENT_TOPIC_ROLE
from streams.runtime.upstream import avro_json_by_name

# Longest the audit spends reading any one topic to its end (a million decisions take about a minute).
AUDIT_READ_TIMEOUT_S_DEFAULT = 600
# A progress line on stderr every this many records of a topic.
PROGRESS_EVERY_RECORDS = 100_000
# Times the audit reads the log again when it found differences while the log was still moving
# (a busy worker's decision and its state land moments apart); as in `verify`.
AUDIT_ROUNDS_MAX = 3
# Lines per finding list in the table; --json lists everything.
TABLE_ROWS_MAX = 50
# The input record types the audit reads (upstream events; the worker's own limit results are not needed).
INPUT_RECORDS = ("OrderPlaced", "OrderDelivered", "IncidentReported", "RemedyRequested", "RemedyReviewed")

Progress = Callable[[str, int, bool], None]


def _counted(records: Iterator, topic: str, progress: Progress) -> Iterator:
    """The records of a topic, reporting how many were read every PROGRESS_EVERY_RECORDS and at the end."""
    count = 0
    for record in records:
        count += 1
        if count % PROGRESS_EVERY_RECORDS == 0:
            progress(topic, count, False)
        yield record
    progress(topic, count, True)


def _offsets(kafka: KafkaConnection, topics: list[str], group_id: str | None) -> dict[tuple[str, int], int]:
    """End offsets of these topics' partitions, or with `group_id` that group's committed offsets."""
    try:
        consumer = KafkaConsumer(**kafka_python_options(kafka), group_id=group_id, enable_auto_commit=False,
                                 client_id="remedy-audit")
    except KafkaError as error:
        raise unreachable(kafka, error) from None
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if group_id is None:
            return {(tp.topic, tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
        found = {(tp.topic, tp.partition): consumer.committed(tp) for tp in partitions}
        return {where: offset for where, offset in found.items() if offset is not None}
    except KafkaError as error:
        raise TransientError(f"Kafka at {kafka}: could not read offsets of {', '.join(topics)}: {error}") from None
    finally:
        consumer.close()


def _decide_group(settings: Settings) -> str:
    """The consumer group of the worker (the Faust app) that reads the requests topic."""
    requests = topic_names(settings).requests
    return next(group for group, topics in worker_groups(settings) if requests in topics)


def _dead_letter_positions(settings: Settings, timeout_s: float, progress: Progress) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every input record the worker dead-lettered."""
    names = topic_names(settings)
    inputs = {names.orders, names.incidents, names.requests}
    positions = set()
    records = read_topic(settings.kafka, names.dead_letter, timeout_s, "remedy-audit", missing_ok=True)
    for record in _counted(records, names.dead_letter, progress):
        try:
            name, letter = schemas.decode(record.value or b"")
        except DecodeError:
            continue  # a dead letter that is itself unreadable names no input record
        if name == "DeadLetter" and letter["source_topic"] in inputs:
            positions.add((letter["source_topic"], letter["source_partition"], letter["source_offset"]))
    return positions


def _outbox_decisions(outbox, decisions_topic: str, where: str) -> list[dict]:
    """The decisions a changelog record's outbox holds (entries [topic, key, value], base64 bytes)."""
    found = []
    for entry in outbox:
        if isinstance(entry, dict):
            entry = [entry.get("topic"), entry.get("key"), entry.get("value")]
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[2], str)):
            raise InvariantViolation(f"{where}: an outbox entry of unexpected shape: {str(entry)[:80]}")
        if entry[0] != decisions_topic:
            continue
        try:
            name, datum = schemas.decode(base64.b64decode(entry[2], validate=True))
        except (binascii.Error, DecodeError) as error:
            raise InvariantViolation(f"{where}: an outbox decision that does not decode: {error}") from None
        if name == "RemedyDecided":
            found.append(timestamps_to_ms(name, datum, avro_json_by_name()))
    return found


def _customer_states(settings: Settings, timeout_s: float, progress: Progress):
    """The latest state of every customer on the changelog, as the audit's facts, and its outboxes' decisions.

    A value is the state JSON, or {"state": ..., "outbox": [...]} when that batch emitted messages;
    a null value is a tombstone. Only the latest record of a key counts (the topic is compacted).
    """
    names = topic_names(settings)
    topic = names.customer_state_changelog
    facts: dict[str, ledger_audit.StateFacts] = {}
    outboxes: dict[str, list[dict]] = {}
    records = read_topic(settings.kafka, topic, timeout_s, "remedy-audit", missing_ok=True)
    for record in _counted(records, topic, progress):
        if (record.key or b"").startswith(b"\x00"):
            continue  # a partition's clock, not a customer (streams/runtime/batch.py PARTITION_CLOCK_KEY)
        customer_id = (record.key or b"").decode("utf-8", "replace")
        facts.pop(customer_id, None)
        outboxes.pop(customer_id, None)
        if record.value is None:
            continue
        where = f"{topic}[{record.partition}]@{record.offset}"
        try:
            document = json.loads(record.value)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvariantViolation(f"{where}: a customer state that is not JSON: {error}") from None
        state, outbox = document, []
        if isinstance(document, dict) and isinstance(document.get("state"), dict) and "orders" not in document:
            state, outbox = document["state"], document.get("outbox") or []
        found = ledger_audit.state_facts(state)
        if found.pending or found.reservations:
            facts[customer_id] = found  # most customers wait for nothing: keep only those that do
        decided = _outbox_decisions(outbox, names.decisions, where)
        if decided:
            outboxes[customer_id] = decided
    return facts, [decision for decided in outboxes.values() for decision in decided]


def _decisions(settings: Settings, timeout_s: float, progress: Progress) -> tuple[list[dict], int]:
    """Every record on the decision topic in log order (timestamps in ms), and how many did not decode."""
    topic = topic_names(settings).decisions
    decisions, undecodable = [], 0
    avro = avro_json_by_name()
    for record in _counted(read_topic(settings.kafka, topic, timeout_s, "remedy-audit"), topic, progress):
        try:
            name, datum = schemas.decode(record.value or b"")
        except DecodeError:
            undecodable += 1  # the projector dead-letters these; they carry no decision
            continue
        if name != "RemedyDecided":
            undecodable += 1
            continue
        decisions.append(timestamps_to_ms(name, datum, avro))
    return decisions, undecodable


def read_and_audit(settings: Settings, timeout_s: float, progress: Progress) -> dict:
    """Read the whole log once and audit it: the report as data, plus what was read."""
    started = time.monotonic()
    names = topic_names(settings)
    inputs = [names.orders, names.incidents, names.requests]
    watched = inputs + [names.decisions, names.dead_letter, names.customer_state_changelog]
    ends_before = _offsets(settings.kafka, watched, None)
    applied = history(settings)
    policy = applied[-1].policy if applied else settings.policy
    policies = {settings.policy.version: settings.policy, **{a.policy.version: a.policy for a in applied}}
    # Committed offsets first: whatever the worker committed has its decision or state on the log
    # already, so the later reads see it; what it has not committed yet is reported as such.
    committed = _offsets(settings.kafka, inputs, _decide_group(settings))
    lettered = _dead_letter_positions(settings, timeout_s, progress)
    # The states before the decisions: a state is never newer than the decisions read after it.
    states, outbox = _customer_states(settings, timeout_s, progress)
    decisions, decisions_undecodable = _decisions(settings, timeout_s, progress)

    unconsumed, dead_lettered = [], []
    skipped = {"events_undecodable": 0}
    avro = avro_json_by_name()

    def input_events() -> Iterator[dict]:
        for topic in inputs:
            records = read_topic(settings.kafka, topic, timeout_s, "remedy-audit")
            for record in _counted(records, topic, progress):
                try:
                    name, datum = schemas.decode(record.value or b"")
                except DecodeError:
                    skipped["events_undecodable"] += 1  # the worker dead-letters these
                    continue
                if name == "CustomerErased":
                    continue  # an erasure carries no request (docs/privacy.md); its effects are decisions
                if name not in INPUT_RECORDS or getattr(names, EVENT_TOPIC_ROLE[name]) != topic:
                    skipped["events_undecodable"] += 1  # on the wrong topic: dead-lettered as well
                    continue
                event = {**timestamps_to_ms(name, datum, avro), "type": name}
                if name in ledger_audit.REQUESTING_EVENTS:
                    if record.offset >= committed.get((topic, record.partition), 0):
                        unconsumed.append(event)
                    if (topic, record.partition, record.offset) in lettered:
                        dead_lettered.append(event)
                yield event

    facts = ledger_audit.event_facts(input_events(), policy)
    report = ledger_audit.audit(facts, decisions, policy, policies=policies, states=states,
                                unconsumed=unconsumed, dead_lettered=dead_lettered, outbox_decisions=outbox)
    ends_after = _offsets(settings.kafka, watched, None)
    return {
        **report.as_document(),
        "read": {
            "events": facts.events, "events_undecodable": skipped["events_undecodable"],
            "requesting_events_not_yet_consumed": len(unconsumed),
            "requesting_events_dead_lettered": len(dead_lettered),
            "decision_records": len(decisions), "decisions_undecodable": decisions_undecodable,
            "customers_waiting": len(states), "outbox_decisions": len(outbox),
            "policy_version": policy.version, "log_moved": ends_after != ends_before,
            "elapsed_s": round(time.monotonic() - started, 2),
        },
    }


def audit_log(settings: Settings, timeout_s: float, progress: Progress) -> dict:
    """Audit the log; when it found differences while the log moved, read it again (bounded)."""
    result, rounds = read_and_audit(settings, timeout_s, progress), 1
    while not result["ok"] and result["read"]["log_moved"] and rounds < AUDIT_ROUNDS_MAX:
        print("the log moved while it was read and there were differences; reading it again", file=sys.stderr,
              flush=True)
        result, rounds = read_and_audit(settings, timeout_s, progress), rounds + 1
    return {**result, "rounds": rounds}


# Rendering -------------------------------------------------------------------------------------


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _age(ms: int) -> str:
    days, rest_ms = divmod(ms, 86_400_000)
    hours, rest_ms = divmod(rest_ms, 3_600_000)
    minutes = rest_ms // 60_000
    return f"{days}d {hours:02d}h" if days else f"{hours}h {minutes:02d}m"


def _amount(value: int, unit: str) -> str:
    if unit == "cents":
        return f"${value // 100:,}.{value % 100:02d}"
    return f"{value:,} {unit}"


def _section(title: str, header: str, rows: list[str]) -> list[str]:
    if not rows:
        return []
    shown = rows[:TABLE_ROWS_MAX]
    lines = ["", f"{title} ({len(rows):,}):", "  " + header] + ["  " + row for row in shown]
    if len(rows) > len(shown):
        lines.append(f"  ... and {len(rows) - len(shown):,} more (use --json for all)")
    return lines


def render(result: dict) -> str:
    """The audit for people: the verdict, the counts, then every finding."""
    findings, read = result["findings"], result["read"]
    differences = sum(result[name] for name in ("missing", "proactive_missing", "several_finals", "conflicting_ids",
                                                "unrequested", "reservations_leaked", "cap_breaches"))
    if result["ok"]:
        head = ("OK: every request has one final decision or a reason to wait; no conflicting decision ids, "
                "leaked reservations or cap breaches.")
    else:
        head = f"AUDIT FAILED: {differences:,} difference(s) on the log."
    lines = [
        head,
        f"  requests            {result['requests']:>9,}   decided {result['decided']:,}, waiting "
        f"{sum(1 for w in findings['waiting'] if not w['proactive']):,}, missing {result['missing']:,}, "
        f"with several final decisions {result['several_finals']:,}",
        f"  proactive remedies  {result['proactive_expected']:>9,}   decided {result['proactive_decided']:,}, "
        f"waiting {sum(1 for w in findings['waiting'] if w['proactive']):,}, missing {result['proactive_missing']:,}",
        f"  decision ids        {result['decision_ids']:>9,}   identical duplicates {result['duplicates_identical']:,}, "
        f"conflicting {result['conflicting_ids']:,}, for no request on the log {result['unrequested']:,}",
        f"  reservations leaked {result['reservations_leaked']:>9,}",
        f"  cap breaches        {result['cap_breaches']:>9,}",
        f"  read {read['events']:,} input events ({read['events_undecodable']:,} undecodable; requests and "
        f"incidents: {read['requesting_events_not_yet_consumed']:,} not yet consumed by the worker, "
        f"{read['requesting_events_dead_lettered']:,} dead-lettered), "
        f"{read['decision_records']:,} decision records ({read['decisions_undecodable']:,} undecodable); "
        f"newest event {_when(result['newest_event_ms'])} UTC; policy {read['policy_version']}; "
        f"{read['elapsed_s']}s" + (f", {result['rounds']} reads" if result.get("rounds", 1) > 1 else ""),
    ]
    if read["log_moved"] and not result["ok"]:
        lines.append("  the log was still moving: run the audit again once the worker has caught up")
    request_header = f"{'request':40} {'customer':16} {'requested (UTC)':19}  {'age':>8}"
    lines += _section("missing decisions", request_header, [
        f"{m['request_id'][:40]:40} {m['customer_id'][:16]:16} {_when(m['requested_at_ms'])}  {_age(m['age_ms']):>8}"
        for m in findings["missing"]])
    lines += _section("proactive remedies never decided", request_header, [
        f"{m['request_id'][:40]:40} {m['customer_id'][:16]:16} {_when(m['requested_at_ms'])}  {_age(m['age_ms']):>8}"
        for m in findings["proactive_missing"]])
    lines += _section("requests with several final decisions", f"{'request':40} decision ids", [
        f"{s['request_id'][:40]:40} {', '.join(s['decision_ids'])}" for s in findings["several_finals"]])
    lines += _section("decision ids with conflicting contents", f"{'decision id':36} {'copies':>6}  differing fields", [
        f"{c['decision_id']:36} {c['copies']:>6}  {', '.join(c['fields'])}" for c in findings["conflicting_ids"]])
    lines += _section("decisions for requests not on the log", f"{'decision id':36} {'request':40} customer", [
        f"{u['decision_id']:36} {u['request_id'][:40]:40} {u['customer_id']}" for u in findings["unrequested"]])
    lines += _section("reservations leaked", f"{'customer':16} {'request':40} {'reserved':>12}  final decision", [
        f"{r['customer_id'][:16]:16} {r['request_id'][:40]:40} {_amount(r['reserved_cents'], 'cents'):>12}  "
        f"{r['final_outcome']} {r['final_decision_id']}" for r in findings["reservations_leaked"]])
    lines += _section("cap breaches", f"{'scope':17} {'key':24} {'window':6} {'at (UTC)':19} {'sum':>14} {'cap':>14}", [
        f"{b['scope']:17} {b['key'][:24]:24} {b['window']:6} {_when(b['at_ms'])} {_amount(b['sum'], b['unit']):>14} "
        f"{_amount(b['cap'], b['unit']):>14}" for b in findings["cap_breaches"]])
    lines += _section("waiting (not a difference)", f"{'request':40} {'customer':16} {'reason':17} {'age':>8}  detail", [
        f"{w['request_id'][:40]:40} {w['customer_id'][:16]:16} {w['reason']:17} {_age(w['age_ms']):>8}  {w['detail']}"
        for w in findings["waiting"]])
    return "\n".join(lines)


def cmd_audit(args) -> int:
    """Read the log to its end and prove the money invariants; exit 1 listing every difference."""

    def progress(topic: str, count: int, done: bool) -> None:
        print(f"  {'read' if done else 'reading'} {topic}: {count:,} records", file=sys.stderr, flush=True)

    result = audit_log(load_settings(), args.timeout, progress)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["ok"] else 1


def register(sub) -> None:
    """Add the audit subcommand to the root parser's subparsers."""
    audit = sub.add_parser("audit", help=cmd_audit.__doc__)
    audit.add_argument("--json", action="store_true", help="the report as JSON: the counts at top level, then the findings")
    audit.add_argument("--timeout", type=float, default=AUDIT_READ_TIMEOUT_S_DEFAULT,
                       help="seconds to read any one topic to its end")
    audit.set_defaults(run=cmd_audit)
