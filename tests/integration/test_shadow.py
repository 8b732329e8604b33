"""A shadow policy on a real worker: decided beside the live one, never in the ledger or totals; promote switches live."""

from __future__ import annotations

import json

import schemas
from streams.core.policy import Policy

from tests.integration.test_backtest import STRICTER_THEFT, _month


def test_shadow_decisions_stay_off_the_ledger_and_promote_switches_live(deployment, tmp_path):
    events, _ = _month(deployment, tmp_path)
    stricter = tmp_path / "stricter.json"
    stricter.write_text(json.dumps(STRICTER_THEFT))
    candidate, live = Policy.from_document(STRICTER_THEFT).version, Policy().version
    nothing = deployment.cli("policy", "shadow", "stop", "--author", "ana", "--reason", "x", check=False)
    assert nothing.returncode == 1 and "no shadow policy is running" in nothing.stderr

    started = deployment.cli("policy", "shadow", str(stricter), "--author", "fraud-ana", "--reason", "porch thefts")
    assert f"shadow {candidate} running" in started.stdout
    again = deployment.cli("policy", "shadow", str(stricter), "--author", "fraud-ana", "--reason", "again", check=False)
    assert again.returncode == 1 and "already running" in again.stderr
    deployment.start_worker()
    deployment.cli("publish", str(events))
    deployment.cli("wait", "--file", str(events), "--timeout", "240")

    decided = {d["request_id"] for d in deployment.decisions()}

    def shadowed() -> set[str]:
        return {schemas.decode(m.value)[1]["request_id"] for m in deployment.read_topic(deployment.names.shadow_decisions)}
    deployment.wait_for("the shadow to decide every request", lambda: shadowed() >= decided)

    # Live decisions, the ledger and the totals know nothing of the shadow.
    assert {d["policy_version"] for d in deployment.decisions()} == {live}
    assert {schemas.decode(m.value)[1]["policy_version"]
            for m in deployment.read_topic(deployment.names.shadow_decisions)} == {candidate}
    verified = json.loads(deployment.cli("verify", "--json", "--wait", "60").stdout)
    assert verified["ok"]
    report = json.loads(deployment.cli("policy", "shadow", "report", "--json").stdout)
    assert report["state"] == "RUNNING" and report["shadow_decisions"] >= len(decided)
    assert report["transitions"].get("GRANTED->DENIED", 0) > 0
    # The shadow's own ClickHouse table holds them (the worker's route says how many), the ledger does not.
    deployment.wait_for("the shadow table", lambda: deployment.get("/v1/shadow").get("clickhouse_shadow_decisions")
                        == report["shadow_decisions"])
    totals = deployment.totals()
    assert totals["granted"]["cents"] == report["granted_cents_before"] != report["granted_cents_after"]

    # The shadow decided what a backtest of the same month (from an empty log before it) predicts.
    predicted = json.loads(deployment.cli("policy", "backtest", str(stricter), "--json", "--quiet").stdout)
    assert predicted["transitions"] == report["transitions"]
    assert predicted["granted_cents_after"] == report["granted_cents_after"]
    text = deployment.cli("policy", "shadow", "report").stdout
    assert "live->shadow GRANTED->DENIED" in text

    promoted = deployment.cli("policy", "shadow", "promote", "--author", "fraud-ana", "--reason", "it works")
    assert f"promoted shadow {candidate}" in promoted.stdout
    deployment.wait_for("the worker to switch", lambda: deployment.get("/health")["policy_version"] == candidate)
    assert json.loads(deployment.cli("policy", "show", "--json").stdout)["version"] == candidate
    assert json.loads(deployment.cli("policy", "shadow", "report", "--json").stdout)["state"] == "PROMOTED"
    assert "promoted from shadow: it works" in deployment.cli("policy", "history").stdout
