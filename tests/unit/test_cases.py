"""The review queue as cases: filters, sorts, inputs in words, history, and four eyes."""

from __future__ import annotations

import pytest

from streams.core import cases

HOUR_MS = 3_600_000
NOW = 1_785_888_000_000


def escalated(request_id, *, kind="CREDIT", cents=30_000, customer="c1", household="h1", by="assoc-ana",
              hours_ago=1, reasons=("ABOVE_AUTO_APPROVAL_CEILING",), origin="ASSOCIATE", outcome="ESCALATED",
              supersedes=None, decision_id=None):
    return {"decision_id": decision_id or f"d-{request_id}", "request_id": request_id, "customer_id": customer,
            "household_id": household, "requested_by": by, "kind": kind, "requested_cents": cents,
            "granted_cents": cents if outcome == "GRANTED" else 0, "currency": "USD", "reason_codes": list(reasons),
            "requested_at": NOW - hours_ago * HOUR_MS, "outcome": outcome, "decided_by": "policy",
            "policy_version": "p1-abc", "trust_tier": "ESTABLISHED", "origin": origin,
            "supersedes_decision_id": supersedes,
            "inputs": {"customer_granted_cents_30d": 5_000, "customer_cap_cents_30d": 37_500,
                       "request_ceiling_cents": 25_000}}


LOG = [
    escalated("r1", hours_ago=30),
    escalated("r2", kind="REFUND", cents=60_000, customer="c2", household="h2", by="customer", origin="CUSTOMER",
              reasons=("CUSTOMER_UNKNOWN",), hours_ago=2),
    escalated("r3", customer="c3", by="assoc-ben", reasons=("ASSOCIATE_DAILY_BUDGET_EXCEEDED",), hours_ago=5),
    escalated("r4", hours_ago=40),
    escalated("r4", outcome="GRANTED", supersedes="d-r4", decision_id="d-r4-review"),  # reviewed: leaves the queue
    escalated("r5", outcome="GRANTED", reasons=("WITHIN_LIMITS",), hours_ago=50),
]


def ids(rows):
    return [row["request_id"] for row in rows]


def test_the_queue_holds_only_escalations_nothing_superseded_oldest_first():
    assert ids(cases.queue(LOG, {}, cases.CaseFilter(), "age", NOW)) == ["r1", "r3", "r2"]
    assert ids(cases.queue(LOG, {}, cases.CaseFilter(), "amount", NOW)) == ["r2", "r1", "r3"]
    assert ids(cases.queue(LOG, {}, cases.CaseFilter(), "customer", NOW)) == ["r1", "r2", "r3"]


@pytest.mark.parametrize("wanted, expected", [
    (cases.CaseFilter(kind="REFUND"), ["r2"]),
    (cases.CaseFilter(reason="ASSOCIATE_DAILY_BUDGET_EXCEEDED"), ["r3"]),
    (cases.CaseFilter(customer_id="c1"), ["r1"]),
    (cases.CaseFilter(household_id="h1"), ["r1", "r3"]),
    (cases.CaseFilter(associate="assoc-ben"), ["r3"]),
    (cases.CaseFilter(older_than_hours=5), ["r1", "r3"]),
    (cases.CaseFilter(older_than_hours=6), ["r1"]),
    (cases.CaseFilter(newer_than_hours=5), ["r2"]),
    (cases.CaseFilter(assigned_to="fraud-ana"), ["r2"]),
])
def test_each_filter_narrows_the_queue(wanted, expected):
    assigned = {"r2": {"assigned_to": "fraud-ana"}}
    assert ids(cases.queue(LOG, assigned, wanted, "age", NOW)) == expected


def test_a_grant_flagged_by_a_delivery_after_its_lost_claim_is_a_recovery_case():
    flagged_grant = escalated("r6", kind="RESHIP", outcome="GRANTED", hours_ago=3,
                              reasons=("WITHIN_LIMITS", "DELIVERED_AFTER_LOST_CLAIM"))
    rows = cases.queue(LOG + [flagged_grant], {}, cases.CaseFilter(), "age", NOW)
    assert [(row["request_id"], row["case"]) for row in rows] == [
        ("r1", "REVIEW"), ("r3", "REVIEW"), ("r6", "RECOVERY"), ("r2", "REVIEW")]
    # It is not a review: approving or denying it is refused (the grant stands; recovery decides).
    assert cases.review_problem(flagged_grant, "r6", "fraud-ana", "APPROVE", "ok")[0] == 409


def test_an_unknown_sort_is_named():
    with pytest.raises(ValueError, match="sort: one of age, amount, customer, kind, got 'size'"):
        cases.queue(LOG, {}, cases.CaseFilter(), "size", NOW)


def test_a_case_shows_its_inputs_in_words_and_the_history_around_it():
    detail = cases.case_detail("r1", LOG, {"r1": {"assigned_to": "fraud-bo"}}, NOW)
    assert detail["assigned_to"] == "fraud-bo" and detail["age_hours"] == 30
    assert detail["inputs_in_words"] == ["customer: $50.00 granted in 30 days of a $375.00 cap",
                                         "granted without a second look up to $250.00",
                                         "trust tier: ESTABLISHED", "policy version: p1-abc"]
    assert detail["reasons"] == [{"code": "ABOVE_AUTO_APPROVAL_CEILING",
                                  "meaning": "above the amount granted without a second look"}]
    assert [row["request_id"] for row in detail["history"]["customer"]] == ["r4", "r5"]
    assert [row["request_id"] for row in detail["history"]["household"]] == ["r4", "r3", "r5"]
    assert [row["request_id"] for row in detail["history"]["associate"]] == ["r4", "r5"]
    assert cases.case_detail("nope", LOG, {}, NOW) is None


def test_four_eyes_and_a_note_for_every_review():
    case = cases.current(LOG)["r1"]
    assert cases.review_problem(case, "r1", "assoc-ana", "APPROVE", "fine")[0] == 403
    refused = cases.review_problem(case, "r1", "assoc-ana", "DENY", "fine")
    assert refused[0] == 403 and "SELF_APPROVAL" in refused[1] and "may not deny it" in refused[1]
    assert cases.review_problem(case, "r1", "assoc-lead", "APPROVE", "  ") == (
        400, "field 'note': a note saying why is required for every review")
    assert cases.review_problem(case, "r1", "assoc-lead", "APPROVE", "loyal customer") is None
    assert cases.review_problem(cases.current(LOG)["r5"], "r5", "assoc-lead", "DENY", "x")[0] == 409
    assert cases.review_problem(None, "r9", "assoc-lead", "DENY", "x")[0] == 404


def test_households_and_associates_are_ranked_by_claims_then_cents_within_the_period():
    log = LOG + [escalated("r6", outcome="GRANTED", cents=1_000, household="h2", by="assoc-ben", hours_ago=3),
                 escalated("r7", outcome="GRANTED", cents=2_000, household="h2", by="assoc-ben", hours_ago=3)]
    ranked = cases.rankings(log, None, None)
    assert [(row["key"], row["claims"]) for row in ranked["households"]] == [("h1", 4), ("h2", 3)]
    assert ranked["households"][1]["granted_cents"] == {"USD": 3_000}
    assert [(row["key"], row["claims"]) for row in ranked["associates"]] == [("assoc-ana", 3), ("assoc-ben", 3)]
    recent = cases.rankings(log, NOW - 4 * HOUR_MS, NOW)
    assert [(row["key"], row["claims"]) for row in recent["households"]] == [("h2", 3), ("h1", 1)]


def test_an_associate_concentration_case_says_the_customer_s_share_in_words():
    concentrated = escalated("r-pal", customer="pal", by="assoc-pal", reasons=("ASSOCIATE_CUSTOMER_CONCENTRATION",))
    concentrated["inputs"] = {
        "associate_granted_cents_day": 4_000, "associate_cap_cents_day": 150_000,
        "associate_customer_granted_cents_30d": 4_000, "associate_customer_grants_30d": 1,
        "associate_discretionary_granted_cents_30d": 8_500, "associate_customer_share_percent_30d": 65,
        "associate_concentration_share_max_percent_30d": 20, "associate_concentration_cents_min_30d": 7_500,
        "associate_concentration_grants_min_30d": 2}
    words = cases.inputs_in_words(concentrated)
    assert words[:2] == [
        "associate: $40.00 granted today of a $1,500.00 budget",
        "associate: $40.00 in 1 grants to this customer in 30 days of $85.00 discretionary; 65% with this "
        "request (a second person looks above 20% and $75.00 from the 2nd grant)"]


def test_a_case_says_what_the_customer_has_now_not_only_what_the_decision_saw():
    # A $600 refund waits for a person; meanwhile the customer was granted $200 on the same order.
    waiting = {**escalated("big", kind="REFUND", cents=60_000, customer="c9", hours_ago=48,
                           reasons=("REQUEST_ABOVE_CUSTOMER_CAP",)), "order_id": "o9", "decided_at": NOW - 48 * HOUR_MS}
    meanwhile = {**escalated("small", kind="REFUND", cents=20_000, customer="c9", hours_ago=24, outcome="GRANTED",
                             reasons=("WITHIN_LIMITS",)), "order_id": "o9", "decided_at": NOW - 24 * HOUR_MS}
    old = {**escalated("old", cents=5_000, customer="c9", hours_ago=40 * 24, outcome="GRANTED", reasons=("WITHIN_LIMITS",)),
           "decided_at": NOW - 40 * 24 * HOUR_MS}
    other = {**escalated("theirs", cents=9_000, customer="c8", outcome="GRANTED", reasons=("WITHIN_LIMITS",)),
             "decided_at": NOW - HOUR_MS}
    detail = cases.case_detail("big", [old, waiting, meanwhile, other], {}, NOW)
    assert detail["now_in_words"] == [
        "customer now: $200.00 granted in the last 30 days (all remedies) against a $375.00 cap; "
        "1 grant ($200.00) since this decision",
        "order o9: $200.00 refunded and $0.00 reshipped by other requests"]
