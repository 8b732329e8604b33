"""Audit tools on the real broker and ClickHouse engine: SIGKILLs, verify, rebuild, finance commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from projections.store import Store
from streams.core.money import add_cents
from tests.integration.conftest import REPO
from tests.support.reference import expected_decisions, write_workload

SAMPLE = REPO / "samples" / "sample-day.jsonl"


def projected(deployment) -> int:
    return deployment.get("/finance/decision-count")["decisions"]


def assert_totals_equal_the_log(deployment) -> dict:
    """The CLI's totals equal those of the decisions on the topic, each decision counted once.

    The decider is deterministic (test_pipeline checks it against an independent reference), so
    these are the totals of an uninterrupted run.
    """
    totals = deployment.totals()
    by_id = {d["decision_id"]: d for d in deployment.decisions()}
    superseded = {d["supersedes_decision_id"] for d in by_id.values() if d.get("supersedes_decision_id")}
    by_kind = {kind: {"count": 0, "cents": {}} for kind in totals["by_kind"]}
    by_outcome = {outcome: 0 for outcome in totals["by_outcome"]}
    for d in by_id.values():
        if d["decision_id"] in superseded:
            continue
        by_outcome[d["outcome"]] += 1
        if d["outcome"] == "GRANTED":
            by_kind[d["kind"]]["count"] += 1
            add_cents(by_kind[d["kind"]]["cents"], d["currency"], d["granted_cents"])
    assert (totals["by_kind"], totals["by_outcome"]) == (by_kind, by_outcome)
    return totals


def test_sigkill_at_several_points_of_projection_then_verify_passes(deployment, tmp_path):
    deployment.env["REMEDY_PROJECT_BATCH_MAX"] = "100"  # many small inserts: many points to die between
    deployment.env["REMEDY_DECIDE_BATCH_MAX"] = "50"  # and a decide loop still busy when the first kill comes
    workload = write_workload(tmp_path / "workload.jsonl", customers=700, seed=11)
    expected = len(expected_decisions(workload))
    deployment.cli("publish", str(workload))
    projected_at_kill = []
    for fraction in (0.15, 0.4, 0.7):
        deployment.start_worker()
        deployment.wait_for(f"{fraction:.0%} projected", lambda: projected(deployment) >= expected * fraction)
        projected_at_kill.append(projected(deployment))
        deployment.stop_worker(signal.SIGKILL)
    deployment.start_worker()
    deployment.wait_for("every decision projected", lambda: projected(deployment) >= expected)
    assert projected_at_kill[0] < expected  # the first kill came in the middle of the projection
    verified = deployment.cli("verify", "--json", check=False)
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["ok"], report["differences"][:20]
    assert report["decisions"]["all"] == expected
    assert_totals_equal_the_log(deployment)


def test_rebuild_in_the_running_worker_keeps_totals_and_queries_answer(deployment, tmp_path):
    deployment.start_worker()
    deployment.cli("publish", str(SAMPLE))
    deployment.cli("publish", str(SAMPLE))  # every requested decision twice on the topic
    expected = len(expected_decisions(SAMPLE))
    deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")  # all processed and projected
    assert projected(deployment) >= expected
    before = assert_totals_equal_the_log(deployment)
    rebuild = subprocess.Popen([sys.executable, "-m", "streams.commands.cli", "projections", "rebuild"], env=deployment.env,
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered = 0
    while rebuild.poll() is None:
        assert deployment.totals()["by_kind"] == before["by_kind"]  # queries keep working during the rebuild
        answered += 1
    out, err = rebuild.communicate()
    assert rebuild.returncode == 0, out + err
    assert "every figure is unchanged" in out and "rebuild [" in err and "100%" in err
    assert deployment.totals() == before
    assert deployment.cli("verify").returncode == 0
    status = deployment.get("/projections/rebuild")
    assert status["state"] == "done" and status["result"]["decisions"] == expected
    # The finance commands answer through the worker.
    chart = tmp_path / "chart.png"
    deployment.cli("finance", "chart", "--out", str(chart))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    export = tmp_path / "ledger.csv"
    deployment.cli("finance", "export", "--format", "csv", "--out", str(export))
    assert len(export.read_text().splitlines()) == expected + 1
    customer_id = json.loads(SAMPLE.read_text().splitlines()[0])["customer_id"]
    assert customer_id in deployment.cli("finance", "customer", customer_id).stdout
    deployment.cli("finance", "associates")


def test_verify_catches_a_planted_row_and_a_rebuild_repairs_it(deployment):
    deployment.start_worker()
    deployment.cli("publish", str(SAMPLE))
    expected = len(expected_decisions(SAMPLE))
    deployment.wait_for("sample projected", lambda: projected(deployment) >= expected)
    assert deployment.cli("verify").returncode == 0
    before = deployment.totals()
    deployment.stop_worker()
    store = Store(deployment.settings.clickhouse_dsn, deployment.settings.clickhouse_database)
    try:
        granted = store.client.query(
            "SELECT decision_id FROM remedy.decisions_v2 FINAL WHERE outcome = 'GRANTED' ORDER BY decision_id LIMIT 1"
        ).result_rows[0][0]
        # A newer version of a real decision with one more cent: ReplacingMergeTree keeps it.
        store.client.command(
            "INSERT INTO remedy.decisions_v2 SELECT * REPLACE (granted_cents + 1 AS granted_cents) "
            f"FROM remedy.decisions_v2 FINAL WHERE decision_id = '{granted}'", settings={"async_insert": 0})
        # And a posting that does not balance.
        store.client.command(
            "INSERT INTO remedy.postings_v2 SELECT * REPLACE (toUInt16(99) AS line, amount_cents + 7 AS amount_cents) "
            f"FROM remedy.postings_v2 FINAL WHERE decision_id = '{granted}' LIMIT 1", settings={"async_insert": 0})
    finally:
        store.close()
    verified = deployment.cli("verify", check=False)
    assert verified.returncode == 1
    assert "MISMATCH" in verified.stdout and granted in verified.stdout and "do not balance" in verified.stdout
    report = json.loads(deployment.cli("verify", "--json", check=False).stdout)
    assert not report["ok"] and any("granted_totals" in line for line in report["differences"])
    repaired = deployment.cli("projections", "rebuild")  # no worker: the CLI rebuilds in process
    assert "figure(s) changed" in repaired.stdout
    assert deployment.cli("verify").returncode == 0
    assert deployment.totals() == before
