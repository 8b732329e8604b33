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
from streams.runtime.faust_fix import note_delivered
from streams.runtime.sequence import Sequencer
from streams.runtime.batch import Incoming
from streams.runtime.kafka_io import RecordBatcher
from streams.runtime.state import OutboxEntry, PartitionState, Standing, changelog_value

log = logging.getLogger("remedy.agents")

# Exit status when a batch failed: the batch was not acked, the next owner reads it again.
EXIT_BATCH_FAILED = 70
# Longest an idle agent waits for an event before it looks at the rebalance state again.
IDLE_POLL_S = 0.1


@dataclass
class StepOutput:
    """What one batch produced: per partition and key, the new state JSON and its outbox (None and
    no outbox: a tombstone, the key is dropped); plus messages that are not anyone's state effect
    (dead letters), sent after the outboxes. Keys are written in insertion order per partition."""

    states: dict[int, dict[bytes, tuple[bytes | None, list[OutboxEntry]]]] = field(default_factory=dict)
    sends: list[OutboxEntry] = field(default_factory=list)
    # Per partition and key, states written again without their outbox once every effect is
    # acknowledged: an erased customer's outbox (decisions naming the customer) must not stay in
    # the changelog's latest record (docs/privacy.md). A crash before it re-sends the outbox, as always.
    scrubbed: dict[int, dict[bytes, bytes]] = field(default_factory=dict)


Step = Callable[[list[Incoming], "PartitionState | None"], Awaitable[StepOutput]]


def gather_wait_s(queued: int, within_s: float) -> float:
    """How long a batch waits for more events, given how many were queued when its first arrived.

    A lone event is handled at once: on a quiet worker, waiting would only add within_s to every
    hop of the limit saga (a batch's writes take about a millisecond). Events queued together mean
    load, and then gathering for within_s makes fewer, larger batches.
    """
    return within_s if queued > 1 else 0.0


async def take_batches(stream, batch_max: int, within_s: float) -> AsyncIterator[list]:
    """Batches of events straight from the agent's channel queue; never acks (the caller acks each
    event once its effects are durable).

    Faust's `Stream` iteration costs an event-loop turn (`await asyncio.sleep(0)`) and a processor
    call per event, and its `take_events` acks a batch in a `finally`, so a batch interrupted by an
    error or a shutdown would be acked (and committed) unprocessed. This drains the queue the
    conductor fills, with the same per-event bookkeeping the stream does (`_track`): skip events
    of a stale generation or while flow control is suspended (acked, as Faust does, so the new
    owner reads them from the committed offsets), and track each message as unacked. A batch holds
    at most `batch_max` events and waits at most `within_s` for more once the first arrived, unless
    the first came alone (`gather_wait_s`).
    """
    channel = stream.channel.__aiter__()  # the iterator channel the conductor delivers into
    queue = channel.queue
    app = stream.app
    acking_topics = app.topics.acking_topics
    unacked = app.consumer.unacked
    on_message_in = app.sensors.on_message_in
    loop = asyncio.get_running_loop()
    while not stream.should_stop:
        events: list = []
        try:
            first = await asyncio.wait_for(queue.get(), IDLE_POLL_S)
        except asyncio.TimeoutError:
            # Nothing arrived: yield an empty batch so the agent can let go of held events when
            # a rebalance starts (Faust's revocation waits for them).
            yield events
            continue
        _track(first, app, acking_topics, unacked, on_message_in, events)
        del first
        await asyncio.sleep(0)  # one loop turn: the conductor delivers the rest of a fetch one by one
        while len(events) < batch_max and not queue.empty():
            item = queue.get_nowait()
            _track(item, app, acking_topics, unacked, on_message_in, events)
            del item
        deadline = loop.time() + gather_wait_s(len(events), within_s)
        while len(events) < batch_max:
            if queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                item = queue.get_nowait()
            _track(item, app, acking_topics, unacked, on_message_in, events)
            del item
        yield events


def _track(item, app, acking_topics, unacked, on_message_in, events: list) -> None:
    """Faust's per-event bookkeeping from `Stream.__aiter__`: skip stale events, track the rest."""
    message = getattr(item, "message", None)
    if message is None:
        return  # not an event (nothing else is sent to an agent's topic channel)
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        item.ack()  # as Faust does for a skipped value; the next owner reads it from the committed offset
        return
    if message.topic in acking_topics and not message.tracked:
        message.tracked = True
        unacked.add(message)
        note_delivered(message.tp, message.offset)
        on_message_in(message.tp, message.offset, message)
    events.append(item)


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
                 producer: Callable[[], AIOKafkaProducer], aligner: Aligner | Sequencer | None = None,
                 rebalancing: Callable[[], bool] = lambda: False):
        self.name = name
        self.aligner = aligner
        self.rebalancing = rebalancing
        self.dropped_on_rebalance_total = 0
        self.resent_total = 0
        # The group's committed offset of (topic, partition), or None (set by the composition root).
        self.committed: Callable[[str, int], int | None] = lambda topic, partition: None
        # Called with (partitions, index) after a restore, and with partitions on a revocation.
        self.on_restored: Callable[[list[int], dict], None] | None = None
        self.on_revoked: Callable[[set[int]], None] | None = None
        # Called after every batch and every idle poll, between batches (the agents send their
        # watermarks from it; streams/runtime/sequence.py).
        self.on_tick: Callable[[], Awaitable[None]] | None = None
        # Called with (seconds, agent name) after every batch (the batch-time histogram).
        self.observe: Callable[[float, str], None] | None = None
        # Called with a batch's effects once Kafka acknowledged them (the synchronous API learns
        # this worker's decisions from it without waiting for its follower's next fetch).
        self.on_sent: Callable[[list[OutboxEntry]], None] | None = None
        self.restoring = False
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
                    # Faust waits for every unacked message before it revokes: let go of the held
                    # events and take them out of Faust's unacked set (never acked, so nothing is
                    # committed past them and the next owner reads them again). Relying on garbage
                    # collection of the weak set is not enough: a local reference keeps one alive.
                    dropped = self.aligner.drop_all() + events
                    unacked = stream.app.consumer.unacked
                    for event in dropped:
                        unacked.discard(event.message)
                    if dropped:
                        self.dropped_on_rebalance_total += len(dropped)
                        log.info("agent %s: %d held events let go for a rebalance", self.name, len(dropped))
                    del dropped, events
                    continue
                self.aligner.add(events, _topic_of, _partition_of, _offset_of)
                events = await self.aligner.take(_timestamp_of)
            if events:
                async with self.lock:
                    await self._or_exit(self._handle(stream, events), f"batch of {len(events)}")
            if self.on_tick is not None and not self.rebalancing():
                async with self.lock:
                    await self._or_exit(self.on_tick(), "tick")

    async def _or_exit(self, work: Awaitable[None], what: str) -> None:
        try:
            await work
        except BaseException as error:  # noqa: BLE001 - ends the process; nothing carries on
            # Exit before Faust could ack or commit this batch: the next owner reads it again.
            log.critical("agent %s: %s failed; exiting so it is redelivered: %r", self.name, what, error,
                         exc_info=not isinstance(error, asyncio.CancelledError))
            logging.shutdown()
            sys.stderr.flush()
            os._exit(EXIT_BATCH_FAILED)

    async def ensure_owned(self, partitions) -> None:
        """Restore the state of partitions not held yet, and re-send their uncommitted outboxes."""
        if self.state is None:
            return
        missing = sorted(p for p in partitions if not self.state.owned(p))
        if not missing:
            return
        self.restoring = True
        try:
            standing, indexed = await self.state.restore(missing)
        finally:
            self.restoring = False
        # Only what the restore kept: a partition revoked while it was read is read again when given back.
        kept = [p for p in missing if self.state.owned(p)]
        if self.on_restored is not None and kept:
            self.on_restored(kept, indexed)
        # A crash may have left an outbox unsent: its batch was then not committed. Send those
        # again, byte for byte; a committed batch's messages were acknowledged first.
        resend = [entry for s in standing if not self._committed(s) for entry in s.entries]
        log.warning("agent %s: re-sending %d messages of %d standing outboxes (the rest were committed)",
                    self.name, len(resend), len(standing))
        self.resent_total += len(resend)
        await self._send(resend)

    async def _handle(self, stream, events: list) -> None:
        messages = [incoming(event) for event in events]
        partitions = sorted({m.partition for m in messages})
        self.partitions.update(partitions)
        await self.ensure_owned(partitions)
        started = time.monotonic()
        output = await self.step(messages, self.state)
        if self.state is not None and output.states:
            through: dict[int, dict[str, int]] = {}
            for message in messages:
                offsets = through.setdefault(message.partition, {})
                offsets[message.topic] = max(offsets.get(message.topic, 0), message.offset + 1)
            batcher = RecordBatcher(self.producer())
            for partition, values in output.states.items():
                for key, (state_json, outbox) in values.items():
                    value = changelog_value(state_json, outbox, through.get(partition, {})) if state_json is not None else None
                    await batcher.add(self.state.changelog, key, value, partition=partition)
            await batcher.flush()
        effects = [entry for values in output.states.values() for _, outbox in values.values() for entry in outbox]
        await self._send(effects + output.sends)
        if self.on_sent is not None:
            self.on_sent(effects + output.sends)
        if self.state is not None and output.scrubbed:
            batcher = RecordBatcher(self.producer())
            for partition, values in output.scrubbed.items():
                for key, state_json in values.items():
                    await batcher.add(self.state.changelog, key, state_json, partition=partition)
            await batcher.flush()
        if self.state is not None:
            for partition, values in output.states.items():
                for key, (state_json, _) in values.items():
                    if state_json is None:
                        self.state.delete(partition, key)
                    else:
                        self.state.save(partition, key, state_json)
        on_message_out = stream.app.sensors.on_message_out
        for event in events:
            if event.ack():
                message = event.message
                on_message_out(message.tp, message.offset, message)
        self.events_total += len(events)
        self.batches_total += 1
        self.last_batch_ms = (time.monotonic() - started) * 1000
        if self.observe is not None:
            self.observe(self.last_batch_ms / 1000, self.name)

    def _committed(self, standing: Standing) -> bool:
        """True when every input the outbox's batch read on its partition is committed (so it was sent)."""
        if not standing.through:
            return False  # written before offsets were recorded: send again to be safe
        for topic, after in standing.through.items():
            committed = self.committed(topic, standing.partition)
            if committed is None or committed < after:
                return False
        return True

    async def _send(self, entries: list[OutboxEntry]) -> None:
        if not entries:
            return
        batcher = RecordBatcher(self.producer())
        for entry in entries:
            await batcher.add(entry.topic, entry.key, entry.value, partition=entry.partition)
        await batcher.flush()

    async def send(self, entries: list[OutboxEntry]) -> None:
        """Send messages that are no state's effect (watermarks) and wait for their acknowledgement."""
        await self._send(entries)
