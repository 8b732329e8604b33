"""The backtest's replay (streams/runtime/replay.py): two forked runs give exactly what one process
gives, states held marshalled decide as plain objects do, and the report's slimmed finals compare
as the full decisions do."""

from __future__ import annotations

import json

import pytest

import schemas
from streams.core import backtest
from streams.core import decision as core
from streams.core.policy import Policy
from streams.measure import quality
from streams.measure.simulate import WorkloadConfig, generate
from streams.runtime.batch import Incoming, key_partition
from streams.runtime.replay import (HeldStates, PackedRecords, Replay, _event_time_ms, fork_available, period_of,
                                    replay_period)
from streams.runtime.topics import TopicNames

NAMES = TopicNames(prefix="unit", app_id="unit-worker")
PARTITIONS = 3
STRICTER = Policy.from_document({"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1},
                                 "kind_cents_max_per_customer_30d": {"CREDIT": 2_000, "REFUND": 5_000},
                                 "associate_cents_max_per_day": 20_000})


class PlainStates(dict):
    """Customer states as plain Python objects: the replay as it was before states were held marshalled."""

    def settle(self) -> None:
        pass

    def copy(self) -> "PlainStates":
        return PlainStates(self)


@pytest.fixture(scope="module")
def workload():
    """A simulated month as upstream records (in a shuffled order, as topics are read), with its labels."""
    messages, labels = [], []
    for events, chunk_labels in generate(WorkloadConfig(customers=400, days=30, seed=5, abuse_rate=0.15)):
        labels.extend(chunk_labels)
        for event in events:
            name = event["type"]
            key = event["customer_id"].encode()
            messages.append(Incoming(NAMES.for_event(name), key_partition(key, PARTITIONS), len(messages), key,
                                     schemas.encode(name, {k: v for k, v in event.items() if k != "type"}),
                                     core.event_time_ms(event)))
    messages.append(Incoming(NAMES.requests, 0, len(messages), b"c-bad", b"\xc3\x01not avro", messages[-1].timestamp_ms))
    packed = PackedRecords(list(NAMES.upstream()))
    for message in reversed(messages):
        packed.append(message, _event_time_ms(message))
    packed.sort()
    return messages, packed, labels


def full_replay(messages, policy, since_ms, until_ms, states_type):
    """The reference: every record in replay order through one Replay, every decision kept in full."""
    rank = {topic: index for index, topic in enumerate(NAMES.upstream())}
    prefix = Replay(policy, NAMES, states_type())
    period = []
    for message in backtest.sorted_records(messages, rank):
        where = period_of(_event_time_ms(message), since_ms, until_ms)
        if where == "before":
            prefix.feed(message)
        elif where == "in":
            period.append(message)
    return prefix, period


def decisions_of(prefix, period, policy, since_ms, until_ms):
    run = prefix.fork(policy)
    made = [d for message in period for d in run.feed(message)]
    return [d for d in made if backtest.in_period(d, since_ms, until_ms)]


def test_packed_records_come_back_byte_for_byte_in_replay_order(workload):
    messages, packed, _ = workload
    rank = {topic: index for index, topic in enumerate(NAMES.upstream())}
    assert [message for message, _ in packed] == backtest.sorted_records(messages, rank)
    assert [at for _, at in packed][-1] is not None and None in [at for _, at in packed]  # the bad record has none


@pytest.mark.parametrize("since, until", [(None, None), ("2026-08-20", None), ("2026-08-12", "2026-08-26")])
def test_two_processes_one_process_and_the_plain_replay_give_the_same_report(workload, since, until):
    messages, packed, labels = workload
    since_ms, until_ms = backtest.date_ms(since, "since"), backtest.date_ms(until, "until")
    plain_prefix, period = full_replay(messages, Policy(), since_ms, until_ms, PlainStates)
    recorded = decisions_of(plain_prefix, period, Policy(), since_ms, until_ms)
    stricter = decisions_of(plain_prefix, period, STRICTER, since_ms, until_ms)
    held_prefix, _ = full_replay(messages, Policy(), since_ms, until_ms, HeldStates)
    assert decisions_of(held_prefix, period, Policy(), since_ms, until_ms) == recorded  # marshalled == objects
    expected = json.dumps(backtest.compare(recorded, stricter))
    assert json.loads(expected)["changed"] > 0 and len(recorded) > 100

    modes = [False, True] if fork_available() else [False]
    for parallel in modes:
        replayed = replay_period(packed, Policy(), STRICTER, NAMES, since_ms, until_ms, recorded=recorded,
                                 labels=labels, parallel=parallel)
        assert replayed.processes == (2 if parallel else 1)
        assert json.dumps(backtest.compare(replayed.before.final_decisions, replayed.after.final_decisions)) == expected
        assert replayed.before.reproduction == backtest.reproduction(recorded, recorded, Policy().version)
        assert replayed.before.reproduction["reproduced_share"] == 1.0
        assert replayed.before.quality == quality.evaluate(recorded, labels)
        assert replayed.after.quality == quality.evaluate(stricter, labels)
        assert replayed.records_in_period == len(period) and replayed.dead_letters == 1
        assert (replayed.before.decisions, replayed.after.decisions) == (len(recorded), len(stricter))


def test_a_failed_run_in_a_child_is_raised_with_its_traceback(workload):
    _, packed, _ = workload
    if not fork_available():
        pytest.skip("no fork on this platform")
    from streams.runtime.replay import ReplayFailed

    with pytest.raises(ReplayFailed, match="in force.*failed"):
        replay_period(packed, Policy(), STRICTER, NAMES, None, None, recorded=[{"no": "decision_id"}], parallel=True)


def test_held_states_read_what_was_written_and_settle_once_per_record():
    states = HeldStates()
    states["c1"] = {"orders": {"o1": (1, 2)}, "history": []}
    assert states.get("c1") is states["c1"]  # open until settled: the saga reads the same object
    states.settle()
    assert states["c1"] == {"orders": {"o1": (1, 2)}, "history": []} and "c1" in states and len(states) == 1
    copy = states.copy()
    copy["c1"] = {}
    copy.settle()
    assert states["c1"]["orders"]["o1"] == (1, 2) and copy["c1"] == {}
    del states["c1"]
    assert states.get("c1") is None
