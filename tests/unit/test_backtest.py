"""The backtest's pure measures: reproduction against the log, and the difference between two replays."""

from __future__ import annotations

from streams.core import backtest

DAY_MS = 86_400_000
T0 = 1_785_888_000_000  # 2026-08-05T00:00:00Z


def decision(request_id, outcome, granted, *, currency="USD", kind="CREDIT", customer="c1", household=None,
             by="customer", origin="CUSTOMER", at=T0, supersedes=None, reasons=None, version="p1"):
    return {"decision_id": f"d-{request_id}" + ("-r" if supersedes else ""), "request_id": request_id,
            "customer_id": customer, "kind": kind, "outcome": outcome, "requested_cents": granted or 1_000,
            "granted_cents": granted, "currency": currency, "reason_codes": reasons or ["WITHIN_LIMITS"],
            "requested_by": by, "requested_at": at, "decided_at": at, "inputs": {}, "supersedes_decision_id": supersedes,
            "decided_by": "policy", "origin": origin, "incident_kind": None, "trust_tier": "NEW",
            "household_id": household, "policy_version": version}


def test_a_replay_equal_to_the_log_reproduces_everything():
    log = [decision("r1", "GRANTED", 1_000), decision("r2", "DENIED", 0)]
    check = backtest.reproduction(log + log[:1], [dict(d) for d in log], "p1")  # a redelivery counts once
    assert (check["reproduced_share"], check["differing_count"], check["recorded_decisions"]) == (1.0, 0, 2)


def test_every_kind_of_difference_is_listed_with_its_fields():
    log = [decision("r1", "GRANTED", 1_000), decision("r2", "DENIED", 0, version="p0")]
    replay = [decision("r1", "GRANTED", 900), decision("r3", "GRANTED", 5)]
    check = backtest.reproduction(log, replay, "p1")
    problems = {item["request_id"]: item["problem"] for item in check["differing"]}
    assert problems == {"r1": "differs in requested_cents, granted_cents", "r2": "recorded, not made by the replay",
                        "r3": "made by the replay, not on the log"}
    assert check["reproduced_share"] == 0.0 and check["recorded_under_other_versions"] == 1


def test_a_scope_s_judged_order_alone_is_reported_apart_but_any_counter_is_a_difference():
    """A late check judged first come, first served: the live judged sequence may differ from the
    replay's; every counter and cap must still be equal."""
    def with_inputs(**inputs):
        return {**decision("r1", "GRANTED", 1_000), "inputs": {"associate_granted_cents_day": 7_599, **inputs}}

    check = backtest.reproduction([with_inputs(associate_judged_sequence=8)],
                                  [with_inputs(associate_judged_sequence=6)], "p1")
    assert (check["reproduced_share"], check["differing_count"], check["judged_order_differences"]) == (1.0, 0, 1)
    check = backtest.reproduction([with_inputs(associate_judged_sequence=8)],
                                  [with_inputs(associate_judged_sequence=8, associate_granted_cents_day=7_600)], "p1")
    assert (check["reproduced_share"], check["differing"][0]["problem"]) == (0.0, "differs in inputs")


def test_compare_counts_transitions_by_final_decision_and_never_mixes_currencies():
    before = [decision("r1", "GRANTED", 1_000, household="h1"), decision("r2", "GRANTED", 700, currency="EUR"),
              decision("r3", "ESCALATED", 0), decision("r3", "GRANTED", 300, supersedes="d-r3")]
    after = [decision("r1", "DENIED", 0, household="h1", reasons=["HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"]),
             decision("r2", "GRANTED", 700, currency="EUR"), decision("r3", "ESCALATED", 0),
             decision("r3", "GRANTED", 300, supersedes="d-r3")]
    report = backtest.compare(before, after)
    assert report["transitions"] == {"GRANTED->DENIED": 1} and report["changed"] == 1 and report["decisions"] == 3
    assert report["granted_cents_before"] == {"EUR": 700, "USD": 1_300}
    assert report["granted_cents_after"] == {"EUR": 700, "USD": 300}
    assert report["granted_cents_by_kind"]["CREDIT"] == {"before": {"EUR": 700, "USD": 1_300},
                                                         "after": {"EUR": 700, "USD": 300}}
    assert report["reason_codes"]["HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"] == {"before": 0, "after": 1}
    assert report["most_affected"]["households"] == [
        {"key": "h1", "changed": 1, "granted_cents_before": {"USD": 1_000}, "granted_cents_after": {"USD": 0}}]
    assert report["most_affected"]["associates"] == []
    assert report["daily"] == [{"day": "2026-08-05", "granted_cents_before": {"EUR": 700, "USD": 1_300},
                                "granted_cents_after": {"EUR": 700, "USD": 300}}]


def test_a_decision_only_one_side_made_is_a_transition_from_or_to_none():
    report = backtest.compare([decision("r1", "GRANTED", 10)], [])
    assert report["transitions"] == {"GRANTED->NONE": 1}


def test_period_bounds_are_half_open():
    inside = decision("r1", "GRANTED", 1, at=T0)
    assert backtest.in_period(inside, T0, T0 + DAY_MS)
    assert not backtest.in_period(inside, T0 + 1, None) and not backtest.in_period(inside, None, T0)


def test_most_affected_keeps_the_twenty_with_most_changes():
    before = [decision(f"r{n}", "GRANTED", 100, customer=f"c{n % 25}") for n in range(100)]
    after = [decision(f"r{n}", "DENIED", 0, customer=f"c{n % 25}") for n in range(100) if n % 25 != 3] + \
        [decision("r3", "GRANTED", 100, customer="c3")]
    customers = backtest.compare(before, after)["most_affected"]["customers"]
    assert len(customers) == backtest.MOST_AFFECTED_COUNT and all(row["key"] != "c3" or row["changed"] == 3
                                                                   for row in customers)
    assert customers[0]["changed"] == 4
