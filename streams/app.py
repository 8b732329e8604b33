"""The composition root of the worker: settings, clients, the Faust app, its agents and web views.

An agent that fails crashes the whole worker (CrashingSupervisor) instead of being restarted
with its batch silently skipped; unacknowledged events are then redelivered on restart.
Agents are thin shells: they turn consumed messages into `Incoming` values, call the core
through `fold_batch`, emit what it returns and save state. No business rule lives here.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import faust
from aiokafka import AIOKafkaConsumer
from mode import CrashingSupervisor
from faust.transport.drivers import aiokafka as faust_aiokafka

import schemas
from projections.projector import build_batch
from projections.store import Store, parse_day
from streams.batch import Incoming, fold_batch, fold_scope_batch, scope_key_of, state_from_bytes, state_to_bytes
from streams.errors import InvariantViolation, RemedyLedgerError
from streams.policy import Policy
from streams.policy_log import decode_applied
from streams.kafka_io import topic_names
from streams.settings import Settings

log = logging.getLogger("remedy.worker")


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with idempotence and acks=all set explicitly, not by default."""

    def _settings_extra(self):
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


# Faust builds its producer from the transport class; this is the one place we choose it.
faust_aiokafka.Transport.Producer = IdempotentProducer


def _incoming(event) -> Incoming:
    message = event.message
    timestamp = message.timestamp
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(round(timestamp * 1000)) if timestamp is not None else None,
    )


def build_app(settings: Settings, policy: Policy | None = None) -> faust.App:
    """The Faust application with its tables, agents and web views, wired to these settings.

    `policy` is the version in force at start (from the policy topic); the worker follows the
    topic and switches to every newer version without a restart.
    """
    names = topic_names(settings)
    policy_box = {"current": policy or settings.policy}
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        processing_guarantee="at_least_once",
        producer_acks=-1,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # We create every topic ourselves with explicit configs (see streams/topics.py).
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        broker_commit_interval=1.0,
        # A crashed worker's partitions move on after 10 s instead of Faust's default 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*names.inputs(), **raw)
    decisions_topic = app.topic(names.decisions, **raw)
    dead_letter_topic = app.topic(names.dead_letter, **raw)
    limit_checks_topic = app.topic(names.limit_checks, **raw)
    limit_results_topic = app.topic(names.limit_results, **raw)
    # Household and associate counters: one writer per scope key (the partition that owns it).
    scope_state = app.Table(
        "scope_state",
        partitions=settings.topic_partitions,
        use_partitioner=True,
        key_type=bytes,
        value_type=bytes,
    )
    customer_state = app.Table(
        "customer_state",
        partitions=settings.topic_partitions,
        use_partitioner=True,
        key_type=bytes,  # bytes types select Faust's "raw" serializer for the changelog
        value_type=bytes,
    )
    # One thread owns the ClickHouse client: chDB is embedded and calls must not overlap.
    clickhouse = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
    store_box: dict[str, Store] = {}

    def store() -> Store:
        if "store" not in store_box:
            created = Store(settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_attempts_max)
            created.migrate()
            store_box["store"] = created
        return store_box["store"]

    async def on_clickhouse(method: str, *args):
        def call():
            return getattr(store(), method)(*args)

        return await asyncio.get_running_loop().run_in_executor(clickhouse, call)

    async def send_all(sends) -> None:
        # Wait for every acknowledgement before state is saved: a decision must never be
        # remembered in the table and then lost on the way to the decision topic.
        pending = [await topic.send(key=key, value=value) for topic, key, value in sends]
        await asyncio.gather(*pending)

    @app.task
    async def follow_policy() -> None:
        # No consumer group: every worker reads every version, from the beginning.
        consumer = AIOKafkaConsumer(
            names.policy, bootstrap_servers=settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            async for message in consumer:
                try:
                    applied = decode_applied(message.value, message.offset)
                except RemedyLedgerError as error:
                    log.error("ignoring policy message at offset %s: %s", message.offset, error)
                    continue
                if applied.policy.version != policy_box["current"].version:
                    log.warning("policy %s in force (applied by %s: %s)", applied.policy.version, applied.author,
                                applied.reason)
                policy_box["current"] = applied.policy
        finally:
            await consumer.stop()

    @app.task
    async def open_store() -> None:
        await on_clickhouse("decision_count")

    async def warm_metadata() -> None:
        # The table's changelog partition is computed eagerly from producer metadata; a topic the
        # producer has not seen yet has none, so fetch it before the first write.
        producer = app.producer._ensure_producer()
        for topic in (names.customer_state_changelog, names.scope_state_changelog, names.decisions,
                      names.dead_letter, names.limit_checks, names.limit_results):
            await producer.partitions_for(topic)

    def outputs(result) -> list:
        """Everything a batch sends: decisions, limit checks (by scope) and dead letters."""
        sends = [
            (decisions_topic, d["customer_id"].encode(), schemas.encode("RemedyDecided", d)) for d in result.decisions
        ]
        for check in result.checks:
            topic = limit_results_topic if check["action"] == "RESULT" else limit_checks_topic
            sends.append((topic, scope_key_of(check).encode(), schemas.encode("LimitCheck", check)))
        sends += [(dead_letter_topic, d["key"], schemas.encode("DeadLetter", d)) for d in result.dead_letters]
        for letter in result.dead_letters:
            log.warning("dead-lettered %s[%s]@%s: %s", letter["source_topic"], letter["source_partition"],
                        letter["source_offset"], letter["reason"])
        return sends

    async def fold_and_emit(events, table, fold) -> None:
        """One batch through a fold: emit its outputs, wait for the broker, then save the states."""
        loader = lambda key: state_from_bytes(table.get(key.encode()))
        result = fold([_incoming(event) for event in events], loader, policy_box["current"], names)
        await send_all(outputs(result))
        for key, state in result.states.items():
            table[key.encode()] = state_to_bytes(state)

    @app.agent(inputs, concurrency=1, supervisor_strategy=CrashingSupervisor)
    async def decide(stream):
        await warm_metadata()
        async for events in stream.take_events(settings.decide_batch_max, within=settings.decide_batch_wait_ms / 1000):
            await fold_and_emit(events, customer_state, fold_batch)

    @app.agent(limit_checks_topic, concurrency=1, supervisor_strategy=CrashingSupervisor)
    async def limits(stream):
        await warm_metadata()
        async for events in stream.take_events(settings.decide_batch_max, within=settings.decide_batch_wait_ms / 1000):
            await fold_and_emit(events, scope_state, fold_scope_batch)

    @app.agent(decisions_topic, concurrency=1, supervisor_strategy=CrashingSupervisor)
    async def project(stream):
        wait_s = settings.project_batch_wait_ms / 1000
        async for events in stream.take_events(settings.project_batch_max, within=wait_s):
            batch = build_batch([_incoming(event) for event in events], names)
            if batch.dead_letters:
                await send_all([(dead_letter_topic, d["key"], schemas.encode("DeadLetter", d)) for d in batch.dead_letters])
            if batch.ledger_rows:
                await on_clickhouse("write_batch", batch)
                log.info("projected %d decisions (%s)", len(batch.ledger_rows), batch.token)

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "app": settings.app_id, "policy_version": policy_box["current"].version})

    def day_range(query) -> tuple:
        """The since/until dates of a finance query (InvariantViolation names a bad one)."""
        return parse_day(query.get("since"), "since"), parse_day(query.get("until"), "until")

    @app.page("/finance/totals")
    async def finance_totals(web, request):
        query = request.query
        try:
            since, until = day_range(query)
            result = await on_clickhouse("totals", since, until, query.get("by"))
        except InvariantViolation as error:
            return web.json({"error": str(error)}, status=400)
        return web.json(result)

    @app.page("/finance/decision-count")
    async def decision_count(web, request):
        return web.json({"decisions": await on_clickhouse("decision_count")})

    @app.page("/finance/customer")
    async def finance_customer(web, request):
        customer_id = request.query.get("id")
        if not customer_id:
            return web.json({"error": "id: the customer id is required"}, status=400)
        return web.json(await on_clickhouse("customer", customer_id))

    @app.page("/finance/associates")
    async def finance_associates(web, request):
        return web.json(await on_clickhouse("associates"))

    @app.page("/finance/daily")
    async def finance_daily(web, request):
        try:
            since, until = day_range(request.query)
        except InvariantViolation as error:
            return web.json({"error": str(error)}, status=400)
        return web.json(await on_clickhouse("daily_granted", since, until))

    @app.page("/finance/export")
    async def finance_export(web, request):
        query = request.query
        try:
            since, until = day_range(query)
            data = await on_clickhouse("export", query.get("format", "csv"), since, until)
        except InvariantViolation as error:
            return web.json({"error": str(error)}, status=400)
        return web.bytes(data, content_type="application/octet-stream")

    @app.page("/projections/audit")
    async def projections_audit(web, request):
        return web.json(await on_clickhouse("audit_snapshot"))

    # The rebuild runs inside the worker because embedded chDB lets only one process open the data
    # path; its chunks interleave with projection batches and queries on the ClickHouse thread.
    from projections.rebuild import progress_state, rebuild_in_worker

    rebuild_progress = progress_state()

    @app.page("/projections/rebuild")
    class ProjectionsRebuild(faust.web.View):
        async def get(self, request):
            return self.json(rebuild_progress)

        async def post(self, request):
            if rebuild_progress["state"] == "running":
                return self.json(rebuild_progress, status=409)
            rebuild_progress.update(progress_state(), state="running")
            asyncio.ensure_future(rebuild_in_worker(settings, on_clickhouse, rebuild_progress))
            return self.json(rebuild_progress, status=202)

    return app
