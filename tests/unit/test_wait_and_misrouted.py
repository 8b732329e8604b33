"""Without a broker: why `wait --file` says a request waits, and where the decide step keeps the
state of a customer whose batch also holds a record a foreign producer put on another partition."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import schemas
from streams.commands.cli import _wait_why
from streams.runtime.batch import Incoming, key_partition, state_from_bytes
from streams.runtime.settings import Settings

TOPIC = "p.remedy-requests.v1"
REQUEST = {"request_id": "r1", "order_id": "o1", "incident_id": None}


def test_wait_says_dead_lettered_not_published_not_consumed_or_parked():
    dead = {"r1": "dead-lettered (dead-letters show 0:3): CONFLICTING_DUPLICATE: ..."}
    assert _wait_why("r1", dead, {}, {}, TOPIC) == dead["r1"]
    assert _wait_why("r1", dead, {"r1": (0, 4, REQUEST)}, {0: 5}, TOPIC) == dead["r1"]  # the dead-lettered copy
    assert _wait_why("r1", dead, {"r1": (0, 6, REQUEST)}, {0: 5}, TOPIC).startswith("not consumed yet")  # sent again
    assert _wait_why("r2", dead, {}, {0: 5}, TOPIC) == f"not on {TOPIC} (not published yet?)"
    found = {"r2": (1, 7, REQUEST)}
    assert _wait_why("r2", {}, found, {1: None}, TOPIC).startswith("not consumed yet: at 1:7")
    assert "processed up to offset 7" in _wait_why("r2", {}, found, {1: 7}, TOPIC)  # 7 is the next to read
    parked = _wait_why("r2", {}, found, {1: 8}, TOPIC)
    assert parked.startswith("parked at the worker: consumed at 1:7") and "order o1 or a limit check" in parked


class _States:
    """The part of PartitionState the decide step reads: nothing is known yet."""

    def get(self, partition: int, key: bytes):
        return None

    def partition_of(self, key: bytes) -> int:
        raise KeyError(key)


def _event(topic: str, partition: int, offset: int, record: str, datum: dict) -> Incoming:
    return Incoming(topic, partition, offset, datum["customer_id"].encode(), schemas.encode(record, datum),
                    1_795_251_600_000)


def test_a_misrouted_record_in_the_batch_does_not_move_its_customers_state_to_its_partition(tmp_path: Path):
    from streams.runtime.app import Worker

    worker = Worker(Settings(data_dir=tmp_path, topic_prefix="p"), roles=("decide",))
    names, customer = worker.names, "c-misrouted"
    home = key_partition(customer.encode(), worker.settings.topic_partitions)
    wrong = (home + 1) % worker.settings.topic_partitions
    order = {"event_id": "e-o1", "order_id": "o1", "customer_id": customer, "placed_at": 1_795_251_000_000,
             "total_cents": 6_000, "currency": "USD", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 6_000}],
             "shipping_address_id": "home", "digital": False}
    request = {"event_id": "e-r1", "request_id": "r1", "customer_id": customer, "order_id": None, "incident_id": None,
               "kind": "CREDIT", "amount_cents": 500, "currency": "USD", "requested_by": "customer",
               "requested_at": 1_795_251_100_000, "reason": "x"}
    messages = [_event(names.orders, home, 0, "OrderPlaced", order),
                _event(names.requests, home, 0, "RemedyRequested", request),
                # The same customer's refund, put on another partition by a non-murmur2 producer.
                _event(names.requests, wrong, 0, "RemedyRequested",
                       {**request, "event_id": "e-r2", "request_id": "r2", "kind": "REFUND", "order_id": "o1"})]
    step = worker._folding(worker._fold_customers, clock_key=True)
    output = asyncio.run(step(messages, _States()))
    assert len(output.sends) == 1 and output.sends[0].topic == names.requests  # the misrouted one is forwarded
    # The customer's state (its order) must be written to its own partition, where the forwarded
    # refund will look for it; not to the partition the misrouted record arrived on.
    assert customer.encode() in output.states.get(home, {}), output.states.keys()
    state = state_from_bytes(output.states[home][customer.encode()][0])
    assert "o1" in state["orders"]
