"""The fraud team's policy lifecycle on the real broker: validate, apply, switch without a restart."""

from __future__ import annotations

import json

from streams.core.policy import Policy

DAY = "2026-11-21"


def credit(request_id: str, customer: str, amount: int, minute: int) -> dict:
    return {"type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": customer,
            "order_id": None, "incident_id": None, "kind": "CREDIT", "amount_cents": amount, "currency": "USD",
            "requested_by": "customer", "requested_at": f"{DAY}T10:{minute:02d}:00Z", "reason": "policy test"}


def publish(deployment, path, events):
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    deployment.cli("publish", str(path))
    deployment.cli("wait", "--file", str(path), "--timeout", "240")


def test_a_bad_policy_is_rejected_whole_and_nothing_is_applied(deployment, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"remedy_cents_max_per_request": 90_000, "household_claims_max_90d": "six",
                               "kind_cents_max_per_customer_30d": {"CASH": 5}, "typo_cap": 1}))
    result = deployment.cli("policy", "apply", str(bad), "--author", "fraud-ana", "--reason", "test", check=False)
    assert result.returncode == 1
    assert "typo_cap: unknown key" in result.stderr
    bad.write_text(json.dumps({"remedy_cents_max_per_request": 90_000, "household_claims_max_90d": "six",
                               "kind_cents_max_per_customer_30d": {"CASH": 5}}))
    result = deployment.cli("policy", "apply", str(bad), "--author", "fraud-ana", "--reason", "test", check=False)
    assert result.returncode == 1
    assert "household_claims_max_90d: must be a positive integer, got 'six'" in result.stderr
    assert "kind_cents_max_per_customer_30d.CASH: unknown key" in result.stderr
    bad.write_text(json.dumps({"remedy_cents_max_per_request": 90_000}))
    result = deployment.cli("policy", "apply", str(bad), "--author", "fraud-ana", "--reason", "test", check=False)
    assert "remedy_cents_max_per_request: 90000 exceeds remedy_cents_max_per_customer_30d" in result.stderr
    assert "no policy applied yet" in deployment.cli("policy", "history").stdout


def test_running_workers_switch_to_an_applied_policy_and_decisions_name_their_version(deployment, tmp_path):
    deployment.start_worker()
    default_version = Policy().version
    assert deployment.get("/health")["policy_version"] == default_version
    publish(deployment, tmp_path / "before.jsonl", [credit("before", "c-1", 5_000, 0)])

    tighter = tmp_path / "tighter.json"
    tighter.write_text(json.dumps({"kind_cents_max_per_customer_30d": {"CREDIT": 2_000}}))
    applied = deployment.cli("policy", "apply", str(tighter), "--author", "fraud-ana", "--reason", "credit abuse wave")
    new_version = Policy(kind_cents_max_per_customer_30d={**Policy().kind_cents_max_per_customer_30d, "CREDIT": 2_000}).version
    assert new_version in applied.stdout
    deployment.wait_for("the worker to switch", lambda: deployment.get("/health")["policy_version"] == new_version)
    publish(deployment, tmp_path / "after.jsonl", [credit("after", "c-2", 5_000, 5)])

    decided = {d["request_id"]: d for d in deployment.decisions()}
    assert (decided["before"]["outcome"], decided["before"]["policy_version"]) == ("GRANTED", default_version)
    assert (decided["after"]["outcome"], decided["after"]["policy_version"]) == ("DENIED", new_version)
    assert decided["after"]["reason_codes"] == ["CUSTOMER_KIND_30D_CAP_EXCEEDED"]
    shown = json.loads(deployment.cli("policy", "show", "--json").stdout)
    assert shown["version"] == new_version and shown["kind_cents_max_per_customer_30d"]["CREDIT"] == 2_000
    history = deployment.cli("policy", "history").stdout
    assert "fraud-ana: credit abuse wave" in history and new_version in history

    # A restarted worker starts with the policy in force, not the configured default.
    deployment.stop_worker()
    deployment.start_worker()
    assert deployment.get("/health")["policy_version"] == new_version
