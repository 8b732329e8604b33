"""The quality report's arithmetic on hand-made decisions and labels."""

from __future__ import annotations

from streams.measure import quality


def decision(request_id, outcome, requested, granted=None, reasons=None, decision_id=None, supersedes=None):
    granted = (requested if outcome == "GRANTED" else 0) if granted is None else granted
    return {
        "decision_id": decision_id or f"dec-{request_id}", "request_id": request_id, "outcome": outcome,
        "requested_cents": requested, "granted_cents": granted,
        "reason_codes": reasons or (["WITHIN_LIMITS"] if outcome == "GRANTED" else ["CUSTOMER_30D_CAP_EXCEEDED"]),
        "supersedes_decision_id": supersedes,
    }


def label(request_id, population="honest", excess=False, scheme=None, cents=1000):
    return {"label": "request", "request_id": request_id, "customer_id": "c", "population": population,
            "scheme": scheme, "excess": excess, "requested_cents": cents}


def test_honest_friction_counts_denials_as_wrong_and_escalations_as_held():
    labels = [label(f"h{i}", cents=1000) for i in range(100)]
    decisions = [decision(f"h{i}", "GRANTED", 1000) for i in range(97)]
    decisions += [decision("h97", "DENIED", 1000), decision("h98", "DENIED", 1000), decision("h99", "ESCALATED", 1000,
                                                                                          reasons=["ABOVE_AUTO_APPROVAL_CEILING"])]
    honest = quality.evaluate(decisions, labels)["honest"]
    assert honest["frictionless_share"] == 0.97
    assert honest["meets_target"] is False
    assert honest["wrongly_denied_cents"] == 2000
    assert honest["escalated_cents"] == 1000


def test_a_partial_grant_is_friction():
    report = quality.evaluate([decision("h1", "GRANTED", 1000, granted=600)], [label("h1")])
    assert report["honest"]["granted_full"] == 0
    assert report["honest"]["frictionless_share"] == 0.0


def test_excess_claims_stopped_share_prevented_and_leaked_cents_by_scheme():
    labels = [label(f"x{i}", "abuser", True, "serial_claimer", 5000) for i in range(20)]
    labels += [label("g1", "abuser", False, None, 700)]
    decisions = [decision(f"x{i}", "DENIED", 5000) for i in range(18)]
    decisions += [decision("x18", "ESCALATED", 5000, reasons=["ABOVE_AUTO_APPROVAL_CEILING"]), decision("x19", "GRANTED", 5000), decision("g1", "GRANTED", 700)]
    report = quality.evaluate(decisions, labels)
    excess = report["excess"]
    assert excess["stopped"] == 19 and excess["stopped_share"] == 0.95 and excess["meets_target"] is True
    assert excess["prevented_cents"] == 90_000
    assert excess["escalated_cents"] == 5000
    assert excess["leaked_cents"] == 5000
    assert report["by_scheme"]["serial_claimer"]["stopped_share"] == 0.95
    assert report["abuser_genuine"]["granted"] == 1  # a genuine claim by an abuser is not excess
    assert report["by_reason"]["CUSTOMER_30D_CAP_EXCEEDED"]["excess"]["decisions"] == 18


def test_a_redelivered_decision_counts_once_and_a_superseding_one_wins():
    labels = [label("h1"), label("h2")]
    decisions = [
        decision("h1", "DENIED", 1000), decision("h1", "DENIED", 1000),  # redelivered
        decision("h2", "ESCALATED", 1000, reasons=["ABOVE_AUTO_APPROVAL_CEILING"]),
        decision("h2", "GRANTED", 1000, decision_id="dec-h2-review", supersedes="dec-h2"),
    ]
    report = quality.evaluate(decisions, labels)
    assert report["honest"]["decided"] == 2
    assert report["honest"]["denied"] == 1
    assert report["honest"]["granted_full"] == 1


def test_undecided_and_unlabelled_requests_are_reported_not_guessed():
    report = quality.evaluate([{**decision("stranger", "GRANTED", 10), "customer_id": "nobody"}], [label("h1")])
    assert report["honest"]["requests"] == 1 and report["honest"]["decided"] == 0
    assert report["honest"]["frictionless_share"] is None and report["honest"]["meets_target"] is False
    assert report["decisions_without_label"] == 1
    text = quality.render(report)
    assert "no decision yet: 1" in text and "without a label: 1" in text


def test_the_quality_module_is_pure():
    source = open(quality.__file__).read()
    for module in ("faust", "aiokafka", "kafka", "fastavro", "clickhouse_connect", "os", "time", "random"):
        assert f"import {module}" not in source and f"from {module} " not in source


def test_an_engine_initiated_request_counts_with_its_customer_and_is_never_excess():
    labels = [{"label": "customer", "customer_id": "c", "population": "honest"}, label("h1")]
    proactive = {**decision("proactive:inc-1:c:CREDIT", "GRANTED", 500), "customer_id": "c"}
    report = quality.evaluate([decision("h1", "GRANTED", 1000), proactive], labels)
    assert report["honest"]["decided"] == 2 and report["honest"]["granted_full"] == 2
    assert report["excess"]["decided"] == 0
    assert report["engine_initiated_decisions"] == 1 and report["decisions_without_label"] == 0
