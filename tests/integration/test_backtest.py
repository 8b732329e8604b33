"""`policy backtest` on the real log: it reproduces what the worker decided, and predicts a change exactly."""

from __future__ import annotations

import json

from streams.core import backtest
from streams.core.policy import Policy

from tests.integration.conftest import Deployment

STRICTER_THEFT = {"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1}}


def _month(deployment, tmp_path):
    events, labels = tmp_path / "month.jsonl", tmp_path / "labels.jsonl"
    deployment.cli("simulate", "--customers", "300", "--days", "30", "--seed", "7", "--abuse-rate", "0.1",
                   "--out", str(events), "--labels", str(labels))
    return events, labels


def _run(deployment, events):
    deployment.start_worker()
    deployment.cli("publish", str(events))
    deployment.cli("wait", "--file", str(events), "--timeout", "240")
    deployment.stop_worker()


def test_backtest_reproduces_the_month_and_predicts_a_stricter_household_theft_limit(deployment, tmp_path):
    events, labels = _month(deployment, tmp_path)
    _run(deployment, events)
    live = tmp_path / "live.json"
    live.write_text("{}")  # the configured default is in force

    same = deployment.cli("policy", "backtest", str(live), "--json", "--labels", str(labels))
    report = json.loads(same.stdout)
    assert report["reproduced_share"] == 1.0, report["reproduction"]["differing"][:5]
    assert report["reproduction"]["recorded_decisions"] > 150 and report["changed"] == 0
    assert report["transitions"] == {} and report["granted_cents_before"] == report["granted_cents_after"]
    assert report["labels"]["before"] == report["labels"]["after"]
    assert "backtest:" in same.stderr  # progress for a person watching

    # Point in time: the second half of the month replayed from the state the first half left.
    half = deployment.cli("policy", "backtest", str(live), "--since", "2026-08-18", "--json", "--quiet")
    halved = json.loads(half.stdout)
    assert halved["reproduced_share"] == 1.0 and 0 < halved["decisions"] < report["decisions"]
    assert halved["records_before_period"] > 0

    stricter = tmp_path / "stricter.json"
    stricter.write_text(json.dumps(STRICTER_THEFT))
    predicted = json.loads(deployment.cli("policy", "backtest", str(stricter), "--json", "--quiet").stdout)
    assert predicted["reproduced_share"] == 1.0
    assert predicted["transitions"].get("GRANTED->DENIED", 0) > 0, predicted["transitions"]
    assert predicted["reason_codes"]["HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"]["after"] > \
        predicted["reason_codes"].get("HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED", {}).get("before", 0)
    usd_before, usd_after = predicted["granted_cents_before"]["USD"], predicted["granted_cents_after"]["USD"]
    assert usd_after < usd_before
    assert predicted["most_affected"]["households"], "a household limit changes households' decisions"
    text = deployment.cli("policy", "backtest", str(stricter), "--quiet").stdout
    assert "GRANTED->DENIED" in text and "100.00%" in text and "household_incident_claims_max_90d.STOLEN_AFTER_DELIVERY" in text

    # The same month replayed into a fresh prefix with the stricter limit applied first.
    fresh = Deployment(tmp_path / "fresh")
    try:
        fresh.cli("policy", "apply", str(stricter), "--author", "fraud-ana", "--reason", "porch theft ring")
        _run(fresh, events)
        actual = backtest.compare(deployment.decisions_ms(), fresh.decisions_ms())
    finally:
        fresh.stop_worker()
    assert actual["transitions"] == predicted["transitions"]
    assert actual["granted_cents_after"] == predicted["granted_cents_after"]
    assert {d["policy_version"] for d in fresh.decisions()} == {Policy.from_document(STRICTER_THEFT).version}


def test_backtest_names_bad_input(deployment, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"household_claims_max_90d": "six"}))
    refused = deployment.cli("policy", "backtest", str(bad), check=False)
    assert refused.returncode == 1 and "household_claims_max_90d: must be a positive integer" in refused.stderr
    good = tmp_path / "good.json"
    good.write_text("{}")
    refused = deployment.cli("policy", "backtest", str(good), "--since", "last tuesday", check=False)
    assert refused.returncode == 1 and "--since 'last tuesday': not a date" in refused.stderr
    refused = deployment.cli("policy", "backtest", str(good), "--since", "2026-11-20", "--until", "2026-11-10", check=False)
    assert refused.returncode == 1 and "--until 2026-11-10 is not after --since 2026-11-20" in refused.stderr
