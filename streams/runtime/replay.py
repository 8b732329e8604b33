"""Replay the recorded log through the decision core in one process: the backtest's engine.

Shell code: it reads the upstream topics and the decision topic from Kafka and decodes Avro. The
deciding is the worker's own: each record goes through `batch.fold_batch` (decode, checks,
positions, partition clocks that end the waits of parked requests), and the limit saga is
followed at once (`streams.core.saga`), in the order the live household and associate scopes
judge (records fed in record-time order, the order key's position). So a replay under the policy
in force reproduces the recorded decisions, and a replay under a candidate says what it would
have decided instead.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import schemas
from streams.core import backtest
from streams.core import decision as core
from streams.core import saga
from streams.core.inbound import timestamps_to_ms
from streams.core.policy import Policy
from streams.errors import DecodeError
from streams.measure import quality
from streams.runtime.batch import Incoming, PartitionClocks, fold_batch
from streams.runtime.kafka_io import read_topic, topic_names
from streams.runtime.policy_log import in_force
from streams.runtime.settings import Settings
from streams.runtime.topics import TopicNames
from streams.runtime.upstream import avro_json_by_name

# Longest one read of a topic to its end may take (a month of a large shop's log).
LOG_READ_TIMEOUT_S = 1800
# Progress goes to stderr every this many replayed records.
PROGRESS_EVERY_RECORDS = 50_000


@dataclass
class Replay:
    """Every customer's, household's and associate's state as the worker would hold it, advanced
    record by record; `feed` returns the decisions a record released (checks answered at once)."""

    policy: Policy
    names: TopicNames
    states: dict[str, dict] = field(default_factory=dict)
    scope_states: dict[str, dict] = field(default_factory=dict)
    clocks: PartitionClocks = field(default_factory=PartitionClocks)
    partition_of: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0

    def feed(self, message: Incoming) -> list[core.Decision]:
        """Fold one upstream record and follow every limit check it sends to its end."""
        result = fold_batch([message], self.states.get, self.policy, self.names, self.clocks)
        self.dead_letters += len(result.dead_letters)
        self.states.update(result.states)
        for key in result.states:
            self.partition_of.setdefault(key, message.partition)
        decisions = list(result.decisions)
        saga.follow(result.checks, self.states, self.scope_states, self.policy, decisions, self._note)
        return [d for d in decisions if not core.is_recovery(d)]  # recovery cases travel apart, not decisions

    def _note(self, customer_id: str, state: core.State) -> None:
        partition = self.partition_of.get(customer_id)
        if partition is not None:
            self.clocks.note(partition, customer_id, state)

    def fork(self, policy: Policy) -> "Replay":
        """The same point in time, going on under `policy` (the core never changes a state in place)."""
        return Replay(policy, self.names, dict(self.states), dict(self.scope_states), copy.deepcopy(self.clocks),
                      dict(self.partition_of), self.dead_letters)


def upstream_records(settings: Settings, progress: Callable[[str], None] | None = None) -> list[Incoming]:
    """Every record of the upstream topics (orders, incidents, requests), in replay order."""
    names = topic_names(settings)
    rank = {topic: index for index, topic in enumerate(names.upstream())}
    records = []
    for topic in names.upstream():
        for record in read_topic(settings.kafka, topic, LOG_READ_TIMEOUT_S, "remedy-backtest"):
            records.append(Incoming(topic, record.partition, record.offset, record.key, record.value, record.timestamp))
        if progress:
            progress(f"read {topic}: {len(records):,} records so far")
    return backtest.sorted_records(records, rank)


def decoded(settings: Settings, topic: str, timeout_s: float, client_id: str, record_name: str | None = None,
            missing_ok: bool = False) -> list[dict]:
    """Every record of a topic decoded, timestamps as ms (as the core makes them); with `record_name`,
    only records of that name; tombstones skipped."""
    found = []
    shapes = avro_json_by_name()
    for record in read_topic(settings.kafka, topic, timeout_s, client_id, missing_ok=missing_ok):
        if record.value is None:
            continue
        name, datum = schemas.decode(record.value)
        if record_name is None or name == record_name:
            found.append(timestamps_to_ms(name, datum, shapes))
    return found


def recorded_decisions(settings: Settings) -> list[core.Decision]:
    """Every decision on the decision topic, decoded, timestamps as ms (as the core makes them)."""
    return decoded(settings, topic_names(settings).decisions, LOG_READ_TIMEOUT_S, "remedy-backtest")


def _event_time_ms(message: Incoming) -> int | None:
    """When the upstream event of a record happened, or None when it cannot be decoded (the fold
    dead-letters it wherever it falls)."""
    if message.value is None:
        return None
    try:
        record_name, datum = schemas.decode(message.value)
    except DecodeError:  # undecodable bytes: the fold itself dead-letters them
        return None
    if record_name not in core.EVENT_TIME_FIELDS:
        return None
    event = timestamps_to_ms(record_name, datum, avro_json_by_name())
    return core.event_time_ms({**event, "type": record_name})


@dataclass(frozen=True)
class ReplayedPeriod:
    """The two replays of one period: decisions under the policy in force and under the candidate."""

    before: list[core.Decision]
    after: list[core.Decision]
    records_before_period: int
    records_in_period: int
    dead_letters: int
    seconds: float


def replay_period(records: Iterable[Incoming], in_force: Policy, candidate: Policy, names: TopicNames,
                  since_ms: int | None, until_ms: int | None,
                  progress: Callable[[str], None] | None = None) -> ReplayedPeriod:
    """Fold the records before `since_ms` once (the point-in-time state), then the period's records
    twice from that state: under the policy in force and under the candidate. Records dated at or
    after `until_ms` are not replayed."""
    started = time.monotonic()
    prefix = Replay(in_force, names)
    before_records, period = 0, []
    for message in records:
        at = _event_time_ms(message)
        if at is not None and since_ms is not None and at < since_ms:
            prefix.feed(message)
            before_records += 1
            if progress and before_records % PROGRESS_EVERY_RECORDS == 0:
                progress(f"state at the start of the period: {before_records:,} records folded")
        elif at is None or until_ms is None or at < until_ms:
            period.append(message)
    runs = [prefix.fork(in_force), prefix.fork(candidate)]
    made: list[list[core.Decision]] = [[], []]
    for count, message in enumerate(period, 1):
        for run, sink in zip(runs, made):
            sink.extend(run.feed(message))
        if progress and count % PROGRESS_EVERY_RECORDS == 0:
            progress(f"period: {count:,} of {len(period):,} records replayed twice "
                     f"({time.monotonic() - started:.0f}s)")
    return ReplayedPeriod(made[0], made[1], before_records, len(period), runs[0].dead_letters,
                          round(time.monotonic() - started, 3))


def backtest_report(settings: Settings, candidate: Policy, since_ms: int | None, until_ms: int | None,
                 labels: list[dict] | None = None, progress=None) -> dict:
    """The backtest report (JSON-ready): the replay's self-check against the log, then the change."""
    applied = in_force(settings)
    current = applied.policy if applied else settings.policy
    records = upstream_records(settings, progress)
    replayed = replay_period(records, current, candidate, topic_names(settings), since_ms, until_ms, progress)
    recorded = [d for d in recorded_decisions(settings) if backtest.in_period(d, since_ms, until_ms)]
    before = [d for d in replayed.before if backtest.in_period(d, since_ms, until_ms)]
    after = [d for d in replayed.after if backtest.in_period(d, since_ms, until_ms)]
    check = backtest.reproduction(recorded, before, current.version)
    report = {
        "policy_in_force": current.version, "candidate": candidate.version,
        "candidate_changes": [{"threshold": name, "before": old, "after": new}
                              for name, new, old in candidate.differences(current)],
        "since": since_ms, "until": until_ms,
        "records_before_period": replayed.records_before_period, "records_in_period": replayed.records_in_period,
        "dead_letters_in_replay": replayed.dead_letters, "replay_seconds": replayed.seconds,
        "reproduced_share": check["reproduced_share"], "reproduction": check,
        **backtest.compare(before, after),
    }
    if labels is not None:
        report["labels"] = backtest.quality_delta(quality.evaluate(before, labels), quality.evaluate(after, labels))
    return report


def to_stderr(line: str) -> None:
    """Progress for a person watching a long backtest."""
    print(f"backtest: {line}", file=sys.stderr, flush=True)
