"""Batch loops on plain aiokafka: consume a batch, fold it, send the outputs, wait, save, commit.

Each loop is a thin shell like a Faust agent, with the order of effects spelled out:

1. `getmany` up to `batch_max` messages (waiting at most `batch_wait_ms` to fill a batch);
2. fold them through the core (`process`), which returns the messages to send and the states
   that changed;
3. send the outputs and the changed states (to a compacted changelog topic, on the partition the
   input came from) and wait until the broker acknowledged every one;
4. commit the input offsets.

A crash anywhere before 4 redelivers the batch; the core recognises what it already decided
(its state says so once 3 finished) and the projection deduplicates by decision id, so nothing is
lost or counted twice. A partition's state is restored from its changelog before the partition
is read (in `on_partitions_assigned`, which aiokafka runs before fetching), and a rebalance waits
for the batch in flight (the loop's lock), so a batch never straddles two owners in one process.

Why not Faust agents: a Faust no-op agent peaked at 9,981 events/s on this machine (below the
10,000 events/s target before any work is done), and in CI a Faust worker restarted after SIGKILL
stopped consuming some partitions for minutes. See docs/field-notes.md.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError

from streams.runtime.batch import Incoming
from streams.runtime.kafka_auth import aiokafka_options
from streams.runtime.kafka_io import RECORD_BATCH_LINGER_MS, RecordBatcher, idempotent_aio_producer
from streams.runtime.settings import KafkaConnection

log = logging.getLogger("remedy.loops")

# Session timeout: a crashed worker's partitions move on after 10 s (heartbeats every 3 s).
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 3_000
# A batch (fold + sends + acks) must finish within this or the member is considered stuck.
MAX_POLL_INTERVAL_MS = 300_000
# Longest an idle loop blocks in one getmany before looking again (keeps shutdown prompt).
IDLE_POLL_MS = 1_000
# Changelog records read per round while restoring a partition.
RESTORE_FETCH_MAX = 10_000
# Bytes per changelog partition per fetch while restoring: few round trips for a big state.
RESTORE_FETCH_BYTES_MAX = 8 << 20
# Longest a restore may take per partition before the worker gives up loudly.
RESTORE_TIMEOUT_S = 600


def new_producer(kafka: KafkaConnection) -> AIOKafkaProducer:
    """The worker's one producer: idempotent, acks from every in-sync replica, set explicitly."""
    return idempotent_aio_producer(kafka, "remedy-worker", linger_ms=RECORD_BATCH_LINGER_MS)


@dataclass
class Output:
    """What one batch produced: messages to send and state changes (key -> bytes) by partition."""

    sends: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    states: dict[int, dict[bytes, bytes]] = field(default_factory=dict)


# zlib level for states held in memory: 1 is 2.8x smaller than the JSON (1,370 -> 496 bytes per
# simulated customer) for ~18 us per write; higher levels gain under 6% more for more CPU.
STATE_COMPRESSION_LEVEL = 1


def held(value: bytes) -> bytes:
    """A state as this worker holds it in memory (the changelog keeps the plain JSON)."""
    return zlib.compress(value, STATE_COMPRESSION_LEVEL)


def unheld(value: bytes) -> bytes:
    """The inverse of `held`."""
    return zlib.decompress(value)


class PartitionState:
    """The state of the partitions this loop owns, in memory, backed by a compacted changelog.

    Values are held compressed (`held`): a million customers' states fit in well under 1 GB.
    """

    def __init__(self, changelog: str):
        self.changelog = changelog
        self.by_partition: dict[int, dict[bytes, bytes]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The saved state of `key` on `partition` (the changelog's bytes), or None."""
        value = self.by_partition.get(partition, {}).get(key)
        return unheld(value) if value is not None else None

    def keys(self) -> int:
        """How many keys are held (all owned partitions)."""
        return sum(len(values) for values in self.by_partition.values())

    async def restore(self, kafka: KafkaConnection, partitions: list[int]) -> None:
        """Read each partition's changelog from the beginning to its end offset now."""
        if not partitions:
            return
        consumer = AIOKafkaConsumer(
            **aiokafka_options(kafka), group_id=None, enable_auto_commit=False, client_id="remedy-restore",
            auto_offset_reset="earliest", max_partition_fetch_bytes=RESTORE_FETCH_BYTES_MAX,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.changelog, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            started = time.monotonic()
            for tp in tps:
                self.by_partition[tp.partition] = {}
            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                if time.monotonic() - started > RESTORE_TIMEOUT_S:
                    raise TimeoutError(f"restoring {self.changelog} took over {RESTORE_TIMEOUT_S}s")
                for tp, records in (await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=RESTORE_FETCH_MAX)).items():
                    values = self.by_partition[tp.partition]
                    for record in records:
                        if record.offset >= ends[tp]:
                            continue
                        if record.value is None:
                            values.pop(record.key, None)
                        else:
                            values[record.key] = held(record.value)
            log.info("restored %s partitions %s: %d keys in %.1fs", self.changelog, partitions,
                     sum(len(self.by_partition[p]) for p in partitions), time.monotonic() - started)
        finally:
            await consumer.stop()

    def drop(self, partitions: list[int]) -> None:
        """Forget partitions this loop no longer owns."""
        for partition in partitions:
            self.by_partition.pop(partition, None)

    def save(self, states: dict[int, dict[bytes, bytes]]) -> None:
        """Keep the states a batch changed (after the changelog acknowledged them)."""
        for partition, values in states.items():
            owned = self.by_partition.setdefault(partition, {})
            for key, value in values.items():
                owned[key] = held(value)


Process = Callable[[list[Incoming], PartitionState | None], Awaitable[Output]]

# Longest a partition's records wait for a co-partitioned topic that has data not fetched yet.
ALIGN_WAIT_MS_MAX = 1_000
# Bytes per partition per fetch (aiokafka's default is 1 MiB, about 8,700 of our events).
PARTITION_FETCH_BYTES_MAX = 4 << 20
# Records taken from the consumer ahead of processing, over all partitions.
FETCHED_AHEAD_MAX = 40_000
# Records buffered per topic-partition before its fetching pauses (bounds memory while a topic
# runs ahead of the others).
BUFFERED_PER_PARTITION_MAX = 20_000


class Aligner:
    """Buffers fetched records and releases co-partitioned ones in timestamp order across topics.

    A consumer fetches each topic-partition on its own, so during a catch-up one topic can run
    far ahead of another (a customer's requests read days of event time before the orders they
    name). Like Kafka Streams, a partition's records on the `aligned` topics are released only up
    to the oldest head among those topics; a topic with nothing buffered holds the others back
    while it still has data to fetch (at most ALIGN_WAIT_MS_MAX). Records of other topics (limit
    results: answers, not upstream events) are released at once.
    """

    def __init__(self, aligned: tuple[str, ...]):
        self.aligned = aligned
        self.buffers: dict[TopicPartition, collections.deque] = {}
        self.blocked_since: dict[int, float] = {}
        self.paused: set[TopicPartition] = set()
        self.waits_total = 0  # times a partition waited for a lagging topic (shown on /health)
        self.waited_s_total = 0.0

    def add(self, consumer: AIOKafkaConsumer, fetched: dict) -> int:
        """Buffer what a getmany returned; pause partitions whose buffer is full. Returns how many."""
        count = 0
        for tp, records in fetched.items():
            buffer = self.buffers.setdefault(tp, collections.deque())
            buffer.extend(records)
            count += len(records)
            if len(buffer) >= BUFFERED_PER_PARTITION_MAX and tp not in self.paused:
                consumer.pause(tp)
                self.paused.add(tp)
        return count

    def buffered(self) -> int:
        """Records buffered and not yet released."""
        return sum(len(buffer) for buffer in self.buffers.values())

    def drop(self, tps) -> None:
        """Forget revoked partitions (their next owner fetches from the committed offsets)."""
        for tp in tps:
            self.buffers.pop(tp, None)
            self.paused.discard(tp)
        self.blocked_since.clear()

    async def _lagging(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
        """True while `tp` has records on the broker that were not fetched yet (or it cannot tell)."""
        if tp not in consumer.assignment():
            return False
        highwater = consumer.highwater(tp)
        return highwater is None or await consumer.position(tp) < highwater

    async def take(self, consumer: AIOKafkaConsumer, limit: int) -> list:
        """Up to `limit` releasable records, in timestamp order per partition."""
        released: list = []
        partitions = sorted({tp.partition for tp, buffer in self.buffers.items() if buffer})
        for partition in partitions:
            if len(released) >= limit:
                break
            released += self._take_unaligned(partition, limit - len(released))
            released += await self._take_aligned(consumer, partition, limit - len(released))
        for tp in [tp for tp in self.paused if len(self.buffers.get(tp, ())) < BUFFERED_PER_PARTITION_MAX // 2]:
            consumer.resume(tp)
            self.paused.discard(tp)
        return released

    def _take_unaligned(self, partition: int, limit: int) -> list:
        out: list = []
        for tp, buffer in self.buffers.items():
            if tp.partition == partition and tp.topic not in self.aligned:
                while buffer and len(out) < limit:
                    out.append(buffer.popleft())
        return out

    async def _take_aligned(self, consumer: AIOKafkaConsumer, partition: int, limit: int) -> list:
        buffers = [self.buffers.get(TopicPartition(topic, partition)) or collections.deque() for topic in self.aligned]
        if not any(buffers):
            return []
        now = time.monotonic()
        waited_out = now - self.blocked_since.get(partition, now) > ALIGN_WAIT_MS_MAX / 1000
        lagging = {}  # aligned topic index -> still has unfetched records (asked when its buffer is empty)
        out: list = []
        while len(out) < limit:
            heads = [buffer for buffer in buffers if buffer]
            if not heads:
                break
            if not waited_out:
                for index, buffer in enumerate(buffers):
                    if not buffer and index not in lagging:
                        lagging[index] = await self._lagging(consumer, TopicPartition(self.aligned[index], partition))
                if any(lagging.get(index) for index, buffer in enumerate(buffers) if not buffer):
                    # An emptied topic may hold an older record not fetched yet: wait for it.
                    if partition not in self.blocked_since:
                        self.blocked_since[partition] = now
                        self.waits_total += 1
                    break
            oldest = min(heads, key=lambda buffer: buffer[0].timestamp)
            out.append(oldest.popleft())
        if out and partition in self.blocked_since:
            self.waited_s_total += now - self.blocked_since.pop(partition)
        return out


class _Rebalance(ConsumerRebalanceListener):
    """Drops and restores state around a rebalance.

    aiokafka logs a listener's exception and carries on consuming; a failed restore must not go
    unnoticed, so it is kept in `loop.failure` and the loop raises it before its next batch.
    """

    def __init__(self, loop: "BatchLoop"):
        self.loop = loop

    async def on_partitions_revoked(self, revoked):
        # Wait for the batch in flight: its sends and commit finish before anyone else reads on.
        async with self.loop.lock:
            await self.loop.settle_commit()
            self.loop.aligner.drop(revoked)
            if self.loop.state is not None:
                self.loop.state.drop(sorted({tp.partition for tp in revoked}))

    async def on_partitions_assigned(self, assigned):
        async with self.loop.lock:
            partitions = sorted({tp.partition for tp in assigned})
            self.loop.assigned = partitions
            try:
                if self.loop.state is not None:
                    missing = [p for p in partitions if p not in self.loop.state.by_partition]
                    await self.loop.state.restore(self.loop.kafka, missing)
            except BaseException as error:
                self.loop.failure = error
                raise
            log.info("%s: partitions %s assigned", self.loop.name, partitions)


class BatchLoop:
    """One consumer group over co-partitioned topics, processed in batches (see the module doc)."""

    def __init__(self, name: str, group_id: str, topics: tuple[str, ...], kafka: KafkaConnection,
                 producer: AIOKafkaProducer, process: Process, batch_max: int, batch_wait_ms: int,
                 changelog: str | None = None, aligned: tuple[str, ...] = ()):
        self.name = name
        self.group_id = group_id
        self.topics = topics
        self.kafka = kafka
        self.producer = producer
        self.process = process
        self.batch_max = batch_max
        self.batch_wait_ms = batch_wait_ms
        self.state = PartitionState(changelog) if changelog else None
        self.aligner = Aligner(aligned)
        self.lock = asyncio.Lock()
        self.assigned: list[int] = []
        self.failure: BaseException | None = None
        self._commit: asyncio.Future | None = None
        self.events_total = 0
        self.batches_total = 0

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **aiokafka_options(self.kafka),
            group_id=self.group_id,
            client_id=f"remedy-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_uncommitted",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            max_poll_records=self.batch_max,
            # Range assignment gives every member the same partition numbers of every topic:
            # co-partitioned inputs stay together (round robin would split a customer's topics).
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=max(1, min(self.batch_wait_ms, 500)),
            # Bigger fetches per partition: a catch-up needs fewer round trips per topic, so a
            # partition waits less often for one topic's next fetch (see Aligner).
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES_MAX,
        )

    async def _fill(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch until a batch is buffered or batch_wait_ms passed since records arrived."""
        idle_ms = self.batch_wait_ms if self.aligner.buffered() else IDLE_POLL_MS
        fetched = self.aligner.add(consumer, await consumer.getmany(timeout_ms=idle_ms, max_records=self.batch_max))
        # Take everything already fetched, so every partition's head is in view (aiokafka hands
        # out its fetched records partition by partition, and fetches a partition again only
        # once its records were handed out).
        while fetched and self.aligner.buffered() < FETCHED_AHEAD_MAX:
            more = self.aligner.add(consumer, await consumer.getmany(timeout_ms=0, max_records=self.batch_max))
            if not more:
                break
        if fetched:
            deadline = time.monotonic() + self.batch_wait_ms / 1000
            while self.aligner.buffered() < self.batch_max:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    break
                self.aligner.add(consumer, await consumer.getmany(timeout_ms=remaining_ms, max_records=self.batch_max))

    async def run(self) -> None:
        """Consume until cancelled; any unexpected error propagates (the worker crashes loudly)."""
        consumer = self._consumer()
        consumer.subscribe(list(self.topics), listener=_Rebalance(self))
        await consumer.start()
        try:
            while True:
                await self._fill(consumer)
                if self.failure is not None:
                    raise RuntimeError(f"{self.name}: restoring state failed") from self.failure
                # Release and handle under the lock: a rebalance never splits them.
                async with self.lock:
                    records = await self.aligner.take(consumer, self.batch_max)
                    if records:
                        await self._handle(consumer, records)
        finally:
            try:
                await self.settle_commit()
            finally:
                await consumer.stop()

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, offsets: dict) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as error:
            # The group rebalanced mid-batch: the new owner reads these again and the core
            # recognises them (their effects are already in the changelog).
            log.warning("%s: commit after a rebalance failed, the batch will be seen again: %s", self.name, error)

    async def settle_commit(self) -> None:
        """Wait for the commit in flight, if any (its failure, other than a rebalance, propagates)."""
        if self._commit is not None:
            commit, self._commit = self._commit, None
            await commit

    async def _handle(self, consumer: AIOKafkaConsumer, records: list) -> None:
        if self.failure is not None:
            raise RuntimeError(f"{self.name}: restoring state failed; not processing without it") from self.failure
        owned = set(consumer.assignment())
        # Records are released under the lock and a revocation drops its buffers under it too, so
        # this only guards against an assignment aiokafka changed without calling the listener.
        records = [r for r in records if TopicPartition(r.topic, r.partition) in owned]
        if not records:
            return
        messages = [Incoming(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in records]
        output = await self.process(messages, self.state)
        batcher = RecordBatcher(self.producer)
        for topic, key, value in output.sends:
            await batcher.add(topic, key, value)
        if self.state is not None:
            for partition, values in output.states.items():
                for key, value in values.items():
                    await batcher.add(self.state.changelog, key, value, partition=partition)
        # Every acknowledgement before state is kept and offsets move: a decision is never
        # remembered and then lost on its way to the decision topic.
        await batcher.flush()
        if self.state is not None:
            self.state.save(output.states)
        offsets = {}
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        # The commit runs while the next batch is fetched and folded (its outputs are already
        # acknowledged); one commit at a time, in order, and a rebalance waits for it.
        await self.settle_commit()
        self._commit = asyncio.ensure_future(self._commit_offsets(consumer, offsets))
        self.events_total += len(records)
        self.batches_total += 1
