"""Validation of the publish format: one JSON event per line, checked against the Avro contract.

Pure module. The field list and types come from the Avro schemas (passed in as parsed JSON), so
the publish format cannot drift from the wire contract; the rules Avro cannot express (no
negative money, positive quantities, ISO 4217 currencies, timestamps with a zone) are added here,
and so are the sanity bounds every door applies (docs/bounds.md): timestamps between a floor and a
span ahead of a reference clock the caller passes in, printable ids of bounded length, money
within a maximum per field.
"""

from __future__ import annotations

import functools

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

# Event types upstream systems may publish; decisions and dead letters are ours to write.
PUBLISHABLE_TYPES = ("OrderPlaced", "OrderDelivered", "IncidentReported", "RemedyRequested")

# Strings longer than this are almost certainly a mistake (a whole document in a text field).
STRING_CHARS_MAX = 2_000
# Ids longer than this are not ids: 200 characters hold a UUID, a URN or a composite key with
# room to spare, and keep every id a CLI prints on one line and every state key small.
ID_CHARS_MAX = 200
# String fields that hold ids without ending in `_id`; they get the id rules too.
ID_FIELDS_EXTRA = frozenset({"sku", "requested_by", "reviewed_by"})
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Money per field of one record: 10^11 cents ($1,000,000,000.00). No order, item or remedy comes
# near it, and sums over every decision a state remembers (at most 2,000) stay under 10^15, far
# inside an Avro long (9.2 x 10^18).
MONEY_CENTS_MAX = 10**11
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# Fields that must be strictly positive, beyond the "no negative money" rule for every *_cents.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
POSITIVE_FIELDS = frozenset({"amount_cents", "quantity"})
# Characters free text (a reason, a description) may not hold: C0 controls except tab, line feed
# and carriage return, DEL, C1 controls (ESC sequences drive terminals) and lone surrogates
# (not encodable as UTF-8, so not as Avro).
_FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

DAY_MS = 24 * 60 * 60 * 1000
# Event time may run ahead of the reference clock (the publisher's, or the Kafka record
# timestamp at the worker) by this much: clocks of producers drift and time zones get mistyped,
# but an event a year ahead would move its customer's clock a year and lock them out.
FUTURE_MS_MAX_DEFAULT = DAY_MS
# Bounds of that span: under a minute ordinary clock skew rejects good events; over a week one
# mistyped month slips through and holds a customer's clock that far ahead.
FUTURE_MS_MAX_MIN, FUTURE_MS_MAX_MAX = 60_000, 7 * DAY_MS
# No event is dated before 2000-01-01T00:00:00Z: nothing this service decides is that old, and
# 0001-01-01 is what a zeroed date field looks like.
TIMESTAMP_FLOOR_MS_DEFAULT = 946_684_800_000
# Bounds of the floor: not before the Unix epoch (negative ms), not after 2100-01-01.
TIMESTAMP_FLOOR_MS_MIN, TIMESTAMP_FLOOR_MS_MAX = 0, 4_102_444_800_000
# The event-time fields of every record a worker reads from an input topic (a unit test checks
# this against the Avro schemas' timestamp-millis fields).
TIMESTAMP_FIELDS = {
    "OrderPlaced": ("placed_at",),
    "OrderDelivered": ("delivered_at",),
    "IncidentReported": ("reported_at",),
    "RemedyRequested": ("requested_at",),
    "RemedyReviewed": ("reviewed_at",),
    "CustomerErased": ("erased_at",),
    "LimitCheck": ("at",),
}
# Reason code of an id repeated with different content (an in-file duplicate at publish, a
# dead letter at the worker).
CONFLICTING_DUPLICATE = "CONFLICTING_DUPLICATE"
# The ids that name an event or a request once and for all: a repeat must carry the same content.
IDENTITY_FIELDS = {"event_id": None, "request_id": "RemedyRequested"}


@dataclass(frozen=True)
class TimeBounds:
    """How event times are bounded: at most `future_ms_max` ahead of a reference clock, never before `floor_ms`."""

    future_ms_max: int = FUTURE_MS_MAX_DEFAULT
    floor_ms: int = TIMESTAMP_FLOOR_MS_DEFAULT

    def problems(self) -> list[str]:
        """Every bound these settings break; empty when they are usable."""
        found = []
        for name, value, low, high in (
            ("future_ms_max", self.future_ms_max, FUTURE_MS_MAX_MIN, FUTURE_MS_MAX_MAX),
            ("floor_ms", self.floor_ms, TIMESTAMP_FLOOR_MS_MIN, TIMESTAMP_FLOOR_MS_MAX),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                found.append(f"{name}: must be an integer number of ms, got {value!r}")
            elif not low <= value <= high:
                found.append(f"{name}: must be between {low} and {high} ms, got {value}")
        return found


class LineProblems(Exception):
    """The problems found on one input line, each naming the field."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_event_line(text: str, schemas: dict[str, dict], now_ms: int | None = None,
                     bounds: TimeBounds = TimeBounds()) -> tuple[str, dict]:
    """Parse one JSON line into (record name, datum with timestamps in ms) or raise LineProblems.

    `schemas` maps short record names to their Avro schema JSON (named types by short name).
    With `now_ms` (the publisher's clock, passed in by the shell) timestamps are held to `bounds`.
    """
    try:
        raw = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise LineProblems([f"not valid JSON: {error.msg} at column {error.colno}"]) from None
    except ValueError as error:  # an integer of more digits than Python converts (4,300)
        raise LineProblems([f"not valid JSON: {error}"]) from None
    except RecursionError:
        raise LineProblems(["not valid JSON: nested too deeply"]) from None
    if not isinstance(raw, dict):
        raise LineProblems([f"expected a JSON object, got {type(raw).__name__}"])
    event_type = raw.get("type")
    if event_type is None:
        raise LineProblems(["field 'type': missing; one of " + ", ".join(PUBLISHABLE_TYPES)])
    if event_type not in PUBLISHABLE_TYPES:
        raise LineProblems(
            [f"field 'type': unknown event type {_shown_value(event_type)}; one of " + ", ".join(PUBLISHABLE_TYPES)]
        )
    fields = {k: v for k, v in raw.items() if k != "type"}
    problems: list[str] = []
    datum = _record(schemas[event_type], fields, "", schemas, problems)
    problems += empty_items_problems(event_type, datum)
    if now_ms is not None:
        problems += record_time_problems(event_type, datum, now_ms, bounds.future_ms_max, bounds.floor_ms,
                                         reference_name="the publisher's clock")
    if problems:
        raise LineProblems(problems)
    return event_type, datum


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    # json's object_pairs_hook: the default keeps the last of repeated keys without a word.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise LineProblems([f"field '{_shown(key)}': appears more than once in one object; "
                                    "JSON keys must be unique"])
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON does not have.
    raise LineProblems([f"not valid JSON: {name} is not a JSON value"])


def _shown(text: str) -> str:
    """A string as it may be printed: escaped when it holds anything unprintable (ESC, NUL, a lone surrogate)."""
    return text if text.isprintable() else repr(text)[1:-1]


def _shown_value(value: Any) -> str:
    # repr escapes what is unprintable; a huge value is cut so one line stays one line.
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def record_time_problems(record_name: str, datum_ms: dict, reference_ms: int | None, future_ms_max: int,
                         floor_ms: int, reference_name: str = "the record's Kafka timestamp") -> list[str]:
    """Problems of a record's timestamps dated before `floor_ms` or over `future_ms_max` after `reference_ms`."""
    # `datum_ms` holds timestamps as integer ms (or aware datetimes). The worker passes the Kafka
    # record timestamp as `reference_ms`; without one (None or negative) only the floor applies.
    problems = []
    for name in TIMESTAMP_FIELDS.get(record_name, ()):
        value = datum_ms.get(name)
        if isinstance(value, datetime):
            value = _datetime_ms(value)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if value < floor_ms:
            problems.append(f"field '{name}': {_iso(value)} is before the earliest accepted time {_iso(floor_ms)}")
        elif reference_ms is not None and reference_ms >= 0 and value > reference_ms + future_ms_max:
            problems.append(
                f"field '{name}': {_iso(value)} is more than {_span(future_ms_max)} after {reference_name} "
                f"({_iso(reference_ms)})"
            )
    return problems


def _iso(ms: int) -> str:
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:  # beyond what datetime can show (year 1 to 9999): show the number
        return f"{ms} ms since the epoch"


def _span(ms: int) -> str:
    for unit_ms, unit in ((DAY_MS, "day"), (3_600_000, "hour"), (60_000, "minute"), (1_000, "second")):
        if ms % unit_ms == 0:
            count = ms // unit_ms
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{ms} ms"


def identities(record_name: str, datum: dict) -> list[tuple[str, str]]:
    """The (field, id) pairs that name this event or request once and for all."""
    return [(name, datum[name]) for name, only in IDENTITY_FIELDS.items()
            if (only is None or only == record_name) and isinstance(datum.get(name), str)]


def identity_content(field_name: str, record_name: str, datum: dict) -> tuple:
    """What a repeat of an id must equal to be a harmless repeat rather than a conflict."""
    # An event id names the whole event; a request id names the request, whatever event carried
    # it (a retry under a new event id is the same request).
    if field_name == "request_id":
        return record_name, sorted((k, repr(v)) for k, v in datum.items() if k != "event_id")
    return record_name, sorted((k, repr(v)) for k, v in datum.items())


def conflict_problem(field_name: str, value: str, first_line: int) -> str:
    """The message for an id repeated with different content, naming where it first appeared."""
    return (f"field '{field_name}': {CONFLICTING_DUPLICATE}: {_shown_value(value)} first appears on line "
            f"{first_line} with different content; a repeat must be identical")


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
        problems.append(f"field '{prefix}{_shown(name)}': unknown field for {schema['name']}")
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
            if not isinstance(value, str) or value not in allowed:
                problems.append(f"field '{where}': {_shown_value(value)} is not one of {', '.join(allowed)}")
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
            return {k: _value(avro_type["values"], field, v, f"{where}.{_shown(k)}", schemas, problems)
                    for k, v in value.items()}
        return _value(kind, field, value, where, schemas, problems)
    if avro_type in ("int", "long"):
        low, high = (INT_MIN, INT_MAX) if avro_type == "int" else (LONG_MIN, LONG_MAX)
        if not isinstance(value, int) or isinstance(value, bool):
            unit = " number of cents" if name.endswith("_cents") else ""
            problems.append(f"field '{where}': must be an integer{unit}, got {_json_shown(value)}")
            return value
        if not low <= value <= high:
            problems.append(f"field '{where}': {value} is out of range for an Avro {avro_type}")
        elif name in POSITIVE_FIELDS and value <= 0:
            problems.append(f"field '{where}': must be positive, got {value}")
        elif name.endswith("_cents") and value < 0:
            problems.append(f"field '{where}': must not be negative, got {value}")
        elif name.endswith("_cents") and value > MONEY_CENTS_MAX:
            problems.append(f"field '{where}': {value} cents is above the maximum of {MONEY_CENTS_MAX} per field")
        return value
    if avro_type == "boolean":
        if not isinstance(value, bool):
            problems.append(f"field '{where}': must be true or false, got {_json_shown(value)}")
        return value
    if avro_type == "string":
        if not isinstance(value, str):
            problems.append(f"field '{where}': must be a string, got {_json_shown(value)}")
            return value
        if name == "currency":
            if not CURRENCY_PATTERN.match(value):
                problems.append(f"field '{where}': must be a 3-letter ISO 4217 code like USD, got {_shown_value(value)}")
            return value
        problem = id_problem(value) if is_id_field(name) else text_problem(value)
        if problem:
            problems.append(f"field '{where}': {problem}")
        return value
    problems.append(f"field '{where}': unsupported schema type {avro_type!r}")
    return value


def _json_shown(value: Any) -> str:
    # JSON escapes every non-ASCII character, so what is printed is plain ASCII.
    shown = json.dumps(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def is_id_field(name: str) -> bool:
    """True for string fields that hold an id (the id rules apply to them)."""
    return name.endswith("_id") or name in ID_FIELDS_EXTRA


def id_problem(value: str) -> str | None:
    """Why a string cannot be an id (empty, too long, or holding an unprintable character), or None."""
    if not value.strip():
        return "must not be empty"
    if len(value) > ID_CHARS_MAX:
        return f"an id of {len(value)} characters; at most {ID_CHARS_MAX}"
    if not value.isprintable():
        index, char = next((i, c) for i, c in enumerate(value) if not c.isprintable())
        return f"ids must be printable; U+{ord(char):04X} at position {index} is not"
    return None


def text_problem(value: str) -> str | None:
    """Why a string cannot be free text (too long, or holding a control character or lone surrogate), or None."""
    if len(value) > STRING_CHARS_MAX:
        return f"longer than {STRING_CHARS_MAX} characters"
    found = _FORBIDDEN_TEXT.search(value)
    if found:
        char = found.group()
        what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        return f"U+{ord(char):04X} at position {found.start()} is {what}; text may hold tab and line breaks, no other controls"
    return None


def _timestamp(value: Any, where: str, problems: list[str]) -> int | None:
    if not isinstance(value, str):
        problems.append(f"field '{where}': must be an ISO-8601 timestamp string, got {_json_shown(value)}")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"field '{where}': not an ISO-8601 timestamp: {_shown_value(value)}")
        return None
    if parsed.tzinfo is None:
        problems.append(f"field '{where}': timestamp {_shown_value(value)} has no zone; add Z or an offset like +01:00")
        return None
    return _datetime_ms(parsed)


def _datetime_ms(value: datetime) -> int:
    # Integer arithmetic on the timedelta avoids float rounding of the epoch seconds.
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# Enum-typed fields of the input events; UNKNOWN is what a newer producer's symbol decodes to.
ENUM_FIELDS = ("kind", "source", "verdict", "shipping_speed")


# Records whose `items` may be null (the whole order) but, when given, name at least one line.
ITEMS_NULL_MEANS_WHOLE_ORDER = ("RemedyRequested", "OrderDelivered")


def empty_items_problems(record_name: str, datum: dict) -> list[str]:
    """An empty `items` list where null means the whole order: ambiguous, so refused."""
    if record_name in ITEMS_NULL_MEANS_WHOLE_ORDER and datum.get("items") == []:
        return ["field 'items': an empty list; name at least one order line, or null for the whole order"]
    return []


# Field names whose rules are kept (the schemas have a few dozen; an unknown name is only computed again).
FIELD_RULES_CACHED_MAX = 1024


@functools.lru_cache(maxsize=FIELD_RULES_CACHED_MAX)
def _field_rules(name: str) -> tuple[bool, bool, bool, bool, bool]:
    """Which of decoded_event_problems' rules a field name is under: (money, positive, id, currency,
    enum). Cached: every record of a type has the same few names, and this runs for each field of
    every record the worker and a backtest decode."""
    return (name.endswith("_cents"), name in POSITIVE_FIELDS, is_id_field(name), name == "currency",
            name in ENUM_FIELDS)


def decoded_event_problems(record_name: str, datum: dict) -> list[str]:
    """Preconditions a decoded input event must meet beyond its Avro types; empty when it is sound."""
    # The same id and money bounds as at publish, so a record from any producer meets them.
    problems = empty_items_problems(record_name, datum)
    for name, value in datum.items():
        money, positive, is_id, currency, enum = _field_rules(name)
        if money and isinstance(value, int) and value < 0:
            problems.append(f"field '{name}': must not be negative, got {value}")
        elif money and isinstance(value, int) and value > MONEY_CENTS_MAX:
            problems.append(f"field '{name}': {value} cents is above the maximum of {MONEY_CENTS_MAX} per field")
        elif positive and isinstance(value, int) and value <= 0:
            problems.append(f"field '{name}': must be positive, got {value}")
        elif is_id and isinstance(value, str) and id_problem(value):
            problems.append(f"field '{name}': {id_problem(value)}")
        elif currency and not CURRENCY_PATTERN.match(value):
            problems.append(f"field 'currency': must be a 3-letter ISO 4217 code, got {_shown_value(value)}")
        elif enum and value == "UNKNOWN":
            problems.append(f"field '{name}': a symbol this version does not know (read as UNKNOWN)")
        elif not is_id and isinstance(value, str) and text_problem(value):
            problems.append(f"field '{name}': {text_problem(value)}")  # free text: reason, description, note
    for index, item in enumerate(datum.get("items") or []):
        if item["quantity"] <= 0:
            problems.append(f"field 'items[{index}].quantity': must be positive, got {item['quantity']}")
        if item["unit_price_cents"] < 0:
            problems.append(f"field 'items[{index}].unit_price_cents': must not be negative")
        elif item["unit_price_cents"] > MONEY_CENTS_MAX:
            problems.append(f"field 'items[{index}].unit_price_cents': above the maximum of {MONEY_CENTS_MAX} per field")
        if id_problem(item["sku"]):
            problems.append(f"field 'items[{index}].sku': {id_problem(item['sku'])}")
    return problems
