"""The composition root of the worker: settings, clients, the Faust app, its agents and web views.

`remedy-ledger worker [--roles decide,limits,project]` runs one faust-streaming App (consumer
group `<prefix>-worker`) whose agents carry the money path:

- decide: orders, incidents, requests and limit results, keyed by customer -> decisions, limit checks;
- limits: household and associate limit checks, keyed by scope -> results, releases;
- project: decisions -> ClickHouse (embedded chDB allows exactly one projecting process).

Each agent is a thin shell (streams/runtime/agents.py) around a step defined here: decode, fold
through the pure core (streams/core/), encode. No business rule lives here. The restart-race
corrections (streams/runtime/faust_fix.py) are applied before the App is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiokafka import AIOKafkaConsumer

import schemas
from projections.projector import build_batch
from projections.store import Store
from streams.core import ordering
from streams.core.decision import blocked_order_key, decision_on_record, parked_since_ms, state_key
from streams.core.privacy import erasure_request_problems, pseudonym
from streams.core.scopes import scope_levels, waiting_order_key
from streams.core.policy import Policy
from streams.core.remedy_detail import instruction_key
from streams.errors import InvariantViolation, RemedyLedgerError
from streams.runtime import faust_fix
from streams.runtime.agents import AgentShell, StepOutput
from streams.runtime.align import Aligner
from streams.runtime.batch import (
    PARTITION_CLOCK_KEY,
    Incoming,
    PartitionClocks,
    clock_from_bytes,
    clock_to_bytes,
    fold_batch,
    fold_scope_batch,
    key_partition,
    scope_key_of,
    state_from_bytes,
    state_to_bytes,
)
from streams.runtime.kafka_auth import aiokafka_options, faust_options
from streams.runtime.kafka_io import RECORD_BATCH_LINGER_MS, Publisher, idempotent_aio_producer, read_topic, topic_names
from streams.runtime.policy_log import decode_applied
from streams.runtime.privacy import ErasureBusy, erasure_event, erasure_for
from streams.runtime.sequence import (PROGRESS_RESEND_S, Sequencer, decide_source, level_source, limits_source,
                                      progress_datum)
from streams.runtime.settings import Settings
from streams.runtime.state import OutboxEntry, PartitionState
from streams.runtime.sync_api import DecisionFollower, SyncApi
from streams.runtime.web import WebViews
from streams.runtime.workbench import Workbench
from streams.runtime.access import check_binding, load_tokens
from streams.runtime.metrics import WorkerMetrics, gauge
from streams.redaction import scrubbed

log = logging.getLogger("remedy.worker")

ROLES = ("decide", "limits", "project")
# On SIGTERM, longest the worker waits for the batches in flight before it leaves anyway
# (an unfinished batch is not acked and is redelivered to the next owner).
STOP_BATCH_WAIT_S = 20
# Longest the worker reads the finance-periods topic (a handful of records) when it opens ClickHouse.
PERIODS_READ_S_MAX = 30
# Session timeout: a crashed worker's partitions move on after 10 s (heartbeats every 3 s).
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 3.0
# Acked offsets are committed this often (a crash redelivers at most this much, idempotently).
COMMIT_INTERVAL_S = 1.0
# Events buffered per agent channel ahead of processing (the project batch must fit).
STREAM_BUFFER_MAX = 20_000
# Longest /ready waits for Kafka or ClickHouse to answer before it says they did not.
READY_CHECK_TIMEOUT_S = 2.0
# Bytes fetched per partition per request: a catch-up needs fewer round trips per topic.
PARTITION_FETCH_BYTES_MAX = 4 << 20


def _customer_index(key: bytes, state_json: bytes):
    """While restoring: a partition clock, or a customer's first parked request and check in flight."""
    if key == PARTITION_CLOCK_KEY:
        return ("clock", clock_from_bytes(state_json))
    if b'"pending":[]' in state_json and b'"reservations":{}' in state_json:
        return None
    state = state_from_bytes(state_json)
    since, blocked = parked_since_ms(state), blocked_order_key(key.decode(), state)
    return ("customer", (since, blocked)) if since is not None or blocked is not None else None


def _scope_index(key: bytes, state_json: bytes):
    """While restoring: the order key of the first check waiting at a household."""
    if b'"waiting"' not in state_json:
        return None
    first = waiting_order_key(state_from_bytes(state_json))
    return ("waiting", first) if first is not None else None


class ChDBPathBusy(RemedyLedgerError):
    """Another process already projects into this embedded ClickHouse (chDB) path."""


def parse_roles(text: str) -> tuple[str, ...]:
    """The roles of `--roles a,b`; raises InvariantViolation naming an unknown role."""
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise InvariantViolation(f"--roles: unknown role {', '.join(unknown) or '(none)'}; choose from {', '.join(ROLES)}")
    return roles


class Worker:
    """The worker: the Faust app with the agents of its roles, the policy follower, the ClickHouse
    thread (when it projects) and the web views.

    `policy` is the version in force at start (from the policy topic); the worker follows the
    topic and switches to every newer version without a restart.
    """

    def __init__(self, settings: Settings, policy: Policy | None = None, roles: tuple[str, ...] = ROLES):
        self.settings = settings
        self.roles = roles
        self.names = topic_names(settings)
        self.policy = policy or settings.policy
        # One thread owns the ClickHouse client: chDB is embedded and calls must not overlap.
        self.clickhouse = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.store: Store | None = None
        self.shells: dict[str, AgentShell] = {}
        self.shadow_runner = None  # a ShadowRunner in a deciding worker (streams/runtime/shadow.py)
        self.producer: AIOKafkaProducer | None = None
        self.sync_api: SyncApi | None = None  # set once the producer and the decision follower run
        self.api_producer: AIOKafkaProducer | None = None
        self.app = None
        self.clocks = PartitionClocks()
        # limits partition -> scope key -> order key of its first waiting check
        self.waiting: dict[int, dict[str, tuple]] = {}
        # source -> (watermark, monotonic time) last sent
        self.progress_sent: dict[str, tuple[tuple, float]] = {}
        self.misrouted_total = 0
        self.metrics = WorkerMetrics()
        # request id -> when (monotonic s) the decide agent first handled it, while its check is in flight
        self.arrived_s: dict[str, float] = {}
        self._kafka_checked: tuple[float, str | None] = (0.0, None)
        from projections.rebuild import progress_state

        self.rebuild_progress = progress_state()
        self.workbench = Workbench(settings)  # the fraud team's reads (review queue, policy, backtest)

    # ClickHouse -------------------------------------------------------------------------------

    @property
    def serves_clickhouse(self) -> bool:
        """True when this worker may open ClickHouse: it projects, or ClickHouse is a server."""
        return "project" in self.roles or not self.settings.embedded_clickhouse

    def _store(self) -> Store:
        if self.store is None:
            if not self.serves_clickhouse:
                raise InvariantViolation("this worker does not project and ClickHouse is embedded (chDB); "
                                         "ask the worker that runs the project role")
            settings = self.settings
            store = Store(settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_attempts_max)
            store.migrate()
            # The closed months' source of truth is the finance-periods topic: a ClickHouse that lost
            # them (a new volume) learns them again before it projects anything; a close recorded here
            # whose publish failed (close_period) is published now.
            published = set()
            for message in read_topic(settings.kafka, self.names.periods, PERIODS_READ_S_MAX, "remedy-periods",
                                      missing_ok=True):
                event = schemas.decode(message.value)[1]
                store.record_close(event)
                published.add(event["period"])
            unpublished = [close for close in store.closed_periods() if close["period"] not in published]
            if unpublished:
                with Publisher(settings) as publisher:
                    for close in unpublished:
                        event = {"event_id": f"period-closed:{close['period']}", **close}
                        publisher.publish_raw(self.names.periods, close["period"].encode(),
                                              schemas.encode("PeriodClosed", event))
            self.store = store
        return self.store

    async def close_period(self, period: str | None, closed_by: str | None) -> dict:
        """Close a month on the ClickHouse thread (between project batches), then put the PeriodClosed
        on the finance-periods topic (recorded first: a month the store refuses is never published)."""
        event = await self.on_clickhouse("close_period", period, closed_by, int(time.time() * 1000))
        # Recorded first, with the offsets, on the thread that projects (so no batch lands between the
        # two); should this send fail, the worker publishes the close when it next opens ClickHouse.
        await self._publish_event(self.names.periods, period.encode(), "PeriodClosed", event)
        return event

    async def on_clickhouse(self, method: str, *args):
        """Run a Store method on the ClickHouse thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self.clickhouse, lambda: getattr(self._store(), method)(*args))

    # Steps (what each agent does with a batch) --------------------------------------------------

    def _encoded(self, kind: str, datum: dict) -> OutboxEntry:
        if kind == "decision":
            return OutboxEntry(self.names.decisions, datum["customer_id"].encode(), schemas.encode("RemedyDecided", datum))
        if kind == "recovery":
            event = {name: value for name, value in datum.items() if name != "type"}
            return OutboxEntry(self.names.recoveries, datum["customer_id"].encode(), schemas.encode("RecoverySuggested", event))
        if kind == "instruction":
            return OutboxEntry(self.names.instructions, instruction_key(datum).encode(),
                               schemas.encode("RemedyInstruction", datum))
        if kind == "notification":
            return OutboxEntry(self.names.notifications, datum["customer_id"].encode(),
                               schemas.encode("CustomerNotification", datum))
        topic = self.names.limit_results if datum["action"] == "RESULT" else self.names.limit_checks
        return OutboxEntry(topic, scope_key_of(datum).encode(), schemas.encode("LimitCheck", datum))

    def _forwarded(self, misrouted: list[Incoming]) -> list[OutboxEntry]:
        """Records a producer put on the wrong partition, sent again to murmur2(key)'s partition."""
        for message in misrouted:
            self.misrouted_total += 1
            log.warning("forwarding %s[%s]@%s to its customer's partition (the producer does not partition by "
                        "murmur2 of the key; see docs/bounds.md)", message.topic, message.partition, message.offset)
        # Sent without a partition: the batcher puts a keyed record on murmur2(key)'s partition.
        return [OutboxEntry(message.topic, message.key, message.value) for message in misrouted]

    def _dead_letters(self, letters: list[dict]) -> list[OutboxEntry]:
        for letter in letters:
            self.metrics.dead_letters.inc(letter["error_type"])
            log.warning("dead-lettered %s[%s]@%s: %s", letter["source_topic"], letter["source_partition"],
                        letter["source_offset"], letter["reason"])
        return [OutboxEntry(self.names.dead_letter, d["key"], schemas.encode("DeadLetter", d)) for d in letters]

    def _fold_customers(self, messages, load, policy, names):
        started_s = time.monotonic()
        before: dict[str, dict | None] = {}

        def load_once(key: str):
            if key not in before:
                before[key] = load(key)
            return before[key]

        result = fold_batch(messages, load_once, policy, names, self.clocks, self.settings.topic_partitions,
                            self.settings.privacy_key or None)
        self._count(result, before, started_s)
        return result

    def _count(self, result, before: dict, started_s: float) -> None:
        """Metrics of a decide batch: first-time decisions, granted cents, decision latency."""
        for check in result.checks:
            if check["action"] == "RESERVE":
                self.arrived_s.setdefault(check["request_id"], started_s)
        now_s = time.monotonic()
        seen: set[str] = set()
        for decision in result.decisions:
            decision_id = decision["decision_id"]
            earlier = ((before.get(decision["customer_id"]) or {}).get("decided") or {}).get(decision["request_id"])
            if decision_id in seen or (earlier is not None and earlier["decision_id"] == decision_id):
                continue  # a redelivered request's decision, emitted again
            seen.add(decision_id)
            self.metrics.decisions.inc(decision["outcome"], decision["kind"])
            if decision["granted_cents"]:
                self.metrics.granted_cents.inc(decision["kind"], decision["currency"], by=decision["granted_cents"])
            if not decision.get("supersedes_decision_id"):
                self.metrics.decision_latency.observe(now_s - self.arrived_s.pop(decision["request_id"], started_s))

    def _restored_customers(self, partitions: list[int], indexed: dict) -> None:
        """Rebuild the partition clocks, the parked and the blocked customers of restored partitions."""
        self.clocks.drop(partitions)
        for (partition, key), (kind, value) in indexed.items():
            if kind == "clock":
                clock, position = value
                if clock is not None:
                    self.clocks.clock_ms[partition] = clock
                if position is not None:
                    self.clocks.position_ms[partition] = position
                continue
            since, blocked = value
            if since is not None:
                self.clocks.parked_since_ms.setdefault(partition, {})[key.decode()] = since
            if blocked is not None:
                self.clocks.blocked.setdefault(partition, {})[key.decode()] = tuple(blocked)

    def _restored_scopes(self, partitions: list[int], indexed: dict) -> None:
        """Rebuild the waiting checks' index of restored limits partitions."""
        for partition in partitions:
            self.waiting.pop(partition, None)
        for (partition, key), (_, first) in indexed.items():
            self.waiting.setdefault(partition, {})[key.decode()] = tuple(first)

    def _fold_scopes(self, messages, load, policy, names):
        return fold_scope_batch(messages, load, policy, names, self.waiting)

    # Watermarks (streams/core/ordering.py) ------------------------------------------------------

    async def _decide_tick(self) -> None:
        """Send each owned decide partition's watermark to every limits partition."""
        shell = self.shells["decide"]
        partitions = self._assigned()["decide"]
        await shell.ensure_owned(partitions)
        marks = {}
        for partition in partitions:
            quiet = await shell.aligner.quiet(partition)
            marks[decide_source(partition)] = (ordering.decide_watermark(
                self.clocks.position_ms.get(partition), self.clocks.blocked.get(partition, {}).values(), quiet), ())
        await self._send_progress(shell, marks)

    async def _limits_tick(self) -> None:
        """Send each owned limits partition's watermarks (one per level it can pass checks on to) to
        every limits partition."""
        shell = self.shells["limits"]
        partitions = self._assigned()["limits"]
        await shell.ensure_owned(partitions)
        levels = scope_levels(self.policy)
        marks = {}
        for partition in partitions:
            waiting: list[list[tuple]] = [[] for _ in levels[:-1]]
            for state_key, first in self.waiting.get(partition, {}).items():
                level = ordering.level_index(ordering.level_of_state_key(state_key), levels)
                if level < len(waiting):
                    waiting[level].append(first)
            frontiers = [shell.aligner.level_frontier(partition, level) for level in range(len(levels) - 1)]
            first, *higher = ordering.limits_watermarks(frontiers, waiting)
            marks[limits_source(partition)] = (first, tuple(enumerate(higher, 2)))
        await self._send_progress(shell, marks)

    async def _send_progress(self, shell: AgentShell, marks: dict[str, tuple[tuple, tuple]]) -> None:
        """Send each source's (watermark, higher levels' watermarks) that changed, or is due again."""
        now = asyncio.get_running_loop().time()
        entries = []
        for source, mark in marks.items():
            sent = self.progress_sent.get(source)
            if sent is not None and sent[0] == mark and now - sent[1] < PROGRESS_RESEND_S:
                continue
            value = schemas.encode("LimitCheck", progress_datum(source, *mark))
            key = f"progress:{source}".encode()
            entries.extend(OutboxEntry(self.names.limit_checks, key, value, partition=partition)
                           for partition in range(self.settings.topic_partitions))
            self.progress_sent[source] = (mark, now)
        await shell.send(entries)

    def _folding(self, fold, clock_key: bool = False):
        """A decide or limits step: fold a batch against the owned state; new states with their outboxes.

        With `clock_key`, each partition whose clock moved also writes it to the changelog."""

        async def step(messages: list[Incoming], state: PartitionState) -> StepOutput:
            # A record on another partition than murmur2(key) is forwarded, not folded: it must not
            # decide on which partition its customer's state is kept and written.
            partitions = self.settings.topic_partitions
            partition_of = {m.key: m.partition for m in messages if m.key is not None
                            and not (clock_key and key_partition(m.key, partitions) != m.partition)}

            def partition_for(encoded: bytes) -> int:
                # A parked customer the partition clock woke up may have no event in this batch.
                if encoded not in partition_of:
                    partition_of[encoded] = state.partition_of(encoded)
                return partition_of[encoded]

            def load(key: str):
                encoded = key.encode()
                found = state.get(partition_for(encoded), encoded)
                if found is None and clock_key and self.settings.privacy_key:
                    # An erased customer's state is kept under its pseudonym (docs/privacy.md).
                    found = state.get(partition_for(encoded), pseudonym(self.settings.privacy_key, key).encode())
                return state_from_bytes(found)

            result = fold(messages, load, self.policy, self.names)
            output = StepOutput(sends=self._dead_letters(result.dead_letters) + self._forwarded(result.misrouted))
            for key, value in result.states.items():
                encoded = key.encode()
                outbox = [self._encoded(kind, datum) for kind, datum in result.emitted_by_key.get(key, [])]
                states = output.states.setdefault(partition_for(encoded), {})
                stored = state_key(key, value) if clock_key else key
                # An erased state goes under its pseudonym first, then the id's tombstone: on the
                # same partition in that order, so no crash can leave the tombstone without the state.
                states[stored.encode()] = (state_to_bytes(value), outbox)
                if stored != key:
                    states[encoded] = (None, [])
                    if outbox:
                        output.scrubbed.setdefault(partition_for(encoded), {})[stored.encode()] = state_to_bytes(value)
            if clock_key:
                for partition in self.clocks.advanced:
                    output.states.setdefault(partition, {})[PARTITION_CLOCK_KEY] = (
                        clock_to_bytes(self.clocks.clock_ms.get(partition), self.clocks.position_ms.get(partition)), [])
            return output

        return step

    async def _project(self, messages: list[Incoming], state: None) -> StepOutput:
        def build_and_write():
            # Decoding and row building run on the ClickHouse thread too, so the event loop (and
            # the decide agent's latency) does not wait for them. Erasures are read for every
            # batch on this thread, so an erasure (also on it) applies to every later batch.
            erasure = erasure_for(self.settings, self._store().erased_pseudonyms())
            batch = build_batch(messages, self.names, erasure)
            if batch.ledger_rows:
                # Synchronous insert with a dedup token: acknowledged before the events are acked.
                self._store().write_batch(batch)
            return batch

        batch = await asyncio.get_running_loop().run_in_executor(self.clickhouse, build_and_write)
        if batch.ledger_rows:
            log.info("projected %d decisions (%s)", len(batch.ledger_rows), batch.token)
        return StepOutput(sends=self._dead_letters(batch.dead_letters))

    # The Faust app ----------------------------------------------------------------------------

    def build_app(self):
        """The faust-streaming App with the agents of this worker's roles."""
        faust_fix.apply()
        import faust

        settings, names = self.settings, self.names
        app = faust.App(
            settings.app_id,
            **faust_options(settings.kafka),
            store="memory://",
            autodiscover=False,
            datadir=str(settings.data_dir / "faust"),
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            # We create every topic ourselves with explicit configs (streams/runtime/topics.py).
            topic_allow_declare=False,
            topic_disable_leader=True,
            web_enabled=False,
            broker_commit_interval=COMMIT_INTERVAL_S,
            broker_session_timeout=SESSION_TIMEOUT_S,
            broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
            stream_buffer_maxsize=STREAM_BUFFER_MAX,
            consumer_max_fetch_size=PARTITION_FETCH_BYTES_MAX,
        )
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        producer = lambda: self.producer  # noqa: E731 - started with the app, read per batch
        decide_wait_s = settings.decide_batch_wait_ms / 1000
        if "decide" in self.roles:
            self.shells["decide"] = AgentShell(
                "decide", self._folding(self._fold_customers, clock_key=True),
                PartitionState(names.customer_state_changelog, settings.kafka, index=_customer_index),
                producer, aligner=self._aligner(app), rebalancing=lambda: app.rebalancing)
            decide_shell = self.shells["decide"]
            decide_shell.on_restored = self._restored_customers
            decide_shell.on_revoked = self.clocks.drop
            decide_shell.on_tick = self._decide_tick

            @app.agent(app.topic(*names.inputs(), **raw), name="decide", concurrency=1)
            async def decide(stream):
                await decide_shell.run(stream, settings.decide_batch_max, decide_wait_s)

        if "limits" in self.roles:
            self.shells["limits"] = AgentShell(
                "limits", self._folding(self._fold_scopes),
                PartitionState(names.scope_state_changelog, settings.kafka, index=_scope_index), producer,
                aligner=Sequencer(settings.topic_partitions, lambda: scope_levels(self.policy)), rebalancing=lambda: app.rebalancing)
            limits_shell = self.shells["limits"]
            limits_shell.on_restored = self._restored_scopes
            limits_shell.on_revoked = lambda partitions: [self.waiting.pop(p, None) for p in partitions]
            limits_shell.on_tick = self._limits_tick

            @app.agent(app.topic(names.limit_checks, **raw), name="limits", concurrency=1)
            async def limits(stream):
                await limits_shell.run(stream, settings.decide_batch_max, decide_wait_s)

        if "project" in self.roles:
            self.shells["project"] = AgentShell("project", self._project, None, producer)
            project_shell = self.shells["project"]

            @app.agent(app.topic(names.decisions, **raw), name="project", concurrency=1)
            async def project(stream):
                await project_shell.run(stream, settings.project_batch_max, settings.project_batch_wait_ms / 1000)

        from faust.types import TP

        def committed(topic: str, partition: int) -> int | None:
            # Faust keeps the group's committed offsets after its seek on assignment (the next
            # offset to read), and updates them on every commit.
            return app.consumer._committed_offset.get(TP(topic, partition))

        for each in self.shells.values():
            each.committed = committed
            each.observe = self.metrics.batch_seconds.observe

        @app.on_partitions_revoked.connect
        async def on_revoked(app, revoked, **kwargs):
            for shell in self.shells.values():
                shell.revoked({tp.partition for tp in revoked})

        @app.on_partitions_assigned.connect
        async def on_assigned(app, assigned, **kwargs):
            log.warning("partitions assigned: %s", sorted((tp.topic.rsplit(".", 2)[-2], tp.partition) for tp in assigned))

        return app

    def _aligner(self, app) -> Aligner:
        """Event-time order across the upstream topics, from the Faust consumer's highwaters and positions."""
        from faust.types import TP

        names = self.names

        def highwater(topic: str, partition: int) -> int | None:
            try:
                return app.consumer.highwater(TP(topic, partition))
            except (KeyError, AssertionError):
                return None

        async def position(topic: str, partition: int) -> int | None:
            # Where delivery to this agent starts on a partition it has seen nothing of yet: Faust
            # seeks every assigned partition to the group's committed offset (the consumer's own
            # fetch position would count records fetched but not delivered yet as seen, and an
            # order still on its way would let the requests behind it go first).
            committed = app.consumer._committed_offset.get(TP(topic, partition))
            return committed if committed is not None else 0

        return Aligner((names.orders, names.incidents, names.requests), highwater, position)

    async def _follow_policy(self) -> None:
        # No consumer group: every worker reads every version, from the beginning.
        consumer = AIOKafkaConsumer(
            self.names.policy, **aiokafka_options(self.settings.kafka), group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, client_id="remedy-policy",
        )
        await consumer.start()
        try:
            async for message in consumer:
                try:
                    applied = decode_applied(message.value, message.offset)
                except RemedyLedgerError as error:
                    log.error("ignoring policy record at offset %s, keeping version %s: %s", message.offset,
                              self.policy.version, error)
                    continue
                if applied.policy.version != self.policy.version:
                    log.warning("policy %s in force (applied by %s: %s)", applied.policy.version, applied.author,
                                applied.reason)
                self.policy = applied.policy
        finally:
            await consumer.stop()

    def _assigned(self) -> dict[str, list[int]]:
        """The partitions each agent's topics have on this worker now."""
        names = self.names
        topics = {"decide": set(names.inputs()), "limits": {names.limit_checks}, "project": {names.decisions}}
        from faust.exceptions import ConsumerNotStarted

        try:
            assignment = self.app.consumer.assignment() if self.app is not None else set()
        except ConsumerNotStarted:
            assignment = set()
        return {name: sorted({tp.partition for tp in assignment if tp.topic in topics[name]}) for name in self.shells}

    def ordering_status(self) -> dict:
        """The watermarks this worker sent, and per limits partition the frontiers it judges below."""
        def shown(key) -> str:
            return "idle" if key[0] >= ordering.IDLE_MS else ("none" if key[0] < 0 else f"{key[0]}/{key[1]}/{key[2]}")

        out = {"watermarks_sent": {
            level_source(source, level): shown(key)
            for source, ((mark, higher), _) in sorted(self.progress_sent.items())
            for level, key in ((1, mark), *higher)}}
        limits = self.shells.get("limits")
        if limits is not None:
            sequencer = limits.aligner
            out["frontiers"] = {
                str(p): {**{level: shown(sequencer.frontier(p, level)) for level in sequencer.levels()},
                         "held": len(sequencer.heaps.get(p, [])),
                         "missing_sources": sorted(set(sequencer.decide_sources + sequencer.limits_sources)
                                                   - set(sequencer.marks.get(p, {})))}
                for p in self._assigned().get("limits", [])}
        return out

    def metrics_text(self) -> str:
        """/metrics: the counters and histograms, plus gauges read now (lag, state, restores, held)."""
        try:
            lag = {(tp.topic, str(tp.partition)): behind for tp, behind in self._lag_by_partition().items()}
        except Exception:  # noqa: BLE001 - a consumer not started has no lag to show
            lag = {}
        shells = self.shells.items()
        extra = []
        extra += gauge("remedy_consumer_lag", "Messages on the broker not yet committed by this worker.",
                       ("topic", "partition"), lag)
        extra += gauge("remedy_state_keys", "Keys of state held in memory, per agent.", ("agent",),
                       {(name,): shell.state.keys() for name, shell in shells if shell.state})
        extra += gauge("remedy_state_restore_seconds", "Seconds spent restoring state from changelogs since start.",
                       ("agent",), {(name,): shell.state.restore_seconds_total for name, shell in shells if shell.state})
        extra += gauge("remedy_held_events", "Events held back for order (decide: aligner; limits: sequencer).",
                       ("agent",), {(name,): shell.aligner.held() for name, shell in shells if shell.aligner})
        for name, shell in shells:
            if isinstance(shell.aligner, Sequencer):
                extra += shell.aligner.hold_seconds.render() + shell.aligner.events.render()
        extra += gauge("remedy_policy_info", "The policy version in force.", ("version",), {(self.policy.version,): 1})
        return self.metrics.render(extra)

    async def _publish_event(self, topic: str, key: bytes, record_name: str, datum: dict) -> tuple[int, int]:
        """Encode and send one event, waiting for every in-sync replica; (partition, offset)."""
        written = await self.api_producer.send_and_wait(topic, schemas.encode(record_name, datum), key=key)
        return written.partition, written.offset

    async def _earlier_decision(self, request_id: str, request: dict | None) -> dict | None:
        """A request's earlier decision: from the decide agent's state when this worker holds the
        customer's partition (in memory, no query), else from the projection when this worker
        projects, else None."""
        shell = self.shells.get("decide")
        if request is not None and shell is not None and shell.state is not None:
            encoded = request["customer_id"].encode()
            partition = key_partition(encoded, self.settings.topic_partitions)
            if shell.state.owned(partition):
                found = shell.state.get(partition, encoded)
                told, decision = decision_on_record(state_from_bytes(found), request, self.policy)
                if told:
                    return decision
        if self.serves_clickhouse:
            return await self.on_clickhouse("current_decision", request_id)
        return None

    async def publish_review(self, review: dict) -> dict:
        """Put a RemedyReviewed event (request_id, customer_id, verdict, reviewed_by, note) on the
        requests topic, keyed by customer, and wait for the broker's acknowledgement; returns the datum."""
        reviewed_at_ms = int(time.time() * 1000)  # the shell's clock: the event carries it, the core never reads one
        identity = f"{review['request_id']}/{review['verdict']}/{review['reviewed_by']}/{reviewed_at_ms}"
        datum = {"event_id": "rev-" + hashlib.sha256(identity.encode()).hexdigest()[:24],
                 "request_id": review["request_id"], "customer_id": review["customer_id"],
                 "verdict": review["verdict"], "reviewed_by": review["reviewed_by"], "reviewed_at": reviewed_at_ms,
                 "note": review.get("note")}
        await self._publish_event(self.names.requests, review["customer_id"].encode(), "RemedyReviewed", datum)
        log.warning("review of %s: %s by %s", review["request_id"], review["verdict"], review["reviewed_by"])
        return datum

    async def publish_assignment(self, datum: dict) -> None:
        """Put a ReviewAssigned record on the compacted review-assignments topic (keyed by request id)
        and wait for the broker's acknowledgement."""
        from streams.runtime.cases import assignment_key

        await self._publish_event(self.names.review_assignments, assignment_key(datum), "ReviewAssigned", datum)
        log.warning("case %s assigned to %s by %s", datum["request_id"], datum["assigned_to"], datum["assigned_by"])

    async def readiness_problems(self) -> list[str]:
        """Why the worker is not ready (empty: ready): Kafka, ClickHouse, assignment, restores, lag."""
        problems = []
        kafka = await self._kafka_problem()
        if kafka:
            problems.append(kafka)
        if self.serves_clickhouse:
            try:
                await asyncio.wait_for(self.on_clickhouse("decision_count"), READY_CHECK_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - any failure means not ready; the reason is shown
                problems.append(scrubbed(f"ClickHouse did not answer in {READY_CHECK_TIMEOUT_S:g} s: {error!r}",
                                         *self.settings.secrets()))
        app = self.app
        if app is None or app.rebalancing:
            problems.append("the consumer group is rebalancing")
        elif self.shells and not any(self._assigned().values()):
            problems.append("no partitions assigned")
        restoring = [name for name, shell in self.shells.items() if shell.restoring]
        if restoring:
            problems.append(f"restoring state: {', '.join(restoring)}")
        if not problems:
            lag = self._lag()
            if lag > self.settings.ready_lag_max:
                problems.append(f"consumer lag {lag} above REMEDY_READY_LAG_MAX {self.settings.ready_lag_max}")
        return problems

    def _lag_by_partition(self) -> dict:
        """Per assigned topic-partition: messages on the broker not yet committed by this worker."""
        consumer = self.app.consumer if self.app is not None else None
        lag = {}
        for tp in (consumer.assignment() if consumer is not None else ()):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag[tp] = max(0, highwater - (consumer._committed_offset.get(tp) or 0))
        return lag

    def _lag(self) -> int:
        return sum(self._lag_by_partition().values())

    async def _kafka_problem(self) -> str | None:
        """Whether the broker answers a metadata request (cached for a second)."""
        loop = asyncio.get_running_loop()
        checked_at, problem = self._kafka_checked
        if loop.time() - checked_at < 1.0:
            return problem
        problem = None
        try:
            if self.producer is None:
                problem = "Kafka producer not started"
            else:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), READY_CHECK_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            problem = f"Kafka at {self.settings.kafka} did not answer in {READY_CHECK_TIMEOUT_S:g} s: {error!r}"
        self._kafka_checked = (loop.time(), problem)
        return problem

    def status(self) -> dict:
        """What /health shows: roles, policy, and per agent its events, batches, partitions and state."""
        assigned = self._assigned()
        return {
            "ordering": self.ordering_status(),
            "status": "ok", "app": self.settings.app_id, "misrouted_forwarded": self.misrouted_total, "roles": list(self.roles), "policy_version": self.policy.version,
            "runtime": f"faust-streaming {faust_fix.installed_version()} (restart-race fix applied: {faust_fix.applied()})",
            "agents": {name: {"partitions": assigned.get(name, []), "events": shell.events_total, "batches": shell.batches_total,
                              "last_batch_ms": round(shell.last_batch_ms, 1),
                              "partitions_seen": sorted(shell.partitions),
                              "held": shell.aligner.held() if shell.aligner else None,
                              "held_waits": shell.aligner.held_waits_total if shell.aligner else None,
                              "held_forced": shell.aligner.forced_total if shell.aligner else None,
                              "late_checks": getattr(shell.aligner, "late_total", None),
                              "dropped_on_rebalance": shell.dropped_on_rebalance_total,
                              "state_keys": shell.state.keys() if shell.state else None,
                              "parked_customers": self.clocks.parked() if name == "decide" else None,
                              "restores": shell.state.restores_total if shell.state else None,
                              "outbox_messages_resent": shell.resent_total,
                              "restore_s": round(shell.state.restore_seconds_total, 2) if shell.state else None}
                       for name, shell in self.shells.items()},
            "shadow": self.shadow_runner.status() if self.shadow_runner is not None else None,
        }

    # Erasure (docs/privacy.md) ----------------------------------------------------------------

    async def erase_customer(self, customer_id: str, reason: str) -> dict:
        """Erase a customer: record its pseudonym and rewrite its projection rows (ClickHouse thread),
        then publish CustomerErased keyed by the customer, which the owner of its partition applies
        to its state in log order. Idempotent: erasing again changes nothing more."""
        problems = erasure_request_problems(customer_id, reason)
        if problems:
            raise InvariantViolation("; ".join(problems))
        if not self.serves_clickhouse:
            raise InvariantViolation("this worker does not project and ClickHouse is embedded (chDB); "
                                     "ask the worker that runs the project role")
        if self.rebuild_progress["state"] == "running":
            raise ErasureBusy("a projection rebuild is running; erase once it finished")
        if self.producer is None:
            raise ErasureBusy("the worker is still starting (no Kafka producer yet); try again in a moment")
        customer_pseudonym = pseudonym(self.settings.privacy_key, customer_id)
        projected = await self.on_clickhouse("erase_customer", customer_id, customer_pseudonym, reason)
        event = erasure_event(customer_id, customer_pseudonym, int(time.time() * 1000))
        await self._publish_event(self.names.requests, customer_id.encode(), "CustomerErased", event)
        log.warning("erasure: customer now %s; projection rows rewritten %s; CustomerErased sent to %s",
                    customer_pseudonym, projected["rows_rewritten"], self.names.requests)
        return {**projected, "state": f"CustomerErased sent to {self.names.requests}; the decide agent that owns "
                                      "the customer's partition replaces its state"}

    # Running ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (returns 0) or until an agent or task fails (returns 1, loudly)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Before anything is opened: a worker that would serve beyond loopback without tokens stops here.
        tokens = load_tokens(self.settings.http_tokens_file)
        check_binding(self.settings.web_host, tokens)
        if tokens.enabled:
            log.warning("HTTP: bearer tokens required (%r, from REMEDY_HTTP_TOKENS_FILE)", tokens)
        else:
            log.warning("HTTP: no REMEDY_HTTP_TOKENS_FILE: serving on loopback %s only, without authentication",
                        self.settings.web_host)
        if self.serves_clickhouse:
            try:
                await self.on_clickhouse("decision_count")  # open (and migrate) the store before serving
            except RemedyLedgerError:
                raise
            except Exception as error:  # chDB raises a bare RuntimeError for a path another process holds
                if self.settings.embedded_clickhouse and "EmbeddedServer" in str(error):
                    raise ChDBPathBusy(
                        f"embedded ClickHouse at {self.settings.clickhouse_dsn} is open in another process "
                        "(chDB allows one per data path): run this worker with --roles decide,limits, "
                        "or point REMEDY_CLICKHOUSE_URL at a ClickHouse server") from None
                raise
        runner = web.AppRunner(WebViews(self, tokens).app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.web_host, self.settings.web_port).start()
        self.producer = idempotent_aio_producer(self.settings.kafka, "remedy-worker", linger_ms=RECORD_BATCH_LINGER_MS)
        await self.producer.start()
        # The synchronous API's own producer: one record per call, sent at once (no linger), never
        # queued behind an agent's record batches.
        self.api_producer = idempotent_aio_producer(self.settings.kafka, "remedy-sync-api", linger_ms=0)
        await self.api_producer.start()
        follower = DecisionFollower(self.settings.kafka, self.names.decisions, self.settings.topic_partitions)
        await follower.start()
        app = self.app = self.build_app()
        if "decide" in self.shells:
            self.shells["decide"].on_sent = follower.sent
        await app.start()
        self.sync_api = SyncApi(
            follower, self._publish_event, self._earlier_decision,
            self.names.requests, self.names.incidents, self.settings.sync_wait_ms / 1000,
            lambda: int(time.time() * 1000), self.metrics)
        tasks = {asyncio.ensure_future(self._follow_policy()): "policy",
                 asyncio.ensure_future(follower.run()): "decision follower (synchronous API)",
                 asyncio.ensure_future(self._until_crashed(app)): "faust app"}
        from streams.runtime.shadow import ShadowProjector, ShadowRunner

        if "decide" in self.shells:  # every deciding worker evaluates a shadow for the partitions it owns
            self.shadow_runner = ShadowRunner(self.settings, lambda: self._assigned().get("decide", []))
            tasks[asyncio.ensure_future(self.shadow_runner.run())] = "shadow policy"
        if self.serves_clickhouse:  # every worker's shadow decisions, from their topic into this worker's ClickHouse
            projector = ShadowProjector(self.settings, lambda made: self.on_clickhouse("insert_shadow_decisions", made))
            tasks[asyncio.ensure_future(projector.run())] = "shadow projector"
        stopping = asyncio.ensure_future(stop.wait())
        log.warning("worker ready on %s: roles %s (web %s:%s)", self.settings.kafka, ",".join(self.roles),
                    self.settings.web_host, self.settings.web_port)
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        status = 0
        for task in done:
            if task is not stopping:
                log.critical("worker task %s stopped: %r", tasks[task], task.exception(), exc_info=task.exception())
                status = 1
        await self._leave(app, status)
        return status

    @staticmethod
    async def _until_crashed(app) -> None:
        """Returns (raising the reason) once the Faust app or one of its services crashed."""
        await app._crashed.wait()
        raise RuntimeError(f"the Faust app crashed: {app.crash_reason!r}")

    async def _leave(self, app, status: int) -> None:
        """Finish the batches in flight, commit what is acked, close the store, and exit.

        Faust's own stop would cancel an agent mid-batch; instead every agent's lock is taken (its
        batch in flight finishes, no new batch starts), the acked offsets are committed, and the
        process exits. Unacked events are redelivered to the next owner.
        """
        try:
            await asyncio.wait_for(asyncio.gather(*(s.lock.acquire() for s in self.shells.values())), STOP_BATCH_WAIT_S)
            await asyncio.wait_for(app.consumer.commit(), STOP_BATCH_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("a batch did not finish in %ss; it will be redelivered", STOP_BATCH_WAIT_S)
        for producer in (self.producer, self.api_producer):
            if producer is not None:
                await producer.stop()
        if self.store is not None:
            await asyncio.get_running_loop().run_in_executor(self.clickhouse, self.store.close)
        log.warning("worker stopped (%s)", "failed" if status else "signal")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
