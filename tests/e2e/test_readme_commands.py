"""The README's commands as a user runs them, on the test broker: publish, worker, wait, totals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streams.core.money import merged_cents, money_text
from tests.integration.conftest import REPO, Deployment
from tests.support.reference import expected_totals

SAMPLE = REPO / "samples" / "sample-day.jsonl"


def run(env: dict, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def test_bad_file_is_rejected_line_by_line_and_nothing_is_published(tmp_path):
    deployment = Deployment(tmp_path)
    good = SAMPLE.read_text().splitlines()[0]
    bad_lines = [
        good,
        "{this is not json",
        '{"type": "PizzaOrdered", "customer_id": "c1"}',
        json.dumps({**json.loads(good), "customer_id": None}),
        json.dumps({k: v for k, v in json.loads(good).items() if k != "placed_at"}),
        json.dumps({**json.loads(good), "total_cents": "12.50"}),
        json.dumps({**json.loads(good), "total_cents": -100}),
    ]
    path = tmp_path / "upstream.jsonl"
    path.write_text("\n".join(bad_lines) + "\n")
    result = deployment.cli("publish", str(path), check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}:2: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:3: field 'type': unknown event type 'PizzaOrdered'; one of OrderPlaced, OrderDelivered, "
        "IncidentReported, RemedyRequested",
        f"{path}:4: field 'customer_id': must not be null",
        f"{path}:5: field 'placed_at': missing",
        f"{path}:6: field 'total_cents': must be an integer number of cents, got \"12.50\"",
        f"{path}:7: field 'total_cents': must not be negative, got -100",
        "6 problem(s); nothing was published",
    ]
    assert deployment.read_topic(deployment.names.orders) == []  # not even the good first line


def test_make_run_sequence_prints_totals_that_match_the_sample(tmp_path):
    deployment = Deployment(tmp_path)
    env = {**deployment.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cli = [sys.executable, "-m", "streams.commands.cli"]
    run(env, *cli, "topics", "create")
    run(env, "deploy/local/worker.sh", "start")
    try:
        assert "already running" in run(env, "deploy/local/worker.sh", "start").stdout
        run(env, *cli, "publish", str(SAMPLE))
        run(env, *cli, "wait", "--file", str(SAMPLE), "--timeout", "240")
        table = run(env, *cli, "finance", "totals", "--by", "reason").stdout
        totals = json.loads(run(env, *cli, "finance", "totals", "--json").stdout)
    finally:
        run(env, "deploy/local/worker.sh", "stop")
    want = expected_totals(SAMPLE)
    assert totals["by_kind"] == want["by_kind"]
    assert totals["by_outcome"] == want["by_outcome"]
    granted = merged_cents(v["cents"] for v in want["by_kind"].values())
    assert granted and all(money_text(cents, currency) in table for currency, cents in granted.items())
    assert "CUSTOMER_30D_CAP_EXCEEDED" in table
    # With the worker stopped, the CLI opens the embedded store itself and sees the same totals.
    assert json.loads(run(env, *cli, "finance", "totals", "--json").stdout) == totals
