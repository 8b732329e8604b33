"""The audit fold: what the projections must add up to, folded straight from decisions."""

from __future__ import annotations

from projections.figures import differences, fold
from tests.unit.test_projection_postings import decision


def test_a_redelivered_decision_counts_once():
    once = fold([decision(1), decision(2, kind="RESHIP", cents=700)])
    assert fold([decision(1), decision(1), decision(2, kind="RESHIP", cents=700), decision(1)]) == once
    assert once["decisions"] == {"all": 2, "current": 2}
    assert once["granted_totals"]["2026-11-21|c1|CREDIT||CUSTOMER|p1|USD"] == [1, 500]
    assert once["customer_credit_balances"] == {"c1|USD": 500}


def test_a_reversed_grant_leaves_no_current_grant_and_no_credit_balance():
    figures = fold([decision(1, cents=900),
                    decision(2, outcome="DENIED", supersedes_decision_id="dec-1", decided_by="assoc-3")])
    assert figures["decisions"] == {"all": 2, "current": 1}
    assert figures["granted_totals"] == {}
    assert figures["customer_credit_balances"] == {"c1|USD": 0}
    assert figures["account_balances"] == {"remedy_expense:credit|USD": 0, "customer_credit_balance|USD": 0}
    assert figures["posting_lines"] == {"grant": 2, "reversal": 2}
    assert figures["outcome_reasons"] == {"DENIED|CUSTOMER_30D_CAP_EXCEEDED": 1}


def test_associates_are_counted_as_requester_and_as_decider():
    figures = fold([decision(1, outcome="ESCALATED", requested_by="assoc-1", origin="ASSOCIATE"),
                    decision(2, supersedes_decision_id="dec-1", requested_by="assoc-1", decided_by="lead-9")])
    assert figures["associate_grants"] == {"requested|assoc-1|USD": [1, 500], "decided|lead-9|USD": [1, 500]}


def test_differences_name_the_figure_the_key_and_both_values():
    expected = fold([decision(1)])
    actual = fold([decision(1, cents=501)])
    lines = differences(expected, actual)
    assert "granted_totals[2026-11-21|c1|CREDIT||CUSTOMER|p1|USD]: log says [1, 500], ClickHouse says [1, 501]" in lines
    assert differences(expected, fold([decision(1)])) == []
    assert differences(expected, {**expected, "unbalanced_decisions": {"dec-1 (USD)": 3}}) == [
        "postings of dec-1 (USD) do not balance: they sum to 3 cents"]


def test_figures_keep_each_currency_apart():
    figures = fold([decision(1, cents=1500, currency="EUR", requested_by="assoc-1"),
                    decision(2, cents=4500, requested_by="assoc-1")])
    assert figures["granted_totals"] == {"2026-11-21|c1|CREDIT||CUSTOMER|p1|EUR": [1, 1500],
                                         "2026-11-21|c1|CREDIT||CUSTOMER|p1|USD": [1, 4500]}
    assert figures["associate_grants"] == {"requested|assoc-1|EUR": [1, 1500], "requested|assoc-1|USD": [1, 4500]}
    assert figures["customer_credit_balances"] == {"c1|EUR": 1500, "c1|USD": 4500}


def test_the_customer_asking_for_herself_is_no_associate():
    figures = fold([decision(1, requested_by="customer"), decision(2, requested_by="system"),
                    decision(3, requested_by="assoc-1")])
    assert figures["associate_grants"] == {"requested|assoc-1|USD": [1, 500]}
