"""The hand-written batch loops' pure parts (bench/loops.py, the benchmark's ceiling): cross-topic
alignment, record batching and held state (no broker)."""

from __future__ import annotations

import asyncio
from collections import namedtuple

import pytest
from aiokafka import TopicPartition
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

import pathlib
import sys

from streams.runtime.kafka_io import RecordBatcher
from streams.runtime.state import held, unheld

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import loops  # noqa: E402 - the benchmark's hand-written ceiling lives in bench/
from loops import Aligner  # noqa: E402

Record = namedtuple("Record", "topic partition offset timestamp")
ALIGNED = ("orders", "incidents", "requests")


class FakeConsumer:
    """What Aligner asks of a consumer: assignment, highwater, position, pause and resume."""

    def __init__(self, ends: dict[TopicPartition, int], positions: dict[TopicPartition, int]):
        self.ends, self.positions, self.paused = ends, positions, set()

    def assignment(self):
        return set(self.ends)

    def highwater(self, tp):
        return self.ends.get(tp)

    async def position(self, tp):
        return self.positions.get(tp, 0)

    def pause(self, tp):
        self.paused.add(tp)

    def resume(self, tp):
        self.paused.discard(tp)


def records(topic: str, timestamps: list[int], partition: int = 0) -> list[Record]:
    return [Record(topic, partition, offset, ts) for offset, ts in enumerate(timestamps)]


def fetched(*batches: list[Record]) -> dict:
    out: dict = {}
    for batch in batches:
        for record in batch:
            out.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return out


def caught_up(counts: dict[str, int], partition: int = 0) -> FakeConsumer:
    tps = {TopicPartition(topic, partition): count for topic, count in counts.items()}
    return FakeConsumer(dict(tps), dict(tps))


def test_records_of_a_partition_come_out_in_timestamp_order_across_the_aligned_topics():
    aligner = Aligner(ALIGNED)
    orders, requests = records("orders", [10, 20, 30]), records("requests", [15, 25])
    consumer = caught_up({"orders": 3, "incidents": 0, "requests": 2})
    aligner.add(consumer, fetched(orders, requests))
    taken = asyncio.run(aligner.take(consumer, 100))
    assert [(r.topic, r.timestamp) for r in taken] == [
        ("orders", 10), ("requests", 15), ("orders", 20), ("requests", 25), ("orders", 30)]


def test_a_topic_with_unfetched_records_holds_the_others_back_until_the_wait_runs_out(monkeypatch):
    aligner = Aligner(ALIGNED)
    consumer = FakeConsumer({TopicPartition("orders", 0): 5, TopicPartition("incidents", 0): 0,
                             TopicPartition("requests", 0): 2},
                            {TopicPartition("orders", 0): 0, TopicPartition("requests", 0): 2})
    aligner.add(consumer, fetched(records("requests", [15, 25])))
    assert asyncio.run(aligner.take(consumer, 100)) == []  # orders has 5 records not fetched yet
    assert aligner.waits_total == 1
    clock = [loops.time.monotonic()]
    monkeypatch.setattr(loops.time, "monotonic", lambda: clock[0])
    clock[0] += loops.ALIGN_WAIT_MS_MAX / 1000 - 0.01
    assert asyncio.run(aligner.take(consumer, 100)) == []  # just below the wait: still held
    clock[0] += 0.02
    assert [r.timestamp for r in asyncio.run(aligner.take(consumer, 100))] == [15, 25]  # above it: released


def test_an_empty_topic_that_is_caught_up_does_not_hold_anything_back():
    aligner = Aligner(ALIGNED)
    consumer = caught_up({"orders": 0, "incidents": 0, "requests": 2})
    aligner.add(consumer, fetched(records("requests", [15, 25])))
    assert [r.timestamp for r in asyncio.run(aligner.take(consumer, 100))] == [15, 25]


def test_unaligned_topics_are_released_at_once_and_partitions_never_mix():
    aligner = Aligner(ALIGNED)
    consumer = FakeConsumer({TopicPartition("orders", 1): 9, TopicPartition("limit-results", 0): 1},
                            {TopicPartition("orders", 1): 0})
    aligner.add(consumer, fetched(records("limit-results", [99]), records("requests", [5], partition=1)))
    taken = asyncio.run(aligner.take(consumer, 100))
    assert [(r.topic, r.partition) for r in taken] == [("limit-results", 0)]  # partition 1 waits for its orders
    assert aligner.buffered() == 1


def test_the_limit_bounds_a_release_and_the_rest_stays_buffered():
    aligner = Aligner(ALIGNED)
    consumer = caught_up({"orders": 4, "incidents": 0, "requests": 0})
    aligner.add(consumer, fetched(records("orders", [1, 2, 3, 4])))
    assert [r.timestamp for r in asyncio.run(aligner.take(consumer, 3))] == [1, 2, 3]
    assert [r.timestamp for r in asyncio.run(aligner.take(consumer, 3))] == [4]


def test_a_full_partition_buffer_pauses_fetching_and_draining_resumes_it(monkeypatch):
    monkeypatch.setattr(loops, "BUFFERED_PER_PARTITION_MAX", 4)
    aligner = Aligner(ALIGNED)
    consumer = caught_up({"orders": 4, "incidents": 0, "requests": 0})
    aligner.add(consumer, fetched(records("orders", [1, 2, 3, 4])))
    assert consumer.paused == {TopicPartition("orders", 0)}
    asyncio.run(aligner.take(consumer, 3))
    assert consumer.paused == set()


def test_revoked_partitions_are_forgotten():
    aligner = Aligner(ALIGNED)
    consumer = caught_up({"orders": 2, "incidents": 0, "requests": 0})
    aligner.add(consumer, fetched(records("orders", [1, 2])))
    aligner.drop([TopicPartition("orders", 0)])
    assert aligner.buffered() == 0


class FakeBatch:
    def __init__(self, capacity: int):
        self.capacity, self.records = capacity, []

    def append(self, key, value, timestamp):
        if len(self.records) == self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    def __init__(self, partitions: int = 4, capacity: int = 3):
        self.partitions, self.capacity, self.sent = partitions, capacity, []

    async def partitions_for(self, topic):
        return set(range(self.partitions))

    def create_batch(self):
        return FakeBatch(self.capacity)

    async def send_batch(self, batch, topic, partition):
        self.sent.append((topic, partition, list(batch.records)))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.mark.parametrize("key", [b"c1", b"customer-42", b"household:addr-9", "ünïcode".encode()])
def test_record_batches_go_to_the_partition_every_kafka_client_picks_for_the_key(key):
    producer = FakeProducer()

    async def run():
        batcher = RecordBatcher(producer)
        await batcher.add("t", key, b"v")
        await batcher.flush()

    asyncio.run(run())
    assert producer.sent == [("t", (kafka_python_murmur2(key) & 0x7FFFFFFF) % 4, [(key, b"v")])]


def test_a_full_record_batch_is_sent_and_order_is_kept_per_partition():
    producer = FakeProducer(partitions=1, capacity=3)

    async def run():
        batcher = RecordBatcher(producer)
        for n in range(7):
            await batcher.add("t", b"k", str(n).encode())
        await batcher.add("t", None, b"keyless")  # keyless records take partitions in turn
        await batcher.add("t", b"k", b"explicit", partition=0)
        await batcher.flush()

    asyncio.run(run())
    values = [value for _, _, batch in producer.sent for _, value in batch]
    assert values == [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"keyless", b"explicit"]
    assert [len(batch) for _, _, batch in producer.sent] == [3, 3, 3]


def test_held_state_round_trips_and_is_smaller_than_its_json():
    state = b'{"decided":{' + b",".join(b'"r%d":{"outcome":"GRANTED","granted_cents":1000}' % n for n in range(50)) + b"}}"
    assert unheld(held(state)) == state
    assert len(held(state)) < len(state) // 3
