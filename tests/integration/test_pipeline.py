"""The whole path on the real broker and the real ClickHouse engine: publish, decide, project, query."""

from __future__ import annotations

import random
import signal
from pathlib import Path


import schemas
from streams.runtime.kafka_io import Publisher
from tests.support.reference import expected_decisions, expected_totals, write_workload

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "sample-day.jsonl"


def assert_decisions_match(deployment, path: Path) -> None:
    expected = expected_decisions(path)
    decided = {d["request_id"]: (d["outcome"], d["granted_cents"]) for d in deployment.decisions()}
    assert decided == expected


def assert_totals_match(deployment, path: Path) -> dict:
    totals = deployment.totals()
    want = expected_totals(path)
    assert totals["by_kind"] == want["by_kind"]
    assert totals["by_outcome"] == want["by_outcome"]
    return totals


def wait_projected(deployment, count: int) -> None:
    deployment.wait_for(f"{count} decisions projected",
                        lambda: deployment.get("/finance/decision-count")["decisions"] >= count)


def test_sample_day_decisions_and_totals_match_the_file(deployment):
    deployment.start_worker()
    published = deployment.cli("publish", str(SAMPLE))
    lines = len([line for line in SAMPLE.read_text().splitlines() if line.strip()])
    assert f"published {lines} events" in published.stdout
    expected = expected_decisions(SAMPLE)
    wait_projected(deployment, len(expected))
    assert_decisions_match(deployment, SAMPLE)
    totals = assert_totals_match(deployment, SAMPLE)
    assert totals["by_outcome"]["DENIED"] > 0 and totals["by_outcome"]["ESCALATED"] > 0  # the sample has both


def test_publishing_the_same_file_twice_changes_no_total(deployment):
    deployment.start_worker()
    deployment.cli("publish", str(SAMPLE))
    expected = expected_decisions(SAMPLE)
    wait_projected(deployment, len(expected))
    first = deployment.totals()
    decisions_before = len(deployment.decisions())
    deployment.cli("publish", str(SAMPLE))
    # The worker re-emits the same decision for every redelivered request, and processes all of it.
    deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")
    assert len(deployment.decisions()) > decisions_before  # the duplicates really went through
    assert deployment.totals() == first
    assert_totals_match(deployment, SAMPLE)


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(deployment, tmp_path):
    workload = write_workload(tmp_path / "workload.jsonl", customers=1500, seed=7)
    expected = expected_decisions(workload)
    deployment.cli("publish", str(workload))
    deployment.start_worker()
    deployment.wait_for("some decisions projected",
                        lambda: deployment.get("/finance/decision-count")["decisions"] >= len(expected) // 4)
    deployment.stop_worker(signal.SIGKILL)
    seen_at_kill = len(deployment.decisions())
    assert seen_at_kill < len(expected) * 2  # killed mid-stream, not after the end
    deployment.start_worker()
    wait_projected(deployment, len(expected))
    assert_decisions_match(deployment, workload)
    assert_totals_match(deployment, workload)


def test_poison_bytes_go_to_the_dead_letter_topic_and_processing_goes_on(deployment, tmp_path):
    workload = write_workload(tmp_path / "small.jsonl", customers=20, seed=3)
    expected = expected_decisions(workload)
    garbage = [bytes(random.Random(i).getrandbits(8) for _ in range(40)) for i in range(3)]
    with Publisher(deployment.settings) as publisher:
        publisher.publish_raw(deployment.names.requests, b"c3-0", garbage[0])
        publisher.publish_raw(deployment.names.orders, b"c3-1", b"\xc3\x01" + b"\x00" * 8 + b"body")
        publisher.publish_raw(deployment.names.incidents, None, garbage[1])
    deployment.cli("publish", str(workload))
    deployment.start_worker()
    wait_projected(deployment, len(expected))
    assert_decisions_match(deployment, workload)
    letters = [schemas.decode(m.value)[1] for m in deployment.read_topic(deployment.names.dead_letter)]
    assert sorted(l["original_value"] for l in letters) == sorted(
        [garbage[0], b"\xc3\x01" + b"\x00" * 8 + b"body", garbage[1]])
    for letter in letters:
        assert letter["source_topic"] in deployment.names.inputs()
        assert letter["source_offset"] == 0
        assert letter["error_type"] == "DecodeError"
        assert letter["reason"]
    unknown = next(l for l in letters if l["source_topic"] == deployment.names.orders)
    assert "unknown" in unknown["reason"].lower() and "0000000000000000" in unknown["reason"]
