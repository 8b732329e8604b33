"""What a policy change would have done: compare two replays of the same period, and a replay with the log.

Pure module. The shell (streams/runtime/replay.py) replays the recorded events twice, under the
policy in force and under a candidate, from the same point-in-time state; this module checks the
first replay against the recorded decisions (the backtest's own test: it must reproduce them) and
measures the difference between the two: decisions changed and how, granted cents per currency
and per kind, per reason code, per day, and the customers, households and associates most
affected. Cents are never added across currencies.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from streams.errors import InvariantViolation

Decision = dict

# The fields a replayed decision must share with the recorded one to count as reproduced. The
# policy version is left out on purpose: the recorded one names the version that decided, the
# replay the version it replays with (the report counts recorded decisions of other versions).
REPRODUCED_FIELDS = ("request_id", "customer_id", "kind", "outcome", "requested_cents", "granted_cents", "currency",
                     "reason_codes", "requested_by", "requested_at", "decided_at", "inputs", "supersedes_decision_id",
                     "decided_by", "origin", "incident_kind", "trust_tier", "household_id")
# How many customers, households and associates the report names per list.
MOST_AFFECTED_COUNT = 20
# How many differing decisions the report lists in full (the count is always complete).
DIFFERING_LISTED_MAX = 200
DAY_MS = 86_400_000


def date_ms(text: str | None, name: str) -> int | None:
    """A period bound (YYYY-MM-DD, or an ISO time with its zone; UTC when none) as ms; None stays None.
    InvariantViolation names the parameter (`name`) and the value."""
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvariantViolation(f"{name} {text!r}: not a date (YYYY-MM-DD) or an ISO time such as "
                                 "2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def in_period(decision: Decision, since_ms: int | None, until_ms: int | None) -> bool:
    """True when the decision's request was made in [since, until) (either bound may be open)."""
    at = decision["requested_at"]
    return (since_ms is None or at >= since_ms) and (until_ms is None or at < until_ms)


def distinct(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """Each decision id once (a redelivered decision carries the same id and content), in first-seen order."""
    found: dict[str, Decision] = {}
    for decision in decisions:
        found.setdefault(decision["decision_id"], decision)
    return found


def finals(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """Per request id, the decision nothing supersedes (the last one when several stand)."""
    by_id = distinct(decisions)
    superseded = {d["supersedes_decision_id"] for d in by_id.values() if d.get("supersedes_decision_id")}
    found: dict[str, Decision] = {}
    for decision_id, decision in by_id.items():
        if decision_id not in superseded:
            found[decision["request_id"]] = decision
    return found


def reproduction(recorded: Iterable[Decision], replayed: Iterable[Decision], policy_version: str) -> dict:
    """How many recorded decisions the replay under the policy in force made again, field for field.

    Both sides are the decisions of the period. `differing` lists (up to DIFFERING_LISTED_MAX) each
    decision id that is on one side only or differs, with the fields that differ; a recorded
    decision made under another policy version than the one replayed is counted in
    `recorded_under_other_versions` (it is expected to differ when the thresholds differ).
    """
    check = Reproduction(recorded, policy_version)
    for decision in replayed:
        check.add(decision)
    return check.result()


class Reproduction:
    """The self-check taken one replayed decision at a time (a replay need not keep its decisions):
    `result()` equals `reproduction(recorded, every decision added, policy_version)`."""

    def __init__(self, recorded: Iterable[Decision], policy_version: str):
        self.on_log = distinct(recorded)
        self.policy_version = policy_version
        self.seen: set[str] = set()  # replayed decision ids, each counted once
        self.problems: dict[str, dict] = {}  # recorded decision id -> how the replay differs from it
        self.replay_only: list[dict] = []  # made by the replay, not on the log, in the replay's order
        self.same = 0
        self.judged_order_differences = 0

    def add(self, replay: Decision) -> None:
        """Check one replayed decision (a repeat of a decision id counts once, the first time)."""
        decision_id = replay["decision_id"]
        if decision_id in self.seen:
            return
        self.seen.add(decision_id)
        decision = self.on_log.get(decision_id)
        if decision is None:
            self.replay_only.append({"decision_id": decision_id, "request_id": replay["request_id"],
                                     "problem": "made by the replay, not on the log",
                                     "replayed_outcome": replay["outcome"]})
            return
        fields = [name for name in REPRODUCED_FIELDS
                  if (_ordered_inputs(decision) != _ordered_inputs(replay) if name == "inputs"
                      else decision.get(name) != replay.get(name))]
        if not fields and decision.get("inputs") != replay.get("inputs"):
            self.judged_order_differences += 1
        if fields:
            self.problems[decision_id] = {"decision_id": decision_id, "request_id": decision["request_id"],
                                          "problem": "differs in " + ", ".join(fields),
                                          "recorded": {name: decision.get(name) for name in fields},
                                          "replayed": {name: replay.get(name) for name in fields}}
        else:
            self.same += 1

    def result(self) -> dict:
        """The self-check's report (see `reproduction`)."""
        differing = []
        for decision_id, decision in self.on_log.items():
            if decision_id not in self.seen:
                differing.append({"decision_id": decision_id, "request_id": decision["request_id"],
                                  "problem": "recorded, not made by the replay", "recorded_outcome": decision["outcome"]})
            elif decision_id in self.problems:
                differing.append(self.problems[decision_id])
        differing.extend(self.replay_only)
        whole = len(self.on_log) + len(self.replay_only)
        return {
            "recorded_decisions": len(self.on_log),
            "replayed_decisions": len(self.seen),
            "reproduced": self.same,
            "reproduced_share": round(self.same / whole, 6) if whole else 1.0,
            "recorded_under_other_versions": sum(1 for d in self.on_log.values()
                                                 if d["policy_version"] != self.policy_version),
            "differing_count": len(differing),
            "differing": differing[:DIFFERING_LISTED_MAX],
            "judged_order_differences": self.judged_order_differences,
        }


# The fields of a decision that the comparison (`compare`) and the quality measures
# (streams.measure.quality) read: a replay keeps only these of each decision it made.
COMPARED_FIELDS = ("decision_id", "supersedes_decision_id", "request_id", "customer_id", "household_id", "kind",
                   "outcome", "requested_cents", "granted_cents", "currency", "reason_codes", "requested_by",
                   "requested_at", "origin")


def slim(decision: Decision) -> Decision:
    """The decision with only COMPARED_FIELDS (those it has): what a replay keeps of it."""
    return {name: decision[name] for name in COMPARED_FIELDS if name in decision}


class PeriodDecisions:
    """What one replay keeps of the decisions it makes in a period, as they are made: the self-check
    against the log (when given one) and each decision slimmed to what the comparison reads."""

    def __init__(self, since_ms: int | None, until_ms: int | None, check: Reproduction | None = None):
        self.since_ms, self.until_ms = since_ms, until_ms
        self.check = check
        self.slims: list[Decision] = []

    def add(self, decisions: Iterable[Decision]) -> None:
        """Take the decisions one replayed record released; those outside the period are not kept."""
        for decision in decisions:
            if not in_period(decision, self.since_ms, self.until_ms):
                continue
            if self.check is not None:
                self.check.add(decision)
            self.slims.append(slim(decision))

    def final_slims(self) -> list[Decision]:
        """The final decision of each request, slimmed, in `finals` order: `compare` of these
        equals `compare` of every decision kept."""
        return list(finals(self.slims).values())


# Inputs that record the order in which a scope judged its requests (`<scope>_judged_sequence`).
# A check that reached a scope late (its partition had been idle and sent it below a frontier
# already passed) is judged first come, first served (docs/decisions.md, "Order across
# partitions"), so on a log decided while traffic started the live order may differ from the
# replay's order-key order. Every counter, cap, outcome and cent must still be equal; such
# decisions count as reproduced and are reported apart (`judged_order_differences`).
JUDGED_ORDER_SUFFIX = "_judged_sequence"


def _ordered_inputs(decision: Decision) -> dict:
    return {name: value for name, value in (decision.get("inputs") or {}).items()
            if not name.endswith(JUDGED_ORDER_SUFFIX)}


def _add(table: dict, key: str, currency: str, cents: int) -> None:
    per_currency = table.setdefault(key, {})
    per_currency[currency] = per_currency.get(currency, 0) + cents


def _granted(final: Mapping[str, Decision]) -> tuple[dict, dict, dict]:
    """Granted cents by currency, by kind (then currency), by day (then currency) of the final decisions."""
    by_currency: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    by_day: dict[str, dict[str, int]] = {}
    for decision in final.values():
        if decision["outcome"] != "GRANTED":
            continue
        cents, currency = decision["granted_cents"], decision["currency"]
        by_currency[currency] = by_currency.get(currency, 0) + cents
        _add(by_kind, decision["kind"], currency, cents)
        _add(by_day, day_of(decision["requested_at"]), currency, cents)
    return by_currency, by_kind, by_day


def day_of(at_ms: int) -> str:
    """The UTC date (YYYY-MM-DD) of a time in ms."""
    return datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def _reasons(final: Mapping[str, Decision]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for decision in final.values():
        for code in decision["reason_codes"]:
            counts[code] = counts.get(code, 0) + 1
    return counts


def _granted_cents(decision: Decision | None) -> int:
    return decision["granted_cents"] if decision is not None and decision["outcome"] == "GRANTED" else 0


def _affected(changes: list[tuple[Decision | None, Decision | None]], key_of) -> list[dict]:
    """The keys with the most changed decisions: how many, and granted cents before/after per currency."""
    table: dict[str, dict] = {}
    for before, after in changes:
        either = before or after
        key = key_of(either)
        if not key:
            continue
        row = table.setdefault(key, {"key": key, "changed": 0, "granted_cents_before": {}, "granted_cents_after": {}})
        row["changed"] += 1
        currency = either["currency"]
        for side, decision in (("granted_cents_before", before), ("granted_cents_after", after)):
            row[side][currency] = row[side].get(currency, 0) + _granted_cents(decision)
    def size(row: dict) -> tuple:
        moved = sum(abs(row["granted_cents_after"].get(c, 0) - row["granted_cents_before"].get(c, 0))
                    for c in row["granted_cents_before"])
        return (-row["changed"], -moved, row["key"])
    return sorted(table.values(), key=size)[:MOST_AFFECTED_COUNT]


def _associate(decision: Decision) -> str | None:
    return decision["requested_by"] if decision.get("origin") == "ASSOCIATE" else None


def compare(before: Iterable[Decision], after: Iterable[Decision]) -> dict:
    """The difference between two replays of one period, by the final decision of each request."""
    first, second = finals(before), finals(after)
    transitions: dict[str, int] = {}
    changes: list[tuple[Decision | None, Decision | None]] = []
    for request_id in sorted(set(first) | set(second)):
        old, new = first.get(request_id), second.get(request_id)
        old_outcome = old["outcome"] if old else "NONE"
        new_outcome = new["outcome"] if new else "NONE"
        if old_outcome == new_outcome and _granted_cents(old) == _granted_cents(new):
            continue
        changes.append((old, new))
        name = f"{old_outcome}->{new_outcome}"
        transitions[name] = transitions.get(name, 0) + 1
    granted_before, kind_before, day_before = _granted(first)
    granted_after, kind_after, day_after = _granted(second)
    reasons_before, reasons_after = _reasons(first), _reasons(second)
    days = sorted(set(day_before) | set(day_after))
    return {
        "decisions": len(first),
        "changed": len(changes),
        "transitions": dict(sorted(transitions.items())),
        "granted_cents_before": dict(sorted(granted_before.items())),
        "granted_cents_after": dict(sorted(granted_after.items())),
        "granted_cents_by_kind": {kind: {"before": kind_before.get(kind, {}), "after": kind_after.get(kind, {})}
                                  for kind in sorted(set(kind_before) | set(kind_after))},
        "reason_codes": {code: {"before": reasons_before.get(code, 0), "after": reasons_after.get(code, 0)}
                         for code in sorted(set(reasons_before) | set(reasons_after))},
        "daily": [{"day": day, "granted_cents_before": day_before.get(day, {}), "granted_cents_after": day_after.get(day, {})}
                  for day in days],
        "most_affected": {
            "customers": _affected(changes, lambda d: d["customer_id"]),
            "households": _affected(changes, lambda d: d.get("household_id")),
            "associates": _affected(changes, _associate),
        },
        "changed_decisions": [
            {"request_id": (old or new)["request_id"], "customer_id": (old or new)["customer_id"],
             "before": old["outcome"] if old else None, "after": new["outcome"] if new else None,
             "reason_codes_after": new["reason_codes"] if new else []}
            for old, new in changes[:DIFFERING_LISTED_MAX]
        ],
    }


def quality_delta(before: Mapping, after: Mapping) -> dict:
    """Honest friction and abuse stopped, before and after, from two quality reports (streams.measure.quality)."""
    def pick(report: Mapping) -> dict:
        honest, excess = report["honest"], report["excess"]
        return {"honest_requests": honest["decided"], "honest_frictionless_share": honest["frictionless_share"],
                "honest_wrongly_denied_cents": honest["wrongly_denied_cents"],
                "excess_requests": excess["decided"], "excess_stopped_share": excess["stopped_share"],
                "excess_prevented_cents": excess["prevented_cents"], "excess_leaked_cents": excess["leaked_cents"]}
    return {"before": pick(before), "after": pick(after)}


def merged_sort_key(timestamp_ms: int, partition: int, topic_rank: int, offset: int) -> tuple[int, int, int, int]:
    """The order a replay feeds upstream records in: record time (the order key's position, which
    `publish` makes strictly increasing), then as the aligner breaks ties within a partition."""
    return (timestamp_ms, partition, topic_rank, offset)


def sorted_records(records: Sequence, topic_rank: Mapping[str, int]) -> list:
    """Upstream records (with topic, partition, offset, timestamp_ms) in replay order."""
    return sorted(records, key=lambda r: merged_sort_key(r.timestamp_ms or 0, r.partition, topic_rank[r.topic], r.offset))
