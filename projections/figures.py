"""Audit figures folded straight from decisions (pure): what every projection must add up to.

`remedy-ledger verify` folds the decision topic with `fold` and compares the result, figure by
figure and key by key, with the same figures computed by SQL in ClickHouse (`Store.figures`).
The keys are strings and the values integers or [count, cents] pairs, so both sides compare as
plain JSON. The finest grain of every projection is compared, so every coarser total follows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from projections.postings import postings_for

# Figures whose values are [count, cents]; the others are plain integers.
# Who asks for a remedy without being an associate: the service itself and the customer.
NOT_ASSOCIATES = ("system", "customer")
FIGURE_NAMES = (
    "decisions",          # {"all": distinct decisions, "current": decisions not superseded}
    "outcome_reasons",    # "outcome|reason" -> current decisions with that reason
    "granted_totals",     # "day|customer|kind|incident_kind|origin|policy_version|currency" -> [count, cents]
    "associate_grants",   # "role|associate|currency" -> [count, cents] of current grants (associates only)
    "account_balances",   # "account|currency" -> sum of postings in cents
    "customer_credit_balances",  # "customer|currency" -> outstanding credit in cents
    "posting_lines",      # "role" -> number of posting lines
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _day(value) -> str:
    if isinstance(value, int):
        value = _EPOCH + timedelta(milliseconds=value)
    return value.astimezone(timezone.utc).date().isoformat()


def _text(value) -> str:
    return "" if value is None else str(value)


def granted_key(decision: dict) -> str:
    """The key of a current granted decision in the granted_totals figure."""
    return "|".join([
        _day(decision["decided_at"]), decision["customer_id"], decision["kind"],
        _text(decision.get("incident_kind")), _text(decision.get("origin", "UNKNOWN")), decision["policy_version"],
        decision["currency"],
    ])


def _add_pair(figure: dict, key: str, cents: int) -> None:
    pair = figure.setdefault(key, [0, 0])
    pair[0] += 1
    pair[1] += int(cents)


def fold(decisions) -> dict:
    """Every audit figure of a sequence of decoded decisions in topic order (redeliveries count once)."""
    by_id: dict[str, dict] = {}
    for decision in decisions:
        by_id.setdefault(decision["decision_id"], decision)
    superseded_ids = {d["supersedes_decision_id"] for d in by_id.values() if d.get("supersedes_decision_id")}
    current = [d for d in by_id.values() if d["decision_id"] not in superseded_ids]
    figures: dict = {name: {} for name in FIGURE_NAMES}
    figures["decisions"] = {"all": len(by_id), "current": len(current)}
    for decision in current:
        for reason in decision["reason_codes"]:
            key = f"{decision['outcome']}|{reason}"
            figures["outcome_reasons"][key] = figures["outcome_reasons"].get(key, 0) + 1
        if decision["outcome"] != "GRANTED":
            continue
        _add_pair(figures["granted_totals"], granted_key(decision), decision["granted_cents"])
        if decision["requested_by"] not in NOT_ASSOCIATES:
            _add_pair(figures["associate_grants"], f"requested|{decision['requested_by']}|{decision['currency']}",
                      decision["granted_cents"])
        if decision.get("decided_by", "policy") != "policy":
            _add_pair(figures["associate_grants"], f"decided|{decision['decided_by']}|{decision['currency']}",
                      decision["granted_cents"])
    balances, credit, lines = figures["account_balances"], figures["customer_credit_balances"], figures["posting_lines"]
    for decision in by_id.values():
        superseded = by_id.get(decision.get("supersedes_decision_id") or "")
        for posting in postings_for(decision, superseded):
            key = f"{posting.account}|{posting.currency}"
            balances[key] = balances.get(key, 0) + posting.amount_cents
            lines[posting.role] = lines.get(posting.role, 0) + 1
            if posting.account == "customer_credit_balance":
                owed = f"{decision['customer_id']}|{posting.currency}"
                credit[owed] = credit.get(owed, 0) - posting.amount_cents
    return figures


def differences(expected: dict, actual: dict) -> list[str]:
    """One line per key where ClickHouse disagrees with the log; empty when every figure matches."""
    out = []
    for name in FIGURE_NAMES:
        want, got = expected.get(name, {}), actual.get(name, {})
        for key in sorted(set(want) | set(got)):
            # A balance of zero and a missing key mean the same thing.
            if want.get(key, 0) in (0, [0, 0]) and got.get(key, 0) in (0, [0, 0]):
                continue
            if want.get(key) != got.get(key):
                out.append(f"{name}[{key}]: log says {want.get(key)}, ClickHouse says {got.get(key)}")
    for decision_id, total in sorted(actual.get("unbalanced_decisions", {}).items()):
        out.append(f"postings of {decision_id} do not balance: they sum to {total} cents")
    return out
