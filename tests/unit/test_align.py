"""The decide agent's event-time alignment across the upstream topics (no broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from streams.runtime.align import Aligner

ALIGNED = ("orders", "incidents", "requests")


@dataclass
class Event:
    topic: str
    partition: int
    offset: int
    timestamp: float


def aligner(highwaters: dict, committed: dict | None = None) -> Aligner:
    committed = committed or {}

    async def position(topic, partition):
        return committed.get((topic, partition), 0)

    return Aligner(ALIGNED, lambda topic, partition: highwaters.get((topic, partition)), position)


def add(a: Aligner, *events: Event) -> None:
    a.add(list(events), lambda e: e.topic, lambda e: e.partition, lambda e: e.offset)


def take(a: Aligner) -> list[tuple[str, int]]:
    return [(e.topic, e.offset) for e in asyncio.run(a.take(lambda e: e.timestamp))]


def test_requests_wait_while_the_orders_topic_still_has_records_the_agent_has_not_seen():
    # Nothing of the orders partition delivered yet; the group committed up to 5 and the broker has 9.
    a = aligner({("orders", 0): 9, ("incidents", 0): 0, ("requests", 0): 2}, committed={("orders", 0): 5})
    add(a, Event("requests", 0, 0, 10.0), Event("requests", 0, 1, 11.0))
    assert take(a) == []
    add(a, Event("orders", 0, 5, 9.0), Event("orders", 0, 6, 10.5))
    # 9.0 then 10.0 then 10.5; then the orders buffer is empty again and 7-8 are still unseen: wait.
    assert take(a) == [("orders", 5), ("requests", 0), ("orders", 6)]
    add(a, Event("orders", 0, 7, 12.0), Event("orders", 0, 8, 13.0))
    assert take(a) == [("requests", 1), ("orders", 7), ("orders", 8)]


def test_a_caught_up_topic_does_not_hold_the_others_back():
    a = aligner({("orders", 0): 5, ("incidents", 0): 0, ("requests", 0): 1}, committed={("orders", 0): 5})
    add(a, Event("requests", 0, 0, 10.0))
    assert take(a) == [("requests", 0)]


def test_an_unknown_highwater_holds_back_and_other_topics_pass_at_once():
    a = aligner({("incidents", 0): 0, ("requests", 0): 1})  # the orders partition not fetched yet
    add(a, Event("requests", 0, 0, 10.0), Event("limit-results", 0, 3, 99.0))
    assert take(a) == [("limit-results", 3)]


def test_drop_all_returns_every_held_event_and_forgets_what_was_seen():
    a = aligner({("orders", 0): 9, ("incidents", 0): 0, ("requests", 0): 1})
    add(a, Event("requests", 0, 0, 10.0))
    assert take(a) == []
    assert [e.offset for e in a.drop_all()] == [0] and a.held() == 0 and a.next_offset == {}
