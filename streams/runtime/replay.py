"""Replay the recorded log through the decision core: the backtest's engine.

Shell code: it reads the upstream topics and the decision topic from Kafka and decodes Avro. The
deciding is the worker's own: each record goes through `batch.fold_batch` (decode, checks,
positions, partition clocks that end the waits of parked requests), and the limit saga is
followed at once (`streams.core.saga`), in the order the live household and associate scopes
judge (records fed in record-time order, the order key's position). So a replay under the policy
in force reproduces the recorded decisions, and a replay under a candidate says what it would
have decided instead.

Built for a large shop's month (bench/README.md, "Backtest"): the records are held packed in one
buffer (`PackedRecords`), each customer's state is held marshalled (`HeldStates`, about 1.4 KB
instead of 9 KB of Python objects), the records before the period are folded once, and the two
runs of the period (policy in force, candidate) go on in two forked processes that share that
state copy-on-write. Each run keeps only what the report reads of its decisions (the self-check
is taken as they are made) and sends back its final decisions, slimmed. Without `fork` (or with
`parallel=False`, as in the worker's threads) both runs go on one after the other in this
process, with the same result.
"""

from __future__ import annotations

import copy
import gc
import marshal
import multiprocessing
import struct
import sys
import time
import traceback
from array import array
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy

import schemas
from streams.core import backtest
from streams.core import decision as core
from streams.core import saga
from streams.core.inbound import timestamps_to_ms
from streams.core.policy import Policy
from streams.errors import DecodeError, RemedyLedgerError
from streams.measure import quality
from streams.runtime.batch import Incoming, PartitionClocks, fold_batch
from streams.runtime.kafka_io import read_topic, topic_names
from streams.runtime.policy_log import in_force
from streams.runtime.settings import Settings
from streams.runtime.topics import TopicNames
from streams.runtime.upstream import avro_json_by_name

# Longest one read of a topic to its end may take (a month of a large shop's log).
LOG_READ_TIMEOUT_S = 1800
# Progress goes to stderr at most this often while records are read, folded or replayed.
PROGRESS_EVERY_S = 10.0
# Records between two looks at the clock for progress (a look per record would cost time).
PROGRESS_CHECK_EVERY_RECORDS = 10_000


class HeldStates(MutableMapping):
    """Customer states held marshalled (one bytes object per customer, not a tree of Python objects).

    The states a record changes stay open as objects until `settle` (the end of the record), so
    the limit saga that follows at once reads them without decoding again. marshal keeps every
    type as it was (a tuple stays a tuple), so a replay decides exactly as with plain objects.
    """

    def __init__(self, held: dict[str, bytes] | None = None):
        self.held: dict[str, bytes] = held if held is not None else {}
        self.open: dict[str, dict] = {}

    def __getitem__(self, key: str) -> dict:
        state = self.open.get(key)
        if state is not None:
            return state
        return marshal.loads(self.held[key])

    def get(self, key: str, default=None):
        state = self.open.get(key)
        if state is not None:
            return state
        data = self.held.get(key)
        return default if data is None else marshal.loads(data)

    def __setitem__(self, key: str, state: dict) -> None:
        self.open[key] = state

    def __delitem__(self, key: str) -> None:
        found = self.open.pop(key, None) is not None
        if self.held.pop(key, None) is None and not found:
            raise KeyError(key)

    def __contains__(self, key) -> bool:
        return key in self.open or key in self.held

    def __iter__(self) -> Iterator[str]:
        self.settle()
        return iter(self.held)

    def __len__(self) -> int:
        self.settle()
        return len(self.held)

    def settle(self) -> None:
        """Marshal the open states into the held ones."""
        for key, state in self.open.items():
            self.held[key] = marshal.dumps(state)
        self.open.clear()

    def copy(self) -> "HeldStates":
        """An independent mapping with the same states (the held bytes are immutable and shared)."""
        self.settle()
        return HeldStates(dict(self.held))

    def held_bytes(self) -> int:
        """Bytes of the marshalled states (their size in memory, less the dict's own)."""
        self.settle()
        return sum(len(data) for data in self.held.values())


@dataclass
class Replay:
    """Every customer's, household's and associate's state as the worker would hold it, advanced
    record by record; `feed` returns the decisions a record released (checks answered at once)."""

    policy: Policy
    names: TopicNames
    states: HeldStates = field(default_factory=HeldStates)
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
        self.states.settle()
        return [d for d in decisions if not core.is_recovery(d)]  # recovery cases travel apart, not decisions

    def _note(self, customer_id: str, state: core.State) -> None:
        partition = self.partition_of.get(customer_id)
        if partition is not None:
            self.clocks.note(partition, customer_id, state)

    def fork(self, policy: Policy) -> "Replay":
        """The same point in time, going on under `policy` (the core never changes a state in place)."""
        return Replay(policy, self.names, self.states.copy(), dict(self.scope_states), copy.deepcopy(self.clocks),
                      dict(self.partition_of), self.dead_letters)


# No time (a record without a timestamp, or an event time not looked up): a sentinel in the packing.
NO_TIME = -(1 << 63)
_RECORD_HEADER = struct.Struct("<BiqqqiI")  # topic, partition, offset, timestamp, event time, key length, value length
_NO_KEY = -1
_NO_VALUE = 0xFFFFFFFF


class PackedRecords:
    """Upstream records held packed in one buffer (about 40 bytes beside a record's key and value,
    instead of a Python object each), in replay order once `sort` has run. A forked process reads
    them without touching a Python object per record, so the pages stay shared."""

    def __init__(self, topics: list[str]):
        self.topics = list(topics)
        self.rank = {topic: index for index, topic in enumerate(self.topics)}
        self.buffer = bytearray()
        self.starts = array("q")
        # The sort key of each record, in the order appended (dropped by `sort`).
        self._timestamps, self._partitions, self._offsets = array("q"), array("i"), array("q")
        self._ranks = array("b")

    def append(self, message: Incoming, event_time_ms: int | None = None) -> None:
        """Add one record (with its event's time when the period needs it)."""
        self.starts.append(len(self.buffer))
        key_length = _NO_KEY if message.key is None else len(message.key)
        value_length = _NO_VALUE if message.value is None else len(message.value)
        rank = self.rank[message.topic]
        self.buffer += _RECORD_HEADER.pack(rank, message.partition, message.offset,
                                           NO_TIME if message.timestamp_ms is None else message.timestamp_ms,
                                           NO_TIME if event_time_ms is None else event_time_ms, key_length, value_length)
        if message.key is not None:
            self.buffer += message.key
        if message.value is not None:
            self.buffer += message.value
        self._timestamps.append(message.timestamp_ms or 0)
        self._partitions.append(message.partition)
        self._ranks.append(rank)
        self._offsets.append(message.offset)

    def sort(self) -> None:
        """Put the records in replay order (`backtest.merged_sort_key`)."""
        order = numpy.lexsort((numpy.frombuffer(self._offsets, dtype=numpy.int64),
                               numpy.frombuffer(self._ranks, dtype=numpy.int8),
                               numpy.frombuffer(self._partitions, dtype=numpy.int32),
                               numpy.frombuffer(self._timestamps, dtype=numpy.int64)))
        starts = numpy.frombuffer(self.starts, dtype=numpy.int64)[order]
        self.starts = array("q", starts.tobytes())
        self._timestamps, self._partitions, self._offsets, self._ranks = array("q"), array("i"), array("q"), array("b")

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple[Incoming, int | None]]:
        """Each record with its event time (None when unknown or not looked up)."""
        buffer, header, topics = self.buffer, _RECORD_HEADER, self.topics
        size = header.size
        for start in self.starts:
            rank, partition, offset, timestamp, event_time, key_length, value_length = header.unpack_from(buffer, start)
            at = start + size
            key = None
            if key_length != _NO_KEY:
                key, at = bytes(buffer[at:at + key_length]), at + key_length
            value = None if value_length == _NO_VALUE else bytes(buffer[at:at + value_length])
            yield (Incoming(topics[rank], partition, offset, key, value, None if timestamp == NO_TIME else timestamp),
                   None if event_time == NO_TIME else event_time)

    def bytes_held(self) -> int:
        """Bytes of the buffer and its index."""
        return len(self.buffer) + self.starts.itemsize * len(self.starts)


def upstream_records(settings: Settings, progress: Callable[[str], None] | None = None,
                     event_times: bool = True) -> PackedRecords:
    """Every record of the upstream topics (orders, incidents, requests), packed in replay order;
    with `event_times`, each with its event's time (a decode each: only a period with bounds needs it)."""
    names = topic_names(settings)
    records = PackedRecords(list(names.upstream()))
    started = time.monotonic()
    for topic in names.upstream():
        for record in read_topic(settings.kafka, topic, LOG_READ_TIMEOUT_S, "remedy-backtest"):
            message = Incoming(topic, record.partition, record.offset, record.key, record.value, record.timestamp)
            records.append(message, _event_time_ms(message) if event_times else None)
        if progress:
            progress(f"read {topic}: {len(records):,} records so far ({time.monotonic() - started:.0f}s)")
    records.sort()
    return records


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


def period_of(event_time_ms: int | None, since_ms: int | None, until_ms: int | None) -> str:
    """Where a record falls: "before" the period (folded once for the state at its start), "in" it
    (replayed twice), or "after" it (not replayed). A record without an event time is replayed
    (the fold dead-letters it wherever it falls)."""
    if event_time_ms is not None and since_ms is not None and event_time_ms < since_ms:
        return "before"
    if event_time_ms is None or until_ms is None or event_time_ms < until_ms:
        return "in"
    return "after"


@dataclass(frozen=True)
class RunOutcome:
    """What one run of the period sends back: only what the report reads."""

    final_decisions: list[dict]  # per request, its final decision in the period, slimmed (backtest.slim)
    decisions: int  # decisions made in the period (a repeat counted again)
    reproduction: dict | None  # the self-check against the log (the run under the policy in force)
    quality: dict | None  # with labels: streams.measure.quality.evaluate of its decisions
    dead_letters: int
    records: int
    seconds: float
    peak_rss_bytes: int | None  # the peak resident set of the process that ran it (Linux), for the bench


@dataclass(frozen=True)
class ReplayedPeriod:
    """The two runs of one period: under the policy in force and under the candidate."""

    before: RunOutcome
    after: RunOutcome
    records_before_period: int
    records_in_period: int
    dead_letters: int
    seconds: float
    processes: int  # 2 when the runs went on in two forked processes, else 1


class _Meter:
    """Progress lines for one pass over the records: count, records/s, ETA."""

    def __init__(self, progress: Callable[[str], None] | None, what: str, total: int):
        self.progress, self.what, self.total = progress, what, total
        self.started = self.said = time.monotonic()

    def tick(self, count: int) -> None:
        """Say where the pass stands when PROGRESS_EVERY_S passed since the last line."""
        if self.progress is None or count % PROGRESS_CHECK_EVERY_RECORDS:
            return
        now = time.monotonic()
        if now - self.said < PROGRESS_EVERY_S:
            return
        self.said = now
        rate = count / max(now - self.started, 1e-9)
        left_s = (self.total - count) / rate if rate else 0.0
        self.progress(f"{self.what}: {count:,} of {self.total:,} records ({count / max(self.total, 1):.0%}), "
                      f"{rate:,.0f} records/s, {now - self.started:.0f}s so far, ETA {_duration(left_s)}")


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size (VmHWM, Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _run(replay: Replay, records: PackedRecords, since_ms: int | None, until_ms: int | None, in_period: int,
         recorded: list[dict] | None, labels: list[dict] | None, what: str,
         progress: Callable[[str], None] | None) -> RunOutcome:
    """Replay the period's records from the state at its start; keep what the report reads."""
    started = time.monotonic()
    check = backtest.Reproduction(recorded, replay.policy.version) if recorded is not None else None
    kept = backtest.PeriodDecisions(since_ms, until_ms, check)
    meter = _Meter(progress, what, in_period)
    count = decisions = 0
    for message, at in records:
        if period_of(at, since_ms, until_ms) != "in":
            continue
        made = replay.feed(message)
        decisions += sum(1 for d in made if backtest.in_period(d, since_ms, until_ms))
        kept.add(made)
        count += 1
        meter.tick(count)
    outcome = RunOutcome(kept.final_slims(), decisions, check.result() if check is not None else None,
                         quality.evaluate(kept.slims, labels) if labels is not None else None,
                         replay.dead_letters, count, round(time.monotonic() - started, 3), peak_rss_bytes())
    if progress:
        progress(f"{what}: done, {count:,} records in {outcome.seconds:.0f}s "
                 f"({count / max(outcome.seconds, 1e-9):,.0f} records/s), {decisions:,} decisions")
    return outcome


def _run_in_child(connection, *arguments) -> None:
    """A forked process's run: send back its outcome, or the error that stopped it."""
    try:
        connection.send(("done", _run(*arguments)))
    except BaseException:  # noqa: BLE001 -- handed to the parent, which raises it loudly
        connection.send(("failed", traceback.format_exc()))
    finally:
        connection.close()


class ReplayFailed(RemedyLedgerError):
    """A forked run of the backtest failed; the message carries its traceback."""


def fork_available() -> bool:
    """True when runs can go on in forked processes (POSIX)."""
    return "fork" in multiprocessing.get_all_start_methods()


def replay_period(records: PackedRecords, in_force: Policy, candidate: Policy, names: TopicNames,
                  since_ms: int | None, until_ms: int | None, progress: Callable[[str], None] | None = None,
                  recorded: list[dict] | None = None, labels: list[dict] | None = None,
                  parallel: bool | None = None) -> ReplayedPeriod:
    """Fold the records before `since_ms` once (the point-in-time state), then the period's records
    twice from that state: under the policy in force and under the candidate. Records dated at or
    after `until_ms` are not replayed. With `recorded` (the log's decisions of the period), the
    run under the policy in force checks itself against them; with `labels`, each run measures
    its quality. `parallel` (default: when fork is available) runs the two in two processes."""
    started = time.monotonic()
    prefix = Replay(in_force, names)
    before_records = in_period = 0
    meter = _Meter(progress, "state at the start of the period", len(records))
    for count, (message, at) in enumerate(records, 1):
        where = period_of(at, since_ms, until_ms)
        if where == "before":
            prefix.feed(message)
            before_records += 1
        elif where == "in":
            in_period += 1
        meter.tick(count)
    if progress and before_records:
        progress(f"state at the start of the period: {before_records:,} records folded, "
                 f"{len(prefix.states):,} customers ({prefix.states.held_bytes() / 2**20:,.0f} MiB held)")
    in_force_run = prefix.fork(in_force)
    prefix.policy = candidate  # the prefix itself goes on as the candidate's run (no second copy of the states)
    runs = [(in_force_run, recorded, "in force"), (prefix, None, "candidate")]
    parallel = fork_available() if parallel is None else parallel
    if parallel:
        outcomes = _in_two_processes(runs, records, since_ms, until_ms, in_period, labels, progress)
    else:
        outcomes = [_run(replay, records, since_ms, until_ms, in_period, checked, labels, what, progress)
                    for replay, checked, what in runs]
    return ReplayedPeriod(outcomes[0], outcomes[1], before_records, in_period, outcomes[0].dead_letters,
                          round(time.monotonic() - started, 3), 2 if parallel else 1)


def _in_two_processes(runs, records, since_ms, until_ms, in_period, labels, progress) -> list[RunOutcome]:
    """Each run in a forked process; the state at the period's start is shared copy-on-write."""
    context = multiprocessing.get_context("fork")
    gc.collect()
    gc.freeze()  # the collector would otherwise write to every shared object's header (unsharing it)
    children = []
    finished = False
    try:
        for replay, checked, what in runs:
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_run_in_child, name=f"backtest {what}", daemon=True,
                                    args=(send, replay, records, since_ms, until_ms, in_period, checked, labels, what,
                                          progress))
            child.start()
            send.close()
            children.append((child, receive, what))
        outcomes = []
        for child, receive, what in children:
            try:
                status, payload = receive.recv()
            except EOFError:
                raise ReplayFailed(f"the backtest run {what!r} ended without a result "
                                   f"(exit code {child.join() or child.exitcode}; out of memory?)") from None
            if status != "done":
                raise ReplayFailed(f"the backtest run {what!r} failed:\n{payload}")
            outcomes.append(payload)
        finished = True
        return outcomes
    finally:
        for child, receive, _ in children:
            receive.close()
            if not finished:
                child.terminate()  # the other run's minutes of work would be thrown away anyway
            child.join()
        gc.unfreeze()


def backtest_report(settings: Settings, candidate: Policy, since_ms: int | None, until_ms: int | None,
                    labels: list[dict] | None = None, progress=None, parallel: bool | None = None) -> dict:
    """The backtest report (JSON-ready): the replay's self-check against the log, then the change.
    `parallel=False` keeps both runs in this process (a caller with threads must not fork)."""
    applied = in_force(settings)
    current = applied.policy if applied else settings.policy
    records = upstream_records(settings, progress, event_times=since_ms is not None or until_ms is not None)
    recorded = [d for d in recorded_decisions(settings) if backtest.in_period(d, since_ms, until_ms)]
    replayed = replay_period(records, current, candidate, topic_names(settings), since_ms, until_ms, progress,
                             recorded, labels, parallel)
    check = replayed.before.reproduction
    report = {
        "policy_in_force": current.version, "candidate": candidate.version,
        "candidate_changes": [{"threshold": name, "before": old, "after": new}
                              for name, new, old in candidate.differences(current)],
        "since": since_ms, "until": until_ms,
        "records_before_period": replayed.records_before_period, "records_in_period": replayed.records_in_period,
        "dead_letters_in_replay": replayed.dead_letters, "replay_seconds": replayed.seconds,
        "reproduced_share": check["reproduced_share"], "reproduction": check,
        **backtest.compare(replayed.before.final_decisions, replayed.after.final_decisions),
    }
    if labels is not None:
        report["labels"] = backtest.quality_delta(replayed.before.quality, replayed.after.quality)
    return report


def to_stderr(line: str) -> None:
    """Progress for a person watching a long backtest."""
    print(f"backtest: {line}", file=sys.stderr, flush=True)
