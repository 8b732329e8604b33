"""The decision core: per-customer state as a fold over events, and the pure remedy decision.

Pure module: no clock, environment, randomness or I/O. Time, ids and money arrive as
arguments; timestamps are integer milliseconds since the Unix epoch (UTC); money is integer
cents. Replaying the same events through `handle` yields the same decisions, byte for byte.

Events are dicts shaped like the Avro records in `schemas/` with a "type" key naming the record
and timestamps already converted to milliseconds.

Rules (documented in docs/decisions.md):
- A request is decided in the order it arrived on the requests topic. A request that names an
  order this customer has not placed yet waits (parked) for that order, and requests behind it
  wait too, so the order in which the cap is consumed never depends on topic interleaving.
- A parked request is escalated to a person with ORDER_NOT_FOUND when a later request of the
  same customer is more than `order_wait_ms_max` newer, or when the parking queue is full.
  It is never silently denied.
- The customer cap counts grants whose time t satisfies now - window < t, i.e. a grant stops
  counting exactly `customer_window_ms` after it was made.
- "now" for a request is its requested_at, except that a request dated more than
  `request_lateness_ms_max` before the newest request of the customer is decided as of
  (newest - request_lateness_ms_max); that bound is what lets old grants be pruned safely.
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.policy import Policy

State = dict[str, Any]
Event = dict[str, Any]
Decision = dict[str, Any]

GRANTED = "GRANTED"
DENIED = "DENIED"
ESCALATED = "ESCALATED"

# Reason codes: every decision carries at least one.
WITHIN_LIMITS = "WITHIN_LIMITS"
CUSTOMER_30D_CAP_EXCEEDED = "CUSTOMER_30D_CAP_EXCEEDED"
REFUND_EXCEEDS_ORDER_TOTAL = "REFUND_EXCEEDS_ORDER_TOTAL"
RESHIP_OF_DIGITAL_ORDER = "RESHIP_OF_DIGITAL_ORDER"
ORDER_REQUIRED = "ORDER_REQUIRED"
ABOVE_AUTO_APPROVAL_CEILING = "ABOVE_AUTO_APPROVAL_CEILING"
CURRENCY_NOT_SUPPORTED = "CURRENCY_NOT_SUPPORTED"
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"

REASON_CODES = (
    WITHIN_LIMITS,
    CUSTOMER_30D_CAP_EXCEEDED,
    REFUND_EXCEEDS_ORDER_TOTAL,
    RESHIP_OF_DIGITAL_ORDER,
    ORDER_REQUIRED,
    ABOVE_AUTO_APPROVAL_CEILING,
    CURRENCY_NOT_SUPPORTED,
    ORDER_NOT_FOUND,
)

# Remedy kinds that only make sense against a known order.
KINDS_NEEDING_ORDER = frozenset({"REFUND", "RESHIP"})


def empty_state() -> State:
    """The state of a customer nothing is known about yet."""
    return {"orders": {}, "grants": [], "decided": {}, "pending": [], "incidents": {}, "clock_ms": None}


def decision_time_ms(state: State, request: Event, policy: Policy) -> int:
    """The event time a request is decided at: its own, bounded below by the customer's clock."""
    clock = state["clock_ms"]
    if clock is None:
        return request["requested_at"]
    return max(request["requested_at"], clock - policy.request_lateness_ms_max)


def decision_id_for(request_id: str) -> str:
    """The decision id for a request: the same request id always yields the same decision id."""
    return "dec-" + hashlib.sha256(("remedy-decision/v1/" + request_id).encode()).hexdigest()[:32]


def granted_in_window_cents(state: State, now_ms: int, window_ms: int) -> int:
    """Sum of grants that still count at `now_ms` in a rolling window of `window_ms`."""
    floor = now_ms - window_ms
    return sum(cents for at_ms, cents, _ in state["grants"] if at_ms > floor)


def origin_of(request: Event) -> str:
    """Who started a request: "system" is proactive, "customer" the customer, anyone else an associate."""
    requested_by = request["requested_by"]
    if requested_by == "system":
        return "PROACTIVE"
    if requested_by == "customer":
        return "CUSTOMER"
    return "ASSOCIATE"


def _context(state: State, request: Event) -> dict:
    """Facts about the request's order and incident that every decision record carries."""
    order = state["orders"].get(request.get("order_id")) if request.get("order_id") else None
    incident = state["incidents"].get(request.get("incident_id")) if request.get("incident_id") else None
    return {
        "household_id": order["shipping_address_id"] if order else None,
        "incident_kind": incident["kind"] if incident else None,
    }


def decide(state: State, request: Event, policy: Policy) -> Decision:
    """Decide one remedy request against the customer's state; never raises for a denial."""
    now_ms = decision_time_ms(state, request, policy)
    context = _context(state, request)
    amount = request["amount_cents"]
    granted_before = granted_in_window_cents(state, now_ms, policy.customer_window_ms)
    cap = policy.remedy_cents_max_per_customer_30d
    inputs = {
        "customer_granted_cents_30d": granted_before,
        "customer_cap_cents_30d": cap,
        "request_ceiling_cents": policy.remedy_cents_max_per_request,
    }
    order = state["orders"].get(request.get("order_id")) if request.get("order_id") else None
    if order is not None:
        inputs["order_total_cents"] = order["total_cents"]
        inputs["order_refunded_cents"] = order["refunded_cents"]

    if request["currency"] != policy.currency:
        return _decision(request, policy, ESCALATED, 0, [CURRENCY_NOT_SUPPORTED], inputs, now_ms, context)
    if request["kind"] in KINDS_NEEDING_ORDER and order is None:
        return _decision(request, policy, DENIED, 0, [ORDER_REQUIRED], inputs, now_ms, context)
    if request["kind"] == "RESHIP" and order["digital"]:
        return _decision(request, policy, DENIED, 0, [RESHIP_OF_DIGITAL_ORDER], inputs, now_ms, context)
    if request["kind"] == "REFUND" and order["refunded_cents"] + amount > order["total_cents"]:
        return _decision(request, policy, DENIED, 0, [REFUND_EXCEEDS_ORDER_TOTAL], inputs, now_ms, context)
    if granted_before + amount > cap:
        return _decision(request, policy, DENIED, 0, [CUSTOMER_30D_CAP_EXCEEDED], inputs, now_ms, context)
    if amount > policy.remedy_cents_max_per_request:
        return _decision(request, policy, ESCALATED, 0, [ABOVE_AUTO_APPROVAL_CEILING], inputs, now_ms, context)
    return _decision(request, policy, GRANTED, amount, [WITHIN_LIMITS], inputs, now_ms, context)


def handle(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision]]:
    """Fold one event into the state and return the decisions it released, in order."""
    kind = event["type"]
    if kind == "RemedyRequested":
        return _handle_request(state, event, policy)
    if kind == "OrderPlaced":
        return _drain(_with_order(state, event, policy), policy, None)
    if kind == "OrderDelivered":
        return _with_delivery(state, event), []
    if kind == "IncidentReported":
        return _with_incident(state, event, policy), []
    raise ValueError(f"handle: unsupported event type {kind!r}")


def _handle_request(state: State, request: Event, policy: Policy) -> tuple[State, list[Decision]]:
    request_id = request["request_id"]
    earlier = state["decided"].get(request_id)
    if earlier is not None:
        # A redelivered request: emit the same decision again; downstream keys on decision_id.
        return state, [earlier]
    if any(p["request_id"] == request_id for p in state["pending"]):
        return state, []
    clock = request["requested_at"] if state["clock_ms"] is None else max(state["clock_ms"], request["requested_at"])
    state = _pruned({**state, "clock_ms": clock}, policy)
    state = {**state, "pending": state["pending"] + [request]}
    return _drain(state, policy, request["requested_at"])


def _drain(state: State, policy: Policy, newest_request_ms: int | None) -> tuple[State, list[Decision]]:
    """Decide parked requests from the head of the queue while their orders are known."""
    decisions = []
    while state["pending"]:
        head = state["pending"][0]
        order_id = head.get("order_id")
        if order_id and order_id not in state["orders"]:
            waited_too_long = (
                newest_request_ms is not None
                and newest_request_ms - head["requested_at"] > policy.order_wait_ms_max
            )
            queue_full = len(state["pending"]) > policy.pending_requests_max_per_customer
            if not (waited_too_long or queue_full):
                break
            decision = _decision(
                head,
                policy,
                ESCALATED,
                0,
                [ORDER_NOT_FOUND],
                {"pending_requests": len(state["pending"])},
                decision_time_ms(state, head, policy),
                _context(state, head),
            )
        else:
            decision = decide(state, head, policy)
        state = _with_decision({**state, "pending": state["pending"][1:]}, head, decision)
        decisions.append(decision)
    return state, decisions


def _decision(
    request: Event,
    policy: Policy,
    outcome: str,
    granted_cents: int,
    reasons: list[str],
    inputs: dict,
    decided_at_ms: int,
    context: dict | None = None,
) -> Decision:
    context = context or {}
    decision_id = decision_id_for(request["request_id"])
    return {
        "event_id": decision_id,
        "decision_id": decision_id,
        "request_id": request["request_id"],
        "customer_id": request["customer_id"],
        "order_id": request.get("order_id"),
        "incident_id": request.get("incident_id"),
        "kind": request["kind"],
        "outcome": outcome,
        "requested_cents": request["amount_cents"],
        "granted_cents": granted_cents,
        "currency": request["currency"],
        "reason_codes": list(reasons),
        "policy_version": policy.version,
        "requested_by": request["requested_by"],
        "requested_at": request["requested_at"],
        "decided_at": decided_at_ms,
        "inputs": dict(inputs),
        "supersedes_decision_id": None,
        "decided_by": "policy",
        "origin": origin_of(request),
        "incident_kind": context.get("incident_kind"),
        "trust_tier": context.get("trust_tier"),
        "household_id": context.get("household_id"),
        "note": None,
    }


def _with_decision(state: State, request: Event, decision: Decision) -> State:
    state = {**state, "decided": {**state["decided"], request["request_id"]: decision}}
    if decision["outcome"] != GRANTED:
        return state
    grant = [decision["decided_at"], decision["granted_cents"], request["request_id"]]
    state = {**state, "grants": state["grants"] + [grant]}
    order_id = request.get("order_id")
    if request["kind"] == "REFUND" and order_id in state["orders"]:
        order = state["orders"][order_id]
        refunded = order["refunded_cents"] + decision["granted_cents"]
        state = {**state, "orders": {**state["orders"], order_id: {**order, "refunded_cents": refunded}}}
    return state


def _with_order(state: State, event: Event, policy: Policy) -> State:
    if event["order_id"] in state["orders"]:
        return state  # A redelivered order changes nothing; refunds already booked stay.
    order = {
        "placed_at": event["placed_at"],
        "total_cents": event["total_cents"],
        "currency": event["currency"],
        "digital": event["digital"],
        "shipping_address_id": event["shipping_address_id"],
        "refunded_cents": 0,
        "delivered_at": None,
    }
    orders = {**state["orders"], event["order_id"]: order}
    if len(orders) > policy.orders_max_per_customer:
        oldest = min(orders, key=lambda oid: (orders[oid]["placed_at"], oid))
        orders.pop(oldest)
    return {**state, "orders": orders}


def _with_delivery(state: State, event: Event) -> State:
    order = state["orders"].get(event["order_id"])
    if order is None or order["delivered_at"] is not None:
        return state
    delivered = {**order, "delivered_at": event["delivered_at"]}
    return {**state, "orders": {**state["orders"], event["order_id"]: delivered}}


def _with_incident(state: State, event: Event, policy: Policy) -> State:
    if event["incident_id"] in state["incidents"]:
        return state
    incident = {"kind": event["kind"], "order_id": event.get("order_id"), "reported_at": event["reported_at"]}
    incidents = {**state["incidents"], event["incident_id"]: incident}
    if len(incidents) > policy.orders_max_per_customer:
        oldest = min(incidents, key=lambda iid: (incidents[iid]["reported_at"], iid))
        incidents.pop(oldest)
    return {**state, "incidents": incidents}


def _pruned(state: State, policy: Policy) -> State:
    """Drop what can no longer affect any decision at or after the customer's clock (bounded state)."""
    now_ms = state["clock_ms"] - policy.request_lateness_ms_max
    grant_floor = now_ms - policy.customer_window_ms
    grants = [g for g in state["grants"] if g[0] > grant_floor]
    decided_floor = now_ms - policy.decided_retention_ms
    decided = {rid: d for rid, d in state["decided"].items() if d["decided_at"] > decided_floor}
    if len(decided) > policy.decided_max_per_customer:
        keep = sorted(decided, key=lambda rid: (decided[rid]["decided_at"], rid))
        decided = {rid: decided[rid] for rid in keep[-policy.decided_max_per_customer :]}
    order_floor = now_ms - policy.order_retention_ms
    orders = {oid: o for oid, o in state["orders"].items() if o["placed_at"] > order_floor}
    incidents = {iid: i for iid, i in state["incidents"].items() if i["reported_at"] > order_floor}
    return {**state, "grants": grants, "decided": decided, "orders": orders, "incidents": incidents}
