"""The balanced ledger: every decision's postings sum to zero, for every kind and for reversals."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.postings import GRANT_ACCOUNTS, balance_by_currency, postings_for

KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")


def decision(n: int = 1, kind: str = "CREDIT", outcome: str = "GRANTED", cents: int = 500, **fields) -> dict:
    """A valid RemedyDecided datum (r2) for tests; fields override the defaults."""
    granted = cents if outcome == "GRANTED" else 0
    datum = {
        "event_id": f"dec-{n}", "decision_id": f"dec-{n}", "request_id": f"r-{n}", "customer_id": "c1",
        "order_id": "o1", "incident_id": None, "kind": kind, "outcome": outcome, "requested_cents": cents,
        "granted_cents": granted, "currency": "USD",
        "reason_codes": ["WITHIN_LIMITS" if outcome == "GRANTED" else "CUSTOMER_30D_CAP_EXCEEDED"],
        "policy_version": "p1", "requested_by": "system",
        "requested_at": datetime(2026, 11, 21, 9, tzinfo=timezone.utc),
        "decided_at": datetime(2026, 11, 21, 9, tzinfo=timezone.utc), "inputs": {"cap": 25000},
        "supersedes_decision_id": None, "decided_by": "policy", "origin": "CUSTOMER", "incident_kind": None,
        "trust_tier": None, "household_id": None, "note": None,
    }
    datum.update(fields)
    return datum


def test_a_granted_credit_debits_expense_and_credits_the_customer_balance():
    lines = postings_for(decision(kind="CREDIT", cents=1234))
    assert [(p.account, p.amount_cents) for p in lines] == [
        ("remedy_expense:credit", 1234), ("customer_credit_balance", -1234)]
    assert all(p.role == "grant" and p.decision_id == "dec-1" for p in lines)


def test_each_kind_posts_to_its_own_accounts_and_balances():
    for kind in KINDS:
        lines = postings_for(decision(kind=kind, cents=999))
        assert [p.account for p in lines] == list(GRANT_ACCOUNTS[kind])
        assert balance_by_currency(lines) == {"USD": 0}


def test_denied_and_escalated_post_nothing():
    assert postings_for(decision(outcome="DENIED")) == []
    assert postings_for(decision(outcome="ESCALATED")) == []


def test_an_unknown_kind_still_balances_on_unclassified_accounts():
    lines = postings_for(decision(kind="UNKNOWN", cents=10))
    assert [p.account for p in lines] == ["remedy_expense:unclassified", "remedies_payable:unclassified"]
    assert sum(p.amount_cents for p in lines) == 0


def test_a_reversal_of_a_grant_posts_compensating_lines_only():
    grant = decision(1, kind="RESHIP", cents=4599)
    reversal = decision(2, kind="RESHIP", outcome="DENIED", supersedes_decision_id="dec-1", decided_by="assoc-7")
    lines = postings_for(reversal, grant)
    assert [(p.account, p.amount_cents, p.role, p.source_decision_id) for p in lines] == [
        ("reshipment_cost", -4599, "reversal", "dec-1"), ("fulfilment_payable", 4599, "reversal", "dec-1")]
    assert [p.line for p in lines] == [0, 1]


def test_a_review_that_changes_the_amount_reverses_the_old_grant_and_posts_the_new_one():
    old = decision(1, kind="CREDIT", cents=800)
    new = decision(2, kind="REFUND", cents=300, supersedes_decision_id="dec-1")
    lines = postings_for(new, old)
    assert [(p.account, p.amount_cents) for p in lines] == [
        ("remedy_expense:credit", -800), ("customer_credit_balance", 800),
        ("remedy_expense:refund", 300), ("refunds_payable", -300)]
    assert balance_by_currency(lines) == {"USD": 0}


def test_granting_an_escalation_posts_only_the_grant():
    escalated = decision(1, outcome="ESCALATED", cents=20000)
    granted = decision(2, cents=20000, supersedes_decision_id="dec-1", decided_by="assoc-2")
    assert [p.amount_cents for p in postings_for(granted, escalated)] == [20000, -20000]


def test_a_superseded_decision_must_be_the_one_named():
    try:
        postings_for(decision(2, supersedes_decision_id="dec-9"), decision(1))
    except ValueError as error:
        assert "dec-9" in str(error)
    else:
        raise AssertionError("expected ValueError")


decisions_strategy = st.builds(
    lambda n, kind, outcome, cents, currency: decision(n, kind=kind, outcome=outcome, cents=cents, currency=currency),
    st.integers(0, 10_000), st.sampled_from(KINDS + ("UNKNOWN",)), st.sampled_from(("GRANTED", "DENIED", "ESCALATED")),
    st.integers(1, 10**12), st.sampled_from(("USD", "EUR")),
)


@settings(max_examples=300)
@given(chain=st.lists(decisions_strategy, min_size=1, max_size=6))
def test_any_chain_of_supersessions_balances_per_decision_and_nets_to_the_last_grant(chain):
    previous = None
    net: dict[str, int] = {}
    for index, current in enumerate(chain):
        current = {**current, "decision_id": f"d{index}",
                   "supersedes_decision_id": previous["decision_id"] if previous else None}
        lines = postings_for(current, previous)
        assert all(v == 0 for v in balance_by_currency(lines).values())
        assert all(isinstance(p.amount_cents, int) for p in lines)
        for p in lines:
            net[p.account] = net.get(p.account, 0) + p.amount_cents
        previous = current
    # After every reversal, only the last decision's grant remains on the books.
    want = {p.account: p.amount_cents for p in postings_for({**previous, "supersedes_decision_id": None})}
    assert {a: c for a, c in net.items() if c} == want


def test_the_pure_projection_modules_import_no_io():
    banned = {"faust", "aiokafka", "kafka", "fastavro", "clickhouse_connect", "os", "time", "random", "uuid"}
    root = Path(__file__).resolve().parents[2] / "projections"
    for name in ("postings.py", "figures.py"):
        tree = ast.parse((root / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & banned, (name, imported & banned)
