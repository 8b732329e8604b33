"""The publish door against hostile input: time, id and money bounds at, below and above each
limit, duplicate keys and conflicting duplicates, and a property test that no line crashes it."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from streams.core import inbound
from streams.core.inbound import (
    DAY_MS,
    FUTURE_MS_MAX_MAX,
    FUTURE_MS_MAX_MIN,
    ID_CHARS_MAX,
    MONEY_CENTS_MAX,
    STRING_CHARS_MAX,
    TIMESTAMP_FLOOR_MS_DEFAULT,
    TIMESTAMP_FLOOR_MS_MAX,
    TIMESTAMP_FLOOR_MS_MIN,
    LineProblems,
    TimeBounds,
    decoded_event_problems,
    parse_event_line,
    record_time_problems,
)
from streams.errors import ValidationError
from streams.runtime.topics import EVENT_TOPIC_ROLE
from streams.runtime.upstream import _Identities, _conflicts, _scan, avro_json_by_name, validate_file

NOW_MS = 1_795_251_600_000  # 2026-11-21T09:00:00Z, the publisher's clock in these tests
REQUEST = {
    "type": "RemedyRequested", "event_id": "e1", "request_id": "r1", "customer_id": "c1", "order_id": None,
    "incident_id": None, "kind": "CREDIT", "amount_cents": 1000, "currency": "USD", "requested_by": "assoc-1",
    "requested_at": "2026-11-21T09:00:00Z", "reason": "goodwill",
}
ORDER = {
    "type": "OrderPlaced", "event_id": "e-o1", "order_id": "o1", "customer_id": "c1",
    "placed_at": "2026-11-21T08:00:00Z", "total_cents": 4599, "currency": "USD",
    "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": 4599}], "shipping_address_id": "addr-9",
    "digital": False,
}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def problems_of(line: dict | str, now_ms: int | None = NOW_MS, bounds: TimeBounds = TimeBounds()) -> list[str]:
    text = line if isinstance(line, str) else json.dumps(line)
    try:
        parse_event_line(text, avro_json_by_name(), now_ms, bounds)
    except LineProblems as caught:
        return caught.problems
    return []


def file_problems(tmp_path: Path, lines: list[str], parts: int = 1) -> list[str]:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    try:
        _scan(path, None, {}, parts, None, now_ms=NOW_MS)
    except ValidationError as error:
        return [problem.replace(f"{path}:", "FILE:") for problem in error.problems]
    return []


# Timestamps -------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset_ms, accepted", [(-1, True), (0, True), (1, False)])
def test_an_event_may_be_dated_up_to_the_future_span_ahead_of_the_publishers_clock(offset_ms, accepted):
    at = iso(NOW_MS + DAY_MS + offset_ms)
    problems = problems_of({**REQUEST, "requested_at": at})
    assert problems == ([] if accepted else [
        f"field 'requested_at': {at} is more than 1 day after the publisher's clock (2026-11-21T09:00:00.000Z)"])


@pytest.mark.parametrize("offset_ms, accepted", [(-1, False), (0, True), (1, True)])
def test_no_event_is_dated_before_the_floor(offset_ms, accepted):
    at = iso(TIMESTAMP_FLOOR_MS_DEFAULT + offset_ms)
    problems = problems_of({**ORDER, "placed_at": at})
    assert problems == ([] if accepted else [
        f"field 'placed_at': {at} is before the earliest accepted time 2000-01-01T00:00:00.000Z"])


@pytest.mark.parametrize("at, expected", [
    ("9999-12-31T23:59:59Z", "field 'requested_at': 9999-12-31T23:59:59.000Z is more than 1 day after"),
    ("0001-01-01T00:00:00Z", "field 'requested_at': 0001-01-01T00:00:00.000Z is before the earliest accepted time"),
    # In UTC this is past year 9999, beyond what datetime shows: the problem gives the ms instead.
    ("9999-12-31T23:59:59-05:00", "field 'requested_at': 253402318799000 ms since the epoch is more than 1 day after"),
])
def test_year_9999_and_year_1_are_rejected_naming_the_field(at, expected):
    (problem,) = problems_of({**REQUEST, "requested_at": at})
    assert problem.startswith(expected), problem


def test_the_future_span_is_configurable_within_its_bounds():
    at = iso(NOW_MS + 2 * DAY_MS)
    assert problems_of({**REQUEST, "requested_at": at}) != []
    assert problems_of({**REQUEST, "requested_at": at}, bounds=TimeBounds(future_ms_max=2 * DAY_MS)) == []
    assert problems_of({**REQUEST, "requested_at": at}, now_ms=None) == []  # no clock given: no time check


@pytest.mark.parametrize("name, low, high", [
    ("future_ms_max", FUTURE_MS_MAX_MIN, FUTURE_MS_MAX_MAX),
    ("floor_ms", TIMESTAMP_FLOOR_MS_MIN, TIMESTAMP_FLOOR_MS_MAX),
])
def test_the_time_bounds_themselves_are_bounded_at_below_and_above(name, low, high):
    for value, ok in [(low - 1, False), (low, True), (low + 1, True), (high - 1, True), (high, True), (high + 1, False)]:
        problems = TimeBounds(**{name: value}).problems()
        assert (problems == []) is ok, (value, problems)
    assert TimeBounds(**{name: 1.5}).problems() == [f"{name}: must be an integer number of ms, got 1.5"]


def test_bad_time_bounds_stop_the_scan_before_reading_the_file(tmp_path):
    with pytest.raises(ValidationError) as caught:
        validate_file(tmp_path / "missing.jsonl", bounds=TimeBounds(future_ms_max=FUTURE_MS_MAX_MAX + 1))
    assert caught.value.problems[0].startswith("time bounds: future_ms_max: must be between")


def test_the_file_scan_names_line_and_field_of_an_out_of_bounds_timestamp(tmp_path):
    problems = file_problems(tmp_path, [json.dumps(ORDER), json.dumps({**REQUEST, "requested_at": "9999-12-31T00:00:00Z"})])
    assert problems == ["FILE:2: field 'requested_at': 9999-12-31T00:00:00.000Z is more than 1 day after the "
                        "publisher's clock (2026-11-21T09:00:00.000Z)"]


def test_validate_file_reads_the_machine_clock_when_none_is_given(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({**REQUEST, "requested_at": "2000-01-02T00:00:00Z"}) + "\n"
                    + json.dumps({**REQUEST, "event_id": "e2", "request_id": "r2",
                                  "requested_at": "9999-01-01T00:00:00Z"}) + "\n")
    with pytest.raises(ValidationError) as caught:
        validate_file(path)
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == [f"{path}:2"]


# The worker's check against the Kafka record timestamp ---------------------------------------------

@pytest.mark.parametrize("offset_ms, count", [(-1, 0), (0, 0), (1, 1)])
def test_record_time_problems_measures_the_future_from_the_reference(offset_ms, count):
    reference = NOW_MS
    datum = {"requested_at": reference + DAY_MS + offset_ms}
    problems = record_time_problems("RemedyRequested", datum, reference, DAY_MS, TIMESTAMP_FLOOR_MS_DEFAULT)
    assert len(problems) == count
    if count:
        assert problems[0].startswith("field 'requested_at': ") and "after the record's Kafka timestamp" in problems[0]


@pytest.mark.parametrize("offset_ms, count", [(-1, 1), (0, 0), (1, 0)])
def test_record_time_problems_applies_the_floor_at_below_and_above(offset_ms, count):
    datum = {"placed_at": TIMESTAMP_FLOOR_MS_DEFAULT + offset_ms}
    assert len(record_time_problems("OrderPlaced", datum, NOW_MS, DAY_MS, TIMESTAMP_FLOOR_MS_DEFAULT)) == count


def test_record_time_problems_takes_datetimes_and_needs_a_reference_only_for_the_future():
    far = datetime(9999, 12, 31, tzinfo=timezone.utc)
    assert record_time_problems("OrderDelivered", {"delivered_at": far}, NOW_MS, DAY_MS, 0) != []
    assert record_time_problems("OrderDelivered", {"delivered_at": far}, None, DAY_MS, 0) == []
    assert record_time_problems("OrderDelivered", {"delivered_at": far}, -1, DAY_MS, 0) == []  # no broker time
    assert record_time_problems("OrderDelivered", {"delivered_at": -5}, None, DAY_MS, 0) != []
    # A long beyond datetime's range is shown as a number, not a traceback.
    (problem,) = record_time_problems("RemedyReviewed", {"reviewed_at": 2**62}, NOW_MS, DAY_MS, 0)
    assert f"{2**62} ms since the epoch" in problem
    assert record_time_problems("RemedyDecided", {"decided_at": 2**62}, NOW_MS, DAY_MS, 0) == []  # not an input


def test_timestamp_fields_are_every_timestamp_of_every_record_a_worker_reads():
    for record_name in EVENT_TOPIC_ROLE:
        schema = schemas.current_schema(record_name)
        expected = tuple(f["name"] for f in schema["fields"]
                         if isinstance(f["type"], dict) and f["type"].get("logicalType") == "timestamp-millis")
        assert inbound.TIMESTAMP_FIELDS[record_name] == expected, record_name


# Ids ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, accepted", [(ID_CHARS_MAX - 1, True), (ID_CHARS_MAX, True), (ID_CHARS_MAX + 1, False)])
def test_ids_are_bounded_in_length(length, accepted):
    problems = problems_of({**REQUEST, "customer_id": "c" * length})
    assert problems == ([] if accepted else [f"field 'customer_id': an id of {length} characters; at most {ID_CHARS_MAX}"])


@pytest.mark.parametrize("char, name", [
    ("\x00", "NUL"), ("\x1b", "ESC"), ("\x07", "BEL"), ("\n", "line feed"), ("\t", "tab"), ("\x7f", "DEL"),
    ("\x85", "C1 NEL"), ("\x9b", "C1 CSI"), ("\u202e", "right-to-left override"), ("\u200b", "zero-width space"),
    ("\ud800", "lone surrogate"), ("\udfff", "lone low surrogate"),
])
def test_ids_must_be_printable(char, name):
    for field in ("event_id", "customer_id", "request_id", "requested_by"):
        problems = problems_of({**REQUEST, field: f"c1{char}x"})
        assert problems == [f"field '{field}': ids must be printable; U+{ord(char):04X} at position 2 is not"], name


def test_ids_inside_nested_records_are_checked_with_their_path():
    order = {**ORDER, "items": [{"sku": "sku\x1b[2J", "quantity": 1, "unit_price_cents": 4599}]}
    assert problems_of(order) == ["field 'items[0].sku': ids must be printable; U+001B at position 3 is not"]


def test_printable_ids_in_any_script_are_fine():
    assert problems_of({**REQUEST, "customer_id": "kunde-Müller-東京-№7 a"}) == []


@pytest.mark.parametrize("text, accepted", [
    ("two\nlines\tand a tab\r", True), ("café ☕", True), ("bell\x07", False), ("esc\x1b[31m", False),
    ("nul\x00", False), ("del\x7f", False), ("c1\x9b", False), ("surrogate\ud83d", False),
])
def test_free_text_may_hold_line_breaks_but_no_other_controls(text, accepted):
    problems = problems_of({**REQUEST, "reason": text})
    assert (problems == []) is accepted, problems
    if not accepted:
        assert problems[0].startswith("field 'reason': U+")


@pytest.mark.parametrize("length, accepted", [(STRING_CHARS_MAX - 1, True), (STRING_CHARS_MAX, True),
                                              (STRING_CHARS_MAX + 1, False)])
def test_free_text_is_bounded_in_length(length, accepted):
    problems = problems_of({**REQUEST, "reason": "x" * length})
    assert problems == ([] if accepted else [f"field 'reason': longer than {STRING_CHARS_MAX} characters"])


def test_a_lone_surrogate_is_a_line_problem_not_a_traceback_even_when_publishing(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({**REQUEST, "reason": "x\ud800"}) + "\n" + json.dumps({**REQUEST, "event_id": "e2", "request_id": "r2", "customer_id": "\udc00"}) + "\n")
    (tmp_path / "spool").mkdir()
    with pytest.raises(ValidationError) as caught:
        _scan(path, str(tmp_path / "spool"), {"RemedyRequested": 2}, 1, None, now_ms=NOW_MS)
    assert caught.value.problems == [
        f"{path}:1: field 'reason': U+D800 at position 1 is a lone surrogate; text may hold tab and line breaks, no other controls",
        f"{path}:2: field 'customer_id': ids must be printable; U+DC00 at position 0 is not",
    ]


def test_unknown_field_names_are_escaped_in_the_problem():
    (problem,) = problems_of({**REQUEST, "bad\x1b[2Jname\ud800": 1})
    assert problem == "field 'bad\\x1b[2Jname\\ud800': unknown field for remedy_ledger.v1.RemedyRequested"
    assert problem.isprintable()


# Money ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, accepted", [(-1, True), (0, True), (1, False)])
@pytest.mark.parametrize("where", ["amount_cents", "total_cents", "unit_price_cents"])
def test_money_per_field_is_bounded(where, offset, accepted):
    cents = MONEY_CENTS_MAX + offset
    if where == "amount_cents":
        line, field = {**REQUEST, "amount_cents": cents}, "amount_cents"
    elif where == "total_cents":
        line, field = {**ORDER, "total_cents": cents}, "total_cents"
    else:
        line = {**ORDER, "items": [{"sku": "s", "quantity": 1, "unit_price_cents": cents}]}
        field = "items[0].unit_price_cents"
    problems = problems_of(line)
    assert problems == ([] if accepted else [f"field '{field}': {cents} cents is above the maximum of {MONEY_CENTS_MAX} per field"])


def test_money_beyond_the_avro_long_is_out_of_range_not_a_crash():
    assert problems_of({**REQUEST, "amount_cents": 2**63}) == ["field 'amount_cents': 9223372036854775808 is out of range for an Avro long"]
    assert problems_of({**REQUEST, "amount_cents": 10**30})[0].endswith("is out of range for an Avro long")


def test_the_worker_applies_the_same_id_and_money_bounds_to_decoded_events():
    datum = {"customer_id": "c\x1b", "event_id": "e" * (ID_CHARS_MAX + 1), "amount_cents": MONEY_CENTS_MAX + 1,
             "currency": "USD", "kind": "CREDIT", "order_id": None}
    problems = decoded_event_problems("RemedyRequested", datum)
    assert problems == [
        "field 'customer_id': ids must be printable; U+001B at position 1 is not",
        f"field 'event_id': an id of {ID_CHARS_MAX + 1} characters; at most {ID_CHARS_MAX}",
        f"field 'amount_cents': {MONEY_CENTS_MAX + 1} cents is above the maximum of {MONEY_CENTS_MAX} per field",
    ]
    order = {"customer_id": "c", "currency": "USD", "total_cents": MONEY_CENTS_MAX,
             "items": [{"sku": "s\x00", "quantity": 1, "unit_price_cents": MONEY_CENTS_MAX + 1}]}
    assert decoded_event_problems("OrderPlaced", order) == [
        f"field 'items[0].unit_price_cents': above the maximum of {MONEY_CENTS_MAX} per field",
        "field 'items[0].sku': ids must be printable; U+0000 at position 1 is not",
    ]


@pytest.mark.parametrize("reason, problem", [
    ("r" * (STRING_CHARS_MAX - 1), None),
    ("r" * STRING_CHARS_MAX, None),
    ("r" * (STRING_CHARS_MAX + 1), f"field 'reason': longer than {STRING_CHARS_MAX} characters"),
    ("late\tparcel\r\n", None),
    ("late\x1b[31m", "field 'reason': U+001B at position 4 is a control character; text may hold tab and line breaks, no other controls"),
])
def test_the_worker_applies_the_free_text_rules_to_every_producers_events(reason, problem):
    datum = {"customer_id": "c", "event_id": "e", "amount_cents": 100, "currency": "USD", "kind": "CREDIT",
             "order_id": None, "reason": reason}
    assert decoded_event_problems("RemedyRequested", datum) == ([problem] if problem else [])


# JSON that Python reads but JSON does not allow --------------------------------------------------

def test_duplicate_keys_are_rejected_naming_the_key():
    text = json.dumps(REQUEST)[:-1] + ', "amount_cents": 999999}'
    assert problems_of(text) == ["field 'amount_cents': appears more than once in one object; JSON keys must be unique"]
    nested = json.dumps(ORDER).replace('"quantity": 1', '"quantity": 1, "quantity": 2')
    assert problems_of(nested) == ["field 'quantity': appears more than once in one object; JSON keys must be unique"]


@pytest.mark.parametrize("text, expected", [
    ('{"type": "RemedyRequested", "amount_cents": NaN}', "not valid JSON: NaN is not a JSON value"),
    ('{"type": "RemedyRequested", "amount_cents": -Infinity}', "not valid JSON: -Infinity is not a JSON value"),
    ('{"amount_cents": ' + "9" * 5000 + "}", "not valid JSON: Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
])
def test_json_python_accepts_but_the_format_does_not_is_a_line_problem(text, expected):
    (problem,) = problems_of(text)
    assert problem.startswith(expected)


# Duplicates inside one file --------------------------------------------------------------------------

def test_identical_repeats_are_fine(tmp_path):
    line = json.dumps(REQUEST)
    assert file_problems(tmp_path, [line, json.dumps(ORDER), line]) == []
    # The same request again under a new event id is a retry, not a conflict.
    assert file_problems(tmp_path, [line, json.dumps({**REQUEST, "event_id": "e-retry"})]) == []
    # The same instant written in another zone is the same content.
    assert file_problems(tmp_path, [line, json.dumps({**REQUEST, "requested_at": "2026-11-21T10:00:00+01:00"})]) == []


def test_a_repeated_event_id_with_different_content_names_both_lines(tmp_path):
    lines = [json.dumps(REQUEST), json.dumps(ORDER), json.dumps({**ORDER, "event_id": "e1", "order_id": "o2"})]
    assert file_problems(tmp_path, lines) == [
        "FILE:3: field 'event_id': CONFLICTING_DUPLICATE: 'e1' first appears on line 1 with different content; "
        "a repeat must be identical",
    ]


def test_a_repeated_request_id_with_another_amount_names_both_lines(tmp_path):
    lines = [json.dumps(REQUEST), json.dumps(ORDER), json.dumps({**REQUEST, "event_id": "e9", "amount_cents": 99_999})]
    assert file_problems(tmp_path, lines) == [
        "FILE:3: field 'request_id': CONFLICTING_DUPLICATE: 'r1' first appears on line 1 with different content; "
        "a repeat must be identical",
    ]


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_conflicts_are_found_across_the_ranges_of_a_parallel_scan(tmp_path, parts):
    lines = [json.dumps({**REQUEST, "event_id": f"e{n}", "request_id": f"r{n}"}) for n in range(50)]
    lines[47] = json.dumps({**REQUEST, "event_id": "e3", "request_id": "r-other"})
    lines[48] = json.dumps({**REQUEST, "event_id": "e48", "request_id": "r5", "amount_cents": 7})
    lines[49] = lines[10]
    assert file_problems(tmp_path, lines, parts) == [
        "FILE:48: field 'event_id': CONFLICTING_DUPLICATE: 'e3' first appears on line 4 with different content; "
        "a repeat must be identical",
        "FILE:49: field 'request_id': CONFLICTING_DUPLICATE: 'r5' first appears on line 6 with different content; "
        "a repeat must be identical",
    ]


def test_a_digest_collision_is_never_reported_as_a_conflict(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(REQUEST), json.dumps({**REQUEST, "event_id": "e2", "request_id": "r2"})]
    path.write_text("".join(line + "\n" for line in lines))
    found = _Identities()
    for offset, line in ((0, 1), (len(lines[0]) + 1, 2)):
        found.digests.append(42)  # two different ids forced onto one digest
        found.offsets.append(offset)
        found.lines.append(line)
    assert _conflicts(path, found) == []


# Property: no line crashes the door, and every rejection names its line ----------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)
FIELD_NAMES = st.sampled_from(sorted(set(REQUEST) | set(ORDER) | {"items", "quantity", "sku", "type"})) | st.text(max_size=6)


@st.composite
def event_lines(draw) -> str:
    """A JSON line: random JSON, a good event with fields replaced, dropped or added, or raw text."""
    kind = draw(st.sampled_from(["mutated", "random", "text", "duplicate-key"]))
    if kind == "random":
        return json.dumps(draw(JSON_VALUES))
    if kind == "text":
        return draw(st.text(alphabet=st.characters(blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                            max_size=60))
    event = dict(draw(st.sampled_from([REQUEST, ORDER])))
    for name in draw(st.lists(FIELD_NAMES, max_size=3)):
        event[name] = draw(JSON_VALUES)
    for name in draw(st.lists(FIELD_NAMES, max_size=2)):
        event.pop(name, None)
    text = json.dumps(event, ensure_ascii=draw(st.booleans()))
    if kind == "duplicate-key" and len(text) > 2:
        name = draw(FIELD_NAMES)
        text = text[:-1] + f", {json.dumps(name)}: {json.dumps(draw(JSON_VALUES))}}}"
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_lines(), min_size=1, max_size=6))
def test_random_lines_never_crash_the_publish_door_and_every_rejection_names_a_line(lines):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.jsonl"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogatepass")
        (Path(directory) / "spool").mkdir()
        try:
            count, _ = _scan(path, f"{directory}/spool", {name: 0 for name in inbound.PUBLISHABLE_TYPES}, 1, None,
                             now_ms=NOW_MS)
        except ValidationError as error:
            assert error.problems
            for problem in error.problems:
                assert problem.startswith(f"{path}:"), problem
                line = problem[len(f"{path}:"):].split(":", 1)[0]
                assert line.isdigit() and 1 <= int(line) <= len(lines), problem
                # Printable: no terminal escapes, and encodable (printing it cannot raise).
                assert problem.isprintable(), problem
                problem.encode("utf-8")
        else:
            assert count == sum(1 for line in lines if line.strip())
