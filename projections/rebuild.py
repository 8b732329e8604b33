"""Reading the decision topic from the beginning, and the projection rebuild that replays it.

A rebuild fills fresh tables (`decisions_v2_rebuild`, `postings_v2_rebuild`) from the decision
topic, catches them up with whatever the live projector wrote meanwhile, and exchanges them
with the live tables (`Store.rebuild_swap`). Queries keep reading the live tables until the
exchange. With embedded chDB the worker owns the data path, so the worker runs the rebuild
(POST /projections/rebuild) between its own projection batches and the CLI shows the progress;
with no worker running, or with a ClickHouse server, the CLI runs it itself.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from kafka import KafkaConsumer, TopicPartition

from projections.projector import build_batch
from projections.store import REBUILD_SUFFIX
from streams.runtime.batch import Incoming
from streams.errors import TransientError
from streams.runtime.kafka_io import topic_names
from streams.runtime.kafka_auth import kafka_python_options
from streams.runtime.privacy import erasure_for
from streams.runtime.settings import Settings

# Decisions per rebuild insert: within ClickHouse's preferred 10k-100k rows, and short enough
# that the worker's projection batches and finance queries wait at most about a second.
REBUILD_CHUNK_MAX = 20_000
# Longest a read of the decision topic may go without receiving anything before it gives up.
LOG_STALL_S_MAX = 60
# Longest one poll of the topic blocks.
POLL_TIMEOUT_MS = 500


class DecisionLog:
    """The decision topic from its beginning up to the end offsets seen when it was opened."""

    def __init__(self, settings: Settings):
        self.topic = topic_names(settings).decisions
        self.consumer = KafkaConsumer(
            **kafka_python_options(settings.kafka), enable_auto_commit=False, group_id=None,
            client_id="remedy-ledger-audit",
        )
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            self.consumer.close()
            raise TransientError(f"topic {self.topic} not found on {settings.kafka}")
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)
        self.begin = self.consumer.beginning_offsets(self.partitions)
        self.end = self.consumer.end_offsets(self.partitions)
        self.total = sum(self.end[tp] - self.begin[tp] for tp in self.partitions)
        self.read = 0
        # Highest offset read per partition.
        self.positions: dict[int, int] = {}

    def done(self) -> bool:
        """True once every partition has been read up to the end offsets of the snapshot."""
        return all(self.consumer.position(tp) >= self.end[tp] for tp in self.partitions)

    def chunk(self, messages_max: int = REBUILD_CHUNK_MAX) -> list[Incoming]:
        """The next messages (at most messages_max) in topic order per partition; [] at the end."""
        out: list[Incoming] = []
        stalled_since = time.monotonic()
        while len(out) < messages_max and not self.done():
            polled = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=messages_max - len(out))
            if not polled:
                if time.monotonic() - stalled_since > LOG_STALL_S_MAX:
                    raise TransientError(f"reading {self.topic}: nothing received for {LOG_STALL_S_MAX}s")
                continue
            stalled_since = time.monotonic()
            for tp, records in polled.items():
                for record in records:
                    if record.offset >= self.end[tp]:
                        continue  # newer than the snapshot: the live projector handles it
                    out.append(Incoming(topic=record.topic, partition=record.partition, offset=record.offset,
                                        key=record.key, value=record.value, timestamp_ms=record.timestamp))
                    self.positions[record.partition] = record.offset
        self.read += len(out)
        return out

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()


def new_rebuild_id() -> str:
    """An id for a rebuild: when it started (UTC)."""
    return "rebuild-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def progress_state() -> dict:
    """The progress document the worker serves and the CLI draws: idle until a rebuild starts."""
    return {"state": "idle", "done": 0, "total": 0, "rebuild_id": None, "elapsed_s": 0.0, "result": None, "error": None}


def rebuild_direct(store, settings: Settings, progress) -> dict:
    """Rebuild in this process (no worker owns the store); progress(done, total) after every chunk."""
    names = topic_names(settings)
    rebuild_id, started = new_rebuild_id(), datetime.now(timezone.utc)
    log = DecisionLog(settings)
    try:
        store.rebuild_begin()
        progress(0, log.total)
        while chunk := log.chunk():
            # Erasures are read again for every chunk: one made during the rebuild applies to it too.
            erasure = erasure_for(settings, store.erased_pseudonyms())
            store.write_batch(build_batch(chunk, names, erasure), REBUILD_SUFFIX)
            progress(log.read, log.total)
        return store.rebuild_swap(log.positions, rebuild_id, started)
    finally:
        log.close()


async def rebuild_in_worker(settings: Settings, on_clickhouse, state: dict) -> None:
    """The worker's rebuild: Kafka reads on a thread, each chunk written on the ClickHouse thread.

    Projection batches and finance queries interleave with the chunks on the ClickHouse thread,
    so queries keep answering (from the live tables) while the rebuild runs.
    """
    loop = asyncio.get_running_loop()
    names = topic_names(settings)
    started_monotonic = time.monotonic()
    rebuild_id, started = new_rebuild_id(), datetime.now(timezone.utc)
    state.update(progress_state(), state="running", rebuild_id=rebuild_id)
    log = None
    try:
        log = await loop.run_in_executor(None, DecisionLog, settings)
        state["total"] = log.total
        await on_clickhouse("rebuild_begin")
        while chunk := await loop.run_in_executor(None, log.chunk, REBUILD_CHUNK_MAX):
            erasure = erasure_for(settings, await on_clickhouse("erased_pseudonyms"))
            await on_clickhouse("write_batch", build_batch(chunk, names, erasure), REBUILD_SUFFIX)
            state.update(done=log.read, elapsed_s=round(time.monotonic() - started_monotonic, 2))
        result = await on_clickhouse("rebuild_swap", dict(log.positions), rebuild_id, started)
        state.update(state="done", result=result, elapsed_s=round(time.monotonic() - started_monotonic, 2))
    except (TransientError, OSError) as error:
        state.update(state="failed", error=str(error))
    except Exception as error:  # Reported to the CLI, then re-raised: a failed rebuild must be loud.
        state.update(state="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        if log is not None:
            await loop.run_in_executor(None, log.close)
