"""Given/when/then tests of the decision core: the cap at, below and above, parking, idempotency."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import core
from streams.policy import DAY_MS, Policy

T0 = 1_790_000_000_000  # a fixed event time (ms); the core never reads a clock
POLICY = Policy()
CAP = POLICY.remedy_cents_max_per_customer_30d


def order(order_id="o1", customer="c1", total=10_000, digital=False, at=T0):
    return {
        "type": "OrderPlaced", "event_id": f"e-{order_id}", "order_id": order_id, "customer_id": customer,
        "placed_at": at, "total_cents": total, "currency": "USD",
        "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": total}],
        "shipping_address_id": "addr-1", "digital": digital,
    }


def request(request_id, amount, kind="CREDIT", order_id=None, customer="c1", at=T0, currency="USD"):
    return {
        "type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": customer,
        "order_id": order_id, "incident_id": None, "kind": kind, "amount_cents": amount, "currency": currency,
        "requested_by": "assoc-1", "requested_at": at, "reason": "test",
    }


def given_events(*events, policy=POLICY):
    """Fold events into a fresh state; returns (state, all decisions in order)."""
    state, decisions = core.empty_state(), []
    for event in events:
        state, released = core.handle(state, event, policy)
        decisions.extend(released)
    return state, decisions


def when_request(state, event, policy=POLICY):
    return core.handle(state, event, policy)


# The 30-day cap ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "already, amount, outcome",
    [
        (CAP - 1_000, 999, "GRANTED"),   # one below the cap after the grant
        (CAP - 1_000, 1_000, "GRANTED"),  # exactly at the cap
        (CAP - 1_000, 1_001, "DENIED"),   # one cent above the cap
    ],
)
def test_customer_cap_at_below_and_above(already, amount, outcome):
    first_parts = [min(already - i * 10_000, 10_000) for i in range((already + 9_999) // 10_000)]
    events = [request(f"r{i}", part, at=T0 + i) for i, part in enumerate(first_parts)]
    state, earlier = given_events(*events)
    assert [d["outcome"] for d in earlier] == ["GRANTED"] * len(events)
    assert core.granted_in_window_cents(state, T0 + 100, POLICY.customer_window_ms) == already

    _, (decision,) = when_request(state, request("rX", amount, at=T0 + 100))

    assert decision["outcome"] == outcome
    assert decision["granted_cents"] == (amount if outcome == "GRANTED" else 0)
    expected_reason = core.WITHIN_LIMITS if outcome == "GRANTED" else core.CUSTOMER_30D_CAP_EXCEEDED
    assert decision["reason_codes"] == [expected_reason]
    assert decision["inputs"]["customer_granted_cents_30d"] == already
    assert decision["inputs"]["customer_cap_cents_30d"] == CAP


@pytest.mark.parametrize("offset_ms, counted", [(-1, True), (0, False), (1, False)])
def test_grant_stops_counting_exactly_one_window_later(offset_ms, counted):
    state, _ = given_events(request("r1", 15_000, at=T0))
    later = T0 + POLICY.customer_window_ms + offset_ms
    _, (decision,) = when_request(state, request("r2", 15_000, at=later))
    assert decision["inputs"]["customer_granted_cents_30d"] == (15_000 if counted else 0)
    assert decision["outcome"] == ("DENIED" if counted else "GRANTED")


@pytest.mark.parametrize(
    "amount, outcome",
    [(POLICY.remedy_cents_max_per_request - 1, "GRANTED"),
     (POLICY.remedy_cents_max_per_request, "GRANTED"),
     (POLICY.remedy_cents_max_per_request + 1, "ESCALATED")],
)
def test_request_above_auto_approval_ceiling_is_escalated_not_denied(amount, outcome):
    _, (decision,) = given_events(request("r1", amount))
    assert decision["outcome"] == outcome
    if outcome == "ESCALATED":
        assert decision["reason_codes"] == [core.ABOVE_AUTO_APPROVAL_CEILING]
        assert decision["granted_cents"] == 0


def test_escalated_and_denied_requests_do_not_use_the_cap():
    state, _ = given_events(request("big", POLICY.remedy_cents_max_per_request + 1), request("over", CAP + 1))
    assert core.granted_in_window_cents(state, T0, POLICY.customer_window_ms) == 0


# Order rules ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "refunded_before, amount, outcome",
    [(0, 9_999, "GRANTED"), (0, 10_000, "GRANTED"), (0, 10_001, "DENIED"), (6_000, 4_001, "DENIED")],
)
def test_refund_never_above_what_was_paid(refunded_before, amount, outcome):
    events = [order(total=10_000)]
    if refunded_before:
        events.append(request("r0", refunded_before, kind="REFUND", order_id="o1"))
    state, _ = given_events(*events)
    _, (decision,) = when_request(state, request("r1", amount, kind="REFUND", order_id="o1", at=T0 + 1))
    assert decision["outcome"] == outcome
    if outcome == "DENIED":
        assert decision["reason_codes"] == [core.REFUND_EXCEEDS_ORDER_TOTAL]


def test_reship_of_a_digital_order_is_denied():
    _, decisions = given_events(order(digital=True), request("r1", 500, kind="RESHIP", order_id="o1"))
    assert [(d["outcome"], d["reason_codes"]) for d in decisions] == [("DENIED", [core.RESHIP_OF_DIGITAL_ORDER])]


@pytest.mark.parametrize("kind", ["REFUND", "RESHIP"])
def test_refund_and_reship_need_an_order(kind):
    _, (decision,) = given_events(request("r1", 500, kind=kind))
    assert (decision["outcome"], decision["reason_codes"]) == ("DENIED", [core.ORDER_REQUIRED])


def test_other_currency_goes_to_a_person():
    _, (decision,) = given_events(request("r1", 500, currency="EUR"))
    assert (decision["outcome"], decision["reason_codes"]) == ("ESCALATED", [core.CURRENCY_NOT_SUPPORTED])


# Requests that arrive before their order ---------------------------------------------------

def test_request_before_its_order_waits_and_is_decided_when_the_order_arrives():
    state, decisions = given_events(request("r1", 500, kind="REFUND", order_id="o1"))
    assert decisions == []
    _, released = core.handle(state, order("o1"), POLICY)
    assert [(d["request_id"], d["outcome"]) for d in released] == [("r1", "GRANTED")]


def test_requests_behind_a_parked_request_keep_their_order():
    _, decisions = given_events(
        request("r1", 500, kind="REFUND", order_id="o1", at=T0),
        request("r2", 700, at=T0 + 1),
        order("o1"),
    )
    assert [d["request_id"] for d in decisions] == ["r1", "r2"]


def test_the_same_decisions_whether_the_order_comes_before_or_after():
    reqs = [request("r1", 9_000, kind="REFUND", order_id="o1", at=T0), request("r2", 15_000, at=T0 + 1),
            request("r3", CAP - 24_000 + 1, at=T0 + 2)]
    _, before = given_events(order("o1"), *reqs)
    _, after = given_events(*reqs, order("o1"))
    assert before == after
    assert [d["outcome"] for d in before] == ["GRANTED", "GRANTED", "DENIED"]


@pytest.mark.parametrize("waited_ms, escalated", [(DAY_MS, False), (DAY_MS + 1, True)])
def test_parked_request_is_escalated_when_its_order_never_comes(waited_ms, escalated):
    _, decisions = given_events(
        request("r1", 500, kind="REFUND", order_id="missing", at=T0),
        request("r2", 700, at=T0 + waited_ms),
    )
    if escalated:
        assert [(d["request_id"], d["outcome"], d["reason_codes"]) for d in decisions] == [
            ("r1", "ESCALATED", [core.ORDER_NOT_FOUND]), ("r2", "GRANTED", [core.WITHIN_LIMITS])]
    else:
        assert decisions == []


@pytest.mark.parametrize("parked, escalated", [(20, 0), (21, 1)])
def test_parking_queue_is_bounded(parked, escalated):
    events = [request(f"r{i}", 100, kind="REFUND", order_id=f"missing-{i}", at=T0 + i) for i in range(parked)]
    state, decisions = given_events(*events)
    assert len(decisions) == escalated
    assert len(state["pending"]) == parked - escalated <= POLICY.pending_requests_max_per_customer


# Idempotency and determinism --------------------------------------------------------------

def test_duplicate_request_yields_the_same_decision_and_no_second_grant():
    state, (first,) = given_events(request("r1", 5_000))
    again_state, (again,) = core.handle(state, request("r1", 5_000), POLICY)
    assert again == first
    assert again_state == state
    assert core.granted_in_window_cents(again_state, T0, POLICY.customer_window_ms) == 5_000


def test_decision_id_is_derived_from_the_request_id():
    assert core.decision_id_for("r1") == core.decision_id_for("r1")
    assert core.decision_id_for("r1") != core.decision_id_for("r2")
    _, (decision,) = given_events(request("r1", 100))
    assert decision["decision_id"] == decision["event_id"] == core.decision_id_for("r1")


def test_every_decision_names_the_policy_version():
    _, (decision,) = given_events(request("r1", 100))
    assert decision["policy_version"] == POLICY.version
    assert Policy(remedy_cents_max_per_customer_30d=30_000).version != POLICY.version


def test_state_survives_a_json_round_trip_unchanged():
    state, _ = given_events(order(), request("r1", 100, kind="REFUND", order_id="o1"), request("r2", 50))
    assert json.loads(json.dumps(state)) == state


amounts = st.integers(min_value=1, max_value=CAP)
kinds = st.sampled_from(["CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP"])


@st.composite
def event_sequences(draw):
    events = []
    for i in range(draw(st.integers(min_value=1, max_value=40))):
        at = T0 + draw(st.integers(min_value=0, max_value=60 * DAY_MS))
        if draw(st.booleans()):
            events.append(order(f"o{draw(st.integers(0, 5))}", total=draw(amounts), at=at))
        else:
            order_id = draw(st.one_of(st.none(), st.sampled_from([f"o{n}" for n in range(6)])))
            events.append(request(f"r{draw(st.integers(0, 30))}", draw(amounts), kind=draw(kinds), order_id=order_id, at=at))
    if draw(st.booleans()) and events:
        events.append(draw(st.sampled_from(events)))  # a redelivery
    return events


@settings(max_examples=200, deadline=None)
@given(event_sequences())
def test_granted_total_in_any_window_never_exceeds_the_cap(events):
    _, decisions = given_events(*events)
    granted = sorted({d["decision_id"]: d for d in decisions if d["outcome"] == "GRANTED"}.values(),
                     key=lambda d: d["decided_at"])
    for d in granted:
        window = [g["granted_cents"] for g in granted
                  if d["decided_at"] - POLICY.customer_window_ms < g["decided_at"] <= d["decided_at"]]
        assert sum(window) <= CAP


@settings(max_examples=100, deadline=None)
@given(event_sequences())
def test_replay_gives_byte_identical_decisions(events):
    _, first = given_events(*events)
    _, second = given_events(*events)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


@settings(max_examples=100, deadline=None)
@given(event_sequences())
def test_each_request_gets_one_decision_id_and_one_outcome(events):
    _, decisions = given_events(*events, *events)  # everything delivered twice
    by_id = {}
    for d in decisions:
        assert by_id.setdefault(d["decision_id"], d) == d
