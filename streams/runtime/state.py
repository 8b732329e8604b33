"""Partition-owned state in memory, backed by a compacted changelog that doubles as an outbox.

Exactly-once effects without Kafka transactions (docs/exactly-once.md). For every batch an agent:

1. folds the batch through the pure core: a new state per key and the messages each key emits;
2. writes each changed key's changelog record: the state, plus its **outbox** (the messages that
   key's events emitted in this batch), and waits for every acknowledgement;
3. sends the outbox messages and waits for every acknowledgement;
4. acks the input events (Faust commits them later).

The state is durable before any of its effects, and the effects travel with it. A crash before 2
finished redelivers the inputs to the old state, which decides them afresh (nothing of the first
attempt left the process). A crash after 2 restores the new state with its outbox and re-sends
the outbox, byte for byte, before reading on: the redelivered inputs then find their effects in
the state and emit nothing new. So every effect is sent at least once, always with the same
content, and every sink keys on ids (decision ids, check event ids): exactly once in effect.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.runtime.kafka_auth import aiokafka_options
from streams.runtime.settings import KafkaConnection

log = logging.getLogger("remedy.state")

# Changelog records read per round while restoring a partition.
RESTORE_FETCH_MAX = 10_000
# Bytes per changelog partition per fetch while restoring: few round trips for a big state.
RESTORE_FETCH_BYTES_MAX = 8 << 20
# Longest a restore may take per partition set before the worker gives up loudly.
RESTORE_TIMEOUT_S = 600
# Longest one restore poll blocks.
RESTORE_POLL_MS = 1_000
# Progress line every this many changelog records while restoring.
RESTORE_PROGRESS_EVERY = 200_000
# zlib level for states held in memory: level 1 is 2.8x smaller than the JSON for ~18 us a write;
# higher levels gain under 6% more for more CPU.
STATE_COMPRESSION_LEVEL = 1


@dataclass(frozen=True)
class OutboxEntry:
    """One message a key's events emitted: where it goes and its exact bytes."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None  # None: murmur2 of the key, as every client's default partitioner


def held(value: bytes) -> bytes:
    """A state as a worker holds it in memory (the changelog keeps the plain JSON)."""
    return zlib.compress(value, STATE_COMPRESSION_LEVEL)


def unheld(value: bytes) -> bytes:
    """The inverse of `held`."""
    return zlib.decompress(value)


@dataclass(frozen=True)
class Standing:
    """An outbox found on restore, with the input offsets its batch ran through on its partition."""

    partition: int
    through: dict[str, int]  # input topic -> the offset after the batch's last event there
    entries: list[OutboxEntry]


def changelog_value(state_json: bytes, outbox: list[OutboxEntry], through: dict[str, int] | None = None) -> bytes:
    """A changelog record: the plain state JSON, or {"v": 2, "through", "outbox", "state"} when it
    emitted something (`through`: the input offsets the batch ran through on this partition)."""
    if not outbox:
        return state_json
    entries = [[e.topic, base64.b64encode(e.key).decode() if e.key is not None else None,
                base64.b64encode(e.value).decode()] for e in outbox]
    return (b'{"v":2,"through":' + json.dumps(through or {}, separators=(",", ":"), sort_keys=True).encode()
            + b',"outbox":' + json.dumps(entries, separators=(",", ":")).encode() + b',"state":' + state_json + b"}")


def split_changelog_value(value: bytes) -> tuple[bytes, list[OutboxEntry], dict[str, int]]:
    """(state JSON, outbox, through) of a changelog record; a plain state has an empty outbox."""
    if not value.startswith(b'{"v":2,'):
        return value, [], {}
    document = json.loads(value)
    outbox = [OutboxEntry(topic, base64.b64decode(key) if key is not None else None, base64.b64decode(data))
              for topic, key, data in document["outbox"]]
    return json.dumps(document["state"], separators=(",", ":")).encode(), outbox, document.get("through", {})


class PartitionState:
    """The state of the partitions an agent owns, in memory (compressed), backed by its changelog."""

    def __init__(self, changelog: str, kafka: KafkaConnection, client_options: dict | None = None,
                 index: Callable[[bytes, bytes], object] | None = None):
        self.changelog = changelog
        # Called with (key, state JSON) for every restored record; what it returns for a key's
        # last record is handed back by `restore` (the decide agent finds parked customers so).
        self.index = index
        self.kafka = kafka
        self.client_options = client_options or {}
        self.by_partition: dict[int, dict[bytes, bytes]] = {}
        # partition -> times dropped: a restore keeps only the partitions not dropped while it read
        # (a rebalance can take a partition away during a restore no input event waits for).
        self.drops: dict[int, int] = {}
        self.restores_total = 0
        self.restored_keys_total = 0
        self.restore_seconds_total = 0.0

    def owned(self, partition: int) -> bool:
        """True when this partition's state is in memory."""
        return partition in self.by_partition

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The saved state JSON of `key` on `partition`, or None."""
        value = self.by_partition.get(partition, {}).get(key)
        return unheld(value) if value is not None else None

    def partition_of(self, key: bytes) -> int:
        """The owned partition that holds `key` (KeyError if none does)."""
        for partition, values in self.by_partition.items():
            if key in values:
                return partition
        raise KeyError(f"{key!r} is not held on any owned partition of {self.changelog}")

    def keys(self) -> int:
        """How many keys are held (all owned partitions)."""
        return sum(len(values) for values in self.by_partition.values())

    def drop(self, partitions) -> None:
        """Forget partitions this worker no longer owns (their next owner restores them)."""
        for partition in partitions:
            self.by_partition.pop(partition, None)
            self.drops[partition] = self.drops.get(partition, 0) + 1

    def save(self, partition: int, key: bytes, state_json: bytes) -> None:
        """Keep a state the changelog acknowledged."""
        self.by_partition.setdefault(partition, {})[key] = held(state_json)

    def delete(self, partition: int, key: bytes) -> None:
        """Forget a key whose tombstone the changelog acknowledged."""
        self.by_partition.get(partition, {}).pop(key, None)

    async def restore(self, partitions: list[int]) -> tuple[list[Standing], dict[tuple[int, bytes], object]]:
        """Read each partition's changelog to its end offset now; returns the outboxes still standing
        (the shell re-sends those whose batch was not committed) and the index of the restored keys
        ((partition, key) -> what `index` returned, when not None).

        A partition dropped while it was read (revoked by a rebalance) is not kept, nor are its
        outboxes and index: what was read may be stale by the time it is given back, so it is read
        again then. Bounded by RESTORE_TIMEOUT_S and logged with its size and duration.
        """
        indexed: dict[tuple[int, bytes], object] = {}
        if not partitions:
            return [], indexed
        drops_before = {p: self.drops.get(p, 0) for p in partitions}
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.kafka), group_id=None, enable_auto_commit=False, client_id="remedy-restore",
            auto_offset_reset="earliest", max_partition_fetch_bytes=RESTORE_FETCH_BYTES_MAX,
            isolation_level="read_uncommitted", **self.client_options,
        )
        await consumer.start()
        started = time.monotonic()
        outboxes: dict[tuple[int, bytes], Standing] = {}
        read = 0
        try:
            tps = [TopicPartition(self.changelog, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            values_by_partition = {p: {} for p in partitions}
            log.info("restoring %s partitions %s: %d records", self.changelog, partitions,
                     sum(ends[tp] for tp in tps))

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                if time.monotonic() - started > RESTORE_TIMEOUT_S:
                    raise TimeoutError(f"restoring {self.changelog} {partitions} took over {RESTORE_TIMEOUT_S}s")
                fetched = await consumer.getmany(timeout_ms=RESTORE_POLL_MS, max_records=RESTORE_FETCH_MAX)
                for tp, records in fetched.items():
                    values = values_by_partition[tp.partition]
                    for record in records:
                        if record.offset >= ends[tp]:
                            continue
                        read += 1
                        if read % RESTORE_PROGRESS_EVERY == 0:
                            log.info("restoring %s: %d records read", self.changelog, read)
                        slot = (tp.partition, record.key)
                        if record.value is None:
                            values.pop(record.key, None)
                            outboxes.pop(slot, None)
                            indexed.pop(slot, None)
                            continue
                        state_json, outbox, through = split_changelog_value(record.value)
                        if self.index is not None:
                            entry = self.index(record.key, state_json)
                            if entry is None:
                                indexed.pop(slot, None)
                            else:
                                indexed[slot] = entry
                        values[record.key] = held(state_json)
                        if outbox:
                            outboxes[slot] = Standing(tp.partition, through, outbox)
                        else:
                            outboxes.pop(slot, None)
            kept = [p for p in partitions if self.drops.get(p, 0) == drops_before[p]]
            self.by_partition.update({p: values_by_partition[p] for p in kept})
        finally:
            await consumer.stop()
        elapsed = time.monotonic() - started
        if len(kept) < len(partitions):
            log.warning("restored %s partitions %s revoked while they were read: not kept (read again when given back)",
                        self.changelog, sorted(set(partitions) - set(kept)))
            outboxes = {slot: entry for slot, entry in outboxes.items() if slot[0] in kept}
            indexed = {slot: entry for slot, entry in indexed.items() if slot[0] in kept}
        keys = sum(len(self.by_partition[p]) for p in kept)
        self.restores_total += 1
        self.restored_keys_total += keys
        self.restore_seconds_total += elapsed
        standing = [outboxes[slot] for slot in sorted(outboxes)]
        log.warning("restored %s partitions %s: %d keys from %d records in %.1fs; %d standing outboxes",
                    self.changelog, kept, keys, read, elapsed, len(standing))
        return standing, indexed
