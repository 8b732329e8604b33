"""A small simulated workload through the real worker, then the quality report as a user runs it."""

from __future__ import annotations

import json

from streams.measure.simulate import SCHEMES


def test_the_quality_report_accounts_for_every_simulated_request(deployment, tmp_path):
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    deployment.cli("simulate", "--customers", "300", "--days", "20", "--seed", "5", "--abuse-rate", "0.1",
                   "--out", str(events), "--labels", str(labels))
    requests = sum(1 for line in events.read_text().splitlines() if '"type":"RemedyRequested"' in line)
    deployment.start_worker()
    deployment.cli("publish", str(events))
    deployment.cli("wait", "--file", str(events), "--timeout", "240")

    report = json.loads(deployment.cli("report", "quality", "--labels", str(labels), "--json").stdout)

    honest, excess, genuine = report["honest"], report["excess"], report["abuser_genuine"]
    # Every request of the file has its decision, and every decision belongs to a labelled customer.
    assert honest["requests"] + excess["requests"] + genuine["requests"] - report["engine_initiated_decisions"] == requests
    assert honest["decided"] == honest["requests"] and excess["decided"] == excess["requests"]
    assert report["decisions_without_label"] == 0
    assert set(report["by_scheme"]) <= set(SCHEMES) and excess["requests"] > 0
    assert 0.0 <= honest["frictionless_share"] <= 1.0 and 0.0 <= excess["stopped_share"] <= 1.0
    # The table a person reads names both targets.
    table = deployment.cli("report", "quality", "--labels", str(labels)).stdout
    assert "granted, no friction" in table and "stopped" in table
