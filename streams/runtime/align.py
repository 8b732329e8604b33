"""Event-time order across co-partitioned topics inside the decide agent (Kafka Streams' rule).

A consumer fetches each topic-partition on its own, so during a catch-up a small topic runs far
ahead of a big one: a partition's requests are read days of event time before the orders they
name. The aligner buffers the events of the `aligned` topics per partition and releases them
in timestamp order, each only once every other aligned topic of that partition either has an
older-or-equal event buffered or has nothing left on the broker (its highwater is not past what
the agent has seen). There is no wall-clock timeout: under any load, an order published before a
request is released before it. Events of other topics (limit results) are released at once.

Held events are not acked, so a crash or a rebalance redelivers them; on a rebalance they are
dropped (Faust waits for every unacked event before it revokes, and the next owner reads them).
Memory is bounded by HELD_EVENTS_MAX: past it the oldest events are released anyway, counted.
"""

from __future__ import annotations

import collections
from typing import Awaitable, Callable

# Events held back over all partitions before the oldest are released regardless of alignment
# (bounds memory when one topic lags by more than this; counted as forced releases).
HELD_EVENTS_MAX = 200_000


class Aligner:
    """Buffers events and releases co-partitioned ones in timestamp order across topics."""

    def __init__(self, aligned: tuple[str, ...], highwater: Callable[[str, int], int | None],
                 position: Callable[[str, int], Awaitable[int | None]]):
        self.aligned = aligned
        self.highwater = highwater
        self.position = position
        self.buffers: dict[tuple[str, int], collections.deque] = {}
        self.next_offset: dict[tuple[str, int], int] = {}
        self.held_waits_total = 0  # times a partition's release waited for a lagging topic
        self.forced_total = 0  # events released past HELD_EVENTS_MAX

    def add(self, events: list, topic_of, partition_of, offset_of) -> None:
        """Buffer delivered events (in delivery order, which is offset order per topic-partition)."""
        for event in events:
            slot = (topic_of(event), partition_of(event))
            self.buffers.setdefault(slot, collections.deque()).append(event)
            self.next_offset[slot] = offset_of(event) + 1

    def held(self) -> int:
        """Events buffered and not yet released."""
        return sum(len(buffer) for buffer in self.buffers.values())

    def drop_all(self) -> list:
        """Let go of every held event (a rebalance: they are redelivered from the committed offsets)."""
        dropped = [event for buffer in self.buffers.values() for event in buffer]
        self.buffers.clear()
        self.next_offset.clear()
        return dropped

    async def _lagging(self, topic: str, partition: int) -> bool:
        """True while the broker has events of this topic-partition the agent has not seen (or it cannot tell)."""
        highwater = self.highwater(topic, partition)
        if highwater is None:
            return True
        seen = self.next_offset.get((topic, partition))
        if seen is None:
            seen = await self.position(topic, partition)
            if seen is None:
                return True
        return seen < highwater

    async def quiet(self, partition: int) -> bool:
        """True when nothing of this partition's aligned topics is buffered or left on the broker."""
        for topic in self.aligned:
            if self.buffers.get((topic, partition)) or await self._lagging(topic, partition):
                return False
        return True

    async def take(self, timestamp_of) -> list:
        """Every releasable event, in timestamp order per partition (ties: the aligned topics' order)."""
        released: list = []
        partitions = sorted({partition for (_, partition), buffer in self.buffers.items() if buffer})
        for partition in partitions:
            for (topic, p), buffer in self.buffers.items():
                if p == partition and topic not in self.aligned:
                    released.extend(buffer)
                    buffer.clear()
            released.extend(await self._take_aligned(partition, timestamp_of))
        overflow = self.held() - HELD_EVENTS_MAX
        if overflow > 0:
            released.extend(self._force(overflow, timestamp_of))
        return released

    async def _take_aligned(self, partition: int, timestamp_of) -> list:
        buffers = [self.buffers.get((topic, partition)) or collections.deque() for topic in self.aligned]
        lagging: dict[int, bool] = {}
        out: list = []
        while True:
            heads = [(timestamp_of(buffer[0]), index) for index, buffer in enumerate(buffers) if buffer]
            if not heads:
                break
            for index, buffer in enumerate(buffers):
                if not buffer and index not in lagging:
                    lagging[index] = await self._lagging(self.aligned[index], partition)
            if any(lagging.get(index) for index, buffer in enumerate(buffers) if not buffer):
                # An emptied topic may still hold an older event on the broker: wait for it.
                self.held_waits_total += 1
                break
            _, index = min(heads)
            out.append(buffers[index].popleft())
        return out

    def _force(self, count: int, timestamp_of) -> list:
        """Release the `count` oldest held events (memory bound), oldest first."""
        out: list = []
        while len(out) < count:
            slots = [(timestamp_of(buffer[0]), slot) for slot, buffer in self.buffers.items() if buffer]
            if not slots:
                break
            _, slot = min(slots)
            out.append(self.buffers[slot].popleft())
        self.forced_total += len(out)
        return out
