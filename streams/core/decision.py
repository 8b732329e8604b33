"""The decision core: per-customer state as a fold over events, and the pure remedy decision.

Pure module: no clock, environment, randomness or I/O. Time, ids and money arrive as
arguments; timestamps are integer milliseconds since the Unix epoch (UTC); money is integer
cents. Replaying the same events through `handle` yields the same decisions, byte for byte.

Events are dicts shaped like the Avro records in `schemas/` with a "type" key naming the record
and timestamps already converted to milliseconds. The rules are documented in docs/decisions.md.

A request passes the scopes in turn. The customer scope is decided here, on the partition that
owns the customer. A request that passes it and also names a household (the order's
shipping_address_id) or an associate reserves room at the customer and sends a LimitCheck to
the next scope (`streams/core/scopes.py`), on the partition that owns that household or associate;
the answer comes back as a LimitCheck RESULT, and only then is the decision emitted. A denial
at a later scope releases the earlier reservations.
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.errors import InvariantViolation
from streams.core.policy import (
    ACCOMPANYING_REMEDY_KINDS,
    CONFIRMING_SOURCES,
    DAY_MS,
    NON_RECEIPT_INCIDENT_KINDS,
    VALUE_REMEDY_KINDS,
    Policy,
)
from streams.core.privacy import erased_id
from streams.core import remedy_detail as detail

State = dict[str, Any]
Event = dict[str, Any]
Decision = dict[str, Any]
Check = dict[str, Any]

GRANTED = "GRANTED"
DENIED = "DENIED"
ESCALATED = "ESCALATED"

# Reason codes: every decision carries at least one (docs/decisions.md explains each).
WITHIN_LIMITS = "WITHIN_LIMITS"
CUSTOMER_30D_CAP_EXCEEDED = "CUSTOMER_30D_CAP_EXCEEDED"
CUSTOMER_90D_CAP_EXCEEDED = "CUSTOMER_90D_CAP_EXCEEDED"
CUSTOMER_KIND_30D_CAP_EXCEEDED = "CUSTOMER_KIND_30D_CAP_EXCEEDED"
REQUEST_ABOVE_CUSTOMER_CAP = "REQUEST_ABOVE_CUSTOMER_CAP"
ORDER_VALUE_ALREADY_REMEDIED = "ORDER_VALUE_ALREADY_REMEDIED"
CUSTOMER_INCIDENT_CLAIMS_EXCEEDED = "CUSTOMER_INCIDENT_CLAIMS_EXCEEDED"
DUPLICATE_REMEDY_FOR_INCIDENT = "DUPLICATE_REMEDY_FOR_INCIDENT"
REFUND_EXCEEDS_ORDER_TOTAL = "REFUND_EXCEEDS_ORDER_TOTAL"
RESHIP_OF_DIGITAL_ORDER = "RESHIP_OF_DIGITAL_ORDER"
ORDER_REQUIRED = "ORDER_REQUIRED"
ABOVE_AUTO_APPROVAL_CEILING = "ABOVE_AUTO_APPROVAL_CEILING"
CURRENCY_NOT_SUPPORTED = "CURRENCY_NOT_SUPPORTED"
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
INCIDENT_NOT_FOUND = "INCIDENT_NOT_FOUND"
CUSTOMER_UNKNOWN = "CUSTOMER_UNKNOWN"
HOUSEHOLD_CLAIMS_EXCEEDED = "HOUSEHOLD_CLAIMS_EXCEEDED"
HOUSEHOLD_30D_CAP_EXCEEDED = "HOUSEHOLD_30D_CAP_EXCEEDED"
HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED = "HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"
WATCH_TIER_REVIEW = "WATCH_TIER_REVIEW"
ASSOCIATE_DAILY_BUDGET_EXCEEDED = "ASSOCIATE_DAILY_BUDGET_EXCEEDED"
APPROVED_BY_REVIEW = "APPROVED_BY_REVIEW"
DENIED_BY_REVIEW = "DENIED_BY_REVIEW"
DELIVERED_AFTER_LOST_CLAIM = "DELIVERED_AFTER_LOST_CLAIM"
CUSTOMER_ERASED = "CUSTOMER_ERASED"
# Issue 12: evidence-weighted claims and abuse signals.
CONFIRMED_REMEDY_CEILING = "CONFIRMED_REMEDY_CEILING"
CONFIRMED_30D_CAP_EXCEEDED = "CONFIRMED_30D_CAP_EXCEEDED"
ANOTHER_VALUE_REMEDY_FOR_INCIDENT = "ANOTHER_VALUE_REMEDY_FOR_INCIDENT"
LOST_CLAIM_AFTER_DELIVERY_SCAN = "LOST_CLAIM_AFTER_DELIVERY_SCAN"
NEW_ACCOUNT_NON_RECEIPT_CLAIM = "NEW_ACCOUNT_NON_RECEIPT_CLAIM"
# The input (and check input) marking a new account's asserted never-received claim.
NEW_ACCOUNT_CLAIM_INPUT = "new_account_claim"
RECOVERY_STRIKE_REVIEW = "RECOVERY_STRIKE_REVIEW"
LOST_CLAIM_BEFORE_OVERDUE = "LOST_CLAIM_BEFORE_OVERDUE"
ASSOCIATE_REPEAT_GOODWILL_REVIEW = "ASSOCIATE_REPEAT_GOODWILL_REVIEW"
# Judged at the associate scope: one customer takes too large a share of an associate's
# discretionary grants in 30 days (scopes.py, associate_concentration_*).
ASSOCIATE_CUSTOMER_CONCENTRATION = "ASSOCIATE_CUSTOMER_CONCENTRATION"
# The check input marking a remedy of a confirmed incident: the associate scope does not count it
# among the associate's discretionary grants.
INCIDENT_CONFIRMED_INPUT = "incident_confirmed"
# The event a delivery after a remedied lost claim emits besides the flagging decision (a case for
# the recovery team, schemas/avro/r7/RecoverySuggested.avsc). It travels in the decisions list
# `handle` returns, marked by its "type", on the same path (state write, outbox, sends) as the
# decisions, so it is emitted exactly when its flag is; shells route it to the recoveries topic.
RECOVERY_SUGGESTED = "RecoverySuggested"
# The linked-accounts scope names the link that limited a claim.
LINKED_PAYMENT_INSTRUMENT_LIMIT_EXCEEDED = "LINKED_PAYMENT_INSTRUMENT_LIMIT_EXCEEDED"
LINKED_DEVICE_LIMIT_EXCEEDED = "LINKED_DEVICE_LIMIT_EXCEEDED"
LINKED_BUILDING_LIMIT_EXCEEDED = "LINKED_BUILDING_LIMIT_EXCEEDED"
LINKED_LIMIT_REASONS = {"payment_instrument": LINKED_PAYMENT_INSTRUMENT_LIMIT_EXCEEDED,
                        "device": LINKED_DEVICE_LIMIT_EXCEEDED, "building": LINKED_BUILDING_LIMIT_EXCEEDED}
# The order fields of OrderPlaced revision 7 that link accounts, by link kind.
LINK_FIELDS = {"payment_instrument": "payment_instrument_id", "device": "device_id", "building": "building_id"}

REASON_CODES = (
    WITHIN_LIMITS,
    CUSTOMER_30D_CAP_EXCEEDED,
    CUSTOMER_90D_CAP_EXCEEDED,
    CUSTOMER_KIND_30D_CAP_EXCEEDED,
    REQUEST_ABOVE_CUSTOMER_CAP,
    CUSTOMER_INCIDENT_CLAIMS_EXCEEDED,
    DUPLICATE_REMEDY_FOR_INCIDENT,
    REFUND_EXCEEDS_ORDER_TOTAL,
    RESHIP_OF_DIGITAL_ORDER,
    ORDER_REQUIRED,
    ABOVE_AUTO_APPROVAL_CEILING,
    CURRENCY_NOT_SUPPORTED,
    ORDER_NOT_FOUND,
    INCIDENT_NOT_FOUND,
    CUSTOMER_UNKNOWN,
    HOUSEHOLD_CLAIMS_EXCEEDED,
    HOUSEHOLD_30D_CAP_EXCEEDED,
    HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED,
    WATCH_TIER_REVIEW,
    ASSOCIATE_DAILY_BUDGET_EXCEEDED,
    APPROVED_BY_REVIEW,
    DENIED_BY_REVIEW,
    DELIVERED_AFTER_LOST_CLAIM,
    CUSTOMER_ERASED,
    CONFIRMED_REMEDY_CEILING,
    CONFIRMED_30D_CAP_EXCEEDED,
    ANOTHER_VALUE_REMEDY_FOR_INCIDENT,
    ORDER_VALUE_ALREADY_REMEDIED,
    LOST_CLAIM_AFTER_DELIVERY_SCAN,
    NEW_ACCOUNT_NON_RECEIPT_CLAIM,
    RECOVERY_STRIKE_REVIEW,
    LOST_CLAIM_BEFORE_OVERDUE,
    ASSOCIATE_REPEAT_GOODWILL_REVIEW,
    ASSOCIATE_CUSTOMER_CONCENTRATION,
    LINKED_PAYMENT_INSTRUMENT_LIMIT_EXCEEDED,
    LINKED_DEVICE_LIMIT_EXCEEDED,
    LINKED_BUILDING_LIMIT_EXCEEDED,
    *detail.ITEM_REASON_CODES,
)

# Remedy kinds that only make sense against a known order.
KINDS_NEEDING_ORDER = frozenset({"REFUND", "RESHIP"})
# Remedy kinds that give back an order's value (its money or its goods), with the order field that
# books each: together at most once per order for customer-asserted claims (order_value_remedied_once).
ORDER_GIVEN_FIELD = {"REFUND": "refunded_cents", "RESHIP": "reshipped_cents"}
ORDER_VALUE_KINDS = frozenset(ORDER_GIVEN_FIELD)


def empty_state() -> State:
    """The state of a customer nothing is known about yet."""
    return {
        "orders": {},
        "incidents": {},
        # [decided_at_ms, cents, request_id, kind, incident_id, incident_kind, confirmed] per grant and
        # reservation; confirmed is 1 for a remedy of a confirmed incident (absent in older states: 0).
        "grants": [],
        "reservations": {},
        "decided": {},
        "pending": [],
        # Upstream events that arrived while a request was at its household or associate check:
        # [position_ms, event], applied in arrival order once the answer came (see `handle`).
        "queued": [],
        "clock_ms": None,
        # orders_clock_ms / incidents_clock_ms: the newest order event (placed, delivered) and the
        # newest incident (reported) seen, each its own topic's progress for this customer.
        "history": {"first_order_ms": None, "orders": 0, "spend_cents": 0, "claims": 0, "orders_clock_ms": None,
                    "incidents_clock_ms": None},
    }


def decision_id_for(request_id: str) -> str:
    """The decision id for a request: the same request id always yields the same decision id."""
    return "dec-" + hashlib.sha256(("remedy-decision/v1/" + request_id).encode()).hexdigest()[:32]


def decision_time_ms(state: State, request: Event, policy: Policy) -> int:
    """The event time a request is decided at: its own, bounded below by the customer's clock."""
    clock = state["clock_ms"]
    if clock is None:
        return request["requested_at"]
    return max(request["requested_at"], clock - policy.request_lateness_ms_max)


def _counted(state: State) -> list[list]:
    """Grants plus outstanding reservations: room already taken, for every customer check."""
    return state["grants"] + [r["entry"] for r in state["reservations"].values()]


def _is_confirmed_entry(entry: list) -> bool:
    return len(entry) > 6 and bool(entry[6])


def _asserted(state: State) -> list[list]:
    """Room taken by remedies of asserted claims (and requests without an incident): what abuse caps count."""
    return [e for e in _counted(state) if not _is_confirmed_entry(e)]


def granted_in_window_cents(state: State, now_ms: int, window_ms: int, kind: str | None = None,
                            confirmed: bool = False) -> int:
    """Sum of grants and reservations that still count at `now_ms` in a rolling window: those of
    asserted claims (the abuse caps), or with confirmed=True those of confirmed incidents."""
    floor = now_ms - window_ms
    return sum(e[1] for e in _counted(state)
               if e[0] > floor and (kind is None or e[3] == kind) and _is_confirmed_entry(e) == confirmed)


def incident_claims(state: State, now_ms: int, window_ms: int, incident_kind: str) -> int:
    """Distinct asserted incidents of a kind remedied in the window (a reship and gift wrap for one loss count once)."""
    floor = now_ms - window_ms
    return len({e[4] for e in _asserted(state) if e[0] > floor and e[5] == incident_kind and e[4]})


def is_confirmed(state: State, request: Event) -> bool:
    """Whether the request remedies an incident someone other than the customer confirmed
    (reported by a source in CONFIRMING_SOURCES: carrier, QoS monitor, our systems)."""
    incident = state["incidents"].get(request.get("incident_id")) if request.get("incident_id") else None
    return incident is not None and incident.get("source") in CONFIRMING_SOURCES


def recent_claims(state: State, now_ms: int, policy: Policy) -> int:
    """Customer-asserted incidents (claims made, granted or not) reported in the long (90-day)
    window up to `now_ms`: a claimer whose claims are mostly denied by the caps still claims."""
    floor = now_ms - policy.long_window_ms
    return sum(1 for i in state["incidents"].values()
               if floor < i["reported_at"] <= now_ms and i.get("source") not in CONFIRMING_SOURCES)


def recent_orders(state: State, now_ms: int, policy: Policy) -> int:
    """Orders placed in the long (90-day) window up to `now_ms`."""
    floor = now_ms - policy.long_window_ms
    return sum(1 for o in state["orders"].values() if floor < o["placed_at"] <= now_ms)


def recovery_strikes(state: State, now_ms: int, policy: Policy) -> int:
    """Strikes in the strike window: orders delivered after the customer's lost claim was remedied."""
    floor = now_ms - policy.recovery_strike_window_ms
    return sum(1 for at in state["history"].get("strikes_ms", []) if floor < at <= now_ms)


def trust_tier(state: State, now_ms: int, policy: Policy) -> str:
    """The customer's trust tier from their history: WATCH outranks LOYAL, ESTABLISHED and NEW."""
    history = state["history"]
    claims, orders = recent_claims(state, now_ms, policy), recent_orders(state, now_ms, policy)
    if claims >= policy.watch_claims_min and claims * 100 > orders * policy.watch_claims_percent_of_orders_min:
        return "WATCH"
    first = history["first_order_ms"]
    tenure_days = (now_ms - first) // DAY_MS if first is not None else 0
    if tenure_days >= policy.loyal_tenure_days_min and history["spend_cents"] >= policy.loyal_spend_cents_min:
        return "LOYAL"
    if tenure_days >= policy.established_tenure_days_min and history["spend_cents"] >= policy.established_spend_cents_min:
        return "ESTABLISHED"
    return "NEW"


def origin_of(request: Event) -> str:
    """Who started a request: "system" is proactive, "customer" the customer, anyone else an associate."""
    requested_by = request["requested_by"]
    if requested_by == "system":
        return "PROACTIVE"
    if requested_by == "customer":
        return "CUSTOMER"
    return "ASSOCIATE"


def _context(state: State, request: Event, tier: str | None = None) -> dict:
    """Facts about the request's order and incident that every decision record carries."""
    order = state["orders"].get(request.get("order_id")) if request.get("order_id") else None
    incident = state["incidents"].get(request.get("incident_id")) if request.get("incident_id") else None
    return {
        "household_id": order["shipping_address_id"] if order else None,
        "incident_kind": incident["kind"] if incident else None,
        "trust_tier": tier,
    }


def decide(state: State, request: Event, policy: Policy) -> Decision:
    """Decide one remedy request at the customer scope; never raises for a denial."""
    now_ms = decision_time_ms(state, request, policy)
    tier = trust_tier(state, now_ms, policy)
    context = _context(state, request, tier)
    amount, kind, incident_kind = request["amount_cents"], request["kind"], context["incident_kind"]
    cap_30d = policy.tier_cap(policy.remedy_cents_max_per_customer_30d, tier)
    cap_90d = policy.tier_cap(policy.remedy_cents_max_per_customer_90d, tier)
    kind_cap = policy.tier_cap(policy.kind_cents_max_per_customer_30d[kind], tier) if kind in policy.kind_cents_max_per_customer_30d else 0
    inputs = {
        "customer_granted_cents_30d": granted_in_window_cents(state, now_ms, policy.customer_window_ms),
        "customer_cap_cents_30d": cap_30d,
        "customer_granted_cents_90d": granted_in_window_cents(state, now_ms, policy.long_window_ms),
        "customer_cap_cents_90d": cap_90d,
        "customer_kind_granted_cents_30d": granted_in_window_cents(state, now_ms, policy.customer_window_ms, kind),
        "customer_kind_cap_cents_30d": kind_cap,
        "request_ceiling_cents": policy.remedy_cents_max_per_request,
        "tier_percent": policy.tier_percent[tier],
    }
    order = state["orders"].get(request.get("order_id")) if request.get("order_id") else None
    if order is not None:
        inputs["order_total_cents"] = order["total_cents"]
        inputs["order_refunded_cents"] = _refunded_cents(state, request["order_id"])
        if kind in ORDER_VALUE_KINDS:
            inputs["order_reshipped_cents"] = _given_cents(state, request["order_id"], "RESHIP")
    if incident_kind is not None:
        inputs["customer_incident_claims_90d"] = incident_claims(state, now_ms, policy.long_window_ms, incident_kind)
        inputs["customer_incident_claims_max_90d"] = policy.incident_claims_max_per_customer_90d[incident_kind]

    def outcome(result: str, reason: str) -> Decision:
        return _decision(request, policy, result, amount if result == GRANTED else 0, [reason], inputs, now_ms, context)

    if request["currency"] != policy.currency:
        return outcome(ESCALATED, CURRENCY_NOT_SUPPORTED)
    if kind in KINDS_NEEDING_ORDER and order is None:
        return outcome(DENIED, ORDER_REQUIRED)
    if kind == "RESHIP" and order["digital"]:
        return outcome(DENIED, RESHIP_OF_DIGITAL_ORDER)
    if kind == "REFUND" and inputs["order_refunded_cents"] + amount > order["total_cents"]:
        return outcome(DENIED, REFUND_EXCEEDS_ORDER_TOTAL)
    items_problem = _items_problem(order, request, incident_kind)
    if items_problem is not None:
        return outcome(DENIED, items_problem)
    incident_id = request.get("incident_id")
    if incident_id and _duplicate_for_incident(state, request):
        return outcome(DENIED, DUPLICATE_REMEDY_FOR_INCIDENT)
    if another_value_remedy(state, request, policy):
        return outcome(DENIED, ANOTHER_VALUE_REMEDY_FOR_INCIDENT)
    if incident_id is not None:
        inputs["incident_confirmed"] = int(is_confirmed(state, request))
        if inputs["incident_confirmed"]:
            reason = _confirmed_verdict(state, request, policy, now_ms, inputs)
            return outcome(GRANTED if reason == WITHIN_LIMITS else ESCALATED, reason)
    caps = _caps_verdict(inputs, amount, kind, cap_30d, cap_90d, kind_cap, policy)
    if caps is not None and caps[0] == DENIED:
        return outcome(*caps)
    new_incident = incident_id is not None and not any(e[4] == incident_id for e in _counted(state))
    if incident_kind is not None and new_incident and (
        inputs["customer_incident_claims_90d"] + 1 > inputs["customer_incident_claims_max_90d"]
    ):
        return outcome(DENIED, CUSTOMER_INCIDENT_CLAIMS_EXCEEDED)
    # Past every denial, the requests a person looks at for their size or their order's history.
    if caps is not None:
        return outcome(*caps)
    if (policy.order_value_remedied_once and "order_reshipped_cents" in inputs
            and inputs["order_refunded_cents"] + inputs["order_reshipped_cents"] + amount > order["total_cents"]):
        return outcome(ESCALATED, ORDER_VALUE_ALREADY_REMEDIED)
    if amount > policy.remedy_cents_max_per_request:
        return outcome(ESCALATED, ABOVE_AUTO_APPROVAL_CEILING)
    if tier == "WATCH" and incident_id and policy.watch_claims_escalated and origin_of(request) != "PROACTIVE":
        return outcome(ESCALATED, WATCH_TIER_REVIEW)
    signal = claim_signal(state, request, policy, now_ms, inputs)
    if signal is not None:
        return outcome(ESCALATED, signal)
    return outcome(GRANTED, WITHIN_LIMITS)


def _caps_verdict(inputs: dict, amount: int, kind: str, cap_30d: int, cap_90d: int, kind_cap: int,
                  policy: Policy) -> tuple[str, str] | None:
    """The customer's 30- and 90-day exposure caps and the kind's 30-day cap: (outcome, reason)
    when one binds, else None.

    A cap binds with DENIED when the customer's earlier grants in its window leave too little
    room (the first such cap names the reason). A REFUND or RESHIP larger than the caps it exceeds,
    from a customer granted nothing in any of their windows, is a question of size, not of history:
    with request_above_customer_cap_escalated it goes to a person (REQUEST_ABOVE_CUSTOMER_CAP; the
    caller returns it only once the incident claims have not denied it), as the auto-approval
    ceiling would, instead of being refused outright: an honest customer's first loss of an
    expensive order. Goodwill above its kind's cap stays denied: its size is the policy's call.
    """
    exceeded = [(granted, reason) for granted, cap, reason in (
        (inputs["customer_granted_cents_30d"], cap_30d, CUSTOMER_30D_CAP_EXCEEDED),
        (inputs["customer_granted_cents_90d"], cap_90d, CUSTOMER_90D_CAP_EXCEEDED),
        (inputs["customer_kind_granted_cents_30d"], kind_cap, CUSTOMER_KIND_30D_CAP_EXCEEDED),
    ) if granted + amount > cap]
    if not exceeded:
        return None
    if (policy.request_above_customer_cap_escalated and kind in ORDER_VALUE_KINDS
            and not any(granted for granted, _ in exceeded)):
        return ESCALATED, REQUEST_ABOVE_CUSTOMER_CAP
    return DENIED, next((reason for granted, reason in exceeded if granted), exceeded[0][1])


def another_value_remedy(state: State, request: Event, policy: Policy) -> bool:
    """One remedy of value per incident: whether a remedy of value of another kind was already
    granted (or is reserved) for the request's incident. Accompanying kinds never conflict."""
    incident_id, kind = request.get("incident_id"), request["kind"]
    if not (policy.one_value_remedy_per_incident and incident_id and kind in VALUE_REMEDY_KINDS):
        return False
    return any(e[4] == incident_id and e[3] in VALUE_REMEDY_KINDS and e[3] != kind for e in _counted(state))


def _goodwill_signal(state: State, request: Event, policy: Policy, now_ms: int, inputs: dict) -> str | None:
    """Goodwill (no incident) an associate asks for a customer it already asked goodwill for in the
    last 30 days, past associate_goodwill_requests_max_30d requests (any outcome): a second person looks."""
    if origin_of(request) != "ASSOCIATE":
        return None
    floor = now_ms - policy.customer_window_ms
    earlier = sum(1 for d in state["decided"].values()
                  if d["requested_by"] == request["requested_by"] and d["incident_id"] is None
                  and floor < d["requested_at"] <= now_ms)
    inputs["associate_goodwill_requests_30d"] = earlier
    if earlier + 1 > policy.associate_goodwill_requests_max_30d:
        return ASSOCIATE_REPEAT_GOODWILL_REVIEW
    return None


def _confirmed_verdict(state: State, request: Event, policy: Policy, now_ms: int, inputs: dict) -> str:
    """A remedy of a confirmed incident: not judged by the abuse caps, only by the confirmed
    ceiling per request and the confirmed room in 30 days (both escalate: a person looks)."""
    amount = request["amount_cents"]
    inputs["confirmed_granted_cents_30d"] = granted_in_window_cents(state, now_ms, policy.customer_window_ms,
                                                                    confirmed=True)
    inputs["confirmed_cap_cents_30d"] = policy.confirmed_remedy_cents_max_per_customer_30d
    inputs["confirmed_ceiling_cents"] = policy.confirmed_remedy_cents_max_per_request
    if inputs["confirmed_granted_cents_30d"] + amount > policy.confirmed_remedy_cents_max_per_customer_30d:
        return CONFIRMED_30D_CAP_EXCEEDED
    if amount > policy.confirmed_remedy_cents_max_per_request:
        return CONFIRMED_REMEDY_CEILING
    return WITHIN_LIMITS


def claim_signal(state: State, request: Event, policy: Policy, now_ms: int, inputs: dict) -> str | None:
    """The abuse signal that sends a customer-asserted claim to a person, or None.

    Only claims (requests naming an incident) that nobody but the customer confirmed, and that the
    service did not start itself, are looked at: a lost claim on an order the carrier scanned as
    delivered; a "never received" claim on a new account's first orders; any claim of a customer
    with a recovery strike (an order delivered after its lost claim was remedied).
    """
    incident_id = request.get("incident_id")
    if incident_id is None:
        return _goodwill_signal(state, request, policy, now_ms, inputs)
    if origin_of(request) == "PROACTIVE" or is_confirmed(state, request):
        return None
    incident = state["incidents"].get(incident_id)
    order = state["orders"].get(request.get("order_id") or incident.get("order_id") or "")
    strikes = recovery_strikes(state, now_ms, policy)
    inputs["recovery_strikes"] = strikes
    if strikes >= policy.recovery_strikes_escalate_min:
        return RECOVERY_STRIKE_REVIEW
    if (policy.lost_claim_after_delivery_scan_escalated and incident["kind"] == "LOST_IN_TRANSIT" and order is not None
            and order["delivered_at"] is not None and order["delivered_at"] <= incident["reported_at"]):
        inputs["delivered_at_ms"] = order["delivered_at"]
        return LOST_CLAIM_AFTER_DELIVERY_SCAN
    if incident["kind"] == "LOST_IN_TRANSIT" and order is not None and order["delivered_at"] is None:
        inputs["order_age_days"] = (incident["reported_at"] - order["placed_at"]) // DAY_MS
        # Self-service only: an associate who reships at once on the phone uses their judgement
        # (and their daily budget bounds it).
        if inputs["order_age_days"] < policy.lost_claim_days_after_order_min and origin_of(request) == "CUSTOMER":
            return LOST_CLAIM_BEFORE_OVERDUE
    first = state["history"]["first_order_ms"]
    if incident["kind"] in NON_RECEIPT_INCIDENT_KINDS and first is not None:
        account_days = (now_ms - first) // DAY_MS
        inputs["account_age_days"] = account_days
        inputs["account_orders"] = state["history"]["orders"]
        if account_days < policy.new_account_days_max and state["history"]["orders"] <= policy.new_account_orders_max:
            # Not a verdict here: the address and the order's links count these claims
            # (scopes.py, shared_new_account_claims_max_90d), and the check carries the mark.
            inputs[NEW_ACCOUNT_CLAIM_INPUT] = 1
    return None


def _items_problem(order: dict | None, request: Event, incident_kind: str | None) -> str | None:
    """The reason code why the request's items cannot be granted (ORDER_REQUIRED when it names
    items but no known order), or None (remedy_detail.item_problem)."""
    if request.get("items") is not None and order is None:
        return ORDER_REQUIRED
    return detail.item_problem(order, request, incident_kind)


def _duplicate_for_incident(state: State, request: Event) -> bool:
    """Whether a remedy of this kind was already granted (or reserved) for the request's incident
    on an order line it names too (a request without items names every line)."""
    reserved = {rid: r["request"] for rid, r in state["reservations"].items()}
    for entry in _counted(state):
        if entry[4] != request["incident_id"] or entry[3] != request["kind"]:
            continue
        earlier = state["decided"].get(entry[2]) or reserved.get(entry[2]) or {}
        if detail.overlaps(earlier.get("items"), request.get("items")):
            return True
    return False


def _given_cents(state: State, order_id: str, kind: str) -> int:
    """Refunded (kind REFUND) or reshipped (RESHIP) on an order so far, including remedies of that
    kind reserved and still passing later scopes."""
    reserved = sum(
        r["entry"][1] for r in state["reservations"].values()
        if r["request"]["kind"] == kind and r["request"].get("order_id") == order_id
    )
    return _booked_cents(state, order_id, kind) + reserved


def _booked_cents(state: State, order_id: str, kind: str) -> int:
    """What grants of `kind` gave back on an order, as booked on it. A state written before orders
    booked reshipments finds them among the customer's granted decisions (what a replay from the
    start would have booked)."""
    order = state["orders"][order_id]
    if ORDER_GIVEN_FIELD[kind] in order:
        return order[ORDER_GIVEN_FIELD[kind]]
    return sum(d["granted_cents"] for d in state["decided"].values()
               if d.get("order_id") == order_id and d["kind"] == kind and d["outcome"] == GRANTED)


def _refunded_cents(state: State, order_id: str) -> int:
    """Refunded on an order so far, including refunds reserved and still passing later scopes."""
    return _given_cents(state, order_id, "REFUND")


def scopes_for(decision: Decision, state: State | None = None, policy: Policy | None = None) -> list[str]:
    """The scopes after the customer a granted request must pass, as "scope:key" strings, in order."""
    scopes = []
    # Household limits count customer-asserted claims only: a remedy of a confirmed incident (a
    # carrier loss, a slow download the monitor saw) says nothing about the address, nor does an
    # associate's goodwill credit that answers no incident (the associate's own limits hold that).
    # Nor does a claim on a digital order (a slow download, an outage): nothing was shipped there,
    # and a household's claims would bind a streaming single-account address before its own caps.
    if decision["household_id"] and customer_asserted(decision) and not _digital_order(decision, state):
        scopes.append("household:" + decision["household_id"])
    if policy is not None and policy.linked_accounts_scope_enabled:
        scopes += linked_scopes(decision, state)
    if decision["origin"] == "ASSOCIATE":
        scopes.append("associate:" + decision["requested_by"])
    return scopes


# What an associate may give as goodwill, without an incident, that is no claim on the order's goods.
GOODWILL_KINDS = frozenset({"CREDIT", "SHIPPING_UPGRADE", "GIFT_WRAP"})


def customer_asserted(decision: Decision) -> bool:
    """Whether a request is a claim the customer asserts: not the remedy of a confirmed incident,
    and not an associate's goodwill (a credit, upgrade or gift wrap without an incident; a refund
    or reshipment of goods is a claim however it is asked for). Household and linked limits count
    these only."""
    if decision["inputs"].get("incident_confirmed"):
        return False
    return not (decision["origin"] == "ASSOCIATE" and not decision.get("incident_id")
                and decision["kind"] in GOODWILL_KINDS)


def _digital_order(decision: Decision, state: State | None) -> bool:
    order = state["orders"].get(decision["order_id"]) if state is not None and decision["order_id"] else None
    return bool(order and order.get("digital"))


def linked_scopes(decision: Decision, state: State | None) -> list[str]:
    """The linked-accounts scopes a granted claim passes: one per link id its order carries
    ("linked:<link kind>:<id>", OrderPlaced revision 7), for customer-asserted claims only (as
    the household)."""
    order = state["orders"].get(decision["order_id"]) if state is not None and decision["order_id"] else None
    if order is None or not customer_asserted(decision) or decision["origin"] == "PROACTIVE":
        return []
    return [f"linked:{kind}:{order[field]}" for kind, field in LINK_FIELDS.items() if order.get(field)]


# Not a topic's event: the shell tells a customer with parked requests how far event time has got
# on its partition (the newest upstream event there), so a wait ends even if the customer never
# sends another event.
PARTITION_CLOCK = "PartitionClock"


def partition_clock(clock_ms: int) -> Event:
    """The event that tells a customer's state the event time its partition has reached."""
    return {"type": PARTITION_CLOCK, "clock_ms": clock_ms}


def has_parked(state: State) -> bool:
    """True while the customer has requests waiting for their order or incident."""
    return bool(state["pending"])


def parked_since_ms(state: State) -> int | None:
    """When the customer's first parked request was made (its wait runs from there); None if nothing is parked."""
    if not state["pending"]:
        return None
    return state["pending"][0]["requested_at"]


# The field that dates each upstream event.
EVENT_TIME_FIELDS = {"OrderPlaced": "placed_at", "OrderDelivered": "delivered_at", "IncidentReported": "reported_at",
                     "RemedyRequested": "requested_at", "RemedyReviewed": "reviewed_at", "CustomerErased": "erased_at"}


def event_time_ms(event: Event) -> int | None:
    """When an upstream event happened (ms), or None for other events (limit results)."""
    name = EVENT_TIME_FIELDS.get(event["type"])
    return event[name] if name else None


# Events a customer queues while one of its requests is at a later scope (everything upstream).
_QUEUED_WHILE_CHECKING = frozenset(EVENT_TIME_FIELDS) | {PARTITION_CLOCK}
# The id field that names what an upstream event is about (a queued repeat is recognised by it).
_ID_FIELD = {"OrderPlaced": "order_id", "OrderDelivered": "order_id", "IncidentReported": "incident_id",
             "RemedyRequested": "request_id", "RemedyReviewed": "request_id", "CustomerErased": "event_id"}
# Where a shell did not say (tests, replays), an event's position is its own time.
POSITION_FIELD = "position_ms"


def position_of(event: Event) -> int:
    """Where an upstream event stands in its partition's log: the newest record timestamp up to it
    (set by the shell), else its own time (tests, replays)."""
    position = event.get(POSITION_FIELD)
    if position is not None:
        return position
    if event["type"] == PARTITION_CLOCK:
        return event["clock_ms"]
    return event_time_ms(event) or 0


def handle(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Fold one event into the state; return the decisions and limit checks it released, in order.

    While one of the customer's requests is at its household or associate check, the customer's
    other events wait in `queued`, in arrival order, and are applied as soon as the answer came:
    every event is applied to the state it would meet if answers came at once, so a customer's
    decisions do not depend on how fast the answers come back (the same on a replay, with or
    without kills, with one or more workers).
    """
    kind = event["type"]
    if state.get(ERASED) is not None:
        return _after_erasure(state, event, policy)
    if kind == "LimitCheck":
        return _handle_result(state, event, policy)
    if state["reservations"] and kind in _QUEUED_WHILE_CHECKING:
        if kind == "RemedyRequested":
            repeat = _repeated_request(state, event)
            if repeat is not None:
                return repeat
        return _queued(state, event, policy), [], []
    return _apply_at(state, event, policy, position_of(event))


def _apply_at(state: State, event: Event, policy: Policy, position_ms: int) -> tuple[State, list[Decision], list[Check]]:
    """Apply an event at its position (the position dates the checks it makes; it is not kept)."""
    state, decisions, checks = _apply({**state, POSITION_FIELD: position_ms}, event, policy)
    state.pop(POSITION_FIELD, None)
    return state, decisions, checks


def _apply(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    kind = event["type"]
    if state.get(ERASED) is not None:
        return _after_erasure(state, event, policy)  # events that waited behind the erasure's check
    if kind == "CustomerErased":
        return _erase(state, event, policy)
    if kind == "RemedyRequested":
        return _handle_request(state, event, policy)
    if kind == "OrderPlaced":
        return _drain(_with_order(state, event, policy), policy, None)
    if kind == "OrderDelivered":
        return _with_delivery(state, event, policy)
    if kind == "IncidentReported":
        return _handle_incident(state, event, policy)
    if kind == "RemedyReviewed":
        return _handle_review(state, event, policy)
    if kind == PARTITION_CLOCK:
        return _drain(state, policy, None, event["clock_ms"])
    raise ValueError(f"handle: unsupported event type {kind!r}")


def _queued(state: State, event: Event, policy: Policy) -> State:
    """The state with `event` waiting behind the check in flight (a repeat waits once; a conflicting
    repeat is refused now, with the event, rather than later)."""
    kind = event["type"]
    position = position_of(event)
    if kind == PARTITION_CLOCK:
        queued = state["queued"]
        if queued and queued[-1][1]["type"] == PARTITION_CLOCK:
            # Two clock ticks in a row end the same waits as the later one alone.
            return {**state, "queued": queued[:-1] + [[position, event]]}
        return {**state, "queued": queued + [[position, event]]}
    plain = {name: value for name, value in event.items() if name != POSITION_FIELD}
    id_field = _ID_FIELD[kind]
    for _, waiting in state["queued"]:
        if waiting["type"] != kind or waiting.get(id_field) != plain.get(id_field):
            continue
        waiting_plain = {name: value for name, value in waiting.items() if name != POSITION_FIELD}
        if waiting_plain == plain:
            return state  # a redelivery of an event already waiting
        differing = sorted(name for name in set(plain) | set(waiting_plain)
                           if name not in ("event_id",) and plain.get(name) != waiting_plain.get(name))
        if differing:
            shown = ", ".join(f"{name} {waiting_plain.get(name)!r} then {plain.get(name)!r}" for name in differing)
            raise InvariantViolation(f"{CONFLICTING_DUPLICATE}: {kind} {plain.get(id_field)} was already received "
                                     f"(waiting behind a limit check) with different content: {shown}; the first stands")
    # Refuse now what would be refused when applied (a conflicting repeat of something known):
    # the dead letter then carries this event's own bytes.
    _apply({**state, "reservations": {}}, event, policy)
    return {**state, "queued": state["queued"] + [[position, {**plain, POSITION_FIELD: position}]]}


def _apply_queued(state: State, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Apply the events that waited, in arrival order, until a new check is in flight."""
    decisions: list[Decision] = []
    checks: list[Check] = []
    while state["queued"] and not state["reservations"]:
        (position, event), rest = state["queued"][0], state["queued"][1:]
        state = {**state, "queued": rest}
        try:
            state, more_decisions, more_checks = _apply_at(state, event, policy, position)
        except InvariantViolation:
            continue  # checked when it was queued; cannot happen unless the policy changed meanwhile
        decisions.extend(more_decisions)
        checks.extend(more_checks)
    return state, decisions, checks


def blocked_order_key(customer_id: str, state: State) -> tuple[int, str, int] | None:
    """While a check is in flight: the smallest order key (see `ordering.order_key`) the answer can
    make this customer's next check carry; None when the answer can make no check.

    Requests that waited behind the check go on at the last check's time; events queued meanwhile
    at their own positions (always at or after it).
    """
    if not state["reservations"]:
        return None
    last_ms, number = state.get("order_ms_last") or 0, state.get("checks_sent", 0) + 1
    if state["pending"]:
        return (last_ms, customer_id, number)
    # With nothing parked, only a request (or an incident, which may make one) can make a check:
    # the first queued one bounds the key. Orders, deliveries, reviews and clock ticks before it
    # release nothing (nothing waits for them).
    for position, event in state["queued"]:
        if _could_check(event):
            return (max(last_ms, position), customer_id, number)
    return None


def _could_check(event: Event) -> bool:
    """Whether applying this event can send a check to a later scope: a request (or an incident's
    proactive request) that names an order (its household) or was asked for by an associate."""
    if event["type"] == "RemedyRequested":
        return bool(event.get("order_id")) or origin_of(event) == "ASSOCIATE"
    if event["type"] == "IncidentReported":
        return bool(event.get("order_id"))
    return False


def _repeated_request(state: State, request: Event) -> tuple[State, list[Decision], list[Check]] | None:
    """What a request id seen before emits again (its decision, or its check), or None if it is new."""
    request_id = request["request_id"]
    earlier = state["decided"].get(request_id)
    if earlier is not None:
        _refuse_conflict(request, _request_facts_of_decision(earlier), "decided")
        # A redelivered request: emit the same decision again; downstream keys on decision_id.
        return state, [earlier], []
    reservation = state["reservations"].get(request_id)
    if reservation is not None:
        _refuse_conflict(request, _request_facts(reservation["request"]), "being checked at its later scopes")
        # Redelivered while its scopes are being checked: ask the next scope again (idempotent there).
        return state, [], [reservation["check"]]
    return None


def _handle_request(state: State, request: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    request_id = request["request_id"]
    repeat = _repeated_request(state, request)
    if repeat is not None:
        return repeat
    parked = [p for p in state["pending"] if p["request_id"] == request_id]
    if parked:
        _refuse_conflict(request, _request_facts(parked[0]), "waiting for its order or incident")
        return state, [], []
    horizon = _dedup_horizon_ms(state, policy)
    if horizon is not None and request["requested_at"] <= horizon:
        raise InvariantViolation(
            f"RemedyRequested {request_id}: dated {request['requested_at']} ms, before the horizon {horizon} ms "
            "within which decided requests are remembered; it may be a redelivery of a forgotten decision, so "
            "it is not decided automatically"
        )
    clock = request["requested_at"] if state["clock_ms"] is None else max(state["clock_ms"], request["requested_at"])
    state = _pruned({**state, "clock_ms": clock}, policy)
    state = {**state, "pending": state["pending"] + [request]}
    return _drain(state, policy, request["requested_at"])


# Why a review is refused: the reviewer asked for the request (four eyes).
SELF_APPROVAL = "SELF_APPROVAL"
# Reason code of a request id (or order id, incident id) repeated with different content.
CONFLICTING_DUPLICATE = "CONFLICTING_DUPLICATE"
_REQUEST_FACTS = ("kind", "amount_cents", "currency", "order_id", "incident_id", "requested_by", "requested_at",
                  "items")


def _request_facts(request: Event) -> dict:
    return {name: request.get(name) for name in _REQUEST_FACTS}


def _request_facts_of_decision(decision: Decision) -> dict:
    facts = {name: decision.get(name) for name in _REQUEST_FACTS if name != "amount_cents"}
    return {**facts, "amount_cents": decision["requested_cents"]}


def differing_facts(request: Event, decision: Decision) -> list[str]:
    """The facts a request states differently from the request a decision answered (empty: the same
    request again); timestamps in ms on both sides."""
    first = _request_facts_of_decision(decision)
    return [name for name, value in _request_facts(request).items() if first.get(name) != value]


def _refuse_conflict(request: Event, first: dict, status: str) -> None:
    """A repeat of a request id is a silent no-op only when it says the same; otherwise it is refused."""
    if request.get("amount_rule") is not None:
        return  # the service's own proactive request: its amount is priced when decided
    differing = [name for name, value in _request_facts(request).items() if first.get(name) != value]
    if differing:
        shown = ", ".join(f"{name} {first.get(name)!r} then {request.get(name)!r}" for name in differing)
        raise InvariantViolation(
            f"{CONFLICTING_DUPLICATE}: request {request['request_id']} was already received ({status}) with "
            f"different content: {shown}; the first stands")


def decision_on_record(state: State | None, request: Event, policy: Policy) -> tuple[bool, Decision | None]:
    """What a customer's state tells of a request id without deciding anything: (True, its
    decision) when it was decided; (True, None) when it would be decided as new or is being decided
    now; (False, None) when the state cannot tell (no state, or the request is dated at or before the
    horizon within which decisions are remembered), so the caller must look elsewhere."""
    if state is None:
        return False, None
    earlier = state["decided"].get(request["request_id"])
    if earlier is not None:
        return True, earlier
    horizon = _dedup_horizon_ms(state, policy)
    if horizon is not None and request["requested_at"] <= horizon:
        return False, None
    return True, None


def _dedup_horizon_ms(state: State, policy: Policy) -> int | None:
    """Requests dated at or before this may have been decided and forgotten (pruned)."""
    if state["clock_ms"] is None:
        return None
    return state["clock_ms"] - policy.request_lateness_ms_max - policy.decided_retention_ms


def _handle_result(state: State, result: Check, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """A later scope answered: grant the reservation, or release it with that scope's reasons."""
    request_id = result["request_id"]
    earlier = state["decided"].get(request_id)
    if earlier is not None:
        return state, [earlier], []
    reservation = state["reservations"].get(request_id)
    if reservation is None:
        return state, [], []  # An answer for a request this state never reserved: nothing to do.
    reservations = {rid: r for rid, r in state["reservations"].items() if rid != request_id}
    decision = {**reservation["decision"], "inputs": {**reservation["decision"]["inputs"], **result["inputs"]}}
    if not result["passed"]:
        decision = {**decision, "outcome": result["outcome"], "granted_cents": 0, "reason_codes": list(result["reason_codes"])}
    state = _with_decision({**state, "reservations": reservations}, reservation["request"], decision)
    emitted = [decision]
    delivered_at = reservation.get("delivered_during_check_ms")
    if delivered_at is not None and decision["outcome"] == GRANTED:
        # The order was delivered while this lost-in-transit reshipment was at its later scopes:
        # the same flag a delivery after the grant raises (the check must not hide it).
        flag = _delivery_flag(decision, delivered_at)
        state = _with_strike({**state, "decided": {**state["decided"], request_id: flag}}, decision, delivered_at, policy)
        emitted += [flag, recovery_suggested(flag, delivered_at, policy)]
    # Requests that waited for this answer are decided now, in their order, then the events that
    # arrived meanwhile are applied, until another check is in flight.
    state, released, checks = _drain(state, policy, None)
    state, applied, more_checks = _apply_queued(state, policy)
    return state, emitted + released + applied, checks + more_checks


def _is_lost_reship(decision: Decision) -> bool:
    """A reshipment or a refund granted for a lost-in-transit claim (a delivery contradicts either)."""
    return decision["kind"] in ("RESHIP", "REFUND") and decision["incident_kind"] == "LOST_IN_TRANSIT"


def _delivery_flag(current: Decision, delivered_at_ms: int) -> Decision:
    """The decision that flags a granted lost-in-transit reshipment whose order was delivered after all."""
    return _superseding(current, current["request_id"] + "/evidence", GRANTED, current["granted_cents"],
                        current["reason_codes"] + [DELIVERED_AFTER_LOST_CLAIM], "policy", delivered_at_ms,
                        "Delivered after a lost-in-transit claim: flagged for review; the customer is not charged.")


def _drain(state: State, policy: Policy, newest_request_ms: int | None,
           partition_clock_ms: int | None = None) -> tuple[State, list[Decision], list[Check]]:
    """Decide parked requests from the head of the queue while the order and incident they name are known.

    A request waits at most `order_wait_ms_max` of event time for what it names, measured on the
    customer's own order or incident events, or on its partition's clock (every customer's events
    there), so nothing waits forever; then it is ESCALATED to a person with the reason.
    """
    decisions, checks = [], []
    while state["pending"]:
        if state["reservations"]:
            # An earlier request is still at its household or associate check: the next one waits
            # for its answer, so every request is judged on settled room and history, whatever
            # the timing of the answers (the same decisions on a replay, with or without kills).
            # The answer always comes: every check is sent through the changelog's outbox and
            # every scope answers in order (docs/exactly-once.md, docs/decisions.md).
            break
        head = state["pending"][0]
        order_id = head.get("order_id")
        rest = {**state, "pending": state["pending"][1:]}
        missing_order = bool(order_id) and order_id not in state["orders"]
        missing_incident = bool(head.get("incident_id")) and head["incident_id"] not in state["incidents"]
        if missing_order or missing_incident:
            # Judged by the customer's order and incident events first: once events dated well
            # after the request have arrived, what it names is not coming. The requests' own clock
            # only counts with a much longer bound, because the requests topic can run ahead of
            # the other topics by hours of event time during a catch-up or a replay.
            # Each topic is in time order per customer, so each missing thing is judged by its own
            # topic's clock: a later order says nothing about an incident still on its way.
            clocks = [state["history"].get("orders_clock_ms") if missing_order else None,
                      state["history"].get("incidents_clock_ms") if missing_incident else None]
            clocks.append(partition_clock_ms)
            waited_too_long = any(
                clock is not None and clock - head["requested_at"] > policy.order_wait_ms_max for clock in clocks
            ) or (
                newest_request_ms is not None
                and newest_request_ms - head["requested_at"] > policy.order_wait_by_requests_ms_max
            )
            queue_full = len(state["pending"]) > policy.pending_requests_max_per_customer
            if not (waited_too_long or queue_full):
                break
            if missing_order:
                reason = CUSTOMER_UNKNOWN if state["history"]["orders"] == 0 else ORDER_NOT_FOUND
            else:
                reason = INCIDENT_NOT_FOUND
            decision = _decision(
                head, policy, ESCALATED, 0, [reason],
                {"pending_requests": len(state["pending"])},
                decision_time_ms(state, head, policy), _context(state, head),
            )
            state = _with_decision(rest, head, decision)
            decisions.append(decision)
            continue
        if head.get("amount_rule") == "ORDER_TOTAL" and head["kind"] == "RESHIP":
            head = detail.priced_lost_reship(head, state["orders"][order_id])
        elif head.get("amount_rule") == "ORDER_TOTAL":
            head = {**head, "amount_cents": state["orders"][order_id]["total_cents"], "amount_rule": None}
        decision = decide(state, head, policy)
        scopes = scopes_for(decision, state, policy) if decision["outcome"] == GRANTED else []
        if scopes:
            # Dated by the event being applied; an answer's drain goes on at the last check's key.
            order_ms = max(state.get(POSITION_FIELD) or 0, state.get("order_ms_last") or 0)
            number = state.get("checks_sent", 0) + 1
            check = _first_check(head, decision, scopes, order_ms, number)
            rest = {**rest, "order_ms_last": order_ms, "checks_sent": number}
            state = _with_reservation(rest, head, decision, check)
            checks.append(check)
        else:
            state = _with_decision(rest, head, decision)
            decisions.append(decision)
    return state, decisions, checks


def _first_check(request: Event, decision: Decision, scopes: list[str], order_ms: int, number: int) -> Check:
    """The RESERVE a granted request sends to its first later scope, with its order key: where its
    customer's partition stood in the log, and the customer's check number (`ordering.order_key`)."""
    scope, _, key = scopes[0].partition(":")
    return {
        "event_id": f"{request['request_id']}/RESERVE/{scopes[0]}",
        "request_id": request["request_id"],
        "customer_id": request["customer_id"],
        "action": "RESERVE",
        "scope": scope,
        "scope_key": key,
        "route": scopes[1:],
        "reserved": [],
        "amount_cents": decision["granted_cents"],
        "kind": request["kind"],
        "incident_id": request.get("incident_id"),
        "incident_kind": decision["incident_kind"],
        "at": decision["decided_at"],
        "passed": True,
        "outcome": GRANTED,
        "reason_codes": [],
        "inputs": _check_inputs(decision),
        "policy_version": decision["policy_version"],
        "order_ms": order_ms,
        "order_customer": request["customer_id"],
        "order_n": number,
    }


def _check_inputs(decision: Decision) -> dict:
    """The marks a check carries to its later scopes: a new account's never-received claim (counted at
    households and links) and a confirmed incident (not counted among an associate's discretionary grants)."""
    marks = {}
    if decision["inputs"].get(NEW_ACCOUNT_CLAIM_INPUT):
        marks[NEW_ACCOUNT_CLAIM_INPUT] = 1
    if decision["inputs"].get(INCIDENT_CONFIRMED_INPUT):
        marks[INCIDENT_CONFIRMED_INPUT] = 1
    return marks


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
        **detail.detail_of(request, context.get("household_id")),
    }


def _entry(request: Event, decision: Decision) -> list:
    return [decision["decided_at"], decision["granted_cents"], request["request_id"], request["kind"],
            request.get("incident_id"), decision["incident_kind"], int(bool(decision["inputs"].get("incident_confirmed")))]


def _with_reservation(state: State, request: Event, decision: Decision, check: Check) -> State:
    reservation = {"request": request, "decision": decision, "check": check, "entry": _entry(request, decision)}
    return {**state, "reservations": {**state["reservations"], request["request_id"]: reservation}}


def _with_decision(state: State, request: Event, decision: Decision) -> State:
    before = state
    state = {**state, "decided": {**state["decided"], request["request_id"]: decision}}
    if decision["outcome"] != GRANTED:
        return state
    incident_id = request.get("incident_id")
    new_claim = incident_id is not None and not any(e[4] == incident_id for e in state["grants"])
    history = {**state["history"], "claims": state["history"]["claims"] + (1 if new_claim else 0)}
    state = {**state, "grants": state["grants"] + [_entry(request, decision)], "history": history}
    order_id, kind = request.get("order_id"), request["kind"]
    if kind in ORDER_GIVEN_FIELD and order_id in state["orders"]:
        given = _booked_cents(before, order_id, kind) + decision["granted_cents"]
        order = {**state["orders"][order_id], ORDER_GIVEN_FIELD[kind]: given}
        state = {**state, "orders": {**state["orders"], order_id: order}}
    return state


def _with_order(state: State, event: Event, policy: Policy) -> State:
    known = state["orders"].get(event["order_id"])
    if known is not None:
        differing = [name for name in ("placed_at", "total_cents", "currency", "digital", "shipping_address_id")
                     if known[name] != event[name]]
        if differing:
            shown = ", ".join(f"{name} {known[name]!r} then {event[name]!r}" for name in differing)
            raise InvariantViolation(f"{CONFLICTING_DUPLICATE}: order {event['order_id']} was already placed with "
                                     f"different content: {shown}; the first stands")
        return state  # A redelivered order changes nothing; refunds already booked stay.
    order = {
        "placed_at": event["placed_at"],
        "total_cents": event["total_cents"],
        "currency": event["currency"],
        "digital": event["digital"],
        "shipping_address_id": event["shipping_address_id"],
        **{field: event[field] for field in LINK_FIELDS.values() if event.get(field)},
        "refunded_cents": 0,
        "reshipped_cents": 0,
        "delivered_at": None,
        "lines": detail.order_lines(event),
    }
    orders = {**state["orders"], event["order_id"]: order}
    if len(orders) > policy.orders_max_per_customer:
        oldest = min(orders, key=lambda oid: (orders[oid]["placed_at"], oid))
        orders.pop(oldest)
    old = state["history"]
    first = event["placed_at"] if old["first_order_ms"] is None else min(old["first_order_ms"], event["placed_at"])
    history = {**old, "first_order_ms": first, "orders": old["orders"] + 1, "spend_cents": old["spend_cents"] + event["total_cents"],
               "orders_clock_ms": max(old.get("orders_clock_ms") or event["placed_at"], event["placed_at"])}
    return {**state, "orders": orders, "history": history}


def _with_delivery(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Record a delivery; a delivery after a granted lost-in-transit reshipment flags that reshipment."""
    old = state["history"]
    clock = max(old.get("orders_clock_ms") or event["delivered_at"], event["delivered_at"])
    state = {**state, "history": {**old, "orders_clock_ms": clock}}
    order = state["orders"].get(event["order_id"])
    if order is None or order["delivered_at"] is not None:
        return _drain(state, policy, None)
    if event.get("items") is not None:
        # A delivery in part (OrderDelivered r6 naming its items): kept per sku; a lost-item claim
        # is judged on what has not arrived. The order counts as delivered once every line has.
        so_far = detail.delivered_lines(order.get("delivered_items") or {}, event, order.get("lines") or {})
        order = {**order, "delivered_items": so_far}
        if detail.missing_lines(order):
            return _drain({**state, "orders": {**state["orders"], event["order_id"]: order}}, policy, None)
    delivered = {**order, "delivered_at": event["delivered_at"]}
    state = {**state, "orders": {**state["orders"], event["order_id"]: delivered}}
    state, released, checks = _drain(state, policy, None)
    if not policy.flag_delivery_after_lost_claim:
        return state, released, checks
    flags = []
    for request_id, current in sorted(state["decided"].items()):
        if (current["order_id"] == event["order_id"] and current["outcome"] == GRANTED and _is_lost_reship(current)
                and DELIVERED_AFTER_LOST_CLAIM not in current["reason_codes"]):
            flag = _delivery_flag(current, event["delivered_at"])
            state = _with_strike({**state, "decided": {**state["decided"], request_id: flag}}, current,
                                 event["delivered_at"], policy)
            flags += [flag, recovery_suggested(flag, event["delivered_at"], policy)]
    return state, released + flags, checks


def is_recovery(emitted: dict) -> bool:
    """Whether something `handle` emitted is a RecoverySuggested event rather than a decision."""
    return emitted.get("type") == RECOVERY_SUGGESTED


def recovery_suggested(flag: Decision, delivered_at_ms: int, policy: Policy) -> dict:
    """The recovery case for a flagged grant: once per request (its id derives from the request id)."""
    event_id = "rec-" + hashlib.sha256(("recovery-suggested/v1/" + flag["request_id"]).encode()).hexdigest()[:32]
    return {
        "type": RECOVERY_SUGGESTED, "event_id": event_id, "request_id": flag["request_id"],
        "customer_id": flag["customer_id"], "order_id": flag["order_id"], "incident_id": flag["incident_id"],
        "decision_id": flag["decision_id"], "kind": flag["kind"], "recoverable_cents": flag["granted_cents"],
        "currency": flag["currency"], "delivered_at": delivered_at_ms,
        "customer_asserted": not flag["inputs"].get("incident_confirmed"), "policy_version": policy.version,
    }


def _with_strike(state: State, granted: Decision, delivered_at_ms: int, policy: Policy) -> State:
    """A delivery contradicted a customer-asserted lost claim that was remedied: a recovery strike,
    which sends the customer's later claims to a person (RECOVERY_STRIKE_REVIEW). A carrier that
    reported a loss and then delivered made its own mistake: no strike for the customer."""
    if granted["inputs"].get("incident_confirmed"):
        return state
    floor = delivered_at_ms - policy.recovery_strike_window_ms
    kept = [at for at in state["history"].get("strikes_ms", []) if at > floor]
    return {**state, "history": {**state["history"], "strikes_ms": kept + [delivered_at_ms]}}


def _superseding(current: Decision, id_seed: str, outcome: str, granted_cents: int, reasons: list[str],
                 decided_by: str, decided_at_ms: int, note: str | None) -> Decision:
    """A decision that replaces `current` for the same request (a review, or later evidence)."""
    decision_id = decision_id_for(id_seed)
    return {**current, "event_id": decision_id, "decision_id": decision_id, "outcome": outcome,
            "granted_cents": granted_cents, "reason_codes": list(reasons), "decided_by": decided_by,
            "decided_at": decided_at_ms, "supersedes_decision_id": current["decision_id"], "note": note}


def _handle_review(state: State, review: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """A person approved or denied an escalated request: a decision superseding the escalation.

    An approval is a person's judgement and is not held to the automatic caps, but it uses the
    customer's room like any grant; an approved refund that the order's refunds granted since
    would take past what was paid is DENIED (REFUND_EXCEEDS_ORDER_TOTAL). A review of a request
    that is not escalated changes nothing.
    """
    current = state["decided"].get(review["request_id"])
    if current is None or current["outcome"] != ESCALATED:
        if current is not None and current["decided_by"] != "policy":
            return state, [current], []  # A redelivered review: the same decision again.
        return state, [], []
    approve = review["verdict"] == "APPROVE"
    if approve and review["reviewed_by"] == current["requested_by"]:
        # Four eyes: the person who asked for a remedy never approves it (dead-lettered, named).
        raise InvariantViolation(
            f"{SELF_APPROVAL}: {review['reviewed_by']} asked for request {review['request_id']} and may not approve "
            "it; another person must review it")
    reasons = [APPROVED_BY_REVIEW if approve else DENIED_BY_REVIEW]
    order = state["orders"].get(current["order_id"]) if current.get("order_id") else None
    if (approve and current["kind"] == "REFUND" and order is not None
            and _refunded_cents(state, current["order_id"]) + current["requested_cents"] > order["total_cents"]):
        # A person's judgement goes past the caps, never past what was paid: refunds granted since
        # the escalation left too little of the order to refund (money is never invented).
        approve, reasons = False, [REFUND_EXCEEDS_ORDER_TOTAL]
    decision = _superseding(
        current, review["request_id"] + "/review", GRANTED if approve else DENIED,
        current["requested_cents"] if approve else 0, reasons,
        review["reviewed_by"], review["reviewed_at"], review.get("note"),
    )
    request = {"request_id": current["request_id"], "kind": current["kind"], "order_id": current["order_id"],
               "incident_id": current["incident_id"]}
    return _with_decision(state, request, decision), [decision], []


def _handle_incident(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Record an incident; if policy remedies this kind proactively, request that remedy now."""
    known = state["incidents"].get(event["incident_id"])
    if known is not None:
        differing = [name for name in ("kind", "order_id", "reported_at") if known[name] != event.get(name)]
        if differing:
            shown = ", ".join(f"{name} {known[name]!r} then {event.get(name)!r}" for name in differing)
            raise InvariantViolation(f"{CONFLICTING_DUPLICATE}: incident {event['incident_id']} was already reported "
                                     f"with different content: {shown}; the first stands")
        return state, [], []  # A redelivered incident: its proactive request was made the first time.
    old = state["history"]
    clock = max(old.get("incidents_clock_ms") or event["reported_at"], event["reported_at"])
    state = {**_with_incident(state, event, policy), "history": {**old, "incidents_clock_ms": clock}}
    request = _proactive_request(event, policy)
    if request is None:
        # No proactive remedy (or nothing to price it by; a person can still request one).
        return _drain(state, policy, None)  # requests that were waiting for this incident
    waiting = [i for i, p in enumerate(state["pending"]) if p.get("incident_id") == event["incident_id"]]
    if not waiting:
        return _handle_request(state, request, policy)
    # The service's own remedy for an incident is decided before the requests that waited for
    # that incident, whichever topic was read first: the same order as when the incident came first.
    pending = state["pending"][: waiting[0]] + [request] + state["pending"][waiting[0] :]
    return _drain({**state, "pending": pending}, policy, None)


def _proactive_request(event: Event, policy: Policy) -> Event | None:
    """The remedy the policy requests by itself for a reported incident, or None."""
    rule = policy.proactive_rules.get(event["kind"])
    if (rule is None or rule["source"] not in ("ANY", event["source"])
            or (rule["amount"] == "ORDER_TOTAL" and not event.get("order_id"))):
        return None
    return {
        "type": "RemedyRequested",
        "event_id": f"proactive/{event['event_id']}",
        "request_id": f"proactive:{event['incident_id']}:{event['customer_id']}:{rule['remedy']}",
        "customer_id": event["customer_id"],
        "order_id": event.get("order_id"),
        "incident_id": event["incident_id"],
        "kind": rule["remedy"],
        "amount_cents": 0 if rule["amount"] == "ORDER_TOTAL" else rule["amount"],
        "amount_rule": "ORDER_TOTAL" if rule["amount"] == "ORDER_TOTAL" else None,
        "currency": policy.currency,
        "requested_by": "system",
        "requested_at": event["reported_at"],
        "reason": f"proactive: {event['kind']} reported by {event['source']}",
    }


def _with_incident(state: State, event: Event, policy: Policy) -> State:
    if event["incident_id"] in state["incidents"]:
        return state
    incident = {"kind": event["kind"], "order_id": event.get("order_id"), "reported_at": event["reported_at"],
                "source": event["source"]}
    incidents = {**state["incidents"], event["incident_id"]: incident}
    if len(incidents) > policy.orders_max_per_customer:
        oldest = min(incidents, key=lambda iid: (incidents[iid]["reported_at"], iid))
        incidents.pop(oldest)
    return {**state, "incidents": incidents}


def _pruned(state: State, policy: Policy) -> State:
    """Drop what can no longer affect any decision at or after the customer's clock (bounded state)."""
    now_ms = state["clock_ms"] - policy.request_lateness_ms_max
    grant_floor = now_ms - max(policy.customer_window_ms, policy.long_window_ms)
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


# Erasure (docs/privacy.md) ----------------------------------------------------------------------

# The state field that marks an erased customer: its pseudonym. An erased state is kept under
# that pseudonym (the changelog drops the customer id's key with a tombstone).
ERASED = "erased"
# decision id -> decided_at_ms of every decision the customer had when erased and got since:
# opaque hashes (decision_id_for) by which a redelivered request is recognised without its content.
ERASED_DECISION_IDS = "erased_decision_ids"


def state_key(customer_id: str, state: State) -> str:
    """The changelog key a customer's state is kept under: its pseudonym once erased, else its id."""
    return state.get(ERASED) or customer_id


def _erase(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Replace the customer's state by its erased form: no orders, incidents, requests, decisions,
    amounts or history; only its pseudonym, its clock and the ids of its decisions remain.

    Requests still parked are escalated now (CUSTOMER_ERASED): every request keeps one final
    decision. The erasure waits (queued) while a check is in flight, so no reservation is open.
    Households and associates that judged its requests rename the ids that embed the customer id
    (FORGET checks; their room and claims stay counted). Every
    later request is escalated to a person: nothing is granted automatically to an erased
    customer again, so no cap can be exceeded for want of the history erased.
    """
    customer_pseudonym, at = event["pseudonym"], event["erased_at"]
    decisions = [_erased_decision_of(request, policy, max(request["requested_at"], at)) for request in state["pending"]]
    remembered = {decision_id_for(entry[2]): entry[0] for entry in state["grants"]}
    remembered.update({decision_id_for(request_id): d["decided_at"] for request_id, d in state["decided"].items()})
    remembered.update({d["decision_id"]: d["decided_at"] for d in decisions})
    erased = {**empty_state(), "clock_ms": state["clock_ms"], "queued": state["queued"], ERASED: customer_pseudonym,
              "erased_at": at, ERASED_DECISION_IDS: remembered}
    return erased, decisions, _forget_checks(state, event["customer_id"], customer_pseudonym, at, policy)


def _forget_checks(state: State, customer_id: str, customer_pseudonym: str, at_ms: int,
                   policy: Policy) -> list[Check]:
    """A FORGET to each household and associate that judged a request of the customer whose request
    or incident id embeds the customer id (they keep those ids for their windows), and one to every
    associate that judged any request of the customer (it keeps its 30-day totals per customer id)."""
    checks = []
    told: set[str] = set()
    for request_id, decision in sorted(state["decided"].items()):
        embeds = customer_id in request_id or customer_id in (decision["incident_id"] or "")
        renamed = erased_id(request_id, customer_id, customer_pseudonym)
        for scope_key in scopes_for(decision, state, policy):
            if not embeds and (not scope_key.startswith("associate:") or scope_key in told):
                continue
            told.add(scope_key)
            scope, _, key = scope_key.partition(":")
            checks.append({
                "event_id": f"{renamed}/FORGET/{erased_id(scope_key, customer_id, customer_pseudonym)}",
                "request_id": request_id, "customer_id": customer_id, "action": "FORGET", "scope": scope,
                "scope_key": key, "route": [], "reserved": [], "amount_cents": 0, "kind": decision["kind"],
                "incident_id": decision["incident_id"], "incident_kind": decision["incident_kind"], "at": at_ms,
                "passed": False, "outcome": "UNKNOWN", "reason_codes": [], "inputs": {},
                "policy_version": policy.version, "order_ms": 0, "order_customer": "", "order_n": 0,
                "pseudonym": customer_pseudonym,
            })
    return checks


def _after_erasure(state: State, event: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """An event for an erased customer: requests (and the proactive remedy of an incident) are
    escalated; orders, deliveries, reviews, answers and clock ticks are not kept."""
    kind = event["type"]
    if kind == "RemedyRequested":
        return _erased_request(state, event, policy)
    if kind == "IncidentReported":
        request = _proactive_request(event, policy)
        return _erased_request(state, request, policy) if request is not None else (state, [], [])
    return state, [], []


def _erased_request(state: State, request: Event, policy: Policy) -> tuple[State, list[Decision], list[Check]]:
    """Escalate a request of an erased customer once (a redelivery emits nothing: it was sent already)."""
    remembered = state[ERASED_DECISION_IDS]
    decision_id = decision_id_for(request["request_id"])
    if decision_id in remembered:
        return state, [], []
    horizon = _dedup_horizon_ms(state, policy)
    if horizon is not None and request["requested_at"] <= horizon:
        raise InvariantViolation(
            f"RemedyRequested {request['request_id']}: dated {request['requested_at']} ms, before the horizon "
            f"{horizon} ms within which decided requests are remembered; it may be a redelivery of a forgotten "
            "decision, so it is not decided automatically")
    decision = _erased_decision_of(request, policy, request["requested_at"])
    clock = request["requested_at"] if state["clock_ms"] is None else max(state["clock_ms"], request["requested_at"])
    floor = clock - policy.request_lateness_ms_max - policy.decided_retention_ms
    kept = {known: at for known, at in remembered.items() if at > floor}
    return {**state, "clock_ms": clock, ERASED_DECISION_IDS: {**kept, decision_id: decision["decided_at"]}}, [decision], []


def _erased_decision_of(request: Event, policy: Policy, decided_at_ms: int) -> Decision:
    """The decision on a request of an erased customer: escalated to a person, nothing granted; no
    destination or gift message (addresses and free text of an erased customer are not repeated)."""
    decision = _decision(request, policy, ESCALATED, 0, [CUSTOMER_ERASED], {}, decided_at_ms, {})
    return {**decision, "shipping_address_id": None, "gift_message": None}
