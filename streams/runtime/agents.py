"""The Faust app and its three agents: decide, limits and project. Thin shells around the core.

Each agent takes batches of raw records (`take_batches`), hands them to a `Step` (decode, fold
through the pure core, encode), and makes the effects durable in one fixed order before it acks
anything (streams/runtime/state.py explains why the order gives exactly-once effects):

    changelog records (state + outbox) acked  ->  outbox messages acked  ->  input events acked

Agents run with concurrency 1 (faust-streaming issue 606: offsets can be committed past an
in-flight message with more). A failure inside a batch ends the process at once with exit 1,
before Faust could ack or commit that batch, so it is redelivered to the next owner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from aiokafka import AIOKafkaProducer

from streams.runtime.align import Aligner
from streams.runtime.batch import Incoming
from streams.runtime.kafka_io import RecordBatcher
from streams.runtime.state import OutboxEntry, PartitionState, changelog_value

log = logging.getLogger("remedy.agents")

# Exit status when a batch failed: the batch was not acked, the next owner reads it again.
EXIT_BATCH_FAILED = 70


@dataclass
class StepOutput:
    """What one batch produced: per partition and key, the new state JSON and its outbox; plus
    messages that are not anyone's state effect (dead letters), sent after the outboxes."""

    states: dict[int, dict[bytes, tuple[bytes, list[OutboxEntry]]]] = field(default_factory=dict)
    sends: list[OutboxEntry] = field(default_factory=list)


Step = Callable[[list[Incoming], "PartitionState | None"], Awaitable[StepOutput]]


async def take_batches(stream, batch_max: int, within_s: float) -> AsyncIterator[list]:
    """Like `Stream.take_events`, but never acks: the caller acks each event once its effects are durable.

    Faust's `take_events` acks a batch in a `finally`, so a batch interrupted by an error or a
    shutdown would be acked (and committed) unprocessed. Events keep arriving into the next buffer
    while a batch is processed; the buffer holds at most `batch_max` events.
    """
    buffer: list = []
    full = asyncio.Event()
    consumed = asyncio.Event()

    async def add_to_buffer(value):
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: an event arrived without current_event")
        buffer.append(event)
        if len(buffer) >= batch_max:
            full.set()
            consumed.clear()
            await stream.wait(consumed)
        return value

    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(stream.channel.__aiter__())
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(full, timeout=within_s)
            events = list(buffer)
            buffer.clear()
            full.clear()
            consumed.set()
            yield events
    finally:
        stream._processors.remove(add_to_buffer)


def _topic_of(event) -> str:
    return event.message.topic


def _partition_of(event) -> int:
    return event.message.partition


def _offset_of(event) -> int:
    return event.message.offset


def _timestamp_of(event) -> float:
    return event.message.timestamp or 0.0


def incoming(event) -> Incoming:
    """A Faust event as the shell's plain record."""
    message = event.message
    timestamp = message.timestamp
    return Incoming(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
                    value=message.value, timestamp_ms=int(round(timestamp * 1000)) if timestamp is not None else None)


class AgentShell:
    """One agent's effects around its step: restore, step, changelog + outbox, sends, acks."""

    def __init__(self, name: str, step: Step, state: PartitionState | None,
                 producer: Callable[[], AIOKafkaProducer], aligner: Aligner | None = None,
                 rebalancing: Callable[[], bool] = lambda: False):
        self.name = name
        self.aligner = aligner
        self.rebalancing = rebalancing
        self.dropped_on_rebalance_total = 0
        # Called with (partitions, index) after a restore, and with partitions on a revocation.
        self.on_restored: Callable[[list[int], dict], None] | None = None
        self.on_revoked: Callable[[set[int]], None] | None = None
        self.step = step
        self.state = state
        self.producer = producer
        # Held while a batch is in flight: a graceful stop takes it and never gives it back.
        self.lock = asyncio.Lock()
        self.events_total = 0
        self.batches_total = 0
        self.last_batch_ms = 0.0
        self.partitions: set[int] = set()

    def revoked(self, partitions) -> None:
        """Forget revoked partitions' state (Faust calls this after the batches in flight finished)."""
        if self.state is not None:
            self.state.drop(partitions)
        if self.on_revoked is not None:
            self.on_revoked(set(partitions))

    async def run(self, stream, batch_max: int, within_s: float) -> None:
        """Consume the agent's stream forever, one batch at a time."""
        async for events in take_batches(stream, batch_max, within_s):
            if self.aligner is not None:
                if self.rebalancing():
                    # Faust waits for every unacked event before it revokes: let go of the held
                    # ones (unacked, so they are redelivered from the committed offsets).
                    dropped = self.aligner.drop_all() + len(events)
                    if dropped:
                        self.dropped_on_rebalance_total += dropped
                        log.info("agent %s: %d held events let go for a rebalance", self.name, dropped)
                    continue
                self.aligner.add(events, _topic_of, _partition_of, _offset_of)
                events = await self.aligner.take(_timestamp_of)
            if not events:
                continue
            async with self.lock:
                try:
                    await self._handle(stream, events)
                except BaseException as error:  # noqa: BLE001 - ends the process; nothing carries on
                    # Exit before Faust could ack or commit this batch: the next owner reads it again.
                    log.critical("agent %s: batch of %d failed; exiting so it is redelivered: %r", self.name,
                                 len(events), error, exc_info=not isinstance(error, asyncio.CancelledError))
                    logging.shutdown()
                    sys.stderr.flush()
                    os._exit(EXIT_BATCH_FAILED)

    async def _handle(self, stream, events: list) -> None:
        started = time.monotonic()
        messages = [incoming(event) for event in events]
        partitions = sorted({m.partition for m in messages})
        self.partitions.update(partitions)
        if self.state is not None:
            missing = [p for p in partitions if not self.state.owned(p)]
            if missing:
                standing, indexed = await self.state.restore(missing)
                if self.on_restored is not None:
                    self.on_restored(missing, indexed)
                if standing:
                    # A crash may have left these unsent: send them again, byte for byte.
                    await self._send(standing)
        output = await self.step(messages, self.state)
        if self.state is not None and output.states:
            batcher = RecordBatcher(self.producer())
            for partition, values in output.states.items():
                for key, (state_json, outbox) in values.items():
                    await batcher.add(self.state.changelog, key, changelog_value(state_json, outbox), partition=partition)
            await batcher.flush()
        effects = [entry for values in output.states.values() for _, outbox in values.values() for entry in outbox]
        await self._send(effects + output.sends)
        if self.state is not None:
            for partition, values in output.states.items():
                for key, (state_json, _) in values.items():
                    self.state.save(partition, key, state_json)
        for event in events:
            await stream.ack(event)
        self.events_total += len(events)
        self.batches_total += 1
        self.last_batch_ms = (time.monotonic() - started) * 1000

    async def _send(self, entries: list[OutboxEntry]) -> None:
        if not entries:
            return
        batcher = RecordBatcher(self.producer())
        for entry in entries:
            await batcher.add(entry.topic, entry.key, entry.value)
        await batcher.flush()
