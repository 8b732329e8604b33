"""The review queue as cases: filter, sort, explain a decision's inputs in words, recent history.

Pure module: it takes decisions (RemedyDecided data, timestamps in ms), assignments and the time
"now" from the shell, and returns what the CLI, the API and the fraud team's page show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from streams.core.decision import DELIVERED_AFTER_LOST_CLAIM
from streams.core.explain import reason_words
from streams.core.money import money_text
from streams.core.policy import LINK_KINDS

HOUR_MS = 3_600_000
# The window "what the customer has now" sums grants over (the customer caps' short window).
NOW_WINDOW_MS = 30 * 24 * HOUR_MS
# The orders a queue can be sorted in; "age" is oldest first, "amount" largest first.
SORTS = ("age", "amount", "customer", "kind")
# Recent history per customer, household and associate: at most this many decisions each.
HISTORY_DECISIONS_MAX = 10

# Each input a decision records, in words: (counter, cap, sentence with {used} and {cap}).
INPUT_WORDS = (
    ("customer_granted_cents_30d", "customer_cap_cents_30d", "customer: {used} granted in 30 days of a {cap} cap"),
    ("customer_granted_cents_90d", "customer_cap_cents_90d", "customer: {used} granted in 90 days of a {cap} cap"),
    ("customer_kind_granted_cents_30d", "customer_kind_cap_cents_30d",
     "customer: {used} of this kind granted in 30 days of a {cap} cap"),
    ("customer_incident_claims_90d", "customer_incident_claims_max_90d",
     "customer: {used} incidents of this kind remedied in 90 days, at most {cap}"),
    ("household_granted_cents_30d", "household_cap_cents_30d", "household: {used} granted in 30 days of a {cap} cap"),
    ("household_claims_90d", "household_claims_max_90d", "household: {used} incidents remedied in 90 days, at most {cap}"),
    ("household_incident_claims_90d", "household_incident_claims_max_90d",
     "household: {used} incidents of this kind remedied in 90 days, at most {cap}"),
    *((f"linked_{kind}_granted_cents_30d", f"linked_{kind}_cap_cents_30d",
       f"linked accounts ({kind.replace('_', ' ')}): {{used}} granted in 30 days of a {{cap}} cap") for kind in LINK_KINDS),
    *((f"linked_{kind}_claims_90d", f"linked_{kind}_claims_max_90d",
       f"linked accounts ({kind.replace('_', ' ')}): {{used}} incidents remedied in 90 days, at most {{cap}}")
      for kind in LINK_KINDS),
    ("associate_granted_cents_day", "associate_cap_cents_day", "associate: {used} granted today of a {cap} budget"),
)


@dataclass(frozen=True)
class CaseFilter:
    """What a reviewer narrows the queue to; None means any."""

    kind: str | None = None
    reason: str | None = None
    customer_id: str | None = None
    household_id: str | None = None
    associate: str | None = None
    assigned_to: str | None = None
    older_than_hours: int | None = None
    newer_than_hours: int | None = None


def current(decisions: Iterable[dict]) -> dict[str, dict]:
    """The decision in force for every request: the newest one that nothing supersedes."""
    decisions = list(decisions)
    superseded = {d["supersedes_decision_id"] for d in decisions if d.get("supersedes_decision_id")}
    found = {}
    for decision in decisions:
        if decision["decision_id"] not in superseded:
            found[decision["request_id"]] = decision
    return found


def age_hours(decision: Mapping, now_ms: int) -> int:
    """Whole hours since the request was made."""
    return max(0, (now_ms - decision["requested_at"]) // HOUR_MS)


def _matches(decision: Mapping, assigned: str | None, wanted: CaseFilter, now_ms: int) -> bool:
    age = age_hours(decision, now_ms)
    return ((wanted.kind is None or decision["kind"] == wanted.kind)
            and (wanted.reason is None or wanted.reason in decision["reason_codes"])
            and (wanted.customer_id is None or decision["customer_id"] == wanted.customer_id)
            and (wanted.household_id is None or decision.get("household_id") == wanted.household_id)
            and (wanted.associate is None or decision["requested_by"] == wanted.associate)
            and (wanted.assigned_to is None or assigned == wanted.assigned_to)
            and (wanted.older_than_hours is None or age >= wanted.older_than_hours)
            and (wanted.newer_than_hours is None or age < wanted.newer_than_hours))


def queue(decisions: Iterable[dict], assignments: Mapping[str, dict], wanted: CaseFilter, sort: str,
          now_ms: int) -> list[dict]:
    """The cases waiting for a person that match the filter, as case rows, in `sort` order: the
    escalated requests (case REVIEW: approve or deny) and the grants flagged because the order
    was delivered after its lost claim (case RECOVERY: the recovery team decides; the customer
    is never charged automatically)."""
    if sort not in SORTS:
        raise ValueError(f"sort: one of {', '.join(SORTS)}, got {sort!r}")
    rows = []
    for decision in current(decisions).values():
        if case_type(decision) is None:
            continue
        assigned = assignments.get(decision["request_id"], {}).get("assigned_to")
        if _matches(decision, assigned, wanted, now_ms):
            rows.append(case_row(decision, assigned, now_ms))
    order = {
        "age": lambda row: (row["requested_at"], row["request_id"]),
        "amount": lambda row: (-row["requested_cents"], row["currency"], row["request_id"]),
        "customer": lambda row: (row["customer_id"], row["requested_at"], row["request_id"]),
        "kind": lambda row: (row["kind"], row["requested_at"], row["request_id"]),
    }[sort]
    return sorted(rows, key=order)


def case_type(decision: Mapping) -> str | None:
    """REVIEW for an escalated decision, RECOVERY for a grant flagged by a delivery after its lost
    claim, None for a decision no person has to look at."""
    if decision["outcome"] == "ESCALATED":
        return "REVIEW"
    if decision["outcome"] == "GRANTED" and DELIVERED_AFTER_LOST_CLAIM in decision["reason_codes"]:
        return "RECOVERY"
    return None


def case_row(decision: Mapping, assigned_to: str | None, now_ms: int) -> dict:
    """One line of the queue: the request, its amount in words, its reasons, age and owner."""
    return {
        "case": case_type(decision),
        "request_id": decision["request_id"], "decision_id": decision["decision_id"],
        "customer_id": decision["customer_id"], "household_id": decision.get("household_id"),
        "requested_by": decision["requested_by"], "kind": decision["kind"],
        "requested_cents": decision["requested_cents"], "currency": decision["currency"],
        "amount": money_text(decision["requested_cents"], decision["currency"]),
        "reason_codes": list(decision["reason_codes"]), "requested_at": decision["requested_at"],
        "age_hours": age_hours(decision, now_ms), "assigned_to": assigned_to,
    }


def inputs_in_words(decision: Mapping) -> list[str]:
    """The counters and caps the decision saw, the tier and the policy version, as sentences."""
    inputs = decision.get("inputs") or {}
    currency = decision["currency"]
    lines = []
    for used_key, cap_key, sentence in INPUT_WORDS:
        if used_key not in inputs or cap_key not in inputs:
            continue
        in_cents = "cents" in used_key
        used = money_text(inputs[used_key], currency) if in_cents else str(inputs[used_key])
        cap = money_text(inputs[cap_key], currency) if in_cents else str(inputs[cap_key])
        lines.append(sentence.format(used=used, cap=cap))
    if "associate_customer_share_percent_30d" in inputs:
        lines.append(
            f"associate: {money_text(inputs['associate_customer_granted_cents_30d'], currency)} in "
            f"{inputs['associate_customer_grants_30d']} grants to this customer in 30 days of "
            f"{money_text(inputs['associate_discretionary_granted_cents_30d'], currency)} discretionary; "
            f"{inputs['associate_customer_share_percent_30d']}% with this request (a second person looks above "
            f"{inputs['associate_concentration_share_max_percent_30d']}% and "
            f"{money_text(inputs['associate_concentration_cents_min_30d'], currency)} from the "
            f"{_ordinal(inputs['associate_concentration_grants_min_30d'])} grant)")
    if "request_ceiling_cents" in inputs:
        lines.append(f"granted without a second look up to {money_text(inputs['request_ceiling_cents'], currency)}")
    if inputs.get("scope_memory_exceeded"):
        lines.append("the check came from before what the scope still remembers: not granted automatically")
    lines.append(f"trust tier: {decision.get('trust_tier') or 'not determined'}")
    lines.append(f"policy version: {decision['policy_version']}")
    return lines


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _history(decisions: Iterable[dict], field: str, value: str | None, exclude: str) -> list[dict]:
    if not value:
        return []
    found = [d for d in decisions if d.get(field) == value and d["request_id"] != exclude]
    found.sort(key=lambda d: (d["requested_at"], d["request_id"]), reverse=True)
    return [{"request_id": d["request_id"], "customer_id": d["customer_id"], "kind": d["kind"],
             "outcome": d["outcome"], "amount": money_text(d["requested_cents"], d["currency"]),
             "granted": money_text(d["granted_cents"], d["currency"]), "reason_codes": list(d["reason_codes"]),
             "requested_at": d["requested_at"]} for d in found[:HISTORY_DECISIONS_MAX]]


def _decided_at(decision: Mapping) -> int:
    return decision.get("decided_at") or decision["requested_at"]


def now_in_words(decision: Mapping, standing: Iterable[Mapping], now_ms: int) -> list[str]:
    """What the customer holds now, from the decisions on the log: what the decision saw can be
    stale by the time a person looks (grants made while the request waited use the same room,
    and an approval lands on top of them). Grants in the request's currency only."""
    currency, customer = decision["currency"], decision["customer_id"]
    grants = [d for d in standing if d["customer_id"] == customer and d["outcome"] == "GRANTED"
              and d["currency"] == currency and d["request_id"] != decision["request_id"]]
    recent = [d for d in grants if now_ms - NOW_WINDOW_MS < _decided_at(d) <= now_ms]
    since = [d for d in grants if _decided_at(d) > _decided_at(decision)]
    cap = (decision.get("inputs") or {}).get("customer_cap_cents_30d")
    line = f"customer now: {money_text(sum(d['granted_cents'] for d in recent), currency)} granted in the last 30 days"
    if cap is not None:
        line += f" (all remedies) against a {money_text(cap, currency)} cap"
    lines = [line + f"; {len(since)} grant{'' if len(since) == 1 else 's'} "
                    f"({money_text(sum(d['granted_cents'] for d in since), currency)}) since this decision"]
    order_id = decision.get("order_id")
    if order_id:
        refunds = [d for d in grants if d.get("order_id") == order_id and d["kind"] == "REFUND"]
        reships = [d for d in grants if d.get("order_id") == order_id and d["kind"] == "RESHIP"]
        lines.append(f"order {order_id}: {money_text(sum(d['granted_cents'] for d in refunds), currency)} refunded and "
                     f"{money_text(sum(d['granted_cents'] for d in reships), currency)} reshipped by other requests")
    return lines


def case_detail(request_id: str, decisions: Iterable[dict], assignments: Mapping[str, dict], now_ms: int) -> dict | None:
    """Everything a reviewer needs for one case, or None when the request has no decision."""
    standing = current(decisions)
    decision = standing.get(request_id)
    if decision is None:
        return None
    others = list(standing.values())
    associate = decision["requested_by"] if decision.get("origin") == "ASSOCIATE" else None
    return {
        **case_row(decision, assignments.get(request_id, {}).get("assigned_to"), now_ms),
        "outcome": decision["outcome"], "decided_by": decision["decided_by"],
        "granted_cents": decision["granted_cents"], "policy_version": decision["policy_version"],
        "trust_tier": decision.get("trust_tier"), "origin": decision.get("origin"),
        "reasons": [{"code": code, "meaning": reason_words(code)} for code in decision["reason_codes"]],
        "inputs": dict(decision.get("inputs") or {}),
        "inputs_in_words": inputs_in_words(decision),
        "now_in_words": now_in_words(decision, others, now_ms),
        "history": {
            "customer": _history(others, "customer_id", decision["customer_id"], request_id),
            "household": _history(others, "household_id", decision.get("household_id"), request_id),
            "associate": _history(others, "requested_by", associate, request_id),
        },
    }


def review_problem(decision: Mapping | None, request_id: str, reviewer: str, verdict: str, note: str | None) -> tuple[int, str] | None:
    """Why a review may not be recorded, as (HTTP status, message), or None when it may (four eyes:
    the person who asked for a remedy never reviews it; every verdict carries a note)."""
    if decision is None:
        return 404, f"{request_id}: no decision for this request (yet)"
    if decision["outcome"] != "ESCALATED":
        return 409, (f"{request_id}: not waiting for review (its decision is {decision['outcome']} by "
                     f"{decision['decided_by']})")
    if reviewer == decision["requested_by"]:
        action = "approve" if verdict == "APPROVE" else "deny"
        return 403, (f"SELF_APPROVAL: {reviewer} asked for request {request_id} and may not {action} it (four eyes); "
                     "another person must review it")
    if note is None or not note.strip():
        return 400, "field 'note': a note saying why is required for every review"
    return None


# How many households and associates the ranking names.
RANKED_MAX = 50


def rankings(decisions: Iterable[dict], since_ms: int | None, until_ms: int | None) -> dict:
    """Households and associates ranked by claims (requests decided in [since, until)), then by
    granted cents; cents per currency, never added across currencies."""
    tables: dict[str, dict[str, dict]] = {"households": {}, "associates": {}}
    for decision in current(decisions).values():
        at = decision["requested_at"]
        if (since_ms is not None and at < since_ms) or (until_ms is not None and at >= until_ms):
            continue
        keys = {"households": decision.get("household_id"),
                "associates": decision["requested_by"] if decision.get("origin") == "ASSOCIATE" else None}
        for group, key in keys.items():
            if not key:
                continue
            row = tables[group].setdefault(key, {"key": key, "claims": 0, "granted": 0, "denied": 0, "escalated": 0,
                                                 "granted_cents": {}})
            row["claims"] += 1
            row[decision["outcome"].lower()] += 1
            if decision["outcome"] == "GRANTED":
                cents = row["granted_cents"]
                cents[decision["currency"]] = cents.get(decision["currency"], 0) + decision["granted_cents"]
    def order(row: dict) -> tuple:
        return (-row["claims"], -max(row["granted_cents"].values(), default=0), row["key"])
    return {group: sorted(rows.values(), key=order)[:RANKED_MAX] for group, rows in tables.items()}
