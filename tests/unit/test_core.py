"""Given/when/then tests of the decision core and the scopes: every cap at, below and above its
value, every trust tier, every reason code, parking, idempotency and determinism."""

from __future__ import annotations

import json

import pytest
from hypothesis import given as for_all, settings
from hypothesis import strategies as st

from streams.errors import InvariantViolation
from streams.core import decision as core
from streams.core.policy import DAY_MS, REMEDY_KINDS, Policy
from tests.support.world import World

T0 = 1_790_000_000_000  # a fixed event time (ms); the core never reads a clock
# Kind caps as wide as the exposure cap, so each test isolates the cap it is about.
WIDE = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS})
# The same with a $150 auto-approval ceiling, so a request can be above it and still within the caps.
CEILING_150 = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS}, remedy_cents_max_per_request=15_000)
POLICY = Policy()
CAP = POLICY.remedy_cents_max_per_customer_30d


def order(order_id="o1", customer="c1", total=10_000, digital=False, at=T0, address="addr-1"):
    return {
        "type": "OrderPlaced", "event_id": f"e-{order_id}", "order_id": order_id, "customer_id": customer,
        "placed_at": at, "total_cents": total, "currency": "USD",
        "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": total}],
        "shipping_address_id": address, "digital": digital,
    }


def incident(incident_id, kind="LOST_IN_TRANSIT", customer="c1", order_id="o1", at=T0, source="CARRIER"):
    return {"type": "IncidentReported", "event_id": f"e-{incident_id}", "incident_id": incident_id,
            "customer_id": customer, "order_id": order_id, "kind": kind, "source": source, "reported_at": at,
            "description": None}


def request(request_id, amount, kind="CREDIT", order_id=None, customer="c1", at=T0, currency="USD",
            requested_by="customer", incident_id=None):
    return {
        "type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": customer,
        "order_id": order_id, "incident_id": incident_id, "kind": kind, "amount_cents": amount, "currency": currency,
        "requested_by": requested_by, "requested_at": at, "reason": "test",
    }


def seasoned(customer="c1"):
    """An earlier order, months back, so the customer is not a new account (its first-order claims
    would go to a person: NEW_ACCOUNT_NON_RECEIPT_CLAIM)."""
    return order(f"o-old-{customer}", customer=customer, at=T0 - 60 * DAY_MS, address=f"addr-old-{customer}")


def world_after(*events, policy=POLICY):
    """A world that has seen these events, with every limit check delivered."""
    world = World(policy)
    for event in events:
        world.feed(event)
    return world


def outcomes(decisions):
    return [(d["request_id"], d["outcome"], d["reason_codes"]) for d in decisions]


# Customer exposure caps ------------------------------------------------------------------

def spend(world_events, total, customer="c1", at=T0, prefix="pre"):
    """Requests granting exactly `total` cents in chunks of at most 10,000 (various kinds)."""
    events, n = [], 0
    while total > 0:
        part = min(total, 10_000)
        events.append(request(f"{prefix}{n}", part, kind=REMEDY_KINDS[0], customer=customer, at=at + n))
        total -= part
        n += 1
    return world_events + events


@pytest.mark.parametrize("amount, outcome", [(999, "GRANTED"), (1_000, "GRANTED"), (1_001, "DENIED")])
def test_customer_30d_cap_at_below_and_above(amount, outcome):
    world = world_after(*spend([], CAP - 1_000), policy=WIDE)
    (decision,) = world.feed(request("rX", amount, at=T0 + 100))
    assert decision["outcome"] == outcome
    assert decision["granted_cents"] == (amount if outcome == "GRANTED" else 0)
    assert decision["reason_codes"] == [core.WITHIN_LIMITS if outcome == "GRANTED" else core.CUSTOMER_30D_CAP_EXCEEDED]
    assert decision["inputs"]["customer_granted_cents_30d"] == CAP - 1_000
    assert decision["inputs"]["customer_cap_cents_30d"] == CAP


def big_refund(amount, policy=WIDE, earlier=(), at=T0 + 10, kind="REFUND"):
    """A refund (or another kind) on an order of $1,000, after `earlier` events."""
    world = world_after(order("big-o", total=100_000), *earlier, policy=policy)
    (decision,) = world.feed(request("big", amount, kind=kind, order_id="big-o", at=at))
    return decision


@pytest.mark.parametrize("amount, outcome, reason", [
    (CAP - 1, "GRANTED", core.WITHIN_LIMITS), (CAP, "GRANTED", core.WITHIN_LIMITS),
    (CAP + 1, "ESCALATED", core.REQUEST_ABOVE_CUSTOMER_CAP)])
def test_a_first_refund_larger_than_the_whole_cap_goes_to_a_person_not_denied(amount, outcome, reason):
    decision = big_refund(amount)
    assert (decision["outcome"], decision["reason_codes"]) == (outcome, [reason])
    assert decision["granted_cents"] == (amount if outcome == "GRANTED" else 0)
    assert decision["inputs"]["customer_granted_cents_30d"] == 0


@pytest.mark.parametrize("granted_before, outcome, reason", [
    (0, "ESCALATED", core.REQUEST_ABOVE_CUSTOMER_CAP), (1, "DENIED", core.CUSTOMER_30D_CAP_EXCEEDED)])
def test_a_large_refund_after_any_grant_in_the_window_is_denied_by_the_cap(granted_before, outcome, reason):
    earlier = [request("small", granted_before)] if granted_before else []
    decision = big_refund(CAP + 1, earlier=earlier)
    assert (decision["outcome"], decision["reason_codes"]) == (outcome, [reason])


def test_a_large_refund_is_denied_when_grants_older_than_30_days_fill_the_90_day_room():
    # Nothing in the last 30 days, but $400 of the $500 90-day room is used: denied, not escalated.
    earlier = [request("m1", 20_000, at=T0 - 80 * DAY_MS), request("m2", 20_000, at=T0 - 45 * DAY_MS)]
    decision = big_refund(CAP + 1, earlier=earlier, at=T0)
    assert decision["inputs"]["customer_granted_cents_30d"] == 0
    assert decision["inputs"]["customer_granted_cents_90d"] == 40_000
    assert (decision["outcome"], decision["reason_codes"]) == ("DENIED", [core.CUSTOMER_90D_CAP_EXCEEDED])


def test_with_the_switch_off_a_first_refund_larger_than_the_cap_is_denied():
    off = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS},
                 request_above_customer_cap_escalated=0)
    decision = big_refund(CAP + 1, policy=off)
    assert (decision["outcome"], decision["reason_codes"]) == ("DENIED", [core.CUSTOMER_30D_CAP_EXCEEDED])


def test_goodwill_above_its_kind_cap_stays_denied_whatever_was_granted():
    # The size of a credit is the policy's call, not bad luck: only refunds and reshipments escalate.
    decision = big_refund(POLICY.kind_cents_max_per_customer_30d["CREDIT"] + 1, policy=POLICY, kind="CREDIT")
    assert (decision["outcome"], decision["reason_codes"]) == ("DENIED", [core.CUSTOMER_KIND_30D_CAP_EXCEEDED])


def test_a_refund_above_the_default_kind_cap_with_nothing_granted_goes_to_a_person():
    decision = big_refund(POLICY.kind_cents_max_per_customer_30d["REFUND"] + 1, policy=POLICY)
    assert (decision["outcome"], decision["reason_codes"]) == ("ESCALATED", [core.REQUEST_ABOVE_CUSTOMER_CAP])


@pytest.mark.parametrize("amount, outcome", [(999, "GRANTED"), (1_000, "GRANTED"), (1_001, "DENIED")])
def test_customer_90d_cap_at_below_and_above(amount, outcome):
    cap_90d = POLICY.remedy_cents_max_per_customer_90d
    events = spend([], CAP, prefix="m1-") + spend([], cap_90d - CAP - 1_000, at=T0 + 35 * DAY_MS, prefix="m2-")
    world = world_after(*events, policy=WIDE)
    (decision,) = world.feed(request("rX", amount, at=T0 + 70 * DAY_MS))
    assert decision["inputs"]["customer_granted_cents_90d"] == cap_90d - 1_000
    assert decision["outcome"] == outcome
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.CUSTOMER_90D_CAP_EXCEEDED]


@pytest.mark.parametrize("amount, outcome", [(999, "GRANTED"), (1_000, "GRANTED"), (1_001, "DENIED")])
def test_customer_kind_cap_at_below_and_above(amount, outcome):
    gift_cap = POLICY.kind_cents_max_per_customer_30d["GIFT_WRAP"]
    world = world_after(request("g0", gift_cap - 1_000, kind="GIFT_WRAP"))
    (decision,) = world.feed(request("g1", amount, kind="GIFT_WRAP", at=T0 + 1))
    assert decision["outcome"] == outcome
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.CUSTOMER_KIND_30D_CAP_EXCEEDED]
    # Other kinds still have room.
    (credit,) = world.feed(request("c1", 1_000, kind="CREDIT", at=T0 + 2))
    assert credit["outcome"] == "GRANTED"


@pytest.mark.parametrize("offset_ms, counted", [(-1, True), (0, False), (1, False)])
def test_grant_stops_counting_exactly_one_window_later(offset_ms, counted):
    world = world_after(request("r1", 15_000, at=T0), policy=WIDE)
    (decision,) = world.feed(request("r2", 15_000, at=T0 + POLICY.customer_window_ms + offset_ms))
    assert decision["inputs"]["customer_granted_cents_30d"] == (15_000 if counted else 0)
    assert decision["outcome"] == ("DENIED" if counted else "GRANTED")


@pytest.mark.parametrize(
    "amount, outcome",
    [(CEILING_150.remedy_cents_max_per_request - 1, "GRANTED"),
     (CEILING_150.remedy_cents_max_per_request, "GRANTED"),
     (CEILING_150.remedy_cents_max_per_request + 1, "ESCALATED")],
)
def test_request_above_auto_approval_ceiling_is_escalated_not_denied(amount, outcome):
    (decision,) = world_after(policy=CEILING_150).feed(request("r1", amount))
    assert decision["outcome"] == outcome
    if outcome == "ESCALATED":
        assert decision["reason_codes"] == [core.ABOVE_AUTO_APPROVAL_CEILING]
        assert decision["granted_cents"] == 0


def test_escalated_and_denied_requests_do_not_use_the_cap():
    world = world_after(request("big", CEILING_150.remedy_cents_max_per_request + 1), request("over", CAP + 1),
                        policy=CEILING_150)
    assert core.granted_in_window_cents(world.customers["c1"], T0, POLICY.customer_window_ms) == 0


# Incident claims ---------------------------------------------------------------------------

@pytest.mark.parametrize("earlier, outcome", [(1, "GRANTED"), (2, "DENIED")])
def test_theft_claims_per_customer_at_and_above(earlier, outcome):
    limit = POLICY.incident_claims_max_per_customer_90d["STOLEN_AFTER_DELIVERY"]
    assert limit == 2
    events = [seasoned(), order()]
    for i in range(earlier):
        events += [incident(f"i{i}", "STOLEN_AFTER_DELIVERY", source="CUSTOMER"),
                   request(f"r{i}", 1_000, incident_id=f"i{i}", at=T0 + i)]
    world = world_after(*events)
    world.feed(incident("iX", "STOLEN_AFTER_DELIVERY", source="CUSTOMER"))
    (decision,) = world.feed(request("rX", 1_000, incident_id="iX", at=T0 + 10))
    assert decision["outcome"] == outcome
    assert decision["inputs"]["customer_incident_claims_90d"] == earlier
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.CUSTOMER_INCIDENT_CLAIMS_EXCEEDED]


def test_one_remedy_of_each_kind_per_incident_but_several_kinds_are_fine():
    world = world_after(seasoned(), order(at=T0 - 10 * DAY_MS), incident("i1", source="CUSTOMER"))
    first = world.feed(request("r1", 5_000, kind="RESHIP", order_id="o1", incident_id="i1"))
    wrap = world.feed(request("r2", 499, kind="GIFT_WRAP", order_id="o1", incident_id="i1", at=T0 + 1))
    again = world.feed(request("r3", 5_000, kind="RESHIP", order_id="o1", incident_id="i1", at=T0 + 2))
    assert outcomes(first + wrap + again) == [
        ("r1", "GRANTED", [core.WITHIN_LIMITS]), ("r2", "GRANTED", [core.WITHIN_LIMITS]),
        ("r3", "DENIED", [core.DUPLICATE_REMEDY_FOR_INCIDENT])]
    assert world.customers["c1"]["history"]["claims"] == 1  # one incident, however many remedies


# Household and associate scopes ------------------------------------------------------------

@pytest.mark.parametrize("earlier, outcome", [(0, "GRANTED"), (1, "GRANTED"), (2, "DENIED")])
def test_household_theft_limit_at_and_above_stops_a_porch_pirate_ring(earlier, outcome):
    limit = POLICY.household_incident_claims_max_90d["STOLEN_AFTER_DELIVERY"]
    assert limit == 2
    world = World()
    for n in range(earlier + 1):
        customer = f"acct{n}"
        world.feed(seasoned(customer))
        world.feed(order(f"o{n}", customer=customer, address="porch-1"))
        world.feed(incident(f"i{n}", "STOLEN_AFTER_DELIVERY", customer=customer, order_id=f"o{n}", source="CUSTOMER"))
        decisions = world.feed(request(f"r{n}", 2_000, kind="RESHIP", order_id=f"o{n}", customer=customer,
                                       incident_id=f"i{n}", at=T0 + n))
    (last,) = decisions
    assert last["outcome"] == outcome
    assert last["inputs"]["household_incident_claims_90d"] == earlier
    if outcome == "DENIED":
        assert last["reason_codes"] == [core.HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED]


def history_state(first_order_ms, spend_cents, claims, orders, recent_days=30, confirmed=False):
    """A customer state with `orders` orders and `claims` claims (incidents reported, remedied) placed
    `recent_days` ago (the 90-day window counts them), its first order at `first_order_ms`."""
    state = core.empty_state()
    placed = T0 - recent_days * DAY_MS
    state["orders"] = {f"h{n}": {"placed_at": placed, "total_cents": 1_000, "currency": "USD", "digital": False,
                                  "shipping_address_id": "addr-1", "refunded_cents": 0, "delivered_at": None}
                       for n in range(orders)}
    state["grants"] = [[placed, 100, f"hr{n}", "CREDIT", f"hi{n}", "LATE_DELIVERY", int(confirmed)] for n in range(claims)]
    state["incidents"] = {f"hi{n}": {"kind": "LATE_DELIVERY", "order_id": None, "reported_at": placed,
                                     "source": "CARRIER" if confirmed else "CUSTOMER"} for n in range(claims)}
    state["history"] = {"first_order_ms": first_order_ms, "orders": orders, "spend_cents": spend_cents,
                        "claims": claims, "orders_clock_ms": placed}
    return state


def test_a_watch_customer_s_claims_go_to_a_person_but_goodwill_and_proactive_remedies_do_not():
    state = history_state(T0 - 60 * DAY_MS, 1_000, claims=4, orders=4)
    world = World(WIDE)
    world.customers["c1"] = state
    world.feed(incident("i9", "DAMAGED", order_id=None, source="CUSTOMER"))
    (claim,) = world.feed(request("claim", 1_000, incident_id="i9"))
    (goodwill,) = world.feed(request("goodwill", 1_000, at=T0 + 1))
    assert (claim["outcome"], claim["reason_codes"], claim["trust_tier"]) == ("ESCALATED", [core.WATCH_TIER_REVIEW], "WATCH")
    assert goodwill["outcome"] == "GRANTED"


def test_household_claims_cap_stops_accounts_sharing_an_address():
    limit = POLICY.household_claims_max_90d
    world = World()
    results = []
    for n in range(limit + 2):
        customer = f"acct{n}"
        world.feed(order(f"o{n}", customer=customer, address="porch-1"))
        world.feed(incident(f"i{n}", "DAMAGED", customer=customer, order_id=f"o{n}", source="CUSTOMER"))
        results += world.feed(request(f"r{n}", 2_000, kind="RESHIP", order_id=f"o{n}", customer=customer,
                                      incident_id=f"i{n}", at=T0 + n))
    assert [d["outcome"] for d in results] == ["GRANTED"] * limit + ["DENIED"] * 2
    assert results[-1]["reason_codes"] == [core.HOUSEHOLD_CLAIMS_EXCEEDED]
    assert results[-1]["household_id"] == "porch-1"
    assert results[-1]["inputs"]["household_claims_90d"] == limit
    # The denied accounts' own customer scope gave the reserved room back.
    assert core.granted_in_window_cents(world.customers[f"acct{limit}"], T0 + 100, POLICY.customer_window_ms) == 0


@pytest.mark.parametrize("amount, outcome", [(999, "GRANTED"), (1_000, "GRANTED"), (1_001, "ESCALATED")])
def test_associate_daily_budget_at_below_and_above_escalates(amount, outcome):
    budget = POLICY.associate_cents_max_per_day
    world = World(WIDE)
    spent, n = 0, 0
    while spent < budget - 1_000:
        part = min(10_000, budget - 1_000 - spent)
        world.feed(request(f"r{n}", part, customer=f"c{n}", requested_by="assoc-9"))
        spent, n = spent + part, n + 1
    (decision,) = world.feed(request("rX", amount, customer="cX", requested_by="assoc-9", at=T0 + 1))
    assert decision["outcome"] == outcome
    if outcome == "ESCALATED":
        assert decision["reason_codes"] == [core.ASSOCIATE_DAILY_BUDGET_EXCEEDED]
        assert core.granted_in_window_cents(world.customers["cX"], T0 + 1, POLICY.customer_window_ms) == 0
    # Another associate, or the next UTC day, has a fresh budget.
    (other,) = world.feed(request("rY", 5_000, customer="cY", requested_by="assoc-8", at=T0 + 2))
    assert other["outcome"] == "GRANTED"


def test_a_later_scope_denial_releases_the_household_reservation():
    budget = POLICY.associate_cents_max_per_day
    world = World(WIDE)
    world.feed(order("o1", address="home-1"))
    world.feed(request("big", budget + 1 - 1, order_id="o1", requested_by="assoc-1") | {"amount_cents": 15_000})
    for n in range(budget // 10_000):
        world.feed(request(f"fill{n}", 10_000, customer=f"f{n}", requested_by="assoc-2"))
    world.feed(order("o2", customer="c2", address="home-1"))
    # A claim the customer asserts (an associate's goodwill without an incident is no household claim).
    world.feed(incident("i2", "DAMAGED", customer="c2", order_id="o2", source="CUSTOMER", at=T0 + 4))
    (denied,) = world.feed(request("r2", 10_000, customer="c2", order_id="o2", requested_by="assoc-2", at=T0 + 5,
                                   incident_id="i2"))
    assert denied["reason_codes"] == [core.ASSOCIATE_DAILY_BUDGET_EXCEEDED]
    household = world.scopes["household:home-1"]
    assert "r2" not in household["reservations"] and "r2" in household["released"]


def test_redelivered_checks_and_results_change_nothing():
    world = World()
    world.feed(order("o1", address="h"))
    world.feed(request("r1", 1_000, order_id="o1", requested_by="assoc-1"), deliver=False)
    reserve = dict(world.in_flight[0])
    world.deliver_all()
    scopes_before = json.dumps(world.scopes, sort_keys=True)
    world.in_flight.append(reserve)  # the household RESERVE is redelivered
    world.deliver_all()
    assert json.dumps(world.scopes, sort_keys=True) == scopes_before
    assert len({d["decision_id"] for d in world.decisions}) == 1
    assert {d["outcome"] for d in world.decisions} == {"GRANTED"}


# Trust tiers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "tenure_days, spend_cents, claims, tier",
    [
        (0, 0, 0, "NEW"),
        (364, 100_000, 0, "NEW"),
        (365, 49_999, 0, "NEW"),
        (365, 50_000, 0, "ESTABLISHED"),
        (5 * 365, 199_999, 0, "ESTABLISHED"),
        (5 * 365, 200_000, 0, "LOYAL"),
        (10 * 365, 1_000_000, 4, "LOYAL"),   # 4 claims over 16 orders is 25%: not above the line
        (10 * 365, 1_000_000, 5, "WATCH"),   # 5 claims over 16 orders is above 25%
        (0, 0, 2, "NEW"),                    # 2 claims over 16 orders: fewer than watch_claims_min
    ],
)
def test_trust_tiers(tenure_days, spend_cents, claims, tier):
    assert POLICY.watch_claims_percent_of_orders_min == 25
    state = history_state(T0 - tenure_days * DAY_MS, spend_cents, claims, 16 if claims else 1)
    assert core.trust_tier(state, T0, POLICY) == tier


@pytest.mark.parametrize("orders_90d, tier", [(21, "LOYAL"), (20, "LOYAL"), (19, "WATCH")])
def test_watch_compares_claims_with_recent_orders_not_a_long_history(orders_90d, tier):
    # 5 claims in 90 days against 20 orders in 90 days is 25%: at the line, not above it.
    state = history_state(T0 - 10 * 365 * DAY_MS, 1_000_000, claims=5, orders=orders_90d)
    # Hundreds of orders years ago do not dilute a burst of recent claims.
    state["history"]["orders"] = 500
    assert core.trust_tier(state, T0, POLICY) == tier


@pytest.mark.parametrize("claims, tier", [(2, "NEW"), (3, "WATCH"), (4, "WATCH")])
def test_watch_claims_min_at_below_and_above(claims, tier):
    assert POLICY.watch_claims_min == 3
    state = history_state(T0, 0, claims=claims, orders=1)
    assert core.trust_tier(state, T0, POLICY) == tier


@pytest.mark.parametrize("recent_days, tier", [(89, "WATCH"), (91, "LOYAL")])
def test_watch_forgets_claims_older_than_the_long_window(recent_days, tier):
    state = history_state(T0 - 10 * 365 * DAY_MS, 1_000_000, claims=5, orders=5, recent_days=recent_days)
    assert core.trust_tier(state, T0, POLICY) == tier


def test_confirmed_incidents_never_put_a_customer_on_watch():
    state = history_state(T0 - 10 * 365 * DAY_MS, 1_000_000, claims=8, orders=2, confirmed=True)
    assert core.trust_tier(state, T0, POLICY) == "LOYAL"


@pytest.mark.parametrize("tier, percent", [("NEW", 100), ("ESTABLISHED", 150), ("LOYAL", 200), ("WATCH", 50)])
def test_each_tier_scales_the_customer_caps(tier, percent):
    state = core.empty_state()
    history = {"NEW": (T0, 1, 0, 0), "ESTABLISHED": (T0 - 400 * DAY_MS, 2, 60_000, 0),
               "LOYAL": (T0 - 3_000 * DAY_MS, 10, 300_000, 0), "WATCH": (T0, 4, 1_000, 4)}[tier]
    state = history_state(history[0], history[2], claims=history[3], orders=history[1])
    cap = POLICY.remedy_cents_max_per_customer_30d * percent // 100
    world = World(WIDE)
    world.customers["c1"] = state
    decisions = world.feed(request("r1", min(cap, 15_000))) + world.feed(request("r2", 1, at=T0 + 1))
    assert decisions[0]["trust_tier"] == tier
    assert decisions[0]["inputs"]["customer_cap_cents_30d"] == cap


# Order rules ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "refunded_before, amount, outcome",
    [(0, 9_999, "GRANTED"), (0, 10_000, "GRANTED"), (0, 10_001, "DENIED"), (6_000, 4_001, "DENIED")],
)
def test_refund_never_above_what_was_paid(refunded_before, amount, outcome):
    events = [order(total=10_000)]
    if refunded_before:
        events.append(request("r0", refunded_before, kind="REFUND", order_id="o1"))
    world = world_after(*events, policy=WIDE)
    (decision,) = world.feed(request("r1", amount, kind="REFUND", order_id="o1", at=T0 + 1))
    assert decision["outcome"] == outcome
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.REFUND_EXCEEDS_ORDER_TOTAL]


def test_reship_of_a_digital_order_is_denied():
    world = world_after(order(digital=True))
    assert outcomes(world.feed(request("r1", 500, kind="RESHIP", order_id="o1"))) == [
        ("r1", "DENIED", [core.RESHIP_OF_DIGITAL_ORDER])]


@pytest.mark.parametrize("kind", ["REFUND", "RESHIP"])
def test_refund_and_reship_need_an_order(kind):
    assert outcomes(world_after().feed(request("r1", 500, kind=kind))) == [("r1", "DENIED", [core.ORDER_REQUIRED])]


def test_other_currency_goes_to_a_person():
    assert outcomes(world_after().feed(request("r1", 500, currency="EUR"))) == [
        ("r1", "ESCALATED", [core.CURRENCY_NOT_SUPPORTED])]


def test_every_reason_code_is_documented():
    text = open("docs/decisions.md").read()
    for code in core.REASON_CODES:
        assert f"`{code}`" in text, code


# Requests that arrive before their order ---------------------------------------------------

def test_request_before_its_order_waits_and_is_decided_when_the_order_arrives():
    world = world_after()
    assert world.feed(request("r1", 500, kind="REFUND", order_id="o1")) == []
    assert outcomes(world.feed(order("o1"))) == [("r1", "GRANTED", [core.WITHIN_LIMITS])]


def test_requests_behind_a_parked_request_keep_their_order():
    world = world_after(request("r1", 500, kind="REFUND", order_id="o1", at=T0), request("r2", 700, at=T0 + 1), order("o1"))
    decided = world.final_decisions()
    assert sorted(decided) == ["r1", "r2"]
    assert decided["r2"]["inputs"]["customer_granted_cents_30d"] == 500  # r1 was decided first


def test_the_same_decisions_whether_the_order_comes_before_or_after():
    reqs = [request("r1", 9_000, kind="REFUND", order_id="o1", at=T0), request("r2", 15_000, at=T0 + 1),
            request("r3", CAP - 24_000 + 1, at=T0 + 2)]
    before = world_after(order("o1"), *reqs, policy=WIDE).final_decisions()
    after = world_after(*reqs, order("o1"), policy=WIDE).final_decisions()
    assert before == after
    assert [before[r]["outcome"] for r in ("r1", "r2", "r3")] == ["GRANTED", "GRANTED", "DENIED"]


@pytest.mark.parametrize("waited_ms, escalated", [(DAY_MS - 1, False), (DAY_MS, False), (DAY_MS + 1, True)])
def test_parked_request_is_escalated_once_newer_orders_show_its_order_is_not_coming(waited_ms, escalated):
    world = world_after(request("r1", 500, kind="REFUND", order_id="missing", at=T0),
                        order("other", at=T0 + waited_ms))
    if escalated:
        assert outcomes(world.decisions) == [("r1", "ESCALATED", [core.ORDER_NOT_FOUND])]
    else:
        assert world.decisions == []


@pytest.mark.parametrize("waited_ms, escalated", [(7 * DAY_MS - 1, False), (7 * DAY_MS, False), (7 * DAY_MS + 1, True)])
def test_later_requests_alone_escalate_a_parked_request_only_after_a_week(waited_ms, escalated):
    world = world_after(request("r1", 500, kind="REFUND", order_id="missing", at=T0), request("r2", 700, at=T0 + waited_ms))
    if escalated:
        assert outcomes(world.decisions) == [("r1", "ESCALATED", [core.CUSTOMER_UNKNOWN]),
                                             ("r2", "GRANTED", [core.WITHIN_LIMITS])]
    else:
        assert world.decisions == []


def test_requests_running_ahead_of_their_orders_by_hours_are_not_escalated():
    # A catch-up: the requests topic is read a few days of event time ahead of the orders topic.
    requests = [request(f"r{n}", 100, kind="REFUND", order_id=f"o{n}", at=T0 + n * DAY_MS // 2) for n in range(6)]
    orders = [order(f"o{n}", at=T0 + n * DAY_MS // 2 - 60_000) for n in range(6)]
    world = world_after(*requests, *orders)
    assert [d["outcome"] for d in world.decisions] == ["GRANTED"] * 6


@pytest.mark.parametrize("parked, escalated", [(20, 0), (21, 1)])
def test_parking_queue_is_bounded(parked, escalated):
    events = [request(f"r{i}", 100, kind="REFUND", order_id=f"missing-{i}", at=T0 + i) for i in range(parked)]
    world = world_after(*events)
    assert len(world.decisions) == escalated
    assert len(world.customers["c1"]["pending"]) == parked - escalated <= POLICY.pending_requests_max_per_customer


# Idempotency and determinism --------------------------------------------------------------

def test_duplicate_request_yields_the_same_decision_and_no_second_grant():
    world = world_after(request("r1", 5_000))
    state = json.dumps(world.customers, sort_keys=True)
    (again,) = world.feed(request("r1", 5_000))
    assert again == world.decisions[0]
    assert json.dumps(world.customers, sort_keys=True) == state


def test_decision_id_is_derived_from_the_request_id():
    assert core.decision_id_for("r1") == core.decision_id_for("r1")
    assert core.decision_id_for("r1") != core.decision_id_for("r2")
    (decision,) = world_after().feed(request("r1", 100))
    assert decision["decision_id"] == decision["event_id"] == core.decision_id_for("r1")


def test_every_decision_names_the_policy_version_and_its_origin():
    (decision,) = world_after().feed(request("r1", 100, requested_by="system"))
    assert decision["policy_version"] == POLICY.version
    assert decision["origin"] == "PROACTIVE"
    assert Policy(remedy_cents_max_per_customer_30d=30_000).version != POLICY.version


def test_state_survives_a_json_round_trip_unchanged():
    world = world_after(order(), request("r1", 100, kind="REFUND", order_id="o1"), request("r2", 50))
    assert json.loads(json.dumps(world.customers)) == world.customers


amounts = st.integers(min_value=1, max_value=CAP)


@st.composite
def event_sequences(draw):
    events = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        at = T0 + draw(st.integers(min_value=0, max_value=60 * DAY_MS))
        customer = draw(st.sampled_from(["c1", "c2", "c3"]))
        if draw(st.booleans()):
            events.append(order(f"o{draw(st.integers(0, 5))}", customer=customer, total=draw(amounts), at=at,
                                address=draw(st.sampled_from(["h1", "h2"]))))
        else:
            order_id = draw(st.one_of(st.none(), st.sampled_from([f"o{n}" for n in range(6)])))
            # Request ids are globally unique (the upstream contract), so they name the customer.
            events.append(request(f"{customer}-r{draw(st.integers(0, 30))}", draw(amounts), kind=draw(st.sampled_from(REMEDY_KINDS)),
                                  order_id=order_id, customer=customer, at=at,
                                  requested_by=draw(st.sampled_from(["customer", "system", "assoc-1"]))))
    if draw(st.booleans()) and events:
        events.append(draw(st.sampled_from(events)))  # a redelivery
    return events


def granted(world):
    return sorted({d["decision_id"]: d for d in world.decisions if d["outcome"] == "GRANTED"}.values(),
                  key=lambda d: d["decided_at"])


@settings(max_examples=150, deadline=None)
@for_all(event_sequences(), st.randoms(use_true_random=False))
def test_no_cap_in_any_scope_is_ever_exceeded_whatever_the_interleaving(events, rng):
    world = World()
    for event in events:
        world.feed(event, deliver=False)
        while world.in_flight and rng.random() < 0.5:
            world.deliver_one(rng.randrange(len(world.in_flight)))
    world.deliver_all()
    grants = granted(world)
    for d in grants:
        same_customer = [g for g in grants if g["customer_id"] == d["customer_id"]]
        window = [g["granted_cents"] for g in same_customer
                  if d["decided_at"] - POLICY.customer_window_ms < g["decided_at"] <= d["decided_at"]]
        assert sum(window) <= CAP
        if d["household_id"]:
            household = [g["granted_cents"] for g in grants if g["household_id"] == d["household_id"]
                         and d["decided_at"] - POLICY.customer_window_ms < g["decided_at"] <= d["decided_at"]]
            assert sum(household) <= POLICY.household_cents_max_30d
        if d["origin"] == "ASSOCIATE":
            day = [g["granted_cents"] for g in grants if g["requested_by"] == d["requested_by"]
                   and g["decided_at"] // DAY_MS == d["decided_at"] // DAY_MS]
            assert sum(day) <= POLICY.associate_cents_max_per_day
    assert not world.in_flight
    assert all(not state["reservations"] for state in world.customers.values())
    for customer, state in world.customers.items():
        for order_id, placed in state["orders"].items():
            refunds = [g["granted_cents"] for g in grants if g["customer_id"] == customer
                       and g["order_id"] == order_id and g["kind"] == "REFUND"]
            assert sum(refunds) <= placed["total_cents"]


@settings(max_examples=100, deadline=None)
@for_all(event_sequences())
def test_replay_gives_byte_identical_decisions(events):
    first = world_after(*events).decisions
    second = world_after(*events).decisions
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


@settings(max_examples=100, deadline=None)
@for_all(event_sequences())
def test_each_request_gets_one_decision_id_and_one_outcome(events):
    world = world_after(*events, *events)  # everything delivered twice
    by_id = {}
    for d in world.decisions:
        assert by_id.setdefault(d["decision_id"], d) == d


def test_a_refund_still_passing_later_scopes_counts_against_the_order_total():
    world = World(WIDE)
    world.feed(order(total=10_000, address="h1"))
    world.feed(request("r1", 7_000, kind="REFUND", order_id="o1"), deliver=False)
    world.feed(request("r2", 7_000, kind="REFUND", order_id="o1", at=T0 + 1), deliver=False)
    assert len(world.in_flight) == 1  # r1 waits for the household; r2 was decided at the customer
    world.deliver_all()
    decided = world.final_decisions()
    assert (decided["r1"]["outcome"], decided["r2"]["outcome"]) == ("GRANTED", "DENIED")
    assert decided["r2"]["reason_codes"] == [core.REFUND_EXCEEDS_ORDER_TOTAL]
    assert decided["r2"]["inputs"]["order_refunded_cents"] == 7_000


# Proactive remedies, later evidence and reviews -------------------------------------------

def test_slow_download_reported_by_the_qos_monitor_is_refunded_before_anyone_asks():
    world = World()
    world.feed(order("o1", total=399, digital=True))
    (decision,) = world.feed(incident("i1", "SLOW_DOWNLOAD", source="QOS_MONITOR"))
    assert (decision["kind"], decision["outcome"], decision["granted_cents"]) == ("REFUND", "GRANTED", 399)
    assert decision["origin"] == "PROACTIVE" and decision["requested_by"] == "system"


def test_a_customer_reported_slow_download_is_not_remedied_proactively():
    world = World()
    world.feed(order("o1", total=399, digital=True))
    assert world.feed(incident("i1", "SLOW_DOWNLOAD", source="CUSTOMER")) == []


def test_lost_in_transit_from_the_carrier_reships_even_before_the_order_arrives():
    world = World()
    assert world.feed(incident("i1", "LOST_IN_TRANSIT", source="CARRIER")) == []  # parked: no order yet
    (decision,) = world.feed(order("o1", total=4_599))
    assert (decision["kind"], decision["granted_cents"], decision["request_id"]) == (
        "RESHIP", 4_599, "proactive:i1:c1:RESHIP")


def test_an_outage_credits_each_affected_customer_once():
    world = World()
    credited = []
    for customer in ("a", "b", "c", "a"):  # "a" is named twice
        credited += world.feed(incident("outage-1", "SERVICE_OUTAGE", customer=customer, order_id=None, source="SYSTEM"))
    assert sorted((d["customer_id"], d["granted_cents"]) for d in credited) == [("a", 500), ("b", 500), ("c", 500)]


def test_delivery_after_a_lost_claim_flags_the_reshipment_and_charges_nothing():
    world = World()
    world.feed(order("o1", total=2_000))
    (reship,) = world.feed(incident("i1", "LOST_IN_TRANSIT", source="CARRIER"))
    delivered = {"type": "OrderDelivered", "event_id": "d1", "order_id": "o1", "customer_id": "c1", "delivered_at": T0 + DAY_MS}
    (flag,) = world.feed(delivered)
    assert flag["supersedes_decision_id"] == reship["decision_id"]
    assert (flag["outcome"], flag["granted_cents"]) == ("GRANTED", 2_000)
    assert core.DELIVERED_AFTER_LOST_CLAIM in flag["reason_codes"]
    assert world.feed(delivered) == []  # flagged once


def test_a_delivery_while_the_reshipment_is_at_its_household_check_still_flags_it():
    world = World()
    world.feed(seasoned())
    world.feed(order("o1", total=2_000, at=T0 - 10 * DAY_MS))
    # A customer-asserted loss: it is checked at the household (a carrier-confirmed one is not).
    world.feed(incident("i1", "LOST_IN_TRANSIT", source="CUSTOMER"))
    claim = request("r1", 2_000, kind="RESHIP", order_id="o1", incident_id="i1", at=T0 + 1)
    assert world.feed(claim, deliver=False) == []  # at the household
    delivered = {"type": "OrderDelivered", "event_id": "d1", "order_id": "o1", "customer_id": "c1", "delivered_at": T0 + DAY_MS}
    assert world.feed(delivered, deliver=False) == []
    before = len(world.decisions)
    world.deliver_all()
    reship, flag = world.decisions[before:]
    assert (reship["outcome"], flag["supersedes_decision_id"]) == ("GRANTED", reship["decision_id"])
    assert core.DELIVERED_AFTER_LOST_CLAIM in flag["reason_codes"] and flag["granted_cents"] == 2_000
    assert world.final_decisions()[reship["request_id"]]["decision_id"] == flag["decision_id"]
    assert world.feed(delivered) == []  # flagged once


def review(request_id, verdict, by="assoc-lead", customer="c1", at=T0 + 1_000):
    return {"type": "RemedyReviewed", "event_id": f"rev-{request_id}-{verdict}", "request_id": request_id,
            "customer_id": customer, "verdict": verdict, "reviewed_by": by, "reviewed_at": at, "note": "checked"}


@pytest.mark.parametrize("verdict, outcome, granted, reason", [
    ("APPROVE", "GRANTED", 20_000, core.APPROVED_BY_REVIEW), ("DENY", "DENIED", 0, core.DENIED_BY_REVIEW)])
def test_a_review_supersedes_the_escalation(verdict, outcome, granted, reason):
    world = World(CEILING_150)
    (escalated,) = world.feed(request("r1", 20_000))
    (reviewed,) = world.feed(review("r1", verdict))
    assert (reviewed["outcome"], reviewed["granted_cents"], reviewed["reason_codes"]) == (outcome, granted, [reason])
    assert reviewed["supersedes_decision_id"] == escalated["decision_id"]
    assert reviewed["decided_by"] == "assoc-lead"
    assert core.granted_in_window_cents(world.customers["c1"], T0 + 1_000, POLICY.customer_window_ms) == granted
    assert world.feed(review("r1", verdict)) == [reviewed]  # a redelivered review changes nothing


@pytest.mark.parametrize("second_cents, outcome, reason", [
    (3_999, "GRANTED", core.APPROVED_BY_REVIEW), (4_000, "GRANTED", core.APPROVED_BY_REVIEW),
    (4_001, "DENIED", core.REFUND_EXCEEDS_ORDER_TOTAL)])
def test_an_approved_refund_never_takes_an_order_past_what_was_paid(second_cents, outcome, reason):
    # $200 paid; a $160 refund waits for a person (above the $150 ceiling), then a second refund is
    # granted meanwhile: the approval stands only if the $160 still fits in what is left.
    world = World(CEILING_150)
    world.feed(order("o1", total=20_000))
    (escalated,) = world.feed(request("big", 16_000, kind="REFUND", order_id="o1", at=T0 + 1))
    assert escalated["reason_codes"] == [core.ABOVE_AUTO_APPROVAL_CEILING]
    (meanwhile,) = world.feed(request("small", second_cents, kind="REFUND", order_id="o1", at=T0 + 2))
    assert meanwhile["outcome"] == "GRANTED"
    (reviewed,) = world.feed(review("big", "APPROVE"))
    assert (reviewed["outcome"], reviewed["reason_codes"]) == (outcome, [reason])
    assert reviewed["granted_cents"] == (16_000 if outcome == "GRANTED" else 0)
    assert reviewed["decided_by"] == "assoc-lead" and reviewed["supersedes_decision_id"] == escalated["decision_id"]


def test_a_review_of_a_request_that_is_not_escalated_changes_nothing():
    world = World()
    world.feed(request("r1", 1_000))
    state = json.dumps(world.customers, sort_keys=True)
    assert world.feed(review("r1", "DENY")) == []
    assert json.dumps(world.customers, sort_keys=True) == state


@pytest.mark.parametrize("amount, outcome", [(999, "GRANTED"), (1_000, "GRANTED"), (1_001, "DENIED")])
def test_household_30d_cap_at_below_and_above(amount, outcome):
    cap = POLICY.household_cents_max_30d
    world = World(Policy(kind_cents_max_per_customer_30d=WIDE.kind_cents_max_per_customer_30d, household_claims_max_90d=20))
    spent, n = 0, 0
    while spent < cap - 1_000:  # accounts at one address, each well inside its own caps
        part = min(10_000, cap - 1_000 - spent)
        world.feed(order(f"o{n}", customer=f"h{n}", total=part, address="shared"))
        world.feed(request(f"r{n}", part, kind="REFUND", order_id=f"o{n}", customer=f"h{n}"))
        spent, n = spent + part, n + 1
    world.feed(order("oX", customer="hX", total=amount, address="shared"))
    (decision,) = world.feed(request("rX", amount, kind="REFUND", order_id="oX", customer="hX", at=T0 + 1))
    assert decision["inputs"]["household_granted_cents_30d"] == cap - 1_000
    assert decision["outcome"] == outcome
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.HOUSEHOLD_30D_CAP_EXCEEDED]


@pytest.mark.parametrize("age_days, rejected", [(126, False), (127, True)])
def test_a_request_older_than_the_dedup_horizon_is_not_decided_automatically(age_days, rejected):
    # Horizon = newest request - 7 days lateness - 120 days retention = 127 days back.
    world = world_after(request("new", 100, at=T0 + 127 * DAY_MS))
    decisions = world.feed(request("old", 100, at=T0 + (127 - age_days) * DAY_MS))
    assert (decisions == []) == rejected
    assert (len(world.rejected) == 1) == rejected
    if rejected:
        assert "horizon" in world.rejected[0][1]


def test_a_claim_that_overtakes_its_incident_waits_for_it_so_claim_limits_apply():
    world = World()
    world.feed(order("o1"))
    assert world.feed(request("r1", 1_000, incident_id="i1")) == []  # parked: incident unknown
    (decision,) = world.feed(incident("i1", "STOLEN_AFTER_DELIVERY", source="CUSTOMER"))
    assert decision["incident_kind"] == "STOLEN_AFTER_DELIVERY"
    assert decision["inputs"]["customer_incident_claims_max_90d"] == 2


def test_a_claim_whose_incident_never_comes_goes_to_a_person():
    world = world_after(order("o1"), request("r1", 1_000, incident_id="ghost"))
    assert world.feed(order("o2", at=T0 + 3 * DAY_MS)) == []  # later orders say nothing about incidents
    (decision,) = world.feed(incident("i2", "DAMAGED", source="CUSTOMER", at=T0 + DAY_MS + 1))
    assert outcomes([decision]) == [("r1", "ESCALATED", [core.INCIDENT_NOT_FOUND])]


def test_a_proactive_remedy_comes_first_whether_its_incident_or_a_request_naming_it_arrives_first():
    events = [order("o1", total=20_000), incident("lost", "LOST_IN_TRANSIT", source="CARRIER"),
              request("wrap", 6_000, kind="CREDIT", order_id="o1", incident_id="lost", requested_by="assoc-1")]
    incident_first = world_after(*events).final_decisions()
    request_first = world_after(events[0], events[2], events[1]).final_decisions()
    assert incident_first == request_first
    assert incident_first["proactive:lost:c1:RESHIP"]["outcome"] == "GRANTED"
    # One remedy of value per incident: the carrier's loss was reshipped, so no credit for it too.
    assert incident_first["wrap"]["reason_codes"] == [core.ANOTHER_VALUE_REMEDY_FOR_INCIDENT]


@pytest.mark.parametrize("clock_after_ms, escalated", [(DAY_MS - 1, False), (DAY_MS, False), (DAY_MS + 1, True)])
def test_the_partition_clock_ends_a_wait_for_a_customer_who_never_sends_another_event(clock_after_ms, escalated):
    world = world_after(order("o1", at=T0 - 1_000), request("r1", 500, kind="REFUND", order_id="never", at=T0))
    state = world.customers["c1"]
    state, decisions, checks = core.handle(state, core.partition_clock(T0 + clock_after_ms), POLICY)
    assert checks == []
    if escalated:
        assert outcomes(decisions) == [("r1", "ESCALATED", [core.ORDER_NOT_FOUND])] and not core.has_parked(state)
    else:
        assert decisions == [] and core.has_parked(state)


def test_a_customer_nobody_knows_is_escalated_as_unknown_by_the_partition_clock():
    world = world_after(request("r1", 500, kind="CREDIT", order_id="o-nowhere", at=T0))
    state, decisions, _ = core.handle(world.customers["c1"], core.partition_clock(T0 + DAY_MS + 1), POLICY)
    assert outcomes(decisions) == [("r1", "ESCALATED", [core.CUSTOMER_UNKNOWN])]


@pytest.mark.parametrize("field, value", [("amount_cents", 501), ("kind", "REFUND"), ("requested_by", "assoc-9")])
@pytest.mark.parametrize("decided", [True, False])
def test_a_request_id_repeated_with_different_content_is_refused_and_the_first_stands(field, value, decided):
    first = request("r1", 500, order_id="o1")
    world = world_after(*([order("o1")] if decided else []), first)
    state = world.customers["c1"]
    with pytest.raises(InvariantViolation, match="CONFLICTING_DUPLICATE: request r1"):
        core.handle(state, {**first, field: value, "event_id": "e-again"}, POLICY)
    again, decisions, checks = core.handle(state, {**first, "event_id": "e-again"}, POLICY)  # the same says nothing new
    assert again == state and checks == [] and decisions == (list(world.decisions[-1:]) if decided else [])


def test_an_order_id_repeated_with_a_different_total_is_refused():
    world = world_after(order("o1", total=2_000))
    with pytest.raises(InvariantViolation, match="CONFLICTING_DUPLICATE: order o1"):
        core.handle(world.customers["c1"], {**order("o1", total=2_000), "total_cents": 9_999}, POLICY)
    assert core.handle(world.customers["c1"], order("o1", total=2_000), POLICY)[0] == world.customers["c1"]


def test_a_request_waits_for_the_earlier_request_s_scope_answer_so_timing_changes_nothing():
    events = [order("o1", total=20_000), request("r1", 9_000, kind="REFUND", order_id="o1", at=T0),
              request("r2", 9_000, kind="REFUND", order_id="o1", at=T0 + 1),
              request("r3", 9_000, kind="CREDIT", at=T0 + 2)]
    prompt = world_after(*events, policy=WIDE)  # every answer delivered at once
    slow = World(WIDE)
    for event in events:
        slow.feed(event, deliver=False)  # answers held back until the end
    assert [d["request_id"] for d in slow.decisions] == []  # r2 and r3 wait behind r1's check
    assert len(slow.customers["c1"]["queued"]) == 2
    slow.deliver_all()
    assert slow.final_decisions() == prompt.final_decisions()
    assert [d["request_id"] for d in slow.decisions] == ["r1", "r2", "r3"]


def test_an_incident_id_repeated_with_another_kind_is_refused_and_an_identical_one_is_silent():
    world = world_after(order("o1"), incident("i1", "DAMAGED"))
    state = world.customers["c1"]
    with pytest.raises(InvariantViolation, match="CONFLICTING_DUPLICATE: incident i1"):
        core.handle(state, incident("i1", "LOST_IN_TRANSIT"), POLICY)
    assert core.handle(state, incident("i1", "DAMAGED"), POLICY) == (state, [], [])


@pytest.mark.parametrize("clock_after_ms", [DAY_MS - 1, DAY_MS, DAY_MS + 1, 40 * DAY_MS])
def test_a_customer_waits_for_its_scope_answer_however_far_event_time_moves(clock_after_ms):
    """The answer always comes (outbox, ordered scopes); deciding without it would depend on timing."""
    world = World(WIDE)
    world.feed(order("o1", total=20_000))
    world.feed(request("r1", 9_000, kind="REFUND", order_id="o1", at=T0), deliver=False)
    world.feed(request("r2", 1_000, kind="CREDIT", at=T0 + 1), deliver=False)
    state = world.customers["c1"]
    assert state["reservations"] and [e["request_id"] for _, e in state["queued"]] == ["r2"]
    state, decisions, checks = core.handle(state, core.partition_clock(T0 + clock_after_ms), WIDE)
    assert decisions == [] and checks == [] and [e["type"] for _, e in state["queued"]][-1] == core.PARTITION_CLOCK
    world.customers["c1"] = state
    world.deliver_all()
    assert outcomes(world.decisions) == [("r1", "GRANTED", [core.WITHIN_LIMITS]), ("r2", "GRANTED", [core.WITHIN_LIMITS])]
    assert world.customers["c1"]["queued"] == []


@pytest.mark.parametrize("reviewer, verdict, refused", [
    ("assoc-7", "APPROVE", True), ("assoc-7", "DENY", False), ("assoc-lead", "APPROVE", False)])
def test_the_associate_who_asked_never_approves_the_request(reviewer, verdict, refused):
    world = World(CEILING_150)
    world.feed(request("r1", 20_000, requested_by="assoc-7"))
    state = world.customers["c1"]
    event = {**review("r1", verdict, by=reviewer)}
    if refused:
        with pytest.raises(InvariantViolation, match="SELF_APPROVAL: assoc-7 asked for request r1 and may not approve"):
            core.handle(state, event, CEILING_150)
    else:
        _, decisions, _ = core.handle(state, event, CEILING_150)
        assert decisions[0]["decided_by"] == reviewer
