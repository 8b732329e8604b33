"""Associate concentration: one customer's share of an associate's discretionary grants in 30 days
(streams/core/scopes.py, associate_concentration_* in policy.py), each threshold at, below and above."""

from __future__ import annotations

import json

import pytest

from streams.core import decision as core
from streams.core import scopes
from streams.core.policy import DAY_MS, REMEDY_KINDS, Policy
from tests.support.world import World
from tests.unit.test_core import T0, request

# Kind caps as wide as the exposure cap, so a scope check can carry any amount up to it.
POLICY = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS})
SHARE_MAX = POLICY.associate_concentration_share_max_percent_30d
CENTS_MIN = POLICY.associate_concentration_cents_min_30d


def associate_check(request_id: str, customer: str, cents: int, at: int = T0, associate: str = "assoc-1",
                    confirmed: bool = False) -> dict:
    """A RESERVE at the associate as a customer sends it (built once through the customer scope)."""
    world = World(POLICY)
    world.feed(request("template", 100, customer=customer, requested_by=associate, at=at), deliver=False)
    (check,) = world.in_flight
    inputs = {core.INCIDENT_CONFIRMED_INPUT: 1} if confirmed else {}
    return {**check, "request_id": request_id, "event_id": f"{request_id}/RESERVE/associate:{associate}",
            "amount_cents": cents, "inputs": inputs}


def judged(state: dict, check: dict, policy: Policy = POLICY) -> tuple[dict, dict]:
    """The associate's state after the check, and its answer to the customer."""
    state, out = scopes.handle_check(state, check, policy)
    (result,) = [c for c in out if c["action"] == "RESULT"]
    return state, result


def with_grants(grants: list[tuple[str, str, int, int]], policy: Policy = POLICY) -> dict:
    """An associate that granted (request id, customer, cents, at) in turn, each passed."""
    state = scopes.empty_scope_state()
    for request_id, customer, cents, at in grants:
        state, result = judged(state, associate_check(request_id, customer, cents, at), policy)
        assert result["passed"], result
    return state


def others(cents: int, at: int = T0) -> list[tuple[str, str, int, int]]:
    """Grants to other customers adding up to `cents` (at most $100 each, as customers get them)."""
    return [(f"other-{n}", f"c-other-{n}", min(10_000, cents - n * 10_000), at + n)
            for n in range((cents + 9_999) // 10_000)]


@pytest.mark.parametrize("others_cents, escalated", [
    (40_000, False),  # the friend's $100 is exactly 20% of $500: at the share, not above it
    (40_001, False),  # one cent more elsewhere: below it
    (39_999, True),   # one cent less elsewhere: above it
])
def test_a_customer_above_the_share_of_the_associate_s_discretionary_cents_goes_to_a_second_person(others_cents, escalated):
    state = with_grants(others(others_cents) + [("friend-1", "c-friend", 5_000, T0 + 100)])
    state, result = judged(state, associate_check("friend-2", "c-friend", 5_000, T0 + 200))
    assert result["passed"] is not escalated
    if escalated:
        assert (result["outcome"], result["reason_codes"]) == ("ESCALATED", [core.ASSOCIATE_CUSTOMER_CONCENTRATION])
    inputs = result["inputs"]
    assert inputs["associate_customer_granted_cents_30d"] == 5_000  # before this request
    assert inputs["associate_customer_grants_30d"] == 1
    assert inputs["associate_discretionary_granted_cents_30d"] == others_cents + 5_000
    assert inputs["associate_customer_share_percent_30d"] == 10_000 * 100 // (others_cents + 10_000)  # with it
    assert inputs["associate_concentration_share_max_percent_30d"] == SHARE_MAX == 20
    assert inputs["associate_concentration_cents_min_30d"] == CENTS_MIN
    assert inputs["associate_concentration_grants_min_30d"] == 2
    assert ("friend-2" in state["reservations"]) is not escalated


@pytest.mark.parametrize("friend_cents, escalated", [
    (CENTS_MIN, False),      # exactly the floor ($75): not above it
    (CENTS_MIN - 1, False),  # below it
    (CENTS_MIN + 1, True),   # a cent above it
])
def test_only_a_customer_above_the_cents_floor_is_judged_concentrated(friend_cents, escalated):
    # The associate granted nothing else: every share is 100%, only the cents floor decides.
    first = friend_cents // 2
    state = with_grants([("friend-1", "c-friend", first, T0)])
    _, result = judged(state, associate_check("friend-2", "c-friend", friend_cents - first, T0 + 100))
    assert result["passed"] is not escalated
    assert result["inputs"]["associate_customer_share_percent_30d"] == 100


@pytest.mark.parametrize("grants_min, escalated", [
    (2, True),   # the second grant, at the floor of 2
    (1, True),   # a floor of 1: above it
    (3, False),  # a floor of 3: below it
])
def test_only_a_customer_with_enough_grants_from_the_associate_is_judged_concentrated(grants_min, escalated):
    policy = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS},
                    associate_concentration_grants_min_30d=grants_min)
    state = with_grants([("friend-1", "c-friend", 5_000, T0)], policy)
    _, result = judged(state, associate_check("friend-2", "c-friend", 5_000, T0 + 100), policy)
    assert result["passed"] is not escalated


def test_one_large_grant_of_a_quiet_associate_is_not_a_concentration():
    # A new associate's first grant is all of its book; one grant is no relationship.
    _, result = judged(scopes.empty_scope_state(), associate_check("r1", "c1", 20_000))
    assert result["passed"] and result["inputs"]["associate_customer_share_percent_30d"] == 100


@pytest.mark.parametrize("days_before, counted", [(29, True), (30, False)])
def test_the_window_is_the_thirty_utc_days_up_to_the_request_s_day(days_before, counted):
    day_start = T0 - T0 % DAY_MS
    state = with_grants([("friend-1", "c-friend", 5_000, day_start - days_before * DAY_MS)])
    _, result = judged(state, associate_check("friend-2", "c-friend", 5_000, day_start + 1_000))
    assert result["inputs"]["associate_customer_grants_30d"] == (1 if counted else 0)
    assert result["passed"] is not counted


def test_a_confirmed_incident_s_remedy_is_neither_counted_nor_judged():
    state = scopes.empty_scope_state()
    for n in range(3):  # the carrier lost three parcels; the associate reships each
        state, result = judged(state, associate_check(f"carrier-{n}", "c-friend", 8_000, T0 + n, confirmed=True))
        assert result["passed"] and "associate_customer_share_percent_30d" not in result["inputs"]
    assert state["customer_days"] == {} and sum(state["discretionary_days"].values()) == 0
    assert sum(state["days"].values()) == 24_000  # the daily budget still counts them
    state, result = judged(state, associate_check("goodwill", "c-friend", 5_000, T0 + 10))
    assert result["passed"] and result["inputs"]["associate_customer_grants_30d"] == 0


def test_a_redelivered_reserve_is_answered_the_same_and_counted_once():
    state = with_grants([("friend-1", "c-friend", 5_000, T0)])
    check = associate_check("friend-2", "c-friend", 5_000, T0 + 100)
    state, first = scopes.handle_check(state, check, POLICY)
    again_state, again = scopes.handle_check(state, check, POLICY)
    assert (again_state, again) == (state, first)
    assert first[0]["reason_codes"] == [core.ASSOCIATE_CUSTOMER_CONCENTRATION]
    assert state["customer_days"]["c-friend"] == {str(T0 // DAY_MS): [5_000, 1]}  # the escalated one is not counted


def test_a_release_takes_the_grant_out_of_the_customer_s_totals():
    state = with_grants([("friend-1", "c-friend", 5_000, T0)])
    release = {**associate_check("friend-1", "c-friend", 5_000, T0), "action": "RELEASE"}
    state, out = scopes.handle_check(state, release, POLICY)
    assert out == [] and state["customer_days"] == {}
    assert sum(state["discretionary_days"].values()) == 0


def test_an_associate_state_written_before_the_concentration_totals_still_loads():
    # The earlier form: 5-field reservations and per-day totals, no customer totals.
    day = str(T0 // DAY_MS)
    earlier = {"reservations": {"old": [T0, 9_000, None, None, 0]}, "answers": {"old": [T0, None, {}, 1]},
               "released": {}, "judged": 1, "days": {day: 9_000}}
    state, result = judged(earlier, associate_check("new", "c-friend", 5_000, T0 + 1))
    # The customers are not known from before (start empty); the day's total stands in for the
    # discretionary total, so every share only looks smaller than with the full history.
    assert result["passed"] and result["inputs"]["associate_discretionary_granted_cents_30d"] == 9_000
    assert state["customer_days"] == {"c-friend": {day: [5_000, 1]}}
    release_old = {**associate_check("old", "c-old", 9_000, T0), "action": "RELEASE"}
    state, _ = scopes.handle_check(state, release_old, POLICY)
    assert state["days"][day] == 5_000 and state["customer_days"] == {"c-friend": {day: [5_000, 1]}}


def test_a_busy_associate_keeps_a_bounded_number_of_customer_days_and_forgets_the_smallest_first():
    state = scopes.empty_scope_state()
    limit = scopes.CONCENTRATION_ENTRIES_MAX
    state, _ = judged(state, associate_check("friend-1", "c-friend", 9_000, T0))
    for n in range(limit + 50):
        state, _ = judged(state, associate_check(f"r{n}", f"c{n}", 100, T0 + 1 + n))
    entries = sum(len(days) for days in state["customer_days"].values())
    assert entries <= limit and "c-friend" in state["customer_days"]
    assert sum(state["discretionary_days"].values()) == 9_000 + 100 * (limit + 50)  # the totals stay whole
    assert len(json.dumps(state["customer_days"], separators=(",", ":"))) < 64 * 1024


def test_an_erased_customer_s_totals_stay_counted_under_the_pseudonym():
    state = with_grants([("req-c-friend-1", "c-friend", 5_000, T0)])
    forget = {**associate_check("req-c-friend-1", "c-friend", 0, T0), "action": "FORGET", "pseudonym": "anon-1"}
    state, out = scopes.handle_check(state, forget, POLICY)
    assert out == [] and "c-friend" not in json.dumps(state)
    assert state["customer_days"] == {"anon-1": {str(T0 // DAY_MS): [5_000, 1]}}


# Stories, through the customer scope -----------------------------------------------------------

def goodwill(world: World, request_id: str, customer: str, cents: int, at: int, associate: str) -> dict:
    (decision,) = world.feed(request(request_id, cents, customer=customer, requested_by=associate, at=at))
    return decision


def test_an_associate_crediting_the_same_friend_again_is_escalated():
    # Default policy: the friend's two credits stay under the $100 credit room and under the
    # repeated-goodwill signal (2 in 30 days); the associate gives little to anyone else.
    world = World(Policy())
    for n in range(3):
        assert goodwill(world, f"small-{n}", f"c-{n}", 1_500, T0 + n, "assoc-pal")["outcome"] == "GRANTED"
    assert goodwill(world, "pal-1", "c-pal", 4_000, T0 + DAY_MS, "assoc-pal")["outcome"] == "GRANTED"
    second = goodwill(world, "pal-2", "c-pal", 4_500, T0 + 5 * DAY_MS, "assoc-pal")
    assert (second["outcome"], second["reason_codes"]) == ("ESCALATED", [core.ASSOCIATE_CUSTOMER_CONCENTRATION])
    assert second["inputs"]["associate_customer_granted_cents_30d"] == 4_000
    assert second["inputs"]["associate_customer_share_percent_30d"] == 8_500 * 100 // (4_500 + 4_000 + 4_500)


def test_an_associate_serving_many_customers_is_not_escalated_for_a_customer_who_calls_twice():
    world = World(Policy())
    for n in range(30):
        assert goodwill(world, f"many-{n}", f"c-{n}", 1_500, T0 + n * 1_000, "assoc-busy")["outcome"] == "GRANTED"
    assert goodwill(world, "caller-1", "c-caller", 4_000, T0 + DAY_MS, "assoc-busy")["outcome"] == "GRANTED"
    second = goodwill(world, "caller-2", "c-caller", 4_500, T0 + 5 * DAY_MS, "assoc-busy")
    assert (second["outcome"], second["reason_codes"]) == ("GRANTED", [core.WITHIN_LIMITS])
    assert second["inputs"]["associate_customer_share_percent_30d"] < SHARE_MAX


def test_an_erasure_tells_every_associate_that_judged_the_customer_even_when_no_id_embeds_it():
    from tests.unit.test_privacy import erased

    world = World(Policy())
    goodwill(world, "g-17", "c-erase", 2_000, T0, "assoc-9")  # the request id does not embed the customer id
    goodwill(world, "g-18", "c-erase", 2_000, T0 + 1, "assoc-9")
    assert "c-erase" in json.dumps(world.scopes["associate:assoc-9"])
    world.feed(erased(at=T0 + 10_000, customer="c-erase"))
    after = world.scopes["associate:assoc-9"]
    assert "c-erase" not in json.dumps(after)
    (pseudonym,) = after["customer_days"]
    assert after["customer_days"][pseudonym] == {str(T0 // DAY_MS): [4_000, 2]}  # still counted


def test_an_incident_s_remedies_are_one_grant_and_the_next_favour_is_the_second():
    from tests.unit.test_core import incident, order, seasoned

    world = World(Policy())
    world.feed(seasoned("c-victim"))
    world.feed(order("o1", customer="c-victim", total=8_000, at=T0 - 2 * DAY_MS, address="home-v"))
    world.feed(incident("theft", "STOLEN_AFTER_DELIVERY", customer="c-victim", at=T0, source="CUSTOMER"))
    (reship,) = world.feed(request("reship", 8_000, kind="RESHIP", order_id="o1", customer="c-victim", at=T0 + 1,
                                   requested_by="assoc-max", incident_id="theft"))
    (express,) = world.feed(request("express", 1_299, kind="SHIPPING_UPGRADE", order_id="o1", customer="c-victim",
                                    at=T0 + 2, requested_by="assoc-max", incident_id="theft"))
    # All of a quiet associate's book and above $75, but one theft: one grant.
    assert [reship["outcome"], express["outcome"]] == ["GRANTED", "GRANTED"]
    assert express["inputs"]["associate_customer_grants_30d"] == 1
    later = goodwill(world, "later", "c-victim", 1_000, T0 + DAY_MS, "assoc-max")
    assert (later["outcome"], later["reason_codes"]) == ("ESCALATED", [core.ASSOCIATE_CUSTOMER_CONCENTRATION])


# Property: the totals are a fold of what the associate holds -------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

STEPS = st.lists(st.tuples(st.sampled_from(["RESERVE", "RESERVE", "RELEASE", "REPEAT"]),
                           st.integers(0, 5), st.integers(0, 40), st.integers(1, 9_000), st.booleans()),
                 max_size=40)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_concentration_totals_always_add_up_to_the_discretionary_grants_held(steps):
    state, sent = scopes.empty_scope_state(), []
    for number, (action, customer, day, cents, confirmed) in enumerate(steps):
        if action == "RESERVE":
            check = associate_check(f"r{number}", f"c{customer}", cents, T0 + day * DAY_MS, confirmed=confirmed)
            state, _ = scopes.handle_check(state, check, POLICY)
            sent.append(check)
        elif action == "REPEAT" and sent:
            check = sent[number % len(sent)]
            again, _ = scopes.handle_check(state, check, POLICY)
            newest = max(c["at"] for c in sent)
            if check["at"] > newest - DAY_MS - POLICY.request_lateness_ms_max:
                # A redelivered RESERVE the associate still holds the answer of changes nothing
                # (older ones are judged again, docs/decisions.md "What a ... scope remembers").
                assert again == state
        elif action == "RELEASE" and sent:
            state, _ = scopes.handle_check(state, {**sent[number % len(sent)], "action": "RELEASE"}, POLICY)
    if "customer_days" not in state:
        return
    per_day: dict[str, int] = {}
    for days in state["customer_days"].values():
        for day, (day_cents, grants) in days.items():
            per_day[day] = per_day.get(day, 0) + day_cents
            assert day_cents >= 0 and grants >= 0
    assert per_day == {day: c for day, c in state["discretionary_days"].items() if c or day in per_day}
    held = sum(r[1] for r in state["reservations"].values() if len(r) > 5 and r[5])
    days = [day for _, _, day, _, _ in steps]
    if max(days) - min(days) < 7:  # everything is still within the day-plus-lateness detail
        assert held == sum(per_day.values())
