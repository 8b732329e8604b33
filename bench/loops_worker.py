"""The benchmark's hand-written ceiling: the former loop-based worker, running today's core.

    python bench/loops_worker.py [--loglevel warning]      # the same REMEDY_* settings as `remedy-ledger worker`

This is the Worker that `remedy-ledger worker` ran before the Faust agents (streams/app.py at
2daf0bf), with its imports moved to the new layout: three batch loops on plain aiokafka
(bench/loops.py) around the same `fold_batch` / `fold_scope_batch` / `build_batch` steps the Faust
agents run, the policy follower, the ClickHouse thread and the worker's web views
(streams/runtime/web.py; /health shows "loops" instead of "agents"). bench/run.py measures it end
to end as the "loops ceiling": what the same core reaches without Faust.

Two deliberate differences from the old worker, both to keep it apart from a Faust worker on the
same prefix:

- its application id is `<prefix>-loops` (the Faust worker's is `<prefix>-worker`), so its three
  consumer groups are `<prefix>-loops-decide`, `-limits` and `-project` (see `loop_groups`) and
  its changelogs `<prefix>-loops-customer_state-changelog` / `-scope_state-changelog`. The
  loops write the plain state JSON to their changelog; the Faust agents write state + outbox
  (streams/runtime/state.py), so the two must never share one;
- nothing else: same batch bounds (REMEDY_DECIDE_BATCH_MAX, ...), same producer, same steps.

With embedded chDB it opens `<REMEDY_DATA_DIR>/clickhouse`: do not point it at a data directory
a running worker uses.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# `python bench/loops_worker.py` puts bench/ first on sys.path (for `loops`); the project itself
# comes from PYTHONPATH (bench/run.py sets it to the tree measured) or, failing that, this checkout.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

import schemas  # noqa: E402
from loops import BatchLoop, Output, PartitionState, new_producer  # noqa: E402  (bench/loops.py)
from projections.projector import build_batch  # noqa: E402
from projections.store import Store  # noqa: E402
from streams.core.policy import Policy  # noqa: E402
from streams.errors import RemedyLedgerError  # noqa: E402
from streams.runtime.batch import (  # noqa: E402
    Incoming, fold_batch, fold_scope_batch, scope_key_of, state_from_bytes, state_to_bytes,
)
from streams.runtime.kafka_auth import aiokafka_options  # noqa: E402
from streams.runtime.kafka_io import topic_names  # noqa: E402
from streams.runtime.policy_log import decode_applied  # noqa: E402
from streams.runtime.settings import Settings, load_settings  # noqa: E402
from streams.runtime.web import WebViews  # noqa: E402

log = logging.getLogger("remedy.loops_worker")

# On SIGTERM, longest the worker waits for the batches in flight before it stops anyway
# (an unfinished batch is not committed and is redelivered on restart).
STOP_BATCH_WAIT_S = 20


@dataclasses.dataclass(frozen=True)
class LoopsSettings(Settings):
    """The worker's settings under the loops' own application id (`<prefix>-loops`)."""

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}-loops"


def loops_settings(settings: Settings) -> LoopsSettings:
    return LoopsSettings(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})


def loop_groups(settings: Settings) -> list[tuple[str, list[str]]]:
    """(consumer group, topics) of each loop: decide, limits and project (the Faust worker has one group)."""
    settings = settings if isinstance(settings, LoopsSettings) else loops_settings(settings)
    names = topic_names(settings)
    return [
        (f"{settings.app_id}-decide", list(names.inputs())),
        (f"{settings.app_id}-limits", [names.limit_checks]),
        (f"{settings.app_id}-project", [names.decisions]),
    ]


def _key_partitions(messages: list[Incoming]) -> dict[bytes, int]:
    """The partition each message key arrived on (every key lives on one partition)."""
    return {message.key: message.partition for message in messages if message.key is not None}


class LoopsWorker:
    """Three batch loops, the policy follower, the ClickHouse thread and the web views.

    `policy` is the version in force at start (from the policy topic); the worker follows the
    topic and switches to every newer version without a restart.
    """

    def __init__(self, settings: Settings, policy: Policy | None = None):
        self.settings = loops_settings(settings)
        self.names = topic_names(self.settings)
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
        groups = {group.rsplit("-", 1)[1]: group for group, _ in loop_groups(settings)}
        kafka = settings.kafka
        return {
            "decide": BatchLoop("decide", groups["decide"], names.inputs(), kafka, producer,
                                self._folding(fold_batch), settings.decide_batch_max, settings.decide_batch_wait_ms,
                                changelog=names.customer_state_changelog,
                                aligned=(names.orders, names.incidents, names.requests)),
            "limits": BatchLoop("limits", groups["limits"], (names.limit_checks,), kafka, producer,
                                self._folding(fold_scope_batch), settings.decide_batch_max,
                                settings.decide_batch_wait_ms, changelog=names.scope_state_changelog),
            "project": BatchLoop("project", groups["project"], (names.decisions,), kafka, producer,
                                 self._project, settings.project_batch_max, settings.project_batch_wait_ms),
        }

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
                    log.error("ignoring policy message at offset %s: %s", message.offset, error)
                    continue
                if applied.policy.version != self.policy.version:
                    log.warning("policy %s in force (applied by %s: %s)", applied.policy.version, applied.author,
                                applied.reason)
                self.policy = applied.policy
        finally:
            await consumer.stop()

    def status(self) -> dict:
        """What /health shows: per loop its partitions, events, batches, state keys and alignment waits."""
        return {
            "status": "ok", "app": self.settings.app_id, "runtime": "hand-written aiokafka loops (bench/loops.py)",
            "policy_version": self.policy.version,
            "loops": {name: {"partitions": loop.assigned, "events": loop.events_total, "batches": loop.batches_total,
                             "state_keys": loop.state.keys() if loop.state else None,
                             "buffered": loop.aligner.buffered(), "aligned_waits": loop.aligner.waits_total,
                             "aligned_waited_s": round(loop.aligner.waited_s_total, 3)}
                      for name, loop in self.loops.items()},
        }

    # Running ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (returns 0) or until a loop fails (returns 1, loudly)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.on_clickhouse("decision_count")  # open (and migrate) the store before serving
        runner = web.AppRunner(WebViews(self).app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.web_host, self.settings.web_port).start()
        producer = new_producer(self.settings.kafka)
        await producer.start()
        self.loops = self._build_loops(producer)
        tasks = {asyncio.ensure_future(loop.run()): name for name, loop in self.loops.items()}
        tasks[asyncio.ensure_future(self._follow_policy())] = "policy"
        stopping = asyncio.ensure_future(stop.wait())
        log.warning("loops worker ready on %s (web %s:%s)", self.settings.kafka, self.settings.web_host,
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
        log.warning("loops worker stopped (%s)", "failed" if status else "signal")
        return status


def main(argv: list[str] | None = None) -> int:
    """What `remedy-ledger worker` does (topics, store, policy in force), then the loops instead of the agents."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLogger().level))
    from streams.runtime.kafka_io import ensure_topics
    from streams.runtime.policy_log import in_force

    try:
        settings = loops_settings(load_settings())
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        created = ensure_topics(settings)  # the project's topics and the loops' own changelogs
        if created:
            print(f"created topics: {', '.join(created)}", flush=True)
        if not settings.embedded_clickhouse:
            store = Store(settings.clickhouse_dsn, settings.clickhouse_database)
            store.migrate()
            store.close()
        applied = in_force(settings)
        return asyncio.run(LoopsWorker(settings, applied.policy if applied else settings.policy).run())
    except RemedyLedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
