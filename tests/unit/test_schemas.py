"""The Avro contract: schema files, single-object codec, compatibility guard and release guard."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import SchemaSet, can_read, check_full_transitive
from schemas import release
from schemas._codec import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_ROOT_DEFAULT,
    TIMESTAMP_MS_MAX,
    TIMESTAMP_MS_MIN,
    schema_fingerprint,
)
from streams.errors import DecodeError, EncodeError

UTC = dt.timezone.utc
T0_MS = 1_718_000_000_000  # 2024-06-10T06:13:20Z
T0 = dt.datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC)

# The wire identity of every r1 record. These bytes are in every stored event: if one changes,
# either a released file changed or the fingerprint computation did, and old data is unreadable.
FINGERPRINTS_R1 = {
    "DeadLetter": "b295be306e905a2d",
    "IncidentReported": "2b3e6bed497c356f",
    "OrderDelivered": "d4c6bd1b7c299ea9",
    "OrderItem": "372ce657332167f9",
    "OrderPlaced": "c5bd1d1264f30c17",
    "RemedyDecided": "33e0f0ce141e5b0d",
    "RemedyRequested": "a6c39e7ea619ec0f",
}


def order_placed(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "evt-0001",
        "order_id": "ord-1001",
        "customer_id": "cus-42",
        "placed_at": T0_MS,
        "total_cents": 4598,
        "currency": "EUR",
        "items": [
            {"sku": "BOOK-123", "quantity": 2, "unit_price_cents": 1999},
            {"sku": "GIFTWRAP", "quantity": 1, "unit_price_cents": 600},
        ],
        "shipping_address_id": "addr-7",
        "digital": False,
    }
    return {**datum, **changes}


def order_delivered(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "evt-0002",
        "order_id": "ord-1001",
        "customer_id": "cus-42",
        "delivered_at": T0_MS + 86_400_000,
    }
    return {**datum, **changes}


def incident_reported(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "evt-0003",
        "incident_id": "inc-9",
        "customer_id": "cus-42",
        "order_id": "ord-1001",
        "kind": "DAMAGED",
        "source": "CUSTOMER",
        "reported_at": T0_MS + 2 * 86_400_000,
        "description": "Box crushed, cover torn – «déchiré»",
    }
    return {**datum, **changes}


def remedy_requested(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "evt-0004",
        "request_id": "req-77",
        "customer_id": "cus-42",
        "order_id": "ord-1001",
        "incident_id": "inc-9",
        "kind": "CREDIT",
        "amount_cents": 1500,
        "currency": "EUR",
        "requested_by": "assoc-314",
        "requested_at": T0_MS + 2 * 86_400_000 + 60_000,
        "reason": "damaged on arrival",
    }
    return {**datum, **changes}


def remedy_decided(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "dec-req-77",
        "decision_id": "dec-req-77",
        "request_id": "req-77",
        "customer_id": "cus-42",
        "order_id": "ord-1001",
        "incident_id": "inc-9",
        "kind": "CREDIT",
        "outcome": "GRANTED",
        "requested_cents": 1500,
        "granted_cents": 1000,
        "currency": "EUR",
        "reason_codes": ["CAPPED_PER_REQUEST"],
        "policy_version": "2024-06-01",
        "requested_by": "assoc-314",
        "requested_at": T0_MS + 2 * 86_400_000 + 60_000,
        "decided_at": T0_MS + 2 * 86_400_000 + 60_500,
        "inputs": {"credit_cents_granted_30d": 2500, "credit_cents_max_per_request": 1000},
    }
    return {**datum, **changes}


def dead_letter(**changes: Any) -> dict[str, Any]:
    datum = {
        "source_topic": "remedy-requests",
        "source_partition": 3,
        "source_offset": 123_456_789_012,
        "source_timestamp_ms": T0_MS,
        "key": b"cus-42",
        "original_value": b"\xc3\x01garbage",
        "error_type": "DecodeError",
        "reason": "unknown schema fingerprint 6761726261676500",
    }
    return {**datum, **changes}


def limit_check(**changes: Any) -> dict[str, Any]:
    datum = {
        "event_id": "req-77/RESERVE/household:addr-1", "request_id": "req-77", "customer_id": "cus-42",
        "action": "RESERVE", "scope": "household", "scope_key": "addr-1", "route": ["associate:assoc-314"],
        "reserved": [], "amount_cents": 1000, "kind": "CREDIT", "incident_id": "inc-9", "at": T0_MS,
        "passed": True, "outcome": "GRANTED", "reason_codes": [], "inputs": {"household_claims_90d": 1},
        "policy_version": "p1-abc",
    }
    return {**datum, **changes}


# Each record with every optional field present, then with every optional field absent (null).
EXAMPLES = [
    ("RemedyReviewed", {"event_id": "rev-1", "request_id": "req-77", "customer_id": "cus-42", "verdict": "APPROVE",
                        "reviewed_by": "assoc-1", "reviewed_at": T0_MS, "note": "loyal customer"}),
    ("RemedyReviewed", {"event_id": "rev-2", "request_id": "req-77", "customer_id": "cus-42", "verdict": "DENY",
                        "reviewed_by": "assoc-1", "reviewed_at": T0_MS, "note": None}),
    ("PolicyApplied", {"version": "p1-abc", "document": "{}", "author": "fraud-team", "reason": "tighten",
                       "applied_at": T0_MS, "previous_version": "p1-old"}),
    ("PolicyApplied", {"version": "p1-abc", "document": "{}", "author": "fraud-team", "reason": "first",
                       "applied_at": T0_MS, "previous_version": None}),
    ("LimitCheck", limit_check()),
    ("LimitCheck", limit_check(incident_id=None, action="RESULT", passed=False, outcome="DENIED", reason_codes=["HOUSEHOLD_CLAIMS_EXCEEDED"])),
    ("OrderItem", {"sku": "BOOK-123", "quantity": 1, "unit_price_cents": 1999}),
    ("OrderPlaced", order_placed()),
    ("OrderPlaced", order_placed(items=[], digital=True, placed_at=T0)),
    ("OrderDelivered", order_delivered()),
    ("IncidentReported", incident_reported()),
    ("IncidentReported", incident_reported(order_id=None, description=None, kind="SERVICE_OUTAGE", source="QOS_MONITOR")),
    ("RemedyRequested", remedy_requested()),
    ("RemedyRequested", remedy_requested(order_id=None, incident_id=None, requested_by="system", amount_cents=0, kind="GIFT_WRAP")),
    ("RemedyDecided", remedy_decided()),
    ("RemedyDecided", remedy_decided(order_id=None, incident_id=None, outcome="DENIED", granted_cents=0, reason_codes=["OVER_30D_CAP", "NO_INCIDENT"], inputs={})),
    ("DeadLetter", dead_letter()),
    ("CustomerErased", {"event_id": "erasure/erased:0123/1", "customer_id": "cus-42",
                        "pseudonym": "erased:0123456789abcdef0123456789abcdef", "erased_at": T0_MS}),
    ("LimitCheck", limit_check(action="FORGET", pseudonym="erased:0123456789abcdef0123456789abcdef")),
    ("DeadLetter", dead_letter(source_timestamp_ms=None, key=None, original_value=b"")),
    ("RecoverySuggested", {"event_id": "rec-1", "request_id": "req-77", "customer_id": "cus-42", "order_id": "ord-1",
                           "incident_id": "inc-9", "decision_id": "dec-2", "kind": "RESHIP", "recoverable_cents": 4599,
                           "currency": "USD", "delivered_at": T0_MS, "customer_asserted": True, "policy_version": "p1-x"}),
    # Revision 6: remedy detail, partial delivery, instructions, notifications, closed periods.
    ("RemedyRequested", remedy_requested(kind="RESHIP", amount_cents=1999, items=[
        {"sku": "BOOK-123", "quantity": 1, "unit_price_cents": 1999}], shipping_address_id="addr-gran",
        shipping_speed="NEXT_DAY", gift_message="Merry Christmas")),
    ("RemedyDecided", remedy_decided(items=[{"sku": "BOOK-123", "quantity": 1, "unit_price_cents": 1999}],
                                     shipping_address_id="addr-gran", shipping_speed="EXPRESS", gift_message=None)),
    ("OrderDelivered", order_delivered(shipment_id="shp-1", items=[{"sku": "BOOK-123", "quantity": 1,
                                                                      "unit_price_cents": 1999}])),
    ("RemedyInstruction", {"event_id": "dec-1", "instruction_id": "dec-1", "decision_id": "dec-1", "request_id": "req-77",
                           "customer_id": "cus-42", "order_id": "ord-1001", "target": "WAREHOUSE", "kind": "RESHIP",
                           "amount_cents": 1999, "currency": "EUR",
                           "items": [{"sku": "BOOK-123", "quantity": 1, "unit_price_cents": 1999}],
                           "shipping_address_id": "addr-gran", "shipping_speed": "NEXT_DAY", "gift_wrapped": True,
                           "gift_message": "Merry Christmas", "decided_at": T0_MS}),
    ("RemedyInstruction", {"event_id": "dec-2", "instruction_id": "dec-2", "decision_id": "dec-2", "request_id": "req-78",
                           "customer_id": "cus-42", "order_id": None, "target": "ACCOUNTS", "kind": "CREDIT",
                           "amount_cents": 500, "currency": "USD", "items": None, "shipping_address_id": None,
                           "shipping_speed": None, "gift_wrapped": False, "gift_message": None, "decided_at": T0_MS}),
    ("CustomerNotification", {"event_id": "ntf-1", "notification_id": "ntf-1", "decision_id": "dec-2",
                              "customer_id": "cus-42", "order_id": None, "incident_id": "inc-9",
                              "incident_kind": "SERVICE_OUTAGE", "kind": "CREDIT", "amount_cents": 500,
                              "currency": "USD", "message": "We credited your account ($5.00) because our service was down.",
                              "decided_at": T0_MS}),
    ("PeriodClosed", {"event_id": "period-closed:2026-10", "period": "2026-10", "closed_by": "fin-1",
                      "closed_at": T0_MS, "decision_offsets": {"0": 12, "1": 0}}),
    ("ReviewAssigned", {"request_id": "req-77", "assigned_to": "fraud-ana", "assigned_by": "lead-bo",
                        "assigned_at": T0_MS}),
    ("ShadowPolicy", {"version": "p1-abc", "document": "{}", "state": "RUNNING", "started_at": T0_MS,
                      "changed_by": "fraud-ana", "reason": "porch thefts", "changed_at": T0_MS}),
]


def as_decoded(record_name: str, datum: dict[str, Any]) -> dict[str, Any]:
    """What decode returns for a datum: timestamps become aware UTC datetimes."""
    record = schemas.default_schema_set().current_record(record_name)
    defaults = {f["name"]: f["default"] for f in schemas.current_schema(record_name)["fields"] if "default" in f}
    decoded = {**defaults, **datum}
    for field_name in record.timestamp_fields:
        value = datum[field_name]
        if isinstance(value, int):
            decoded[field_name] = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=value)
        else:
            decoded[field_name] = value.astimezone(UTC)
    return decoded


def copy_schema_root(tmp_path: Path) -> Path:
    root = tmp_path / "avro"
    shutil.copytree(SCHEMA_ROOT_DEFAULT / "r1", root / "r1")
    return root


def write_schema(root: Path, revision: int, schema: dict[str, Any]) -> None:
    directory = root / f"r{revision}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{schema['name']}.avsc").write_text(json.dumps(schema, indent=2) + "\n")


def released_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_ROOT_DEFAULT / "r1" / f"{name}.avsc").read_text())


# --- Schema files -------------------------------------------------------------------------


def schema_files() -> list[Path]:
    return sorted(SCHEMA_ROOT_DEFAULT.glob("r*/*.avsc"))


@pytest.mark.parametrize("path", schema_files(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_schema_file_is_one_documented_named_type(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["type"] in ("record", "enum")
    assert schema["name"] == path.stem
    assert schema["namespace"] == schemas.NAMESPACE
    assert schema.get("doc", "").strip(), f"{path.name} has no doc"
    for field in schema.get("fields", []):
        assert field.get("doc", "").strip(), f"{path.name}: field {field['name']} has no doc"
    if schema["type"] == "enum":
        assert schema["symbols"][-1] == "UNKNOWN"
        assert schema["default"] == "UNKNOWN"


def test_the_package_schemas_load_and_name_the_expected_records() -> None:
    assert schemas.record_names() == tuple(sorted(set(FINGERPRINTS_R1) | {"LimitCheck", "RemedyReviewed", "PolicyApplied",
                                                                          "CustomerErased", "RecoverySuggested",
                                                                          "RemedyInstruction", "CustomerNotification",
                                                                          "PeriodClosed", "ReviewAssigned", "ShadowPolicy"}))
    assert len(list((SCHEMA_ROOT_DEFAULT / "r1").glob("*.avsc"))) == 11


def test_every_record_has_a_round_trip_example() -> None:
    assert {name for name, _ in EXAMPLES} == set(schemas.record_names())


def test_current_schema_is_self_contained_and_a_copy() -> None:
    schema = schemas.current_schema("IncidentReported")
    kinds = [field["type"] for field in schema["fields"] if field["name"] == "kind"]
    assert kinds[0]["symbols"][0] == "LOST_IN_TRANSIT"
    schema["fields"].clear()
    assert schemas.current_schema("IncidentReported")["fields"]


# --- Codec round trips --------------------------------------------------------------------


@pytest.mark.parametrize("record_name, datum", EXAMPLES, ids=[f"{name}-{index}" for index, (name, _) in enumerate(EXAMPLES)])
def test_encode_then_decode_returns_the_datum(record_name: str, datum: dict[str, Any]) -> None:
    data = schemas.encode(record_name, datum)
    assert schemas.decode(data) == (record_name, as_decoded(record_name, datum))


def test_optional_fields_may_be_left_out_when_encoding() -> None:
    datum = remedy_requested()
    del datum["order_id"], datum["incident_id"]
    _, decoded = schemas.decode(schemas.encode("RemedyRequested", datum))
    assert decoded["order_id"] is None and decoded["incident_id"] is None


def test_timestamps_accept_milliseconds_or_aware_datetimes_and_decode_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    from_ms = schemas.encode("OrderDelivered", order_delivered(delivered_at=T0_MS))
    from_datetime = schemas.encode("OrderDelivered", order_delivered(delivered_at=T0.astimezone(paris)))
    assert from_ms == from_datetime
    _, decoded = schemas.decode(from_ms)
    assert decoded["delivered_at"] == T0 and decoded["delivered_at"].utcoffset() == dt.timedelta(0)


def test_timestamp_range_limits_round_trip() -> None:
    for value in (TIMESTAMP_MS_MIN, 0, TIMESTAMP_MS_MAX):
        _, decoded = schemas.decode(schemas.encode("OrderDelivered", order_delivered(delivered_at=value)))
        assert decoded["delivered_at"] == as_decoded("OrderDelivered", order_delivered(delivered_at=value))["delivered_at"]


def test_encoding_is_stable_byte_for_byte() -> None:
    data = SchemaSet.load(SCHEMA_ROOT_DEFAULT, current_revision=1).encode("OrderDelivered", order_delivered())
    assert data.hex() == (
        "c301"
        + FINGERPRINTS_R1["OrderDelivered"]
        + "10" + b"evt-0002".hex()  # length 8, zigzag-encoded, then UTF-8
        + "10" + b"ord-1001".hex()
        + "0c" + b"cus-42".hex()
        + _zigzag_varint_hex(T0_MS + 86_400_000)
    )


def _zigzag_varint_hex(value: int) -> str:
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = encoded & 0x7F
        encoded >>= 7
        if encoded:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return out.hex()


# --- Single-object header and the spec's CRC-64-AVRO vectors ------------------------------


def test_header_is_magic_then_the_current_fingerprint() -> None:
    for name in schemas.record_names():
        data = schemas.encode(name, dict(next(datum for n, datum in EXAMPLES if n == name)))
        assert data[:2] == b"\xc3\x01" == MAGIC
        assert data[2:HEADER_SIZE].hex() == schemas.fingerprint_hex(name)


def test_r1_fingerprints_never_change() -> None:
    schema_set = schemas.default_schema_set()
    first_revisions = {name: schema_set.history(name)[0] for name in FINGERPRINTS_R1}
    assert {name: version.revision for name, version in first_revisions.items()} == dict.fromkeys(FINGERPRINTS_R1, 1)
    assert {name: version.fingerprint.hex() for name, version in first_revisions.items()} == FINGERPRINTS_R1


# From Apache Avro share/test/data/schema-tests.txt: schema, CRC-64-AVRO as a signed Java long.
SPEC_FINGERPRINTS = [
    ('"null"', 7195948357588979594),
    ('"int"', 8247732601305521295),
    ('"string"', -8142146995180207161),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', 5916914534497305771),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}', -4448647247586288245),
    ('{"name":"PigValue","type":"record","fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}', -1759257747318642341),
]


@pytest.mark.parametrize("schema_json, java_long", SPEC_FINGERPRINTS)
def test_fingerprint_matches_the_spec_vectors_in_little_endian_order(schema_json: str, java_long: int) -> None:
    expected = (java_long & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little")
    assert schema_fingerprint(json.loads(schema_json)) == expected


def test_single_object_header_of_int_matches_apache_avro() -> None:
    # Apache Avro's Ruby test_fingerprints.rb, test_single_object_encoding_header, schema "int".
    assert MAGIC + schema_fingerprint("int") == bytes.fromhex("c3018f5c393f1ad57572")


def test_fingerprint_covers_named_types_defined_in_other_files(tmp_path: Path) -> None:
    # fastavro's canonical form of a schema parsed with shared named types leaves "IncidentKind"
    # as a bare name; the codec must still give IncidentReported a new fingerprint when only
    # IncidentKind.avsc changes in a new revision.
    root = copy_schema_root(tmp_path)
    kind = released_schema("IncidentKind")
    kind["symbols"].insert(-1, "PRICE_ERROR")
    write_schema(root, 2, kind)
    new = SchemaSet.load(root)
    assert new.fingerprint_hex("IncidentReported") != FINGERPRINTS_R1["IncidentReported"]
    assert new.fingerprint_hex("RemedyRequested") == FINGERPRINTS_R1["RemedyRequested"]


# --- Decode errors ------------------------------------------------------------------------


def valid_remedy_requested() -> bytes:
    return schemas.encode("RemedyRequested", remedy_requested())


def test_decode_rejects_random_bytes() -> None:
    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        if data[:2] == MAGIC:
            continue
        with pytest.raises(DecodeError, match="too short|bad magic|has no schema registry"):
            schemas.decode(data)


def test_decode_rejects_too_short_input() -> None:
    with pytest.raises(DecodeError, match="too short for an Avro single object: 9 bytes"):
        schemas.decode(valid_remedy_requested()[:9])
    with pytest.raises(DecodeError, match="too short"):
        schemas.decode(b"")


def test_decode_rejects_wrong_magic() -> None:
    data = b"\x01\x01" + valid_remedy_requested()[2:]
    with pytest.raises(DecodeError, match="bad magic bytes 0101: expected c301 .* or 00 "):
        schemas.decode(data)


def test_decode_without_a_registry_refuses_the_confluent_wire_format_naming_the_setting() -> None:
    # Registry mode is tested in tests/unit/test_schema_registry.py; without a registry the id
    # cannot be resolved, and that is a DecodeError (a dead letter), never a crash.
    with pytest.raises(DecodeError, match="schema id 7\\) but this reader has no schema registry; "
                                          "set REMEDY_SCHEMA_REGISTRY_URL"):
        schemas.decode(b"\x00\x00\x00\x00\x07" + b"\x02a" * 10)


def test_decode_rejects_an_unknown_fingerprint_and_prints_it_in_hex() -> None:
    data = MAGIC + bytes.fromhex("0123456789abcdef") + valid_remedy_requested()[HEADER_SIZE:]
    with pytest.raises(DecodeError, match="unknown schema fingerprint 0123456789abcdef"):
        schemas.decode(data)


def test_decode_rejects_a_truncated_body() -> None:
    data = valid_remedy_requested()
    for length in range(HEADER_SIZE, len(data)):
        with pytest.raises(DecodeError, match="truncated or corrupt RemedyRequested body"):
            schemas.decode(data[:length])


def test_decode_rejects_a_corrupt_body() -> None:
    # event_id "evt-0004" with its first byte replaced by invalid UTF-8.
    data = bytearray(valid_remedy_requested())
    data[HEADER_SIZE + 1] = 0xFF
    with pytest.raises(DecodeError, match="truncated or corrupt RemedyRequested body.*UnicodeDecodeError"):
        schemas.decode(bytes(data))


def test_decode_rejects_trailing_bytes() -> None:
    with pytest.raises(DecodeError, match="3 trailing bytes after the RemedyRequested body"):
        schemas.decode(valid_remedy_requested() + b"\x00\x00\x00")


def test_decode_rejects_what_is_not_bytes() -> None:
    with pytest.raises(DecodeError, match="expected bytes, got NoneType"):
        schemas.decode(None)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=80))
def test_decode_of_any_body_returns_or_raises_decode_error(body: bytes) -> None:
    header = schemas.default_schema_set().current_record("RemedyDecided").header
    try:
        record_name, _ = schemas.decode(header + body)
    except DecodeError:
        return
    assert record_name == "RemedyDecided"


# --- Encode errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record_name, datum, message",
    [
        ("RemedyGranted", remedy_requested(), "unknown record 'RemedyGranted'"),
        ("RemedyRequested", remedy_requested(amount_cents=12.99), "RemedyRequested: remedy_ledger.v1.RemedyRequested.amount_cents is 12.99 \\(float\\), expected long"),
        ("RemedyRequested", remedy_requested(amount_cents=True), r"RemedyRequested: .*amount_cents is True \(bool\), expected long"),
        ("RemedyRequested", remedy_requested(amount_cents=2**63), r"RemedyRequested: .*amount_cents is 9223372036854775808 \(int\), expected long"),
        ("RemedyRequested", remedy_requested(kind="VOUCHER"), r"RemedyRequested: .*kind is 'VOUCHER' \(str\), expected one of \['CREDIT', "),
        ("RemedyRequested", {k: v for k, v in remedy_requested().items() if k != "reason"}, r"RemedyRequested: remedy_ledger.v1.RemedyRequested.reason is None \(NoneType\), expected string"),
        ("RemedyRequested", remedy_requested(reasn="typo"), r"RemedyRequested: record contains more fields than the schema specifies: reasn"),
        ("RemedyRequested", remedy_requested(requested_at=dt.datetime(2024, 6, 10)), "RemedyRequested: requested_at is a naive datetime"),
        ("RemedyRequested", remedy_requested(requested_at=TIMESTAMP_MS_MAX + 1), "RemedyRequested: requested_at=253402300800000 ms is outside the decodable range"),
        ("RemedyRequested", remedy_requested(reason="\ud800"), "RemedyRequested: 'utf-8' codec can't encode"),
        ("RemedyDecided", remedy_decided(reason_codes="CAPPED"), r"RemedyDecided: .*reason_codes is 'CAPPED' \(str\), expected array of string"),
        ("RemedyDecided", remedy_decided(inputs={"cap": 1.5}), r"RemedyDecided: remedy_ledger.v1.RemedyDecided.inputs is 1.5 \(float\), expected long"),
        ("OrderPlaced", order_placed(items=[{"sku": "A", "quantity": 1.0, "unit_price_cents": 1}]), r"OrderPlaced: .*OrderItem.quantity is 1.0 \(float\), expected int"),
        ("OrderPlaced", order_placed(digital="yes"), r"OrderPlaced: .*digital is 'yes' \(str\), expected boolean"),
    ],
)
def test_encode_names_the_record_and_the_wrong_field(record_name: str, datum: dict[str, Any], message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        schemas.encode(record_name, datum)


# --- Released schemas are never edited ----------------------------------------------------


def test_released_files_have_their_released_bytes() -> None:
    released = release.released_hashes(release.SCHEMAS_DIRECTORY)
    assert released, "released.json is missing or empty"
    for relative, expected in released.items():
        assert release.sha256_hex(release.SCHEMAS_DIRECTORY / relative) == expected, (
            f"{relative} changed after release: released schemas are never edited; "
            "add a new revision directory instead"
        )


def test_every_revision_file_is_released() -> None:
    assert release.unreleased_files(release.SCHEMAS_DIRECTORY) == [], (
        "run `python -m schemas.release` to release a new revision deliberately"
    )


def copy_schemas_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    shutil.copytree(SCHEMA_ROOT_DEFAULT, directory / "avro")
    shutil.copy(release.SCHEMAS_DIRECTORY / "released.json", directory / "released.json")
    return directory


def test_release_guard_catches_an_edited_released_file(tmp_path: Path) -> None:
    directory = copy_schemas_directory(tmp_path)
    path = directory / "avro" / "r1" / "RemedyKind.avsc"
    path.write_text(path.read_text().replace('"GIFT_WRAP",', '"GIFT_WRAP", "VOUCHER",'))
    assert release.release_problems(directory) == [
        "avro/r1/RemedyKind.avsc: changed since release; released schemas are never edited"
    ]
    assert release.main(["--schemas-dir", str(directory)]) == 1


def test_release_adds_a_new_revision_without_rewriting_released_entries(tmp_path: Path) -> None:
    directory = copy_schemas_directory(tmp_path)
    before = release.released_hashes(directory)
    write_schema(directory / "avro", 2, requested_with_channel())
    assert release.unreleased_files(directory) == ["avro/r2/RemedyRequested.avsc"]
    assert release.main(["--schemas-dir", str(directory), "--check"]) == 1
    assert release.main(["--schemas-dir", str(directory)]) == 0
    after = release.released_hashes(directory)
    assert {key: after[key] for key in before} == before
    assert set(after) - set(before) == {"avro/r2/RemedyRequested.avsc"}
    assert release.unreleased_files(directory) == []


def test_release_refuses_an_incompatible_revision(tmp_path: Path) -> None:
    directory = copy_schemas_directory(tmp_path)
    write_schema(directory / "avro", 2, requested_with_channel(default=False))
    assert release.main(["--schemas-dir", str(directory)]) == 1
    assert "avro/r2/RemedyRequested.avsc" not in release.released_hashes(directory)


# --- FULL_TRANSITIVE compatibility --------------------------------------------------------


@pytest.mark.parametrize("record_name", sorted(FINGERPRINTS_R1))
def test_every_revision_of_every_record_reads_every_other(record_name: str) -> None:
    assert check_full_transitive(record_name) == []


def requested_with_channel(default: bool = True) -> dict[str, Any]:
    """A synthetic r2 of RemedyRequested with one added field."""
    schema = released_schema("RemedyRequested")
    field: dict[str, Any] = {"name": "channel", "type": "string", "doc": "Where the request came from."}
    if default:
        field["default"] = "unknown"
    schema["fields"].append(field)
    return schema


def record(fields: list[dict[str, Any]], name: str = "Thing", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "test.v1", "fields": fields, **extra}


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Colour", "namespace": "test.v1", "symbols": symbols, **extra}


OLD = record([{"name": "id", "type": "string"}])
WITH_DEFAULT = record([{"name": "id", "type": "string"}, {"name": "count", "type": "int", "default": 0}])
WITHOUT_DEFAULT = record([{"name": "id", "type": "string"}, {"name": "count", "type": "int"}])


def test_checker_rejects_a_field_added_without_default() -> None:
    assert can_read(WITHOUT_DEFAULT, OLD) == [
        "test.v1.Thing.count: field is missing in the writer and has no default in the reader"
    ]
    assert can_read(OLD, WITHOUT_DEFAULT) == []  # the other direction alone is fine


def test_checker_accepts_a_field_added_with_default_both_ways() -> None:
    assert can_read(WITH_DEFAULT, OLD) == []
    assert can_read(OLD, WITH_DEFAULT) == []


def test_checker_rejects_an_enum_symbol_removed_without_reader_default() -> None:
    problems = can_read(enum(["RED", "GREEN"]), enum(["RED", "GREEN", "BLUE"]))
    assert problems == ["test.v1.Colour: writer symbols ['BLUE'] are not in reader enum test.v1.Colour, which has no default"]


def test_checker_accepts_a_new_enum_symbol_when_the_reader_has_a_default() -> None:
    reader = enum(["RED", "UNKNOWN"], default="UNKNOWN")
    assert can_read(reader, enum(["RED", "BLUE", "UNKNOWN"], default="UNKNOWN")) == []


def test_checker_rejects_a_type_change_string_to_int() -> None:
    as_string = record([{"name": "id", "type": "string"}])
    as_int = record([{"name": "id", "type": "int"}])
    assert can_read(as_int, as_string) == ["test.v1.Thing.id: writer type string cannot be read as int"]
    assert can_read(as_string, as_int) == ["test.v1.Thing.id: writer type int cannot be read as string"]


def test_checker_follows_the_numeric_promotions_one_way_only() -> None:
    as_int = record([{"name": "n", "type": "int"}])
    as_long = record([{"name": "n", "type": "long"}])
    as_double = record([{"name": "n", "type": "double"}])
    assert can_read(as_long, as_int) == []
    assert can_read(as_double, as_long) == []
    assert can_read(as_int, as_long) == ["test.v1.Thing.n: writer type long cannot be read as int"]
    assert can_read("bytes", "string") == [] and can_read("string", "bytes") == []


def test_checker_requires_every_writer_union_branch_to_be_readable() -> None:
    optional = record([{"name": "note", "type": ["null", "string"], "default": None}])
    required = record([{"name": "note", "type": "string"}])
    assert can_read(optional, required) == []
    assert can_read(required, optional) == [
        "test.v1.Thing.note<null>: writer type null cannot be read as string"
    ]
    assert can_read(["null", "long"], "int") == []
    assert can_read(["null", "string"], "int") == [
        "int: writer type int matches no branch of the reader union [null, string]"
    ]


def test_checker_matches_records_by_name_or_reader_alias() -> None:
    renamed = record([{"name": "id", "type": "string"}], name="Item")
    assert can_read(renamed, OLD) == [
        "test.v1.Thing: writer record test.v1.Thing does not match reader record test.v1.Item "
        "(names differ and no reader alias matches)"
    ]
    aliased = record([{"name": "id", "type": "string"}], name="Item", aliases=["Thing"])
    assert can_read(aliased, OLD) == []


def test_checker_matches_fields_by_reader_alias() -> None:
    renamed_field = record([{"name": "identifier", "type": "string", "aliases": ["id"]}])
    assert can_read(renamed_field, OLD) == []


def test_checker_recurses_into_arrays_maps_and_nested_records() -> None:
    def wrapper(count_type: Any) -> dict[str, Any]:
        inner = record([{"name": "count", "type": count_type}], name="Inner")
        return record([
            {"name": "items", "type": {"type": "array", "items": inner}},
            {"name": "totals", "type": {"type": "map", "values": "Inner"}},
        ])

    assert can_read(wrapper("long"), wrapper("int")) == []
    assert can_read(wrapper("int"), wrapper("string")) == [
        "test.v1.Thing.items[].count: writer type string cannot be read as int",
        "test.v1.Thing.totals{}.count: writer type string cannot be read as int",
    ]


def test_checker_rejects_fixed_size_and_logical_type_changes() -> None:
    fixed16 = {"type": "fixed", "name": "Hash", "size": 16}
    fixed32 = {"type": "fixed", "name": "Hash", "size": 32}
    assert can_read(fixed32, fixed16) == ["Hash: fixed size changed from 16 to 32"]
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    assert can_read(micros, millis) == ["long: logical type changed from timestamp-millis to timestamp-micros"]


def test_checker_terminates_on_recursive_records() -> None:
    linked = {"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ]}
    linked_long = json.loads(json.dumps(linked).replace('"int"', '"long"'))
    assert can_read(linked_long, linked) == []
    assert can_read(linked, linked_long) == ["Node.value: writer type long cannot be read as int"]


def test_full_transitive_check_catches_a_bad_revision(tmp_path: Path) -> None:
    root = copy_schema_root(tmp_path)
    kind = released_schema("RemedyKind")
    del kind["default"]
    kind["symbols"].remove("GIFT_WRAP")
    write_schema(root, 2, kind)
    # r2 can read r1 data only if it knows GIFT_WRAP or has a default; it has neither, so the
    # set refuses to load rather than decode r1 data wrongly.
    with pytest.raises(DecodeError, match=r"RemedyDecided r2 cannot read RemedyDecided r1: .*\['GIFT_WRAP'\]"):
        SchemaSet.load(root)
    pinned = SchemaSet.load(root, current_revision=1)
    problems = check_full_transitive("RemedyRequested", pinned)
    assert problems == [
        "r2 reading r1: remedy_ledger.v1.RemedyRequested.kind: writer symbols ['GIFT_WRAP'] "
        "are not in reader enum remedy_ledger.v1.RemedyKind, which has no default"
    ]


# --- Resolution between revisions through the codec ---------------------------------------


def test_old_reader_reads_new_data_and_new_reader_reads_old_data(tmp_path: Path) -> None:
    root = copy_schema_root(tmp_path)
    write_schema(root, 2, requested_with_channel())
    new = SchemaSet.load(root)
    old = SchemaSet.load(root, current_revision=1)  # knows r2 as a writer, reads as r1
    assert new.current_revision == 2 and old.current_revision == 1

    written_by_new = new.encode("RemedyRequested", remedy_requested(channel="chat"))
    r1_fields = set(remedy_requested())  # this root has only r1 and the r2 written here
    expected = {k: v for k, v in as_decoded("RemedyRequested", remedy_requested()).items() if k in r1_fields}
    assert old.decode(written_by_new) == ("RemedyRequested", expected)

    written_by_old = old.encode("RemedyRequested", remedy_requested())
    assert written_by_old[2:HEADER_SIZE].hex() == FINGERPRINTS_R1["RemedyRequested"]
    name, datum = new.decode(written_by_old)
    assert name == "RemedyRequested" and datum["channel"] == "unknown"
    assert check_full_transitive("RemedyRequested", new) == []


def test_a_reader_that_never_saw_a_revision_cannot_decode_it(tmp_path: Path) -> None:
    # Single-object encoding carries a fingerprint, not a schema: readers must be deployed with
    # a new revision's files (pinned to the old current revision) before any writer uses it.
    root = copy_schema_root(tmp_path)
    write_schema(root, 2, requested_with_channel())
    data = SchemaSet.load(root).encode("RemedyRequested", remedy_requested(channel="chat"))
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        schemas.decode(data)


def test_old_reader_gets_unknown_for_a_new_enum_symbol(tmp_path: Path) -> None:
    root = copy_schema_root(tmp_path)
    kind = released_schema("IncidentKind")
    kind["symbols"].insert(-1, "PRICE_ERROR")
    write_schema(root, 2, kind)
    new = SchemaSet.load(root)
    old = SchemaSet.load(root, current_revision=1)
    data = new.encode("IncidentReported", incident_reported(kind="PRICE_ERROR"))
    assert old.decode(data)[1]["kind"] == "UNKNOWN"
    assert new.decode(data)[1]["kind"] == "PRICE_ERROR"
    with pytest.raises(EncodeError, match="kind is 'PRICE_ERROR'"):
        old.encode("IncidentReported", incident_reported(kind="PRICE_ERROR"))


def test_a_record_added_in_a_later_revision_is_reported_as_newer(tmp_path: Path) -> None:
    root = copy_schema_root(tmp_path)
    write_schema(root, 2, record([{"name": "id", "type": "string", "doc": "Id."}], name="RemedyExpired", namespace="remedy_ledger.v1", doc="New."))
    data = SchemaSet.load(root).encode("RemedyExpired", {"id": "x"})
    with pytest.raises(DecodeError, match="RemedyExpired r2 is newer than this reader's current revision"):
        SchemaSet.load(root, current_revision=1).decode(data)


def test_loader_rejects_a_file_named_after_another_type(tmp_path: Path) -> None:
    root = copy_schema_root(tmp_path)
    (root / "r1" / "Wrong.avsc").write_text(json.dumps(released_schema("RemedyKind")))
    with pytest.raises(DecodeError, match="the file name must be the type name"):
        SchemaSet.load(root)


# --- Property: any valid RemedyRequested survives a round trip ----------------------------

LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    datum=st.fixed_dictionaries({
        "event_id": TEXT,
        "request_id": TEXT,
        "customer_id": TEXT,
        "order_id": st.none() | TEXT,
        "incident_id": st.none() | TEXT,
        "kind": st.sampled_from(["CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP", "UNKNOWN"]),
        "amount_cents": LONG,
        "currency": TEXT,
        "requested_by": TEXT,
        "requested_at": st.integers(min_value=TIMESTAMP_MS_MIN, max_value=TIMESTAMP_MS_MAX),
        "reason": TEXT,
    })
)
def test_remedy_requested_round_trips_for_any_values(datum: dict[str, Any]) -> None:
    assert schemas.decode(schemas.encode("RemedyRequested", datum)) == (
        "RemedyRequested",
        as_decoded("RemedyRequested", datum),
    )
