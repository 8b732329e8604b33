"""Order across partitions: households and associates judge checks in order-key order, customers
wait for their answers, so decisions do not depend on timing (streams/core/ordering.py).

The model below is the protocol in small: each customer is its own partition, its watermark is
the key of its next unfed event or its blocked key; a household check is judged only below every
customer's watermark, an associate check also below every household check still to be judged.
Any interleaving the watermarks allow must give the same decisions, byte for byte.
"""

from __future__ import annotations

import json
import random
from collections import deque

import pytest

from streams.core import decision as core
from streams.core import ordering, scopes
from streams.core.policy import DAY_MS, Policy
from streams.errors import InvariantViolation
from tests.support.world import World
from tests.unit.test_core import REMEDY_KINDS, T0, order, request

# Tight shared limits, so checks compete: a household of $300 per 30 days, associates $200 a day.
TIGHT = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS},
               household_cents_max_30d=30_000, associate_cents_max_per_day=20_000)


def contended_events(seed: int) -> list[dict]:
    """Customers sharing two households and two associates, asking near the caps, in time order."""
    rng = random.Random(seed)
    events = []
    for c in range(6):
        customer = f"c{c}"
        address = f"home-{c % 2}"
        for o in range(3):
            events.append(order(f"o{c}-{o}", customer=customer, total=20_000, at=T0 + c * 10 + o, address=address))
    for n in range(40):
        customer = f"c{rng.randrange(6)}"
        orders = [e["order_id"] for e in events if e["type"] == "OrderPlaced" and e["customer_id"] == customer]
        at = T0 + 1_000 + n * rng.choice([1, 1, 500, 60_000])
        by = rng.choice(["customer", "assoc-1", "assoc-2", "assoc-1"])
        kind, order_id = rng.choice([("REFUND", rng.choice(orders)), ("CREDIT", None), ("RESHIP", rng.choice(orders))])
        events.append(request(f"r{n}", rng.choice([2_000, 5_000, 9_000, 12_000]), kind=kind, order_id=order_id,
                              customer=customer, at=at, requested_by=by))
    events.sort(key=lambda e: core.event_time_ms(e))
    return events


def run_ordered(events: list[dict], policy: Policy, rng: random.Random | None) -> World:
    """Feed and deliver in an order the watermarks allow; `rng` None: everything at once, in order."""
    world = World(policy)
    remaining: dict[str, deque] = {}
    clocks: dict[str, int] = {}
    for event in events:
        customer = event["customer_id"]
        clocks[customer] = max(clocks.get(customer, 0), core.event_time_ms(event))
        remaining.setdefault(customer, deque()).append({**event, core.POSITION_FIELD: clocks[customer]})

    def watermark(customer: str) -> ordering.Key:
        queue = remaining.get(customer)
        state = world.customers.get(customer)
        blocked = [core.blocked_order_key(customer, state)] if state is not None else []
        blocked = [key for key in blocked if key is not None]
        return ordering.decide_watermark(queue[0][core.POSITION_FIELD] if queue else None, blocked, not queue)

    while any(remaining.values()) or world.in_flight:
        household = min((watermark(c) for c in remaining), default=ordering.IDLE_KEY)
        waiting = [ordering.order_key(c) for c in world.in_flight if c["action"] == "RESERVE" and c["scope"] == "household"]
        waiting += [key for state in world.scopes.values() if (key := scopes.waiting_order_key(state)) is not None]
        (associate,) = ordering.limits_watermarks([household], [waiting])
        choices = [("feed", c) for c, queue in remaining.items() if queue]
        # A scope key's partition releases its checks in key order (the sequencer sorts what it holds).
        first_at: dict[str, ordering.Key] = {}
        for check in world.in_flight:
            if check["action"] == "RESERVE":
                slot = f"{check['scope']}:{check['scope_key']}"
                first_at[slot] = min(first_at.get(slot, ordering.IDLE_KEY), ordering.order_key(check))
        for index, check in enumerate(world.in_flight):
            frontier = household if check.get("scope") == "household" else associate
            key = ordering.order_key(check)
            if check["action"] != "RESERVE" or (key < frontier and key == first_at[f"{check['scope']}:{check['scope_key']}"]):
                choices.append(("deliver", index))
        assert choices, "nothing can move: the watermarks deadlocked"
        if rng is None:
            # Everything answered at once: deliver the smallest key first, feed only when nothing moves.
            delivers = [c for c in choices if c[0] == "deliver"]
            kind, what = min(delivers, key=lambda c: ordering.order_key(world.in_flight[c[1]])) if delivers else min(choices)
        else:
            kind, what = rng.choice(choices)
        if kind == "feed":
            world.feed(remaining[what].popleft(), deliver=False)
        else:
            world.deliver_one(what)
    return world


def finals(world: World) -> str:
    return json.dumps(world.final_decisions(), sort_keys=True)


@pytest.mark.parametrize("seed", range(8))
def test_any_interleaving_the_watermarks_allow_gives_the_same_decisions(seed):
    events = contended_events(seed)
    reference = run_ordered(events, TIGHT, None)
    outcomes = {d["outcome"] for d in reference.final_decisions().values()}
    reasons = {code for d in reference.final_decisions().values() for code in d["reason_codes"]}
    assert "GRANTED" in outcomes and reasons & {core.HOUSEHOLD_30D_CAP_EXCEEDED, core.ASSOCIATE_DAILY_BUDGET_EXCEEDED}
    for run in range(6):
        world = run_ordered(events, TIGHT, random.Random(seed * 100 + run))
        assert finals(world) == finals(reference)
        assert all(not state["queued"] and not state["reservations"] for state in world.customers.values())


def household_passing_one_on(first_cents: int, second_cents: int) -> World:
    """c1's associate-requested refund passes the shared household and waits at the associate; then
    c2's refund reaches the household (it waits there until the associate answered)."""
    world = World(TIGHT)
    world.feed(order("o1", customer="c1", total=50_000, address="home"))
    world.feed(order("o2", customer="c2", total=50_000, address="home"))
    world.feed(request("first", first_cents, kind="REFUND", order_id="o1", customer="c1", requested_by="assoc-1",
                       at=T0 + 1), deliver=False)
    (first,) = world.in_flight
    world.deliver_one()  # the household reserves and passes it on to the associate
    (to_associate,) = world.in_flight
    assert to_associate["scope"] == "associate"
    world.feed(request("second", second_cents, kind="REFUND", order_id="o2", customer="c2", at=T0 + 2), deliver=False)
    second = world.in_flight[-1]
    world.deliver_one(len(world.in_flight) - 1)  # reaches the household while the first is unsettled: it waits
    assert world.scopes["household:home"]["waiting"][0]["request_id"] == "second"
    assert ordering.order_key(second) > ordering.order_key(first)
    return world


def test_an_associate_refusal_releases_the_household_and_the_waiting_check_sees_the_room():
    world = household_passing_one_on(22_000, 20_000)
    world.deliver_all()  # the associate refuses (over $200): RELEASE, then "next" is judged
    final = world.final_decisions()
    assert final["first"]["reason_codes"] == [core.ASSOCIATE_DAILY_BUDGET_EXCEEDED]
    assert final["second"]["outcome"] == "GRANTED" and final["second"]["inputs"]["household_granted_cents_30d"] == 0


def test_a_settle_lets_the_waiting_check_count_the_passed_reservation():
    world = household_passing_one_on(15_000, 16_000)
    world.deliver_all()
    final = world.final_decisions()
    assert final["first"]["outcome"] == "GRANTED"
    assert final["second"]["reason_codes"] == [core.HOUSEHOLD_30D_CAP_EXCEEDED]  # 150 + 160 > 300
    assert "waiting" not in world.scopes["household:home"] and world.scopes["household:home"].get("unsettled") is None


def test_a_repeated_settle_or_a_settle_for_another_request_changes_nothing():
    state = {**scopes.empty_scope_state(), "unsettled": "r1"}
    settle = {"action": "SETTLE", "request_id": "r2", "scope": "household", "scope_key": "home"}
    assert scopes.handle_check(state, settle, TIGHT) == (state, [])
    cleared, out = scopes.handle_check(state, {**settle, "request_id": "r1"}, TIGHT)
    assert cleared.get("unsettled") is None and out == []
    assert scopes.handle_check(cleared, {**settle, "request_id": "r1"}, TIGHT) == (cleared, [])


def test_events_wait_behind_a_check_and_a_conflicting_repeat_is_refused_at_once():
    world = World(TIGHT)
    world.feed(order("o1", total=20_000, address="home"))
    world.feed(request("r1", 9_000, kind="REFUND", order_id="o1", at=T0 + 1), deliver=False)
    world.feed(request("r2", 1_000, at=T0 + 2), deliver=False)
    world.feed(request("r2", 1_000, at=T0 + 2), deliver=False)  # a redelivery waits once
    state = world.customers["c1"]
    assert [e["request_id"] for _, e in state["queued"]] == ["r2"]
    with pytest.raises(InvariantViolation, match="CONFLICTING_DUPLICATE: RemedyRequested r2"):
        core.handle(state, request("r2", 2_000, at=T0 + 2), TIGHT)
    with pytest.raises(InvariantViolation, match="CONFLICTING_DUPLICATE: order o1"):
        core.handle(state, order("o1", total=30_000, address="home"), TIGHT)
    ticks = core.handle(core.handle(state, core.partition_clock(T0 + 5), TIGHT)[0], core.partition_clock(T0 + 9), TIGHT)[0]
    assert [e["type"] for _, e in ticks["queued"]] == ["RemedyRequested", core.PARTITION_CLOCK]
    assert ticks["queued"][-1][1]["clock_ms"] == T0 + 9


@pytest.mark.parametrize("position_ms, blocked, quiet, expected", [
    (None, [], True, ordering.IDLE_KEY),
    (T0, [], True, ordering.IDLE_KEY),
    (T0, [], False, (T0, "", 0)),
    (T0, [(T0 - 5, "c9", 3)], False, (T0 - 5, "c9", 3)),
    (T0, [(T0 - 5, "c9", 3), (T0 - 5, "c1", 7)], True, (T0 - 5, "c1", 7)),
    (None, [], False, (0, "", 0)),
])
def test_a_decide_watermark_is_the_smallest_key_it_can_still_send(position_ms, blocked, quiet, expected):
    assert ordering.decide_watermark(position_ms, blocked, quiet) == expected


def test_a_source_not_heard_from_holds_everything_back():
    marks = {"decide:0": (T0, "", 0)}
    assert ordering.household_frontier(marks, ["decide:0", "decide:1"]) == ordering.MIN_KEY
    marks["decide:1"] = ordering.IDLE_KEY
    assert ordering.household_frontier(marks, ["decide:0", "decide:1"]) == (T0, "", 0)
    assert ordering.level_frontier(marks, ["decide:0", "decide:1"], ["limits:0"]) == ordering.MIN_KEY
    marks["limits:0"] = (T0 - 1, "c", 1)
    assert ordering.level_frontier(marks, ["decide:0", "decide:1"], ["limits:0"]) == (T0 - 1, "c", 1)


def test_checks_of_one_customer_carry_increasing_keys_and_an_answer_s_drain_goes_on_at_the_last_key():
    world = World(TIGHT)
    world.feed(order("o1", total=50_000, address="home"))
    world.feed({**request("r1", 5_000, kind="REFUND", order_id="o1", at=T0 + 10), core.POSITION_FIELD: T0 + 50},
               deliver=False)
    world.feed({**request("r2", 5_000, kind="REFUND", order_id="o1", at=T0 + 20), core.POSITION_FIELD: T0 + 60},
               deliver=False)
    (first,) = world.in_flight
    assert ordering.order_key(first) == (T0 + 50, "c1", 1)
    assert core.blocked_order_key("c1", world.customers["c1"]) == (T0 + 60, "c1", 2)  # r2 queued at T0+60
    world.deliver_all()
    # r2 waited in the queue at position T0+60: its check carries that position.
    state = world.customers["c1"]
    assert state["checks_sent"] == 2 and state["order_ms_last"] == T0 + 60
    assert world.final_decisions()["r2"]["outcome"] == "GRANTED"


def customer_with_a_check_in_flight() -> dict:
    """c1's state while its refund r1 (position T0+50) is at its household check."""
    world = World(TIGHT)
    world.feed(order("o1", total=50_000, address="home"))
    world.feed({**request("r1", 5_000, kind="REFUND", order_id="o1", at=T0 + 10), core.POSITION_FIELD: T0 + 50},
               deliver=False)
    return world.customers["c1"]


def test_a_blocked_customer_holds_the_watermark_only_at_its_first_queued_request_or_incident():
    from tests.unit.test_core import incident

    state = customer_with_a_check_in_flight()
    assert core.blocked_order_key("c1", state) is None  # its answer can make no further check
    state, _, _ = core.handle(state, {**order("o2", total=9_000, at=T0 + 20), core.POSITION_FIELD: T0 + 60}, TIGHT)
    assert core.blocked_order_key("c1", state) is None  # an order alone releases nothing
    state, _, _ = core.handle(state, {**incident("i1", "DAMAGED", order_id="o2", at=T0 + 30),
                                      core.POSITION_FIELD: T0 + 70}, TIGHT)
    assert core.blocked_order_key("c1", state) == (T0 + 70, "c1", 2)
    state, _, _ = core.handle(state, {**request("r2", 1_000, at=T0 + 40), core.POSITION_FIELD: T0 + 80}, TIGHT)
    assert core.blocked_order_key("c1", state) == (T0 + 70, "c1", 2)


def test_a_queued_request_that_can_reach_no_later_scope_holds_nothing_back():
    state = customer_with_a_check_in_flight()
    credit = {**request("r2", 1_000, at=T0 + 40), core.POSITION_FIELD: T0 + 80}  # no order, asked by the customer
    state, _, _ = core.handle(state, credit, TIGHT)
    assert core.blocked_order_key("c1", state) is None
    by_associate = {**request("r3", 1_000, at=T0 + 41, requested_by="assoc-1"), core.POSITION_FIELD: T0 + 90}
    state, _, _ = core.handle(state, by_associate, TIGHT)
    assert core.blocked_order_key("c1", state) == (T0 + 90, "c1", 2)


def test_a_check_that_came_late_waits_behind_the_household_but_never_holds_its_associate_back():
    state = {**scopes.empty_scope_state(), "unsettled": "r9", "unsettled_key": [T0 + 100, "c9", 1]}
    late = {"request_id": "r1", "order_ms": T0 + 50, "order_customer": "c1", "order_n": 1}
    later = {"request_id": "r2", "order_ms": T0 + 150, "order_customer": "c2", "order_n": 1}
    assert scopes.waiting_order_key({**state, "waiting": [late]}) is None
    assert scopes.waiting_order_key({**state, "waiting": [late, later]}) == (T0 + 150, "c2", 1)
    assert scopes.waiting_order_key({**scopes.empty_scope_state(), "unsettled": "r9", "waiting": [late]}) == (
        T0 + 50, "c1", 1)  # a state written before unsettled keys were kept: every waiting check bounds


def test_a_late_check_is_judged_at_once_on_the_room_the_unsettled_reservation_leaves():
    world = World(TIGHT)
    world.feed(order("o1", customer="c1", total=50_000, address="home"))
    world.feed(order("o2", customer="c2", total=50_000, address="home"))
    world.feed({**request("first", 15_000, kind="REFUND", order_id="o1", customer="c1", requested_by="assoc-1",
                          at=T0 + 100), core.POSITION_FIELD: T0 + 100}, deliver=False)
    world.deliver_one()  # passed on to the associate: the household is unsettled at key T0+100
    world.feed({**request("late", 16_000, kind="REFUND", order_id="o2", customer="c2", at=T0 + 50),
                core.POSITION_FIELD: T0 + 50}, deliver=False)  # a smaller key, after the frontier passed
    world.deliver_one(len(world.in_flight) - 1)
    household = world.scopes["household:home"]
    assert "waiting" not in household and household["unsettled"] == "first"  # judged at once, not waiting
    world.deliver_all()
    final = world.final_decisions()
    assert final["late"]["reason_codes"] == [core.HOUSEHOLD_30D_CAP_EXCEEDED]  # 150 reserved + 160 > 300
    assert final["first"]["outcome"] == "GRANTED"


def test_a_limits_partition_s_watermark_for_a_level_is_the_least_it_can_pass_on_from_the_levels_below():
    household, card, device = (T0 + 50, "", 0), (T0 + 30, "", 0), (T0 + 40, "", 0)
    waiting_card = (T0 + 35, "c9", 2)
    marks = ordering.limits_watermarks([household, card, device], [[], [waiting_card], []])
    # Level 1 (card): what the households can still pass on; level 2 (device): also what the card
    # scopes have not judged; level 3: the same, and a check waiting at a card scope is above it.
    assert marks == [household, card, card]
    assert ordering.limits_watermarks([household], [[(T0 + 10, "c1", 1)]]) == [(T0 + 10, "c1", 1)]
    assert ordering.limits_watermarks([], []) == []


def test_a_level_is_named_by_its_scope_and_link_kind():
    levels = ("household", "linked:payment_instrument", "linked:device", "associate")
    assert ordering.level_name("linked", "device:d-1") == "linked:device"
    assert ordering.level_of_state_key("linked:payment_instrument:card:1") == "linked:payment_instrument"
    assert ordering.level_of_state_key("household:addr-1") == "household"
    assert ordering.level_index("linked:device", levels) == 2
    assert ordering.level_index("linked:building", levels) == 3  # not in force here: the last level
