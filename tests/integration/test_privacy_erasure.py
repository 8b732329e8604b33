"""`remedy-ledger privacy erase` on the real broker and ClickHouse engine (docs/privacy.md): the
customer's ids leave every projection table and the worker's state (customer and scope
changelogs), other customers and the finance totals stay as they were, it stays erased for later
decisions and a rebuild, and `audit` and `verify` still pass. The worker log never shows the id or
the key."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import schemas
from projections.store import Store
from streams.core.privacy import is_pseudonym
from streams.runtime.kafka_io import Publisher
from streams.runtime.state import split_changelog_value
from tests.integration.conftest import REPO

SAMPLE = REPO / "samples" / "sample-day.jsonl"
ERASED = "cust-0017"  # an associate's requests, proactive reshipments, a household
OTHER = "cust-0068"


def latest_by_key(deployment, topic: str) -> dict[bytes, bytes | None]:
    """What a compacted topic holds for each key once compacted: its latest value (None: tombstone)."""
    latest = {}
    for record in deployment.read_topic(topic):
        latest[record.key] = record.value
    return latest


def state_mentions(deployment, topic: str, text: str) -> list[str]:
    """Where the latest record of each key of a state changelog names `text` (key, state or outbox)."""
    found, needle = [], text.encode()
    for key, value in latest_by_key(deployment, topic).items():
        if needle in (key or b""):
            found.append(f"key {key!r}" + (" (tombstone)" if value is None else ""))
        if value is None:
            continue
        state_json, outbox, _ = split_changelog_value(value)
        if needle in state_json:
            found.append(f"state of {key!r}")
        for entry in outbox:
            if needle in (entry.key or b"") or text in json.dumps(schemas.decode(entry.value)[1], default=str):
                found.append(f"outbox of {key!r} to {entry.topic}")
    return [where for where in found if not where.endswith("(tombstone)")]


def test_erasure_removes_the_ids_from_projections_and_state_and_keeps_the_ledger_exact(deployment):
    names = deployment.names
    deployment.cli("publish", str(SAMPLE))
    deployment.start_worker()
    deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")
    before = deployment.totals()
    other_before = json.loads(deployment.cli("finance", "customer", OTHER, "--json").stdout)
    assert json.loads(deployment.cli("finance", "customer", ERASED, "--json").stdout)["decisions"]
    assert state_mentions(deployment, names.customer_state_changelog, ERASED)
    assert state_mentions(deployment, names.scope_state_changelog, ERASED)  # proactive ids at its household

    erase = deployment.cli("privacy", "erase", ERASED, "--reason", "ticket DSR-17", "--json")
    pseudonym = json.loads(erase.stdout)["pseudonym"]
    assert is_pseudonym(pseudonym) and ERASED not in erase.stdout
    again = json.loads(deployment.cli("privacy", "erase", ERASED, "--reason", "ticket DSR-17", "--json").stdout)
    assert again["pseudonym"] == pseudonym and again["rows_rewritten"] == {}  # nothing left to rewrite
    listed = json.loads(deployment.cli("privacy", "list", "--json").stdout)
    assert [(row["pseudonym"], row["reason"]) for row in listed] == [(pseudonym, "ticket DSR-17")]

    # State: the decide agent applied the erasure in log order; the households renamed the ids.
    deployment.wait_for("the customer's state under its pseudonym", lambda: (
        latest_by_key(deployment, names.customer_state_changelog).get(ERASED.encode(), b"") is None
        and pseudonym.encode() in latest_by_key(deployment, names.customer_state_changelog)))
    deployment.wait_for("no state naming the customer", lambda: not (
        state_mentions(deployment, names.customer_state_changelog, ERASED)
        or state_mentions(deployment, names.scope_state_changelog, ERASED)))

    # Projections: the same money, under the pseudonym; the other customer untouched.
    assert deployment.totals() == before
    assert json.loads(deployment.cli("finance", "customer", OTHER, "--json").stdout) == other_before
    gone = json.loads(deployment.cli("finance", "customer", ERASED, "--json").stdout)
    assert gone["decisions"] == [] and gone["accounts"] == {}
    renamed = json.loads(deployment.cli("finance", "customer", pseudonym, "--json").stdout)
    assert renamed["decisions"] and renamed["accounts"]
    export = deployment.cli("finance", "export", "--format", "csv", "--out", str(deployment.log_path.parent / "l.csv"))
    ledger = (deployment.log_path.parent / "l.csv").read_text()
    assert export.returncode == 0 and ERASED not in ledger and pseudonym in ledger and OTHER in ledger

    assert deployment.cli("audit", check=False).returncode == 0, deployment.cli("audit", check=False).stdout
    assert deployment.cli("verify", "--wait", "60", check=False).returncode == 0, deployment.cli("verify").stdout

    # It stays erased: a later request is escalated to a person and projected under the pseudonym.
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    with Publisher(deployment.settings) as publisher:
        publisher.publish("RemedyRequested", {
            "event_id": "evt-after-erasure", "request_id": f"req-{ERASED}-after", "customer_id": ERASED,
            "order_id": None, "incident_id": None, "kind": "CREDIT", "amount_cents": 500, "currency": "USD",
            "requested_by": "customer", "requested_at": now_ms, "reason": "late complaint"})
    decided = deployment.wait_for("the later request's decision", lambda: [
        d for d in deployment.decisions() if d["request_id"] == f"req-{ERASED}-after"])
    assert (decided[0]["outcome"], decided[0]["reason_codes"], decided[0]["granted_cents"]) == (
        "ESCALATED", ["CUSTOMER_ERASED"], 0)
    deployment.wait_for("the later decision projected", lambda: len(json.loads(deployment.cli(
        "finance", "customer", pseudonym, "--json").stdout)["decisions"]) == len(renamed["decisions"]) + 1)
    deployment.cli("projections", "rebuild")
    assert deployment.cli("verify", "--wait", "60", check=False).returncode == 0
    assert deployment.cli("audit", check=False).returncode == 0
    assert not state_mentions(deployment, names.customer_state_changelog, ERASED)

    deployment.stop_worker()
    key = deployment.settings.privacy_key_path.read_text().strip()
    assert (deployment.settings.privacy_key_path.stat().st_mode & 0o777) == 0o600
    log = deployment.log_path.read_text(errors="replace")
    assert "erasure: customer now " + pseudonym in log
    assert ERASED not in log and key not in log

    store = Store(deployment.settings.clickhouse_dsn, deployment.settings.clickhouse_database)
    try:
        tables = [row[0] for row in store.client.query(
            f"SELECT name FROM system.tables WHERE database = '{store.database}' AND engine LIKE '%MergeTree'").result_rows]
        assert {"decisions_v2", "postings_v2", "decision_ledger", "erased_customers"} <= set(tables)
        for table in tables:
            rows = store.client.query(f"SELECT * FROM {store.database}.{table}").result_rows
            assert not [row for row in rows if ERASED in repr(row)], table
        assert store.client.query(f"SELECT count() FROM {store.database}.decisions_v2 WHERE customer_id = "
                                  "{p:String}", parameters={"p": pseudonym}).result_rows[0][0] > 0
    finally:
        store.close()
