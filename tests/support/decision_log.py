"""Checks on a decision topic read back whole, shared by the kill and broker-outage tests.

One standing decision per request and no decision id with two contents (`check_log`); what a
decision essentially says (`essence`); which differences from an uninterrupted run are timing by
design: household and associate limits are first come, first served across partitions (`fcfs`),
and a request decided while an earlier one of its customer still waited for such an answer
(`decided_during_a_check`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from streams.runtime.upstream import read_events

# Reason codes decided at a household or associate scope: first come, first served across partitions.
FCFS_REASON_PREFIXES = ("HOUSEHOLD_", "ASSOCIATE_")
# Inputs a decision carries when it came back from a household or associate answer.
LATER_SCOPE_INPUT_PREFIXES = ("household_", "associate_", "scope_memory_")


def mark_log(path: Path, text: str, source: str) -> None:
    """A line in the worker log between lives, so the evidence reads in order."""
    with open(path, "a") as log:
        log.write(f"===== {source}: {text} at {time.strftime('%H:%M:%S')} =====\n")


def requests_of(events: Path) -> set[str]:
    """The request ids of a publish file."""
    return {datum["request_id"] for name, datum in read_events(events) if name == "RemedyRequested"}


def millis(value) -> int:
    """A decoded timestamp (datetime or ms) as integer ms."""
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def first_emissions(decisions: list[dict]) -> list[dict]:
    """Each decision id once, where it first appeared (a customer's decisions share a partition,
    so this is the order the customer's state made them in)."""
    seen: set[str] = set()
    return [d for d in decisions if not (d["decision_id"] in seen or seen.add(d["decision_id"]))]


def essence(decision: dict | None):
    """What a final decision says: outcome, granted cents, reason codes."""
    if decision is None:
        return None
    return decision["outcome"], decision["granted_cents"], tuple(decision["reason_codes"])


def fcfs(decision: dict | None) -> bool:
    """True when a household or associate limit decided it (first come, first served across partitions)."""
    return decision is not None and any(code.startswith(FCFS_REASON_PREFIXES) for code in decision["reason_codes"])


def via_later_scope(decision: dict) -> bool:
    """True when the decision was made from a household or associate answer (its customer counters
    are those of the reservation, taken before the answer came back)."""
    return (any(key.startswith(LATER_SCOPE_INPUT_PREFIXES) for key in decision.get("inputs") or {})
            or fcfs(decision))


def decided_during_a_check(decisions: list[dict]) -> set[str]:
    """Requests decided while an earlier-dated request of the same customer was still waiting for its
    household or associate answer (that answer appears after them on the log)."""
    by_customer: dict[str, list[dict]] = {}
    for decision in first_emissions(decisions):
        if not decision.get("supersedes_decision_id"):
            by_customer.setdefault(decision["customer_id"], []).append(decision)
    found = set()
    for ordered in by_customer.values():
        for position, decision in enumerate(ordered):
            asked = millis(decision["requested_at"])
            if any(via_later_scope(later) and millis(later["requested_at"]) <= asked for later in ordered[position + 1:]):
                found.add(decision["request_id"])
    return found


def check_log(requests: set[str], decisions: list[dict], label: str) -> dict:
    """Every request of the file has exactly one standing decision and no decision id carries two
    contents; returns the counts (decisions, distinct, identical duplicates, superseding, proactive ids)."""
    by_id: dict[str, dict] = {}
    conflicts: dict[str, list[dict]] = {}
    duplicates = 0
    for decision in decisions:
        seen = by_id.setdefault(decision["decision_id"], decision)
        if seen is decision:
            continue
        if seen == decision:
            duplicates += 1
        else:
            conflicts.setdefault(decision["decision_id"], [seen]).append(decision)
    described = []
    for decision_id, versions in list(conflicts.items())[:10]:
        fields = sorted({k for v in versions[1:] for k in v if v[k] != versions[0][k]})
        described.append(f"{decision_id}: fields {fields}: " + " | ".join(
            json.dumps({k: v.get(k) for k in fields}, default=str) for v in versions))
    assert not conflicts, (f"{label}: {len(conflicts)} decision ids on the topic with different contents:\n"
                           + "\n".join(described))

    superseded = {d["supersedes_decision_id"] for d in decisions if d.get("supersedes_decision_id")}
    standing: dict[str, set[str]] = {}
    for decision in decisions:
        if decision["decision_id"] not in superseded:
            standing.setdefault(decision["request_id"], set()).add(decision["decision_id"])
    missing = sorted(requests - set(standing))
    many = {request_id: sorted(ids) for request_id, ids in standing.items() if len(ids) != 1}
    assert not missing, f"{label}: {len(missing)} requests of the file have no decision: {missing[:20]}"
    assert not many, f"{label}: {len(many)} requests with more than one standing decision: {list(many.items())[:10]}"
    return {"decisions": len(decisions), "distinct": len(by_id), "identical_duplicates": duplicates,
            "superseding": len(superseded), "proactive": {r for r in standing if r.startswith("proactive:")}}
