"""The limits agent's sequencer (streams/runtime/sequence.py): RESERVEs held behind every source's
watermark and released in order-key order; everything else passes at once (no broker)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import schemas
from streams.core import ordering
from streams.runtime.sequence import Sequencer, progress_datum

T0 = 1_790_000_000_000


def event(partition: int, datum: dict) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(value=schemas.encode("LimitCheck", datum), partition=partition))


def reserve(request_id: str, scope: str, key: ordering.Key) -> dict:
    return {**progress_datum("x", key), "event_id": f"{request_id}/RESERVE", "request_id": request_id,
            "customer_id": key[1], "action": "RESERVE", "scope": scope, "scope_key": "k", "kind": "CREDIT",
            "outcome": "GRANTED", "passed": True, "amount_cents": 100, "at": T0}


def names(events) -> list[str]:
    return [schemas.decode(e.message.value)[1]["request_id"] for e in events]


def take(sequencer: Sequencer, events: list) -> list[str]:
    sequencer.add(events, None, lambda e: e.message.partition, None)
    return names(asyncio.run(sequencer.take(None)))


def marks(decide: ordering.Key, limits: ordering.Key) -> list:
    return ([event(0, progress_datum(f"decide:{p}", decide)) for p in range(2)]
            + [event(0, progress_datum(f"limits:{p}", limits)) for p in range(2)])


def test_checks_wait_for_every_source_then_go_in_key_order_and_associates_wait_for_households_too():
    sequencer = Sequencer(2)
    checks = [event(0, reserve("h-late", "household", (T0 + 30, "c3", 1))),
              event(0, reserve("a-mid", "associate", (T0 + 20, "c2", 1))),
              event(0, reserve("h-early", "household", (T0 + 10, "c1", 1)))]
    assert take(sequencer, checks) == []  # no source heard from: everything is held
    assert take(sequencer, [event(0, progress_datum("decide:0", (T0 + 100, "", 0)))]) == ["decide:0"]
    assert sequencer.held() == 3  # decide:1 not heard from yet
    # Households may go up to T0+25; associates only up to what the households passed on (T0+15).
    released = take(sequencer, marks((T0 + 25, "", 0), (T0 + 15, "", 0)))
    assert released[-1:] == ["h-early"] and sequencer.held() == 2
    assert take(sequencer, marks((T0 + 100, "", 0), (T0 + 100, "", 0)))[-2:] == ["a-mid", "h-late"]
    assert sequencer.held() == 0


def test_a_key_at_the_frontier_waits_one_below_it_goes():
    sequencer = Sequencer(1)
    at, below = (T0, "c2", 1), (T0, "c1", 9)
    sequencer.add([event(0, reserve("at", "household", at)), event(0, reserve("below", "household", below))],
                  None, lambda e: e.message.partition, None)
    assert take(sequencer, [event(0, progress_datum("decide:0", at)),
                            event(0, progress_datum("limits:0", at))])[-1:] == ["below"]
    assert sequencer.held() == 1


LINKED_LEVELS = ("household", "linked:payment_instrument", "linked:device", "linked:building", "associate")


def linked_reserve(request_id: str, kind: str, key: ordering.Key) -> dict:
    return {**reserve(request_id, "linked", key), "scope_key": f"{kind}:id-1"}


def test_with_linked_scopes_each_level_waits_for_what_the_levels_below_can_still_pass_on():
    sequencer = Sequencer(1, lambda: LINKED_LEVELS)
    checks = [event(0, linked_reserve("l-card", "payment_instrument", (T0 + 10, "c1", 1))),
              event(0, linked_reserve("l-bldg", "building", (T0 + 10, "c2", 1))),
              event(0, reserve("a", "associate", (T0 + 10, "c3", 1)))]
    assert take(sequencer, checks + [event(0, progress_datum("decide:0", ordering.IDLE_KEY))]) == ["decide:0"]
    # The households passed on everything below T0+20, the card scopes only below T0+5: the card
    # check goes, the building and associate checks wait for their own levels' watermarks.
    level_marks = [event(0, progress_datum("limits:0", (T0 + 20, "", 0)))] + [
        event(0, progress_datum(f"limits:0:L{level}", (T0 + 5, "", 0))) for level in (2, 3, 4)]
    assert take(sequencer, level_marks)[-1:] == ["l-card"]
    assert sequencer.held() == 2
    # The device scopes passed on everything below T0+20: the building check goes, the associate's
    # waits until the building scopes say the same.
    assert take(sequencer, [event(0, progress_datum("limits:0:L3", (T0 + 20, "", 0)))])[-1:] == ["l-bldg"]
    assert sequencer.held() == 1
    assert take(sequencer, [event(0, progress_datum("limits:0:L4", (T0 + 20, "", 0)))])[-1:] == ["a"]
    assert sequencer.held() == 0


def test_without_linked_scopes_a_linked_check_is_judged_with_the_last_level():
    sequencer = Sequencer(1)
    held = [event(0, linked_reserve("l", "device", (T0 + 10, "c1", 1)))]
    assert take(sequencer, held + [event(0, progress_datum("decide:0", ordering.IDLE_KEY)),
                                   event(0, progress_datum("limits:0", (T0 + 11, "", 0)))])[-1:] == ["l"]


def test_the_linked_levels_follow_the_route_order():
    from streams.core import decision as core
    from streams.core.policy import Policy
    from streams.core.scopes import scope_levels

    assert scope_levels(Policy()) in (("household", "associate"), LINKED_LEVELS)
    assert scope_levels(Policy.from_document({"linked_accounts_scope_enabled": 1})) == LINKED_LEVELS
    assert scope_levels(Policy.from_document({"linked_accounts_scope_enabled": 0})) == ("household", "associate")
    assert tuple(f"linked:{kind}" for kind in core.LINK_FIELDS) == LINKED_LEVELS[1:-1]


def test_a_limits_partition_s_watermarks_for_every_level_ride_in_one_message():
    sequencer = Sequencer(1, lambda: LINKED_LEVELS)
    higher = [(2, (T0 + 5, "c7", 1)), (3, (T0 + 5, "", 0)), (4, (T0 + 4, "", 0))]
    datum = progress_datum("limits:0", (T0 + 20, "", 0), higher)
    assert schemas.decode(schemas.encode("LimitCheck", datum))[1]["route"] == datum["route"]
    take(sequencer, [event(0, datum)])
    assert sequencer.marks[0]["limits:0"] == (T0 + 20, "", 0)
    assert sequencer.marks[0]["limits:0:L2"] == (T0 + 5, "c7", 1)
    assert sequencer.marks[0]["limits:0:L4"] == (T0 + 4, "", 0)


def test_a_malformed_higher_level_watermark_is_ignored_and_holds_its_level_back():
    sequencer = Sequencer(1, lambda: LINKED_LEVELS)
    datum = {**progress_datum("limits:0", (T0 + 20, "", 0)), "route": ["not json", "[2, 1]", '["x", 1, "", 0]']}
    assert take(sequencer, [event(0, datum)]) == ["limits:0"]
    assert sequencer.malformed_marks_total == 3
    assert "limits:0:L2" not in sequencer.marks[0]
    assert sequencer.level_frontier(0, 2) == ordering.MIN_KEY


def test_each_released_check_reports_how_long_it_was_held_by_level_and_rare_events_are_counted():
    now_s = [100.0]
    sequencer = Sequencer(1, clock_s=lambda: now_s[0])
    take(sequencer, [event(0, reserve("h", "household", (T0 + 10, "c1", 1))),
                     event(0, reserve("a", "associate", (T0 + 10, "c2", 1)))])
    now_s[0] = 100.04
    assert take(sequencer, [event(0, progress_datum("decide:0", (T0 + 50, "", 0)))])[-1:] == ["h"]
    now_s[0] = 100.25
    assert take(sequencer, [event(0, progress_datum("limits:0", (T0 + 50, "", 0)))])[-1:] == ["a"]
    lines = sequencer.hold_seconds.render()
    assert 'remedy_scope_check_hold_seconds_bucket{level="household",le="0.05"} 1' in lines
    assert 'remedy_scope_check_hold_seconds_bucket{level="household",le="0.025"} 0' in lines
    assert 'remedy_scope_check_hold_seconds_bucket{level="associate",le="0.25"} 1' in lines
    assert 'remedy_scope_check_hold_seconds_count{level="associate"} 1' in lines
    # A check below the frontier it arrived behind is late, and counted as such.
    take(sequencer, [event(0, reserve("late", "household", (T0 + 1, "c3", 1)))])
    assert 'remedy_sequencer_events_total{event="late"} 1' in sequencer.events.render()
