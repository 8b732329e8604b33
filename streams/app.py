"""The composition root of the worker: settings, clients, the Faust app, its loops and web views.

The Faust app hosts the worker: its lifecycle, signals, the policy follower and the web views.
The three processing loops (decide, limits, project) are batch loops on plain aiokafka
(streams/loops.py) started as one app task; a loop that fails crashes the whole worker instead
of skipping its batch, and unacknowledged events are redelivered on restart. Loops are thin
shells: they hand consumed messages to the core through `fold_batch`, send what it returns and
save state. No business rule lives here.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiokafka import AIOKafkaConsumer

import schemas
from projections.projector import build_batch
from projections.store import Store, parse_day
from streams.batch import Incoming, fold_batch, fold_scope_batch, scope_key_of, state_from_bytes, state_to_bytes
from streams.errors import InvariantViolation, RemedyLedgerError
from streams.policy import Policy
from streams.policy_log import decode_applied
from streams.kafka_io import topic_names, worker_groups
from streams.loops import BatchLoop, Output, PartitionState, new_producer
from streams.settings import Settings

log = logging.getLogger("remedy.worker")

# On SIGTERM, longest the worker waits for the batches in flight before it stops anyway
# (an unfinished batch is not committed and is redelivered on restart).
STOP_BATCH_WAIT_S = 20


def _key_partitions(messages: list[Incoming]) -> dict[bytes, int]:
    """The partition each message key arrived on (every key lives on one partition)."""
    return {message.key: message.partition for message in messages if message.key is not None}


def _json_default(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=_json_default))


class Worker:
    """The worker: three batch loops, the policy follower, the ClickHouse thread and the web views.

    `policy` is the version in force at start (from the policy topic); the worker follows the
    topic and switches to every newer version without a restart.
    """

    def __init__(self, settings: Settings, policy: Policy | None = None):
        self.settings = settings
        self.names = topic_names(settings)
        self.policy = policy or settings.policy
        # One thread owns the ClickHouse client: chDB is embedded and calls must not overlap.
        self.clickhouse = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.store: Store | None = None
        self.loops: dict[str, BatchLoop] = {}
        from projections.rebuild import progress_state

        self.rebuild_progress = progress_state()

    # ClickHouse -------------------------------------------------------------------------------

    def _store(self) -> Store:
        if self.store is None:
            settings = self.settings
            store = Store(settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_attempts_max)
            store.migrate()
            self.store = store
        return self.store

    async def on_clickhouse(self, method: str, *args):
        """Run a Store method on the ClickHouse thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self.clickhouse, lambda: getattr(self._store(), method)(*args))

    # Loops ------------------------------------------------------------------------------------

    def _outputs(self, result) -> list:
        """Everything a batch sends: decisions, limit checks (by scope) and dead letters."""
        names = self.names
        sends = [(names.decisions, d["customer_id"].encode(), schemas.encode("RemedyDecided", d)) for d in result.decisions]
        for check in result.checks:
            topic = names.limit_results if check["action"] == "RESULT" else names.limit_checks
            sends.append((topic, scope_key_of(check).encode(), schemas.encode("LimitCheck", check)))
        return sends + self._dead_letter_sends(result.dead_letters)

    def _dead_letter_sends(self, letters: list[dict]) -> list:
        for letter in letters:
            log.warning("dead-lettered %s[%s]@%s: %s", letter["source_topic"], letter["source_partition"],
                        letter["source_offset"], letter["reason"])
        return [(self.names.dead_letter, d["key"], schemas.encode("DeadLetter", d)) for d in letters]

    def _folding(self, fold):
        """A loop's process step: fold a batch against the owned state; return sends and new states."""

        async def process(messages: list[Incoming], state: PartitionState) -> Output:
            partition_of = _key_partitions(messages)

            def load(key: str):
                encoded = key.encode()
                return state_from_bytes(state.get(partition_of[encoded], encoded))

            result = fold(messages, load, self.policy, self.names)
            output = Output(sends=self._outputs(result))
            for key, value in result.states.items():
                encoded = key.encode()
                output.states.setdefault(partition_of[encoded], {})[encoded] = state_to_bytes(value)
            return output

        return process

    async def _project(self, messages: list[Incoming], state: None) -> Output:
        def build_and_write():
            # Decoding and row building run on the ClickHouse thread too, so the event loop (and
            # the decide loop's latency) does not wait for them.
            batch = build_batch(messages, self.names)
            if batch.ledger_rows:
                # Synchronous insert with a dedup token: acknowledged before the offsets move.
                self._store().write_batch(batch)
            return batch

        batch = await asyncio.get_running_loop().run_in_executor(self.clickhouse, build_and_write)
        if batch.ledger_rows:
            log.info("projected %d decisions (%s)", len(batch.ledger_rows), batch.token)
        return Output(sends=self._dead_letter_sends(batch.dead_letters))

    def _build_loops(self, producer) -> dict[str, BatchLoop]:
        settings, names = self.settings, self.names
        groups = {group.rsplit("-", 1)[1]: group for group, _ in worker_groups(settings)}
        bootstrap = settings.kafka_bootstrap
        return {
            "decide": BatchLoop("decide", groups["decide"], names.inputs(), bootstrap, producer,
                                self._folding(fold_batch), settings.decide_batch_max, settings.decide_batch_wait_ms,
                                changelog=names.customer_state_changelog,
                                aligned=(names.orders, names.incidents, names.requests)),
            "limits": BatchLoop("limits", groups["limits"], (names.limit_checks,), bootstrap, producer,
                                self._folding(fold_scope_batch), settings.decide_batch_max,
                                settings.decide_batch_wait_ms, changelog=names.scope_state_changelog),
            "project": BatchLoop("project", groups["project"], (names.decisions,), bootstrap, producer,
                                 self._project, settings.project_batch_max, settings.project_batch_wait_ms),
        }

    async def _follow_policy(self) -> None:
        # No consumer group: every worker reads every version, from the beginning.
        consumer = AIOKafkaConsumer(
            self.names.policy, bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, client_id="remedy-policy",
        )
        await consumer.start()
        try:
            async for message in consumer:
                try:
                    applied = decode_applied(message.value, message.offset)
                except RemedyLedgerError as error:
                    log.error("ignoring policy message at offset %s: %s", message.offset, error)
                    continue
                if applied.policy.version != self.policy.version:
                    log.warning("policy %s in force (applied by %s: %s)", applied.policy.version, applied.author,
                                applied.reason)
                self.policy = applied.policy
        finally:
            await consumer.stop()

    # Running ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (returns 0) or until a loop fails (returns 1, loudly)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.on_clickhouse("decision_count")  # open (and migrate) the store before serving
        runner = web.AppRunner(self.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.web_host, self.settings.web_port).start()
        producer = new_producer(self.settings.kafka_bootstrap)
        await producer.start()
        self.loops = self._build_loops(producer)
        tasks = {asyncio.ensure_future(loop.run()): name for name, loop in self.loops.items()}
        tasks[asyncio.ensure_future(self._follow_policy())] = "policy"
        stopping = asyncio.ensure_future(stop.wait())
        log.warning("worker ready on %s (web %s:%s)", self.settings.kafka_bootstrap, self.settings.web_host,
                    self.settings.web_port)
        status = 0
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopping:
                    # A loop never ends by itself: this is a failure. Crash loudly; the batch in
                    # flight was not committed and is redelivered on restart.
                    log.critical("worker loop %s stopped: %r", tasks[task], task.exception(),
                                 exc_info=task.exception())
                    status = 1
        finally:
            stopping.cancel()
            if status == 0:
                # Let each loop finish the batch in flight (its sends, acks and commit) first.
                try:
                    await asyncio.wait_for(asyncio.gather(*(loop.lock.acquire() for loop in self.loops.values())),
                                           STOP_BATCH_WAIT_S)
                    await asyncio.wait_for(asyncio.gather(*(loop.settle_commit() for loop in self.loops.values())),
                                           STOP_BATCH_WAIT_S)
                except asyncio.TimeoutError:
                    log.warning("a batch did not finish in %ss; it will be redelivered", STOP_BATCH_WAIT_S)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
            await runner.cleanup()
            if self.store is not None:
                await asyncio.get_running_loop().run_in_executor(self.clickhouse, self.store.close)
            self.clickhouse.shutdown(wait=True)
        log.warning("worker stopped (%s)", "failed" if status else "signal")
        return status

    # Web views --------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """Health, finance queries, the audit snapshot and the rebuild, over HTTP."""
        app = web.Application()
        app.add_routes([
            web.get("/health", self.health),
            web.get("/finance/totals", self.finance_totals),
            web.get("/finance/decision-count", self.decision_count),
            web.get("/finance/customer", self.finance_customer),
            web.get("/finance/associates", self.finance_associates),
            web.get("/finance/daily", self.finance_daily),
            web.get("/finance/export", self.finance_export),
            web.get("/projections/audit", self.projections_audit),
            web.get("/projections/rebuild", self.rebuild_status),
            web.post("/projections/rebuild", self.rebuild_start),
        ])
        return app

    async def health(self, request):
        return _json({
            "status": "ok", "app": self.settings.app_id, "policy_version": self.policy.version,
            "loops": {name: {"partitions": loop.assigned, "events": loop.events_total, "batches": loop.batches_total,
                             "state_keys": loop.state.keys() if loop.state else None,
                             "buffered": loop.aligner.buffered(), "aligned_waits": loop.aligner.waits_total,
                             "aligned_waited_s": round(loop.aligner.waited_s_total, 3)}
                      for name, loop in self.loops.items()},
        })

    @staticmethod
    def _day_range(query) -> tuple:
        """The since/until dates of a finance query (InvariantViolation names a bad one)."""
        return parse_day(query.get("since"), "since"), parse_day(query.get("until"), "until")

    async def finance_totals(self, request):
        query = request.query
        try:
            since, until = self._day_range(query)
            result = await self.on_clickhouse("totals", since, until, query.get("by"))
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(result)

    async def decision_count(self, request):
        return _json({"decisions": await self.on_clickhouse("decision_count")})

    async def finance_customer(self, request):
        customer_id = request.query.get("id")
        if not customer_id:
            return _json({"error": "id: the customer id is required"}, status=400)
        return _json(await self.on_clickhouse("customer", customer_id))

    async def finance_associates(self, request):
        return _json(await self.on_clickhouse("associates"))

    async def finance_daily(self, request):
        try:
            since, until = self._day_range(request.query)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(await self.on_clickhouse("daily_granted", since, until))

    async def finance_export(self, request):
        query = request.query
        try:
            since, until = self._day_range(query)
            data = await self.on_clickhouse("export", query.get("format", "csv"), since, until)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return web.Response(body=data, content_type="application/octet-stream")

    async def projections_audit(self, request):
        return _json(await self.on_clickhouse("audit_snapshot"))

    # The rebuild runs inside the worker because embedded chDB lets only one process open the data
    # path; its chunks interleave with projection batches and queries on the ClickHouse thread.
    async def rebuild_status(self, request):
        return _json(self.rebuild_progress)

    async def rebuild_start(self, request):
        from projections.rebuild import progress_state, rebuild_in_worker

        if self.rebuild_progress["state"] == "running":
            return _json(self.rebuild_progress, status=409)
        self.rebuild_progress.update(progress_state(), state="running")
        asyncio.ensure_future(rebuild_in_worker(self.settings, self.on_clickhouse, self.rebuild_progress))
        return _json(self.rebuild_progress, status=202)
