"""`remedy-ledger audit` against the real broker: the sample day passes, a conflicting decision fails it."""

from __future__ import annotations

import json
from pathlib import Path

import schemas
from streams.runtime.kafka_io import Publisher

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "sample-day.jsonl"
SAMPLE_REQUESTS = 124


def audit(deployment) -> tuple[int, dict]:
    result = deployment.cli("audit", "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def test_the_audit_proves_the_sample_day_and_names_a_conflicting_decision(deployment):
    deployment.cli("publish", str(SAMPLE))

    code, unread = audit(deployment)  # no worker yet: everything waits, nothing is missing
    assert code == 0 and unread["ok"] and unread["decided"] == 0 and unread["missing"] == 0
    assert {w["reason"] for w in unread["findings"]["waiting"]} == {"NOT_YET_CONSUMED"}

    deployment.start_worker()
    deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")
    code, clean = audit(deployment)
    assert code == 0, clean["findings"]
    assert clean["requests"] == clean["decided"] == SAMPLE_REQUESTS
    assert clean["proactive_expected"] == clean["proactive_decided"] > 0
    assert clean["cap_breaches"] == clean["reservations_leaked"] == clean["conflicting_ids"] == 0

    record = deployment.read_topic(deployment.names.decisions)[0]
    _, decision = schemas.decode(record.value)
    tampered = {**decision, "granted_cents": decision["granted_cents"] + 1}
    with Publisher(deployment.settings) as publisher:
        publisher.publish_raw(deployment.names.decisions, record.key, schemas.encode("RemedyDecided", tampered))

    table = deployment.cli("audit", check=False)
    assert table.returncode == 1
    assert "AUDIT FAILED" in table.stdout and decision["decision_id"] in table.stdout
    code, dirty = audit(deployment)
    assert code == 1 and dirty["conflicting_ids"] == 1
    assert dirty["findings"]["conflicting_ids"][0]["fields"] == ["granted_cents"]
