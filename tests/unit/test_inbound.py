"""The publish format: every bad line names its line and field; a good line becomes an event."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import schemas

from streams.errors import ValidationError
from streams.core.inbound import LineProblems, decoded_event_problems, parse_event_line
from streams.runtime.kafka_io import read_frames
from streams.runtime.upstream import _scan, avro_json_by_name, validate_file

GOOD_REQUEST = {
    "type": "RemedyRequested", "event_id": "e1", "request_id": "r1", "customer_id": "c1", "order_id": None,
    "incident_id": None, "kind": "CREDIT", "amount_cents": 1000, "currency": "USD", "requested_by": "assoc-1",
    "requested_at": "2026-11-21T10:00:00.123+01:00", "reason": "goodwill",
}


def problems_of(line: dict | str) -> list[str]:
    text = line if isinstance(line, str) else json.dumps(line)
    with pytest.raises(LineProblems) as caught:
        parse_event_line(text, avro_json_by_name())
    return caught.value.problems


def test_a_good_line_parses_with_timestamps_in_utc_milliseconds():
    name, datum = parse_event_line(json.dumps(GOOD_REQUEST), avro_json_by_name())
    assert name == "RemedyRequested"
    assert datum["requested_at"] == 1_795_251_600_123  # 09:00:00.123 UTC
    assert datum["amount_cents"] == 1000


@pytest.mark.parametrize(
    "line, expected",
    [
        ("{not json", "not valid JSON"),
        ({**GOOD_REQUEST, "type": "RefundIssued"}, "field 'type': unknown event type 'RefundIssued'"),
        ({k: v for k, v in GOOD_REQUEST.items() if k != "type"}, "field 'type': missing"),
        ({k: v for k, v in GOOD_REQUEST.items() if k != "request_id"}, "field 'request_id': missing"),
        ({**GOOD_REQUEST, "amount_cents": "10.00"}, "field 'amount_cents': must be an integer number of cents"),
        ({**GOOD_REQUEST, "amount_cents": 10.5}, "field 'amount_cents': must be an integer number of cents"),
        ({**GOOD_REQUEST, "amount_cents": -1}, "field 'amount_cents': must be positive, got -1"),
        ({**GOOD_REQUEST, "amount_cents": 0}, "field 'amount_cents': must be positive, got 0"),
        ({**GOOD_REQUEST, "kind": "CASH"}, "field 'kind': 'CASH' is not one of CREDIT"),
        ({**GOOD_REQUEST, "kind": "UNKNOWN"}, "field 'kind': 'UNKNOWN' is not one of"),
        ({**GOOD_REQUEST, "currency": "dollars"}, "field 'currency': must be a 3-letter ISO 4217 code"),
        ({**GOOD_REQUEST, "requested_at": "2026-11-21T10:00:00"}, "field 'requested_at': timestamp"),
        ({**GOOD_REQUEST, "requested_at": "yesterday"}, "field 'requested_at': not an ISO-8601 timestamp"),
        ({**GOOD_REQUEST, "customer_id": ""}, "field 'customer_id': must not be empty"),
        ({**GOOD_REQUEST, "customer_id": None}, "field 'customer_id': must not be null"),
        ({**GOOD_REQUEST, "surprise": 1}, "field 'surprise': unknown field"),
        ({**GOOD_REQUEST, "amount_cents": 2**63}, "out of range"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_each_bad_line_names_the_field_and_the_problem(line, expected):
    assert any(expected in problem for problem in problems_of(line)), problems_of(line)


def test_nested_fields_are_named_with_their_path():
    order = {"type": "OrderPlaced", "event_id": "e", "order_id": "o", "customer_id": "c",
             "placed_at": "2026-11-21T10:00:00Z", "total_cents": 100, "currency": "USD",
             "items": [{"sku": "a", "quantity": 1, "unit_price_cents": 100}, {"sku": "b", "quantity": 0}],
             "shipping_address_id": "addr", "digital": False}
    problems = problems_of(order)
    assert "field 'items[1].quantity': must be positive, got 0" in problems
    assert "field 'items[1].unit_price_cents': missing" in problems


def test_a_file_with_bad_lines_reports_every_one_with_file_and_line(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(GOOD_REQUEST), "{oops", "", json.dumps({**GOOD_REQUEST, "amount_cents": -5})]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError) as caught:
        validate_file(path)
    assert caught.value.problems == [
        f"{path}:2: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:4: field 'amount_cents': must be positive, got -5",
    ]


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_a_file_scanned_in_parallel_ranges_reports_the_same_lines_and_spools_every_event(tmp_path, parts):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({**GOOD_REQUEST, "request_id": f"r{n}", "event_id": f"e{n}"}) for n in range(40)]
    lines[13], lines[31] = "{oops", json.dumps({**GOOD_REQUEST, "amount_cents": -5})
    lines[20] = ""
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    with pytest.raises(ValidationError) as caught:
        _scan(path, None, {}, parts, None)
    assert caught.value.problems == [
        f"{path}:14: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{path}:32: field 'amount_cents': must be positive, got -5",
        f"{path}:41: not UTF-8 text (invalid start byte at byte {len(chr(10).join(lines)) + 1})",
    ]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({**GOOD_REQUEST, "request_id": f"r{n}", "event_id": f"e{n}"}) + "\n" for n in range(40)))
    (tmp_path / "spool").mkdir()
    count, spools = _scan(good, str(tmp_path / "spool"), {"RemedyRequested": 2}, parts, None)
    frames = []
    for spool in spools:
        with open(spool, "rb") as handle:
            frames += list(read_frames(handle))
    assert count == len(frames) == 40
    assert [topic for topic, _, _ in frames] == [2] * 40 and all(key == b"c1" for _, key, _ in frames)
    assert [schemas.decode(value)[1]["request_id"] for _, _, value in frames] == [f"r{n}" for n in range(40)]


def test_decoded_events_are_checked_for_what_avro_cannot_express():
    datum = {"customer_id": "c", "amount_cents": -1, "currency": "usd", "kind": "UNKNOWN", "items": []}
    problems = decoded_event_problems("RemedyRequested", datum)
    assert any("amount_cents" in p for p in problems)
    assert any("currency" in p for p in problems)
    assert any("kind" in p for p in problems)


PURE_MODULES = ["streams/core/decision.py", "streams/core/policy.py", "streams/core/scopes.py", "streams/core/inbound.py", "streams/core/money.py",
                "projections/rows.py"]
FORBIDDEN = {"faust", "aiokafka", "kafka", "fastavro", "clickhouse_connect", "os", "time", "random", "uuid"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_clock_randomness_or_io(module):
    tree = ast.parse((Path(__file__).resolve().parents[2] / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
