"""A candidate policy in shadow: evaluated beside the live one on live traffic, off the decision path.

The fraud team starts it (`policy shadow FILE`), which publishes a ShadowPolicy record (RUNNING)
to the compacted `policy-shadow.v1` topic; `stop` and `promote` publish its end. Every worker that
decides (role `decide`) runs a ShadowRunner: it folds the upstream records sent before the shadow
started under the policy in force (the point-in-time state, as a backtest does), then follows the
upstream topics and decides every record sent since under the candidate with the backtest's
replay (`streams.runtime.replay.Replay`, the worker's own fold and the limit saga in process).

Each worker folds every partition (a household's or an associate's limits count claims from
customers on all partitions, so a shadow that saw only its own customers would judge those
limits wrongly), but publishes only the shadow decisions of the customers on the partitions it
owns now, to `shadow-decisions.v1` (keyed by customer, so a customer's shadow decisions are on
its own partition). A worker that gains a partition first reads that partition of
`shadow-decisions.v1` and publishes every shadow decision of it that its replay made and the topic
lacks: a handover never drops one, and a decision published by both owners during a handover is
the same record again (same decision id and content). The projecting worker's ShadowProjector
reads `shadow-decisions.v1` into the ClickHouse table `shadow_decisions` (by decision id). Shadow
decisions never go to the decision topic, so never to the ledger, the postings, the totals, an
instruction or a customer. `policy shadow report` compares them with the live decisions of the
same requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

import schemas
from streams.core import backtest
from streams.core.inbound import timestamps_to_ms
from streams.core.policy import Policy
from streams.errors import InvariantViolation, PolicyError
from streams.runtime.batch import Incoming, key_partition
from streams.runtime.kafka_auth import kafka_python_options
from streams.runtime.kafka_io import Publisher, read_topic, topic_names, unreachable
from streams.runtime.policy_log import apply_policy, in_force, read_document
from streams.runtime.replay import Replay, decoded, recorded_decisions
from streams.runtime.settings import Settings
from streams.runtime.upstream import avro_json_by_name

log = logging.getLogger("remedy.shadow")

# The one key of the compacted control topic: at most one shadow policy at a time.
SHADOW_KEY = b"shadow"
# How often the runner looks for new upstream records while a shadow runs.
SHADOW_POLL_S = 1.0
# How often it reads the control topic (each read opens a consumer: not every poll).
SHADOW_CONTROL_EVERY_S = 5.0
# Longest one poll of the upstream topics waits for records.
UPSTREAM_POLL_MS = 200
# Longest a read of the control or shadow-decisions topic may take to reach its end.
SHADOW_READ_TIMEOUT_S = 60


def states(settings: Settings) -> list[dict]:
    """Every ShadowPolicy record on the control topic, oldest first (timestamps in ms)."""
    return decoded(settings, topic_names(settings).policy_shadow, SHADOW_READ_TIMEOUT_S, "remedy-shadow", "ShadowPolicy",
                   missing_ok=True)


def current(settings: Settings) -> dict | None:
    """The newest ShadowPolicy record, or None when no shadow was ever started."""
    found = states(settings)
    return found[-1] if found else None


def _publish(settings: Settings, datum: dict) -> dict:
    with Publisher(settings) as publisher:
        publisher.publish_raw(topic_names(settings).policy_shadow, SHADOW_KEY, schemas.encode("ShadowPolicy", datum))
    return datum


def _who_and_why(author: str, reason: str) -> None:
    for name, text in (("--author", author), ("--reason", reason)):
        if not text or not text.strip() or not text.isprintable():
            raise PolicyError(f"{name}: printable text on one line is required: every shadow change says who and why")


def start(settings: Settings, path: Path, author: str, reason: str, now_ms: int) -> dict:
    """Validate a policy document completely and start it in shadow (one shadow at a time)."""
    _who_and_why(author, reason)
    candidate = Policy.from_document(read_document(path))
    running = current(settings)
    if running is not None and running["state"] == "RUNNING":
        raise InvariantViolation(f"shadow {running['version']} is already running (started by {running['changed_by']}); "
                                 "`policy shadow stop` or `promote` it first")
    return _publish(settings, {"version": candidate.version, "document": json.dumps(candidate.as_document(),
                                                                                     sort_keys=True),
                               "state": "RUNNING", "started_at": now_ms, "changed_by": author, "reason": reason,
                               "changed_at": now_ms})


def _running(settings: Settings) -> dict:
    running = current(settings)
    if running is None or running["state"] != "RUNNING":
        raise InvariantViolation("no shadow policy is running (start one with `policy shadow FILE`)")
    return running


def stop(settings: Settings, author: str, reason: str, now_ms: int) -> dict:
    """End the running shadow; its decisions stay for the report."""
    _who_and_why(author, reason)
    return _publish(settings, {**_running(settings), "state": "STOPPED", "changed_by": author, "reason": reason,
                               "changed_at": now_ms})


def promote(settings: Settings, author: str, reason: str, now_ms: int) -> dict:
    """Apply the running shadow as the live policy (the ordinary `policy apply` path), then end the shadow."""
    _who_and_why(author, reason)
    running = _running(settings)
    candidate = Policy.from_document(json.loads(running["document"]))
    apply_policy(settings, candidate, author, f"promoted from shadow: {reason}", now_ms)
    return _publish(settings, {**running, "state": "PROMOTED", "changed_by": author, "reason": reason,
                               "changed_at": now_ms})


def shadow_decisions(settings: Settings) -> list[dict]:
    """Every decision on the shadow-decisions topic (timestamps in ms)."""
    return decoded(settings, topic_names(settings).shadow_decisions, SHADOW_READ_TIMEOUT_S, "remedy-shadow",
                   missing_ok=True)


def report(settings: Settings) -> dict:
    """The shadow against the live decisions of the same requests: the backtest's measures."""
    shadow = current(settings)
    if shadow is None:
        raise InvariantViolation("no shadow policy was ever started (start one with `policy shadow FILE`)")
    made = [d for d in shadow_decisions(settings) if d["policy_version"] == shadow["version"]]
    requests = {d["request_id"] for d in made}
    live = [d for d in recorded_decisions(settings) if d["request_id"] in requests]
    return {"shadow_version": shadow["version"], "state": shadow["state"], "started_at": shadow["started_at"],
            "started_by": shadow["changed_by"], "shadow_decisions": len(backtest.distinct(made)),
            **backtest.compare(live, made)}


class ShadowRunner:
    """Evaluates the running shadow policy on the upstream topics as they grow (in every deciding
    worker) and publishes the shadow decisions of the partitions this worker owns."""

    def __init__(self, settings: Settings, owned_partitions):
        self.settings = settings
        self.names = topic_names(settings)
        self.owned_partitions = owned_partitions  # () -> the customer partitions this worker decides now
        self.shadow: dict | None = None
        self.replay: Replay | None = None
        self.consumer: KafkaConsumer | None = None
        self.rank = {topic: index for index, topic in enumerate(self.names.upstream())}
        self.decided = 0  # shadow decisions this worker published
        self.replay_candidate: Replay | None = None
        self.pending: list[Incoming] = []  # records read while starting, sent after the shadow began
        self.control: dict | None = None  # the newest ShadowPolicy record read
        self.control_read_s = float("-inf")  # monotonic time of the last read of the control topic
        self.partitions = 0  # partitions of the customer topics (a shadow decision's partition: murmur2 of its key)
        # Every shadow decision of this shadow, per partition, as published: (decision id, key, value).
        # Kept for the partitions this worker may gain later (a handover publishes what the topic lacks).
        self.made_by_partition: dict[int, list[tuple[str, bytes, bytes]]] = {}
        self.publishing: set[int] = set()  # the partitions this worker publishes shadow decisions of
        self.made_total = 0  # shadow decisions this worker's replay made (all partitions)

    async def run(self) -> None:
        """Forever: follow the control topic; while a shadow runs, decide new upstream records under it."""
        while True:
            await asyncio.to_thread(self.step, set(self.owned_partitions()))
            await asyncio.sleep(SHADOW_POLL_S)

    def step(self, owned: set[int]) -> list[dict]:
        """One poll: (re)start or end the shadow as the control topic says, decide what arrived, and
        publish the shadow decisions of the `owned` partitions; returns the decisions published."""
        now_s = time.monotonic()
        if now_s - self.control_read_s >= SHADOW_CONTROL_EVERY_S:
            self.control, self.control_read_s = current(self.settings), now_s
        shadow = self.control
        if shadow is None or shadow["state"] != "RUNNING":
            if self.shadow is not None:
                log.warning("shadow %s ended (%s)", self.shadow["version"], shadow["state"] if shadow else "gone")
            self._close()
            return []
        if self.shadow is None or (shadow["version"], shadow["started_at"]) != (self.shadow["version"],
                                                                                 self.shadow["started_at"]):
            self._close()
            self._begin(shadow)
        made = []
        for message in self._poll():
            if (message.timestamp_ms or 0) < self.shadow["started_at"]:
                self.replay.feed(message)  # sent before the shadow began: still building the state then
            else:
                made.extend(self.replay_candidate.feed(message))
        sends = []
        for decision in made:
            key = decision["customer_id"].encode()
            partition = key_partition(key, self.partitions)
            entry = (decision["decision_id"], key, schemas.encode("RemedyDecided", decision))
            self.made_by_partition.setdefault(partition, []).append(entry)
            self.made_total += 1
            if partition in self.publishing and partition in owned:
                sends.append((entry, decision))
        for partition in sorted(owned - self.publishing):  # gained: publish what the topic lacks
            on_topic = self._on_topic(partition)
            sends.extend((entry, None) for entry in self.made_by_partition.get(partition, [])
                         if entry[0] not in on_topic)
        self.publishing = set(owned)
        if sends:
            self._emit([entry for entry, _ in sends])
        return [decision if decision is not None else schemas.decode(entry[2])[1] for entry, decision in sends]

    def status(self) -> dict:
        """What /health shows of the shadow on this worker."""
        return {"version": self.shadow["version"] if self.shadow else None,
                "publishing_partitions": sorted(self.publishing), "decisions_published": self.decided,
                "decisions_made": self.made_total}

    def _on_topic(self, partition: int) -> set[str]:
        """The decision ids on one partition of the shadow-decisions topic now."""
        found = set()
        for record in read_topic(self.settings.kafka, self.names.shadow_decisions, SHADOW_READ_TIMEOUT_S,
                                 "remedy-shadow", missing_ok=True, only_partitions={partition}):
            if record.value is not None:
                found.add(schemas.decode(record.value)[1]["decision_id"])
        return found

    def _begin(self, shadow: dict) -> None:
        applied = in_force(self.settings)
        live = applied.policy if applied else self.settings.policy
        self.shadow = shadow
        self.replay = Replay(live, self.names)
        self.replay_candidate = None
        try:
            self.consumer = KafkaConsumer(**kafka_python_options(self.settings.kafka), enable_auto_commit=False,
                                          group_id=None, client_id="remedy-shadow")
        except KafkaError as error:
            raise unreachable(self.settings.kafka, error) from None
        partitions = [TopicPartition(topic, p) for topic in self.names.upstream()
                      for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        self.partitions = len(self.consumer.partitions_for_topic(self.names.requests) or []) or \
            self.settings.topic_partitions
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        # Everything sent before the shadow began, in replay order, under the live policy.
        end = self.consumer.end_offsets(partitions)
        before = []
        while any(self.consumer.position(tp) < end[tp] for tp in partitions):
            for tp, batch in self.consumer.poll(timeout_ms=UPSTREAM_POLL_MS).items():
                before.extend(self._incoming(record) for record in batch)
        later = []
        for message in backtest.sorted_records(before, self.rank):
            if (message.timestamp_ms or 0) < shadow["started_at"]:
                self.replay.feed(message)
            else:
                later.append(message)
        self.replay_candidate = self.replay.fork(Policy.from_document(json.loads(shadow["document"])))
        self.pending = later
        log.warning("shadow %s started: state at %s rebuilt from the log", shadow["version"], shadow["started_at"])

    def _poll(self) -> list[Incoming]:
        """The records on the upstream topics up to their end offsets now, in replay order.

        Every partition is read to that point before any record is fed: one poll returns records
        of some partitions only (at most 500), and feeding those would decide a request before an
        older order or incident already on another topic. What is read beyond waits for the next
        poll; a read that does not reach the end in SHADOW_READ_TIMEOUT_S is fed next time."""
        partitions = list(self.consumer.assignment())
        end = self.consumer.end_offsets(partitions)
        found, later = [], []
        for message in self.pending:
            (found if message.offset < end[TopicPartition(message.topic, message.partition)] else later).append(message)
        deadline = time.monotonic() + SHADOW_READ_TIMEOUT_S
        while any(self.consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                self.pending = found + later
                log.warning("shadow: the upstream topics were not read to their end in %ss; trying again",
                            SHADOW_READ_TIMEOUT_S)
                return []
            for tp, batch in self.consumer.poll(timeout_ms=UPSTREAM_POLL_MS).items():
                for record in batch:
                    (found if record.offset < end[tp] else later).append(self._incoming(record))
        self.pending = later
        return backtest.sorted_records(found, self.rank)

    @staticmethod
    def _incoming(record) -> Incoming:
        return Incoming(record.topic, record.partition, record.offset, record.key, record.value, record.timestamp)

    def _emit(self, entries: list[tuple[str, bytes, bytes]]) -> None:
        with Publisher(self.settings) as publisher:
            for _, key, value in entries:
                publisher.publish_raw(self.names.shadow_decisions, key, value)
        self.decided += len(entries)

    def _close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.shadow, self.replay, self.replay_candidate, self.consumer, self.pending = None, None, None, None, []
        self.made_by_partition, self.publishing, self.made_total = {}, set(), 0


# How many shadow decisions the projector inserts into ClickHouse at most at once.
SHADOW_PROJECT_BATCH_MAX = 5_000


class ShadowProjector:
    """Reads `shadow-decisions.v1` (every partition, from its start) into ClickHouse's
    `shadow_decisions` table, in the projecting worker; a repeat is the same row again (one per
    decision id with FINAL)."""

    def __init__(self, settings: Settings, store_rows):
        self.settings = settings
        self.names = topic_names(settings)
        self.store_rows = store_rows  # async: insert shadow decisions into ClickHouse
        self.consumer: KafkaConsumer | None = None
        self.projected = 0

    async def run(self) -> None:
        """Forever: insert what arrived on the shadow-decisions topic."""
        while True:
            made = await asyncio.to_thread(self.step)
            for start in range(0, len(made), SHADOW_PROJECT_BATCH_MAX):
                await self.store_rows(made[start:start + SHADOW_PROJECT_BATCH_MAX])
            self.projected += len(made)
            if not made:
                await asyncio.sleep(SHADOW_POLL_S)

    def step(self) -> list[dict]:
        """The shadow decisions that arrived since the last step (decoded, timestamps in ms)."""
        if self.consumer is None and not self._open():
            return []
        shapes = avro_json_by_name()
        found = []
        for _, batch in self.consumer.poll(timeout_ms=UPSTREAM_POLL_MS, max_records=SHADOW_PROJECT_BATCH_MAX).items():
            for record in batch:
                if record.value is None:
                    continue
                name, datum = schemas.decode(record.value)
                found.append(timestamps_to_ms(name, datum, shapes))
        return found

    def _open(self) -> bool:
        try:
            consumer = KafkaConsumer(**kafka_python_options(self.settings.kafka), enable_auto_commit=False,
                                     group_id=None, client_id="remedy-shadow-projector")
        except KafkaError as error:
            raise unreachable(self.settings.kafka, error) from None
        partitions = [TopicPartition(self.names.shadow_decisions, p)
                      for p in sorted(consumer.partitions_for_topic(self.names.shadow_decisions) or [])]
        if not partitions:
            consumer.close()
            return False
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        self.consumer = consumer
        return True
