"""Policy safety on the real broker: hostile records on the policy topic are listed as rejected,
never in force; `apply --dry-run` shows the change and publishes nothing; `rollback` re-applies."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import schemas
from streams.core.policy import Policy
from streams.runtime.kafka_io import Publisher

pytestmark = pytest.mark.integration


def hostile_record(version: str = "p1-forged") -> bytes:
    """A PolicyApplied written by hand, bypassing `policy apply`: caps of 10^30."""
    document = {**Policy().as_document(), "remedy_cents_max_per_customer_30d": 10**30}
    return schemas.encode("PolicyApplied", {
        "version": version, "document": json.dumps(document), "author": "mallory", "reason": "no limits",
        "applied_at": 1_795_251_600_000, "previous_version": None,
    })


def test_invalid_records_on_the_policy_topic_are_listed_as_rejected_and_never_in_force(deployment, tmp_path):
    tighter = tmp_path / "tighter.json"
    tighter.write_text(json.dumps({"kind_cents_max_per_customer_30d": {"CREDIT": 2_000}}))
    deployment.cli("policy", "apply", str(tighter), "--author", "fraud-ana", "--reason", "credit abuse wave")
    valid_version = Policy.from_document(json.loads(tighter.read_text())).version
    with Publisher(deployment.settings) as publisher:
        publisher.publish_raw(deployment.names.policy, b"garbage", b"\xc3\x01 not avro at all")
        publisher.publish_raw(deployment.names.policy, b"p1-forged", hostile_record())
        publisher.publish_raw(deployment.names.policy, b"not-json", schemas.encode("PolicyApplied", {
            "version": "x", "document": "{not json", "author": "a", "reason": "r", "applied_at": 0,
            "previous_version": None}))

    shown = deployment.cli("policy", "show", "--json")
    assert json.loads(shown.stdout)["version"] == valid_version  # the last valid version stays in force
    assert shown.stderr.count("rejected policy message at offset") == 3
    text = deployment.cli("policy", "show").stdout
    assert f"policy {valid_version}" in text and "rejected: offset 1:" in text

    history = [line for line in deployment.cli("policy", "history").stdout.splitlines() if line.startswith("offset")]
    assert len(history) == 4
    assert valid_version in history[0] and "fraud-ana: credit abuse wave" in history[0]
    assert "rejected" in history[1] and "rejected" in history[3]
    assert "remedy_cents_max_per_customer_30d: must be between 1" in history[2]
    assert "not valid JSON" in history[3]


def test_dry_run_prints_the_threshold_changes_and_publishes_nothing(deployment, tmp_path):
    change = tmp_path / "change.json"
    change.write_text(json.dumps({"household_claims_max_90d": 4, "tier_percent": {"WATCH": 25}}))
    result = deployment.cli("policy", "apply", str(change), "--dry-run")
    assert "nothing published (--dry-run)" in result.stdout
    assert "household_claims_max_90d" in result.stdout and "6 -> 4" in result.stdout
    assert "tier_percent.WATCH" in result.stdout and "50 -> 25" in result.stdout
    assert "no policy applied yet" in deployment.cli("policy", "history").stdout

    bad = tmp_path / "bad.json"
    bad.write_text('{"remedy_cents_max_per_customer_30d": 1000000000000000000000000000000, "long_window_ms": 1}')
    refused = deployment.cli("policy", "apply", str(bad), "--dry-run", check=False)
    assert refused.returncode == 1
    assert "remedy_cents_max_per_customer_30d: must be between" in refused.stderr
    assert "long_window_ms: must be between" in refused.stderr
    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text('{"household_claims_max_90d": 4, "household_claims_max_90d": 40}')
    refused = deployment.cli("policy", "apply", str(duplicate), "--dry-run", check=False)
    assert refused.returncode == 1 and "'household_claims_max_90d' appears more than once" in refused.stderr
    without_author = deployment.cli("policy", "apply", str(change), check=False)
    assert without_author.returncode == 1 and "--author and --reason are required" in without_author.stderr


def test_rollback_applies_an_earlier_version_again_as_the_newest(deployment, tmp_path):
    default_version = Policy().version
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps({"household_claims_max_90d": 4}))
    second.write_text(json.dumps({"household_claims_max_90d": 3}))
    deployment.cli("policy", "apply", str(first), "--author", "ana", "--reason", "first")
    deployment.cli("policy", "apply", str(second), "--author", "ana", "--reason", "second")
    first_version = Policy.from_document({"household_claims_max_90d": 4}).version
    second_version = Policy.from_document({"household_claims_max_90d": 3}).version

    result = deployment.cli("policy", "rollback", first_version, "--author", "bo", "--reason", "second was too tight")
    assert f"rolled back to policy {first_version} (was {second_version})" in result.stdout
    assert json.loads(deployment.cli("policy", "show", "--json").stdout)["household_claims_max_90d"] == 4
    history = deployment.cli("policy", "history").stdout.splitlines()
    assert f"by bo: rollback to {first_version}: second was too tight  (replaced {second_version})" in history[-2]
    # Each version shows what it changed against the one before it.
    assert [line.split() for line in history if line.startswith("    ")] == [
        ["household_claims_max_90d", "6", "->", "4"], ["household_claims_max_90d", "4", "->", "3"],
        ["household_claims_max_90d", "3", "->", "4"]]
    rows = json.loads(deployment.cli("policy", "history", "--json").stdout)
    assert [row["changes"] for row in rows][1] == [{"threshold": "household_claims_max_90d", "before": 4, "after": 3}]
    diff = deployment.cli("policy", "diff", default_version, second_version).stdout
    assert diff.splitlines()[1].split() == ["household_claims_max_90d", "6", "->", "3"]
    same = deployment.cli("policy", "diff", first_version, first_version).stdout
    assert "no threshold changes" in same
    unknown = deployment.cli("policy", "diff", "p1-000000000000", first_version, check=False)
    assert unknown.returncode == 1 and "p1-000000000000: no such valid version" in unknown.stderr

    deployment.cli("policy", "rollback", default_version, "--author", "bo", "--reason", "back to defaults")
    assert json.loads(deployment.cli("policy", "show", "--json").stdout)["version"] == default_version
    again = deployment.cli("policy", "rollback", default_version, "--author", "bo", "--reason", "again", check=False)
    assert again.returncode == 1 and "is already in force" in again.stderr
    unknown = deployment.cli("policy", "rollback", "p1-000000000000", "--author", "bo", "--reason", "x", check=False)
    assert unknown.returncode == 1 and "no such valid version" in unknown.stderr


def _requests_file(path, prefix: str, amounts: list[int]):
    """A publish file of CREDIT requests dated an hour ago, one customer each."""
    when = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [json.dumps({"type": "RemedyRequested", "event_id": f"e-{prefix}-{n}", "request_id": f"{prefix}-{n}",
                         "customer_id": f"c-{prefix}-{n}", "order_id": None, "incident_id": None, "kind": "CREDIT",
                         "amount_cents": amount, "currency": "USD", "requested_by": "customer", "requested_at": when,
                         "reason": "policy safety"}) for n, amount in enumerate(amounts)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_running_worker_keeps_deciding_under_the_last_valid_policy_past_hostile_records(deployment, tmp_path):
    """Caps of 10^30 and a garbage record on the policy topic: the worker logs and skips both, keeps
    the last valid version, decides new requests under it, and starts again with it; show and
    history exit 0 and list both records as rejected."""
    deployment.start_worker()
    tighter = tmp_path / "tighter.json"
    tighter.write_text(json.dumps({"kind_cents_max_per_customer_30d": {"CREDIT": 2_000}}))
    deployment.cli("policy", "apply", str(tighter), "--author", "fraud-ana", "--reason", "credit abuse wave")
    valid_version = Policy.from_document(json.loads(tighter.read_text())).version
    deployment.wait_for("the worker to switch", lambda: deployment.get("/health")["policy_version"] == valid_version, 60)

    with Publisher(deployment.settings) as publisher:
        publisher.publish_raw(deployment.names.policy, b"p1-forged", hostile_record())
        publisher.publish_raw(deployment.names.policy, b"garbage", b"\xc3\x01 not avro \x1b[2J at all")
    deployment.wait_for("the worker to log both records it ignored", lambda: deployment.log_path.read_text(
        errors="replace").count("ignoring policy record at offset") >= 2, 60)
    log = deployment.log_path.read_text(errors="replace")
    assert f"ignoring policy record at offset 1, keeping version {valid_version}" in log
    assert f"ignoring policy record at offset 2, keeping version {valid_version}" in log

    def decided_under_valid_policy(path) -> dict:
        deployment.cli("publish", str(path))
        deployment.cli("wait", "--file", str(path), "--timeout", "60")
        asked = {json.loads(line)["request_id"] for line in path.read_text().splitlines()}
        decided = {d["request_id"]: d for d in deployment.decisions() if d["request_id"] in asked}
        assert set(decided) == asked
        assert {d["policy_version"] for d in decided.values()} == {valid_version}
        return decided

    decided = decided_under_valid_policy(_requests_file(tmp_path / "after.jsonl", "after", [1_500, 5_000]))
    assert decided["after-0"]["outcome"] == "GRANTED"
    assert (decided["after-1"]["outcome"], decided["after-1"]["reason_codes"]) == (
        "DENIED", ["CUSTOMER_KIND_30D_CAP_EXCEEDED"])  # the CREDIT cap of 2,000 holds, not 10^30
    assert deployment.get("/health")["policy_version"] == valid_version

    shown = deployment.cli("policy", "show", "--json")  # exits 0 (check=True)
    assert json.loads(shown.stdout)["version"] == valid_version
    assert shown.stderr.count("rejected policy message at offset") == 2
    assert "remedy_cents_max_per_customer_30d: must be between" in shown.stderr
    history = [line for line in deployment.cli("policy", "history").stdout.splitlines() if line.startswith("offset")]
    assert len(history) == 3 and valid_version in history[0]
    assert history[1].startswith("offset 1") and "rejected" in history[1] and "must be between" in history[1]
    assert history[2].startswith("offset 2") and "rejected" in history[2]
    assert "\x1b" not in "".join(history)

    # A worker starting now reads the topic to its end: it starts, with the last valid version.
    deployment.stop_worker()
    deployment.start_worker()
    assert deployment.get("/health")["policy_version"] == valid_version
    decided_under_valid_policy(_requests_file(tmp_path / "restart.jsonl", "restart", [1_000]))
