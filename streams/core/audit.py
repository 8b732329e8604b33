"""The completeness audit: money invariants proven from the log itself (pure).

Pure module: no clock, environment or I/O. The caller reads the topics and hands over decoded
input events (dicts shaped like the Avro records, a "type" key, timestamps in ms, as the decision
core takes them), the RemedyDecided records in log order, the policy and, optionally, the latest
customer states from the customer-state changelog. docs/audit.md explains each check.

- Every request has exactly one final decision (the last of its supersedes chain), or it is
  waiting for a reason the log shows (parked or reserved in its customer's state, decided but
  still in the changelog's outbox, not yet consumed by the worker, or dead-lettered); otherwise
  it is missing. Every decision answers a request on the log or one an incident implies.
- Every proactive remedy the policy implies for an incident on the log was decided.
- No decision id carries two different contents (identical redeliveries are counted, not flagged).
- No customer holds a reservation for a request that already has a final decision.
- No cap was exceeded at any moment of event time: customer 30/90-day and per-kind sums (of
  remedies of asserted claims; remedies of confirmed incidents against their own 30-day room),
  household 30-day sum and 90-day distinct incidents, each linked-accounts scope's (card, device,
  building) the same, associate daily budget; and no order refunded for more than was paid for it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from streams.core.decision import GRANTED, LINK_FIELDS, customer_asserted
from streams.core.policy import DAY_MS, Policy

Event = dict[str, Any]
Decision = dict[str, Any]

# Why a request without a final decision may legitimately still wait (see Waiting.reason).
PENDING = "PENDING"  # parked in its customer's state: waits for its order or incident, or behind one that does
RESERVED = "RESERVED"  # room reserved at the customer; a household or associate check is in flight
NOT_YET_CONSUMED = "NOT_YET_CONSUMED"  # at or after the worker's committed offset: not processed yet
IN_OUTBOX = "IN_OUTBOX"  # decided; the decision is in its customer's changelog outbox, not yet on the decision topic
DEAD_LETTERED = "DEAD_LETTERED"  # the worker routed the event to the dead-letter topic for a person

# The input events that carry a request or imply one (an incident's proactive remedy).
REQUESTING_EVENTS = ("RemedyRequested", "IncidentReported")
# The event-time field of each input event type (the log's clock for ages).
EVENT_TIME_FIELD = {
    "OrderPlaced": "placed_at",
    "OrderDelivered": "delivered_at",
    "IncidentReported": "reported_at",
    "RemedyRequested": "requested_at",
    "RemedyReviewed": "reviewed_at",
}


@dataclass(frozen=True)
class Requested:
    """A request the log implies: an upstream RemedyRequested, or a proactive remedy for an incident."""

    request_id: str
    customer_id: str
    requested_at_ms: int
    proactive: bool


@dataclass(frozen=True)
class EventFacts:
    """What the audit needs from the input events: requests, first incidents and the log's newest time."""

    requests: Mapping[str, Requested]
    proactive: Mapping[str, Requested]
    incidents: frozenset  # (customer_id, incident_id) of every incident on the log
    newest_event_ms: int | None
    events: int
    # (customer_id, order_id) -> the linked scopes its claims pass ("<link kind>:<id>", OrderPlaced r7)
    order_links: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # (customer_id, order_id) of digital orders: their claims are never counted at a household
    digital_orders: frozenset = frozenset()
    # (customer_id, order_id) -> (total_cents, currency) of its first placement: refunds never exceed it
    order_totals: Mapping[tuple[str, str], tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StateFacts:
    """What the audit needs from one customer state: its parked and reserved requests, with details."""

    pending: Mapping[str, str]  # request_id -> what it waits for
    reservations: Mapping[str, tuple[int, int, str]]  # request_id -> (reserved_at_ms, cents, where)


@dataclass(frozen=True)
class Waiting:
    """A request without a final decision that the log shows is legitimately still waiting."""

    request_id: str
    customer_id: str
    reason: str
    detail: str
    requested_at_ms: int
    age_ms: int
    proactive: bool


@dataclass(frozen=True)
class Missing:
    """A request with no final decision and nothing on the log that says why."""

    request_id: str
    customer_id: str
    requested_at_ms: int
    age_ms: int
    proactive: bool


@dataclass(frozen=True)
class SeveralFinals:
    """A request with more than one decision that nothing supersedes."""

    request_id: str
    decision_ids: tuple[str, ...]


@dataclass(frozen=True)
class Conflict:
    """One decision id seen with different contents; `fields` names what differs."""

    decision_id: str
    request_id: str
    copies: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Unrequested:
    """A decision for a request that is neither on the log nor implied by an incident on it."""

    decision_id: str
    request_id: str
    customer_id: str


@dataclass(frozen=True)
class LeakedReservation:
    """Room a customer state still holds for a request whose final decision is already on the log."""

    customer_id: str
    request_id: str
    reserved_at_ms: int
    reserved_cents: int
    final_decision_id: str
    final_outcome: str


@dataclass(frozen=True)
class CapBreach:
    """A window of event time in which grants exceeded a cap: `sum` and `cap` are in `unit`."""

    scope: str  # customer, customer_kind, customer_confirmed, household, household_claims, linked, linked_claims,
    #             associate, order_refunds (an order's refunds past what was paid for it)
    key: str
    window: str  # 30d, 90d, day, order (the order's lifetime)
    at_ms: int
    sum: int
    cap: int
    unit: str  # cents or incidents
    decision_id: str


@dataclass(frozen=True)
class AuditReport:
    """The findings of one audit; `ok` when there is nothing but waiting requests."""

    requests: int
    decided: int
    proactive_expected: int
    proactive_decided: int
    decision_ids: int
    duplicates_identical: int
    events: int
    newest_event_ms: int | None
    waiting: tuple[Waiting, ...]
    missing: tuple[Missing, ...]
    proactive_missing: tuple[Missing, ...]
    several_finals: tuple[SeveralFinals, ...]
    conflicting_ids: tuple[Conflict, ...]
    unrequested: tuple[Unrequested, ...]
    reservations_leaked: tuple[LeakedReservation, ...]
    cap_breaches: tuple[CapBreach, ...]

    @property
    def ok(self) -> bool:
        """True when every invariant holds (waiting requests are not a difference)."""
        return not (self.missing or self.proactive_missing or self.several_finals or self.conflicting_ids
                    or self.unrequested or self.reservations_leaked or self.cap_breaches)

    def counts(self) -> dict[str, int]:
        """Every count the report states, by name."""
        return {
            "requests": self.requests, "decided": self.decided, "waiting": len(self.waiting),
            "missing": len(self.missing), "several_finals": len(self.several_finals),
            "decision_ids": self.decision_ids, "duplicates_identical": self.duplicates_identical,
            "conflicting_ids": len(self.conflicting_ids), "unrequested": len(self.unrequested),
            "proactive_expected": self.proactive_expected, "proactive_decided": self.proactive_decided,
            "proactive_missing": len(self.proactive_missing), "reservations_leaked": len(self.reservations_leaked),
            "cap_breaches": len(self.cap_breaches),
        }

    def as_document(self) -> dict:
        """The report as JSON-ready data: `ok`, every count at top level, then the findings listed."""
        return {
            "ok": self.ok, **self.counts(), "events": self.events, "newest_event_ms": self.newest_event_ms,
            "findings": {
                "waiting": [asdict(item) for item in self.waiting],
                "missing": [asdict(item) for item in self.missing],
                "proactive_missing": [asdict(item) for item in self.proactive_missing],
                "several_finals": [asdict(item) for item in self.several_finals],
                "conflicting_ids": [asdict(item) for item in self.conflicting_ids],
                "unrequested": [asdict(item) for item in self.unrequested],
                "reservations_leaked": [asdict(item) for item in self.reservations_leaked],
                "cap_breaches": [asdict(item) for item in self.cap_breaches],
            },
        }


# Facts from events and states ------------------------------------------------------------------


def proactive_request(incident: Event, policy: Policy) -> Requested | None:
    """The remedy the policy makes by itself for an IncidentReported, as decision._handle_incident does."""
    rule = policy.proactive_rules.get(incident["kind"])
    if rule is None or rule["source"] not in ("ANY", incident["source"]):
        return None
    if rule["amount"] == "ORDER_TOTAL" and not incident.get("order_id"):
        return None  # nothing to price it by; a person can still request one
    request_id = f"proactive:{incident['incident_id']}:{incident['customer_id']}:{rule['remedy']}"
    return Requested(request_id, incident["customer_id"], incident["reported_at"], True)


def event_facts(events: Iterable[Event], policy: Policy) -> EventFacts:
    """Fold the input events (in log order per customer) into what the audit needs; reads each once."""
    requests: dict[str, Requested] = {}
    proactive: dict[str, Requested] = {}
    incidents: set[tuple[str, str]] = set()
    order_links: dict[tuple[str, str], tuple[str, ...]] = {}
    digital: set[tuple[str, str]] = set()
    totals: dict[tuple[str, str], tuple[int, str]] = {}
    newest_ms, count = None, 0
    for event in events:
        count += 1
        kind = event["type"]
        at_ms = event.get(EVENT_TIME_FIELD.get(kind, ""))
        if isinstance(at_ms, int) and (newest_ms is None or at_ms > newest_ms):
            newest_ms = at_ms
        if kind == "OrderPlaced":
            # The first placement of an order stands (decision.py refuses a different second one).
            placed = (event["customer_id"], event["order_id"])
            if placed not in order_links and event.get("digital"):
                digital.add(placed)
            totals.setdefault(placed, (event["total_cents"], event["currency"]))
            order_links.setdefault(placed, tuple(
                f"{link}:{event[name]}" for link, name in LINK_FIELDS.items() if event.get(name)))
        elif kind == "RemedyRequested":
            requests.setdefault(event["request_id"],
                                Requested(event["request_id"], event["customer_id"], event["requested_at"], False))
        elif kind == "IncidentReported":
            seen = (event["customer_id"], event["incident_id"])
            if seen in incidents:
                continue  # only the first report of an incident to a customer makes a proactive request
            incidents.add(seen)
            implied = proactive_request(event, policy)
            if implied is not None:
                proactive.setdefault(implied.request_id, implied)
    return EventFacts(requests, proactive, frozenset(incidents), newest_ms, count, order_links, frozenset(digital),
                      totals)


def state_facts(state: Mapping[str, Any]) -> StateFacts:
    """The parked and reserved requests of one customer state (decision.empty_state's shape)."""
    orders, incidents = state.get("orders") or {}, state.get("incidents") or {}
    pending = {}
    for request in state.get("pending") or []:
        if request.get("order_id") and request["order_id"] not in orders:
            pending[request["request_id"]] = f"waits for order {request['order_id']}"
        elif request.get("incident_id") and request["incident_id"] not in incidents:
            pending[request["request_id"]] = f"waits for incident {request['incident_id']}"
        else:
            pending[request["request_id"]] = "waits behind an earlier parked request"
    reservations = {}
    for request_id, reservation in (state.get("reservations") or {}).items():
        check = reservation.get("check") or {}
        where = f"{check.get('scope')}:{check.get('scope_key')}" if check else "a later scope"
        entry = reservation["entry"]
        reservations[request_id] = (entry[0], entry[1], where)
    return StateFacts(pending, reservations)


def _requested_ids(events: Iterable[Event], policy: Policy) -> set[str]:
    """The request ids the given input events carry or imply (requests, and incidents' proactive remedies)."""
    found = set()
    for event in events:
        if event["type"] == "RemedyRequested":
            found.add(event["request_id"])
        elif event["type"] == "IncidentReported":
            implied = proactive_request(event, policy)
            if implied is not None:
                found.add(implied.request_id)
    return found


# Decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grant:
    """A request's final grant as it uses room: the time and attributes of the decision that took it."""

    decision_id: str
    customer_id: str
    household_id: str | None
    requested_by: str
    origin: str
    kind: str
    claim: str  # incident id, or the request id for a remedy without incident (as scopes.py counts claims)
    cents: int
    at_ms: int
    by_policy: bool
    position: int
    inputs: Mapping[str, int]
    policy_version: str
    trust_tier: str | None
    # A remedy of a confirmed incident (issue 12): held to the confirmed 30-day room, not the
    # customer's abuse caps, and never counted at a household.
    confirmed: bool = False
    # The linked scopes ("<link kind>:<id>") its order names; it passed them when the policy it was
    # decided under used them and the claim was customer-asserted (decision.linked_scopes).
    links: tuple[str, ...] = ()
    # A claim the customer asserts (decision.customer_asserted): the household and linked scopes count only these.
    asserted: bool = True
    # The order it remedies ("" when none).
    order_id: str = ""
    # On a digital order: never counted at the household (decision.scopes_for).
    digital: bool = False


def _distinct(decisions: Sequence[Decision]) -> tuple[dict[str, Decision], dict[str, int], list[Conflict], int]:
    """Each decision id's first content and log position, the ids seen with other contents, identical copies."""
    first: dict[str, Decision] = {}
    position: dict[str, int] = {}
    differing: dict[str, set[str]] = {}
    copies: dict[str, int] = {}
    identical = 0
    for index, decision in enumerate(decisions):
        decision_id = decision["decision_id"]
        copies[decision_id] = copies.get(decision_id, 0) + 1
        earlier = first.get(decision_id)
        if earlier is None:
            first[decision_id], position[decision_id] = decision, index
        elif earlier == decision:
            identical += 1
        else:
            fields = {name for name in set(earlier) | set(decision) if earlier.get(name) != decision.get(name)}
            differing.setdefault(decision_id, set()).update(fields)
    conflicts = [Conflict(did, first[did]["request_id"], copies[did], tuple(sorted(fields)))
                 for did, fields in sorted(differing.items())]
    return first, position, conflicts, identical


def _finals(first: Mapping[str, Decision], position: Mapping[str, int]) -> dict[str, list[Decision]]:
    """Per request id, its decisions that no other decision supersedes, in log order."""
    superseded = {d["supersedes_decision_id"] for d in first.values() if d.get("supersedes_decision_id")}
    finals: dict[str, list[Decision]] = {}
    for decision_id in sorted(first, key=position.__getitem__):
        if decision_id not in superseded:
            finals.setdefault(first[decision_id]["request_id"], []).append(first[decision_id])
    return finals


def _grant(final: Decision, first: Mapping[str, Decision], position: Mapping[str, int],
           order_links: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
           digital_orders: frozenset = frozenset()) -> _Grant:
    """The grant a GRANTED final decision stands for, timed by the decision that first granted it.

    A decision superseding a grant with a grant (a delivery after a lost-in-transit claim) takes no
    new room: the room was taken when the request was first granted, as the customer state books it.
    """
    taking = final
    while taking.get("supersedes_decision_id") in first and first[taking["supersedes_decision_id"]]["outcome"] == GRANTED:
        taking = first[taking["supersedes_decision_id"]]
    order = (final["customer_id"], final.get("order_id") or "")
    return _Grant(
        decision_id=taking["decision_id"], customer_id=final["customer_id"], household_id=taking.get("household_id"),
        requested_by=final["requested_by"], origin=final["origin"], kind=final["kind"],
        claim=final.get("incident_id") or final["request_id"], cents=final["granted_cents"], at_ms=taking["decided_at"],
        by_policy=taking["decided_by"] == "policy", position=position[taking["decision_id"]],
        inputs=taking.get("inputs") or {}, policy_version=taking["policy_version"], trust_tier=taking.get("trust_tier"),
        confirmed=bool((taking.get("inputs") or {}).get("incident_confirmed")),
        links=(order_links or {}).get(order, ()),
        asserted=customer_asserted({**final, "inputs": taking.get("inputs") or {}}),
        digital=order in digital_orders,
        order_id=order[1],
    )


# Caps ------------------------------------------------------------------------------------------


def _policy_for(grant: _Grant, policy: Policy, policies: Mapping[str, Policy]) -> Policy:
    return policies.get(grant.policy_version, policy)


def _customer_cap(grant: _Grant, key: str, policy: Policy) -> int:
    """The cap a grant recorded, or its policy's (scaled by its tier) when the record lacks it."""
    if key in grant.inputs:
        return grant.inputs[key]
    tier = grant.trust_tier if grant.trust_tier in policy.tier_percent else "NEW"
    if key == "customer_cap_cents_30d":
        return policy.tier_cap(policy.remedy_cents_max_per_customer_30d, tier)
    if key == "customer_cap_cents_90d":
        return policy.tier_cap(policy.remedy_cents_max_per_customer_90d, tier)
    return policy.tier_cap(policy.kind_cents_max_per_customer_30d.get(grant.kind, 0), tier)


def _rolling_breaches(grants: list[_Grant], scope: str, key: str, window: str, window_ms_of, cap_of,
                      counts_for, measure) -> list[CapBreach]:
    """Check the window ending at each policy grant: what it saw there against the largest cap in force.

    For any window, the grant decided last inside it saw every other grant of the window (as a grant
    or a reservation), so the window never holds more than that grant's cap; the largest cap
    recorded in the window bounds it whatever the order of decisions. `counts_for(g, end)` says
    whether grant g counts in the window ending at policy grant `end`; `measure` sums them.
    """
    breaches = []
    times_ms = [g.at_ms for g in grants]  # grants come sorted by time
    for end in grants:
        if not end.by_policy:
            continue
        low = bisect_right(times_ms, end.at_ms - window_ms_of(end))
        high = bisect_right(times_ms, end.at_ms)
        inside = [g for g in grants[low:high] if counts_for(g, end)]
        total = measure(inside)
        cap = max(cap_of(g) for g in inside if g.by_policy)
        if total > cap:
            unit = "incidents" if scope in ("household_claims", "linked_claims") else "cents"
            breaches.append(CapBreach(scope, key, window, end.at_ms, total, cap, unit, end.decision_id))
    return breaches


def _cents(grants: list[_Grant]) -> int:
    return sum(g.cents for g in grants)


def _claims(grants: list[_Grant]) -> int:
    return len({g.claim for g in grants})


def _seen_by(grant: _Grant, end: _Grant) -> bool:
    """Whether a grant can have been counted by the policy grant `end` at the customer.

    Policy grants always: the one decided last in a window saw the others. An approval by review is
    not held to the caps, but the customer's later decisions count it; one emitted after `end` (the
    customer's decisions are on one partition, in decision order) cannot have been.
    """
    return grant.by_policy or grant.position < end.position


def _cap_breaches(grants: list[_Grant], policy: Policy, policies: Mapping[str, Policy]) -> list[CapBreach]:
    """Every moment a customer, household, linked-accounts scope or associate held more than its cap allowed."""
    breaches: list[CapBreach] = []
    short_ms = lambda g: _policy_for(g, policy, policies).customer_window_ms
    long_ms = lambda g: _policy_for(g, policy, policies).long_window_ms

    def customer_cap(name):
        return lambda g: _customer_cap(g, name, _policy_for(g, policy, policies))

    by_customer: dict[str, list[_Grant]] = {}
    for grant in grants:
        by_customer.setdefault(grant.customer_id, []).append(grant)
    for customer_id, theirs in sorted(by_customer.items()):
        confirmed = [g for g in theirs if g.confirmed]
        if confirmed:
            breaches += _rolling_breaches(
                confirmed, "customer_confirmed", customer_id, "30d", short_ms,
                lambda g: g.inputs.get("confirmed_cap_cents_30d",
                                       _policy_for(g, policy, policies).confirmed_remedy_cents_max_per_customer_30d),
                _seen_by, _cents)
        mine = [g for g in theirs if not g.confirmed]
        if not mine:
            continue
        breaches += _rolling_breaches(mine, "customer", customer_id, "30d", short_ms,
                                      customer_cap("customer_cap_cents_30d"), _seen_by, _cents)
        breaches += _rolling_breaches(mine, "customer", customer_id, "90d", long_ms,
                                      customer_cap("customer_cap_cents_90d"), _seen_by, _cents)
        for kind in sorted({g.kind for g in mine}):
            of_kind = [g for g in mine if g.kind == kind]
            breaches += _rolling_breaches(of_kind, "customer_kind", f"{customer_id}:{kind}", "30d", short_ms,
                                          customer_cap("customer_kind_cap_cents_30d"), _seen_by, _cents)

    # Later scopes count only what passed through them: the policy's own grants. A person's
    # approval never reserves at a household or an associate.
    by_household: dict[str, list[_Grant]] = {}
    by_associate_day: dict[tuple[str, int], list[_Grant]] = {}
    by_link: dict[str, list[_Grant]] = {}
    for grant in grants:
        if not grant.by_policy:
            continue
        if grant.household_id and grant.asserted and not grant.digital:
            by_household.setdefault(grant.household_id, []).append(grant)
        if (grant.links and grant.asserted and grant.origin != "PROACTIVE"
                and _policy_for(grant, policy, policies).linked_accounts_scope_enabled):
            for link in grant.links:
                by_link.setdefault(link, []).append(grant)
        if grant.origin == "ASSOCIATE":
            by_associate_day.setdefault((grant.requested_by, grant.at_ms // DAY_MS), []).append(grant)
    always = lambda g, end: True
    for household_id, theirs in sorted(by_household.items()):
        breaches += _rolling_breaches(
            theirs, "household", household_id, "30d", short_ms,
            lambda g: g.inputs.get("household_cap_cents_30d", _policy_for(g, policy, policies).household_cents_max_30d),
            always, _cents)
        breaches += _rolling_breaches(
            theirs, "household_claims", household_id, "90d", long_ms,
            lambda g: g.inputs.get("household_claims_max_90d", _policy_for(g, policy, policies).household_claims_max_90d),
            always, _claims)
    for link, theirs in sorted(by_link.items()):
        kind = link.partition(":")[0]
        breaches += _rolling_breaches(
            theirs, "linked", link, "30d", short_ms,
            lambda g: g.inputs.get(f"linked_{kind}_cap_cents_30d",
                                   _policy_for(g, policy, policies).linked_cents_max_30d[kind]),
            always, _cents)
        breaches += _rolling_breaches(
            theirs, "linked_claims", link, "90d", long_ms,
            lambda g: g.inputs.get(f"linked_{kind}_claims_max_90d",
                                   _policy_for(g, policy, policies).linked_claims_max_90d[kind]),
            always, _claims)
    for (associate, _day), theirs in sorted(by_associate_day.items()):
        # The budget is per UTC day and the associate scope counts the whole day, so the day's
        # total is what must fit; the breach is dated at the grant that first went over.
        cap = max(g.inputs.get("associate_cap_cents_day", _policy_for(g, policy, policies).associate_cents_max_per_day)
                  for g in theirs)
        running = 0
        ordered = sorted(theirs, key=lambda g: (g.at_ms, g.position))
        over = None
        for grant in ordered:
            running += grant.cents
            if running > cap and over is None:
                over = grant
        if over is not None:
            breaches.append(CapBreach("associate", associate, "day", over.at_ms, running, cap, "cents", over.decision_id))
    return breaches


def _refund_breaches(grants: list[_Grant], order_totals: Mapping[tuple[str, str], tuple[int, str]],
                     currency: str) -> list[CapBreach]:
    """Every order whose granted refunds (any decider, a person's approvals too) add up to more than
    was paid for it: money given back that was never taken. Dated at the refund that went over."""
    breaches = []
    by_order: dict[tuple[str, str], list[_Grant]] = {}
    for grant in grants:
        if grant.kind == "REFUND" and grant.order_id:
            by_order.setdefault((grant.customer_id, grant.order_id), []).append(grant)
    for order, refunds in sorted(by_order.items()):
        total = order_totals.get(order)
        if total is None or total[1] != currency:
            continue  # an order not on the log (compacted away), or priced in another currency than the grants
        running = 0
        for grant in refunds:  # already in (time, log position) order
            running += grant.cents
            if running > total[0]:
                breaches.append(CapBreach("order_refunds", f"{order[0]}:{order[1]}", "order", grant.at_ms,
                                          sum(g.cents for g in refunds), total[0], "cents", grant.decision_id))
                break
    return breaches


# The audit -------------------------------------------------------------------------------------


def audit(
    events: EventFacts | Iterable[Event],
    decisions: Sequence[Decision],
    policy: Policy,
    *,
    policies: Mapping[str, Policy] | None = None,
    states: Mapping[str, StateFacts | Mapping[str, Any]] | None = None,
    unconsumed: Iterable[Event] = (),
    dead_lettered: Iterable[Event] = (),
    outbox_decisions: Iterable[Decision] = (),
) -> AuditReport:
    """Check every invariant of the log; `decisions` in log order, `states` by customer id.

    `policies` maps a policy version to its policy (the current `policy` stands in for an unknown
    one); `unconsumed` are input events at or after the worker's committed offsets; `dead_lettered`
    those the worker routed to the dead-letter topic; `outbox_decisions` the decisions the
    changelog's outboxes still hold. Without `states` no request can be shown to be parked or reserved.
    """
    policies = policies or {}
    facts = events if isinstance(events, EventFacts) else event_facts(events, policy)
    held = {cid: s if isinstance(s, StateFacts) else state_facts(s) for cid, s in (states or {}).items()}
    not_consumed = _requested_ids(unconsumed, policy)
    lettered = _requested_ids(dead_lettered, policy)
    in_outbox = {d["request_id"] for d in outbox_decisions}
    first, position, conflicts, identical = _distinct(decisions)
    finals = _finals(first, position)
    newest_ms = facts.newest_event_ms

    def waiting_or_missing(requested: Requested) -> Waiting | Missing:
        age_ms = (newest_ms if newest_ms is not None else requested.requested_at_ms) - requested.requested_at_ms
        state = held.get(requested.customer_id)
        reason = detail = None
        if state is not None and requested.request_id in state.pending:
            reason, detail = PENDING, state.pending[requested.request_id]
        elif state is not None and requested.request_id in state.reservations:
            reason, detail = RESERVED, f"limit check in flight at {state.reservations[requested.request_id][2]}"
        elif requested.request_id in in_outbox:
            reason, detail = IN_OUTBOX, "decided; the decision waits in the changelog outbox to be sent"
        elif requested.request_id in not_consumed:
            reason, detail = NOT_YET_CONSUMED, "after the worker's committed offset"
        elif requested.request_id in lettered:
            reason, detail = DEAD_LETTERED, "on the dead-letter topic, for a person"
        if reason is None:
            return Missing(requested.request_id, requested.customer_id, requested.requested_at_ms, age_ms,
                           requested.proactive)
        return Waiting(requested.request_id, requested.customer_id, reason, detail, requested.requested_at_ms, age_ms,
                       requested.proactive)

    waiting: list[Waiting] = []
    missing: list[Missing] = []
    proactive_missing: list[Missing] = []
    several: list[SeveralFinals] = []
    decided = proactive_decided = 0
    for requested in list(facts.requests.values()) + [p for rid, p in facts.proactive.items() if rid not in facts.requests]:
        standing = finals.get(requested.request_id, [])
        if len(standing) > 1:
            several.append(SeveralFinals(requested.request_id, tuple(d["decision_id"] for d in standing)))
        elif standing:
            if requested.proactive:
                proactive_decided += 1
            else:
                decided += 1
        else:
            found = waiting_or_missing(requested)
            if isinstance(found, Waiting):
                waiting.append(found)
            elif requested.proactive:
                proactive_missing.append(found)
            else:
                missing.append(found)

    unrequested = [
        Unrequested(d["decision_id"], d["request_id"], d["customer_id"])
        for d in sorted(first.values(), key=lambda d: position[d["decision_id"]])
        if d["request_id"] not in facts.requests and d["request_id"] not in facts.proactive
        and not (d["request_id"].startswith("proactive:") and (d["customer_id"], d.get("incident_id")) in facts.incidents)
    ]

    leaked = []
    for customer_id, state in sorted(held.items()):
        for request_id, (reserved_at_ms, cents, _where) in sorted(state.reservations.items()):
            standing = finals.get(request_id)
            if standing:
                leaked.append(LeakedReservation(customer_id, request_id, reserved_at_ms, cents,
                                                standing[-1]["decision_id"], standing[-1]["outcome"]))

    grants = sorted(
        (_grant(standing[-1], first, position, facts.order_links, facts.digital_orders) for standing in finals.values()
         if standing[-1]["outcome"] == GRANTED and standing[-1]["currency"] == policy.currency),
        key=lambda g: (g.at_ms, g.position),
    )
    by_age = lambda item: (-item.age_ms, item.request_id)
    return AuditReport(
        requests=len(facts.requests),
        decided=decided,
        proactive_expected=len([rid for rid in facts.proactive if rid not in facts.requests]),
        proactive_decided=proactive_decided,
        decision_ids=len(first),
        duplicates_identical=identical,
        events=facts.events,
        newest_event_ms=newest_ms,
        waiting=tuple(sorted(waiting, key=by_age)),
        missing=tuple(sorted(missing, key=by_age)),
        proactive_missing=tuple(sorted(proactive_missing, key=by_age)),
        several_finals=tuple(several),
        conflicting_ids=tuple(conflicts),
        unrequested=tuple(unrequested),
        reservations_leaked=tuple(leaked),
        cap_breaches=tuple(_cap_breaches(grants, policy, policies) + _refund_breaches(grants, facts.order_totals,
                                                                                     policy.currency)),
    )
