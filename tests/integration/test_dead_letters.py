"""Dead letters as an operator's tool, on the real broker: list, show and replay (at most once each)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import schemas
from streams.runtime.kafka_io import Publisher

pytestmark = pytest.mark.integration

REQUEST = {
    "event_id": "e-dl-1", "request_id": "r-dl-1", "customer_id": "c-dl", "order_id": None, "incident_id": None,
    "kind": "CREDIT", "amount_cents": 1_500, "currency": "USD", "requested_by": "customer",
    "requested_at": 1_795_251_600_000, "reason": "dead letter test",
}
GARBAGE = b"\x00garbage\x1b[31m"


def dead_letter(source_topic: str, key: bytes | None, value: bytes, error_type: str, reason: str, offset: int) -> bytes:
    return schemas.encode("DeadLetter", {
        "source_topic": source_topic, "source_partition": 0, "source_offset": offset,
        "source_timestamp_ms": 1_795_251_600_000, "key": key, "original_value": value,
        "error_type": error_type, "reason": reason,
    })


@pytest.fixture
def planted(deployment):
    """Four records on the dead-letter topic: a request, undecodable bytes, a foreign source, and garbage."""
    names = deployment.names
    request_bytes = schemas.encode("RemedyRequested", REQUEST)
    with Publisher(deployment.settings) as publisher:
        publisher.publish_raw(names.dead_letter, b"c-dl", dead_letter(
            names.requests, b"c-dl", request_bytes, "InvariantViolation",
            "RemedyRequested: field 'requested_at': too far ahead of the record's Kafka timestamp", 5))
        publisher.publish_raw(names.dead_letter, None, dead_letter(
            names.orders, None, GARBAGE, "DecodeError", "bad header \x1b[31mred\x1b[0m", 9))
        publisher.publish_raw(names.dead_letter, None, dead_letter(
            "somebody-elses.topic", b"k", request_bytes, "DecodeError", "foreign", 1))
        publisher.publish_raw(names.dead_letter, None, b"not a dead letter at all")
    return request_bytes


def listed(deployment, *args: str) -> list[dict]:
    return json.loads(deployment.cli("dead-letters", "list", "--json", *args).stdout)


def test_list_filters_by_reason_and_date_and_names_records_that_are_not_dead_letters(deployment, planted):
    rows = listed(deployment)
    assert len(rows) == 4
    readable = [row for row in rows if row["readable"]]
    assert {row["source_topic"] for row in readable} == {deployment.names.requests, deployment.names.orders,
                                                          "somebody-elses.topic"}
    (unreadable,) = [row for row in rows if not row["readable"]]
    assert unreadable["problem"].startswith("not a readable DeadLetter")

    assert [row["error_type"] for row in listed(deployment, "--reason", "invariant")] == ["InvariantViolation"]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert listed(deployment, "--since", tomorrow) == []
    assert len(listed(deployment, "--since", "2000-01-01")) == 4
    bad = deployment.cli("dead-letters", "list", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "--since: expected a date" in bad.stderr

    text = deployment.cli("dead-letters", "list").stdout
    assert "\x1b" not in text and "\\x1b[31mred" in text  # a reason never drives the terminal
    assert "4 dead letter(s)" in text


def test_show_decodes_the_original_where_it_can_and_always_prints_its_bytes(deployment, planted):
    rows = {row.get("source_topic"): row for row in listed(deployment)}
    request_row, garbage_row = rows[deployment.names.requests], rows[deployment.names.orders]

    shown = deployment.cli("dead-letters", "show", request_row["position"]).stdout
    assert "original   RemedyRequested:" in shown and '"request_id": "r-dl-1"' in shown
    assert planted[:16].hex(" ") in shown and "offset 5" in shown

    shown = deployment.cli("dead-letters", "show", garbage_row["position"]).stdout
    assert "does not decode" in shown and GARBAGE.hex(" ") in shown and "\x1b" not in shown
    as_json = json.loads(deployment.cli("dead-letters", "show", garbage_row["position"], "--json").stdout)
    assert as_json["original_hex"] == GARBAGE.hex() and as_json["original"]["decodes"] is False

    missing = deployment.cli("dead-letters", "show", "0:999", check=False)
    assert missing.returncode == 1 and "no dead letter at 0:999" in missing.stderr


def replays_on(deployment, topic: str) -> list:
    return [record for record in deployment.read_topic(topic)
            if any(name == "remedy-replay-of" for name, _ in record.headers or ())]


def test_replay_sends_each_dead_letter_back_to_its_source_once_with_provenance(deployment, planted):
    names = deployment.names
    dry = deployment.cli("dead-letters", "replay", "--dry-run")
    assert dry.stdout.count("would replay") == 2 and "not an event topic of this deployment" in dry.stdout
    assert replays_on(deployment, names.requests) == [] and replays_on(deployment, names.orders) == []

    only_requests = deployment.cli("dead-letters", "replay", "--reason", "requested_at")
    assert "1 replayed" in only_requests.stderr
    (replayed,) = replays_on(deployment, names.requests)
    assert (replayed.key, replayed.value) == (b"c-dl", planted)
    headers = dict(replayed.headers)
    request_row = next(row for row in listed(deployment) if row.get("source_topic") == names.requests)
    assert headers["remedy-replay-of"] == f"{names.dead_letter}:{request_row['position']}".encode()
    assert headers["remedy-replay-source"] == f"{names.requests}:0:5".encode()

    everything = deployment.cli("dead-letters", "replay")
    assert "1 replayed" in everything.stderr and "already replayed as" in everything.stdout
    again = deployment.cli("dead-letters", "replay")
    assert "0 replayed" in again.stderr and again.stdout.count("already replayed as") == 2
    assert len(replays_on(deployment, names.requests)) == 1
    assert [record.value for record in replays_on(deployment, names.orders)] == [GARBAGE]
