"""Validation of the publish format: one JSON event per line, checked against the Avro contract.

Pure module. The field list and types come from the Avro schemas (passed in as parsed JSON), so
the publish format cannot drift from the wire contract; the rules Avro cannot express (no
negative money, positive quantities, ISO 4217 currencies, timestamps with a zone) are added here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

# Event types upstream systems may publish; decisions and dead letters are ours to write.
PUBLISHABLE_TYPES = ("OrderPlaced", "OrderDelivered", "IncidentReported", "RemedyRequested")

# Strings longer than this are almost certainly a mistake (a whole document in an id field).
STRING_CHARS_MAX = 2_000
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# Fields that must be strictly positive, beyond the "no negative money" rule for every *_cents.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
POSITIVE_FIELDS = frozenset({"amount_cents", "quantity"})


class LineProblems(Exception):
    """The problems found on one input line, each naming the field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_event_line(text: str, schemas: dict[str, dict]) -> tuple[str, dict]:
    """Parse one JSON line into (record name, datum with timestamps in ms) or raise LineProblems.

    `schemas` maps short record names to their Avro schema JSON (named types by short name).
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise LineProblems([f"not valid JSON: {error.msg} at column {error.colno}"]) from None
    if not isinstance(raw, dict):
        raise LineProblems([f"expected a JSON object, got {type(raw).__name__}"])
    event_type = raw.get("type")
    if event_type is None:
        raise LineProblems(["field 'type': missing; one of " + ", ".join(PUBLISHABLE_TYPES)])
    if event_type not in PUBLISHABLE_TYPES:
        raise LineProblems(
            [f"field 'type': unknown event type {event_type!r}; one of " + ", ".join(PUBLISHABLE_TYPES)]
        )
    fields = {k: v for k, v in raw.items() if k != "type"}
    problems: list[str] = []
    datum = _record(schemas[event_type], fields, "", schemas, problems)
    if problems:
        raise LineProblems(problems)
    return event_type, datum


def timestamps_to_ms(record_name: str, datum: dict, schemas: dict[str, dict]) -> dict:
    """Return a copy of a decoded datum with its top-level timestamp fields as integer ms."""
    out = dict(datum)
    for field in schemas[record_name]["fields"]:
        value = out.get(field["name"])
        if isinstance(value, datetime):
            out[field["name"]] = _datetime_ms(value)
    return out


def _record(schema: dict, raw: dict, prefix: str, schemas: dict, problems: list[str]) -> dict:
    out = {}
    known = {f["name"] for f in schema["fields"]}
    for name in sorted(set(raw) - known):
        problems.append(f"field '{prefix}{name}': unknown field for {schema['name']}")
    for field in schema["fields"]:
        name = field["name"]
        where = prefix + name
        if name not in raw:
            if "default" in field:
                out[name] = field["default"]
            else:
                problems.append(f"field '{where}': missing")
            continue
        out[name] = _value(field["type"], field, raw[name], where, schemas, problems)
    return out


def _value(avro_type: Any, field: dict, value: Any, where: str, schemas: dict, problems: list[str]) -> Any:
    name = field["name"]
    if isinstance(avro_type, list):
        if value is None:
            if "null" in avro_type:
                return None
            problems.append(f"field '{where}': must not be null")
            return None
        branches = [t for t in avro_type if t != "null"]
        return _value(branches[0], field, value, where, schemas, problems)
    if value is None:
        problems.append(f"field '{where}': must not be null")
        return None
    if isinstance(avro_type, str) and avro_type.split(".")[-1] in schemas:
        avro_type = schemas[avro_type.split(".")[-1]]
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        kind = avro_type["type"]
        if logical == "timestamp-millis":
            return _timestamp(value, where, problems)
        if kind == "enum":
            allowed = [s for s in avro_type["symbols"] if s != "UNKNOWN"]
            if value not in allowed:
                problems.append(f"field '{where}': {value!r} is not one of {', '.join(allowed)}")
            return value
        if kind == "array":
            if not isinstance(value, list):
                problems.append(f"field '{where}': must be a list, got {type(value).__name__}")
                return []
            return [
                _value(avro_type["items"], field, item, f"{where}[{i}]", schemas, problems)
                for i, item in enumerate(value)
            ]
        if kind == "record":
            if not isinstance(value, dict):
                problems.append(f"field '{where}': must be an object, got {type(value).__name__}")
                return {}
            return _record(avro_type, value, where + ".", schemas, problems)
        if kind == "map":
            if not isinstance(value, dict):
                problems.append(f"field '{where}': must be an object, got {type(value).__name__}")
                return {}
            return {k: _value(avro_type["values"], field, v, f"{where}.{k}", schemas, problems) for k, v in value.items()}
        return _value(kind, field, value, where, schemas, problems)
    if avro_type in ("int", "long"):
        low, high = (INT_MIN, INT_MAX) if avro_type == "int" else (LONG_MIN, LONG_MAX)
        if not isinstance(value, int) or isinstance(value, bool):
            unit = " number of cents" if name.endswith("_cents") else ""
            problems.append(f"field '{where}': must be an integer{unit}, got {json.dumps(value)}")
            return value
        if not low <= value <= high:
            problems.append(f"field '{where}': {value} is out of range for an Avro {avro_type}")
        elif name in POSITIVE_FIELDS and value <= 0:
            problems.append(f"field '{where}': must be positive, got {value}")
        elif name.endswith("_cents") and value < 0:
            problems.append(f"field '{where}': must not be negative, got {value}")
        return value
    if avro_type == "boolean":
        if not isinstance(value, bool):
            problems.append(f"field '{where}': must be true or false, got {json.dumps(value)}")
        return value
    if avro_type == "string":
        if not isinstance(value, str):
            problems.append(f"field '{where}': must be a string, got {json.dumps(value)}")
            return value
        if len(value) > STRING_CHARS_MAX:
            problems.append(f"field '{where}': longer than {STRING_CHARS_MAX} characters")
        elif name.endswith("_id") and not value.strip():
            problems.append(f"field '{where}': must not be empty")
        elif name == "currency" and not CURRENCY_PATTERN.match(value):
            problems.append(f"field '{where}': must be a 3-letter ISO 4217 code like USD, got {value!r}")
        return value
    problems.append(f"field '{where}': unsupported schema type {avro_type!r}")
    return value


def _timestamp(value: Any, where: str, problems: list[str]) -> int | None:
    if not isinstance(value, str):
        problems.append(f"field '{where}': must be an ISO-8601 timestamp string, got {json.dumps(value)}")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"field '{where}': not an ISO-8601 timestamp: {value!r}")
        return None
    if parsed.tzinfo is None:
        problems.append(f"field '{where}': timestamp {value!r} has no zone; add Z or an offset like +01:00")
        return None
    return _datetime_ms(parsed)


def _datetime_ms(value: datetime) -> int:
    # Integer arithmetic on the timedelta avoids float rounding of the epoch seconds.
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# Enum-typed fields of the input events; UNKNOWN is what a newer producer's symbol decodes to.
ENUM_FIELDS = ("kind", "source", "verdict")


def decoded_event_problems(record_name: str, datum: dict) -> list[str]:
    """Preconditions a decoded input event must meet beyond its Avro types; empty when it is sound."""
    problems = []
    for name, value in datum.items():
        if name.endswith("_cents") and isinstance(value, int) and value < 0:
            problems.append(f"field '{name}': must not be negative, got {value}")
        elif name in POSITIVE_FIELDS and isinstance(value, int) and value <= 0:
            problems.append(f"field '{name}': must be positive, got {value}")
        elif name.endswith("_id") and isinstance(value, str) and not value.strip():
            problems.append(f"field '{name}': must not be empty")
        elif name == "currency" and not CURRENCY_PATTERN.match(value):
            problems.append(f"field 'currency': must be a 3-letter ISO 4217 code, got {value!r}")
        elif name in ENUM_FIELDS and value == "UNKNOWN":
            problems.append(f"field '{name}': a symbol this version does not know (read as UNKNOWN)")
    for index, item in enumerate(datum.get("items") or []):
        if item["quantity"] <= 0:
            problems.append(f"field 'items[{index}].quantity': must be positive, got {item['quantity']}")
        if item["unit_price_cents"] < 0:
            problems.append(f"field 'items[{index}].unit_price_cents': must not be negative")
    return problems
