"""Avro single-object codec over the revisioned schema files (private: use the `schemas` facade).

Layout of a schema root (by default `schemas/avro/`): one directory per revision, `r1`, `r2`, ...,
each holding one named type per `.avsc` file, the file name being the type's name. A revision
directory holds only the types that changed in it; the effective schema of revision N is, for
every type, its file from the highest revision not above N. The current (reader and writer)
revision is the highest one unless pinned with `current_revision`.

Every effective schema of every revision is turned into a self-contained schema (each named type
defined at its first use, as the Avro spec requires of a standalone schema), parsed once by
fastavro, and fingerprinted (CRC-64-AVRO of its Parsing Canonical Form). Decoding looks the
writer's fingerprint up among all of them and resolves to the current schema of the record.

Registry mode (`SchemaSet.use_registry`): encode frames the body in the Confluent wire format
instead (byte 0, the 4-byte big-endian schema id a schema registry gave the record's subject).
Decode always reads both framings: a registry id is resolved once, through the registry, to the
schema text, whose fingerprint is then looked up like a single object's; the result is cached
by id, so the registry is asked once per id and process, never per message.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import (
    SchemaParseException,
    UnknownType,
    fingerprint,
    to_parsing_canonical_form,
)
from fastavro.validation import ValidationError, validate

from schemas._compat import can_read
from streams.errors import DecodeError, EncodeError, InvariantViolation

# Avro single-object encoding: marker, then the 8-byte CRC-64-AVRO fingerprint, little-endian.
MAGIC = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE

# The Confluent wire format of a schema registry: byte 0, then the schema id as a 4-byte
# big-endian unsigned int (Confluent's ids are positive 32-bit ints), then the Avro body.
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_SIZE = len(CONFLUENT_MAGIC) + 4
CONFLUENT_SCHEMA_ID_MAX = 2**31 - 1
# Registry ids a reader remembers as unreadable (unknown to the registry, or no revision this
# reader knows). A poison record's id is then not asked again per message; past this many the
# memory is cleared, so forged ids cost at most this much memory and one request each.
UNREADABLE_SCHEMA_IDS_MAX = 10_000

SCHEMA_ROOT_DEFAULT = Path(__file__).resolve().parent / "avro"
SCHEMA_FILE_SUFFIX = ".avsc"

PRIMITIVE_TYPES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})

_REVISION_DIRECTORY = re.compile(r"r([1-9][0-9]*)")

# fastavro reads timestamp-millis into a datetime, which only spans years 1 to 9999. A value
# outside that range encodes fine but can never be decoded, so encode refuses it.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MILLISECOND = dt.timedelta(milliseconds=1)
TIMESTAMP_MS_MIN = (dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH) // _MILLISECOND
TIMESTAMP_MS_MAX = (
    dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.timezone.utc) - _EPOCH
) // _MILLISECOND

# What fastavro raises on a body that is truncated or not valid for the writer schema:
# EOFError (ran out of bytes), ValueError (bad UTF-8, negative length), IndexError (union
# branch or enum index out of range), OverflowError (varint or date out of range) and
# SchemaResolutionError (a value the reader cannot take).
_BODY_ERRORS = (EOFError, ValueError, IndexError, OverflowError, SchemaResolutionError)

# What fastavro's writer raises for a datum that the validator let through (missing or extra
# fields under strict mode, unencodable strings).
_WRITE_ERRORS = (ValueError, TypeError, OverflowError)


@dataclass(frozen=True, eq=False)
class RecordSchema:
    """One revision of one record: its self-contained schema, parsed form and fingerprint."""

    name: str
    full_name: str
    revision: int
    source: Mapping[str, Any]
    parsed: Mapping[str, Any]
    canonical_form: str
    fingerprint: bytes
    timestamp_fields: tuple[str, ...]

    @property
    def header(self) -> bytes:
        """The single-object header of data written with this schema."""
        return MAGIC + self.fingerprint

    @property
    def subject(self) -> str:
        """The schema registry subject of this record: its full name (RecordNameStrategy, schemas/README.md)."""
        return self.full_name

    def schema_text(self) -> str:
        """The self-contained schema as the JSON text registered in a schema registry."""
        return json.dumps(self.source, separators=(",", ":"))


class SchemaRegistryPort(Protocol):
    """What the codec needs of a schema registry; streams/runtime/schema_registry.py speaks HTTP for it."""

    url: str

    def schema_by_id(self, schema_id: int) -> str | None:
        """The Avro schema text registered under an id, or None if the registry has no such id.

        Raise TransientError when the registry cannot be reached (never DecodeError: the
        record is fine, the registry is not) and DecodeError when the id names no Avro schema.
        """

    def schema_id(self, subject: str, schema_text: str) -> int:
        """The id of a schema under a subject, registered (compatibility FULL_TRANSITIVE) if new."""


@dataclass(frozen=True, eq=False)
class _DecodePlan:
    """How to read one writer fingerprint: the record, writer schema and reader (None = same)."""

    name: str
    writer: Mapping[str, Any]
    reader: Mapping[str, Any] | None


class SchemaSet:
    """Every revision of the schemas under one root; encodes with and resolves to the current one."""

    def __init__(
        self,
        root: Path,
        revisions: tuple[int, ...],
        current_revision: int,
        history: dict[str, tuple[RecordSchema, ...]],
        current: dict[str, RecordSchema],
    ) -> None:
        self.root = root
        self.revisions = revisions
        self.current_revision = current_revision
        self._history = history
        self._current = current
        self._plans, self._unreadable = _decode_plans(history, current)
        self._registry: SchemaRegistryPort | None = None
        self._registry_headers: dict[str, bytes] = {}
        self._plans_by_schema_id: dict[int, _DecodePlan] = {}
        self._unreadable_schema_ids: dict[int, str] = {}

    @classmethod
    def load(
        cls, root: Path | str = SCHEMA_ROOT_DEFAULT, current_revision: int | None = None
    ) -> SchemaSet:
        """Load and check every revision under root; raise DecodeError if the set is invalid.

        current_revision pins the revision used to encode and to resolve to (default: the
        highest). Revisions above it are still known as writer schemas, which is how a reader
        is deployed knowing a new revision before any writer starts using it.
        """
        root = Path(root)
        definitions_by_revision = _read_revisions(root)
        revisions = tuple(sorted(definitions_by_revision))
        if current_revision is None:
            current_revision = revisions[-1]
        if current_revision not in definitions_by_revision:
            raise DecodeError(
                f"{root}: current revision {current_revision} does not exist; "
                f"revisions are {list(revisions)}"
            )

        history: dict[str, list[RecordSchema]] = {}
        current: dict[str, RecordSchema] = {}
        effective: dict[str, dict[str, Any]] = {}
        for revision in revisions:
            effective.update(definitions_by_revision[revision])
            for full_name, definition in effective.items():
                if definition["type"] not in ("record", "error"):
                    continue
                record = _record_schema(root, revision, full_name, effective)
                versions = history.setdefault(record.name, [])
                if not versions or versions[-1].source != record.source:
                    versions.append(record)
                if revision == current_revision:
                    current[record.name] = versions[-1]

        return cls(
            root=root,
            revisions=revisions,
            current_revision=current_revision,
            history={name: tuple(versions) for name, versions in history.items()},
            current=current,
        )

    def record_names(self) -> tuple[str, ...]:
        """Names of the records of the current revision, sorted."""
        return tuple(sorted(self._current))

    def current_schema(self, record_name: str) -> dict[str, Any]:
        """A copy of the current self-contained JSON schema of a record."""
        return copy.deepcopy(dict(self._record(record_name, KeyError).source))

    def current_record(self, record_name: str) -> RecordSchema:
        """The current revision of a record."""
        return self._record(record_name, KeyError)

    def history(self, record_name: str) -> tuple[RecordSchema, ...]:
        """Every distinct revision of a record, oldest first, including any above the current one."""
        if record_name not in self._history:
            raise KeyError(f"unknown record {record_name!r}; known: {sorted(self._history)}")
        return self._history[record_name]

    def fingerprint_hex(self, record_name: str) -> str:
        """The current fingerprint of a record as hex, in wire (little-endian) byte order."""
        return self._record(record_name, KeyError).fingerprint.hex()

    @property
    def registry(self) -> SchemaRegistryPort | None:
        """The schema registry of registry mode, or None (single-object encoding)."""
        return self._registry

    def use_registry(self, registry: SchemaRegistryPort | None) -> None:
        """Write the Confluent wire format with ids from this registry (None: single objects again).

        Reading accepts both framings either way; without a registry a registry-framed record
        is a DecodeError saying so. Forgets every id learnt from a previous registry.
        """
        self._registry = registry
        self._registry_headers = {}
        self._plans_by_schema_id = {}
        self._unreadable_schema_ids = {}

    def encode(self, record_name: str, datum: Mapping[str, Any]) -> bytes:
        """Encode a datum with the current schema of record_name, framed for this set's mode.

        An Avro single object, or in registry mode the Confluent wire format with the id the
        registry gave the record's subject (asked once per record, then cached).
        Timestamp fields (timestamp-millis) take an int of milliseconds since the epoch or a
        timezone-aware datetime; a naive datetime is refused because its zone is a guess.
        Raise EncodeError naming the record and the field when the datum does not fit.
        """
        record = self._record(record_name, EncodeError)
        # The body is checked before the registry is asked, so a bad datum costs no request.
        body = self._body(record, datum)
        if self._registry is None:
            return record.header + body
        return self._registry_header(record) + body

    def prepare(self, record_names: tuple[str, ...] | None = None) -> None:
        """In registry mode, learn the ids of these records (default: all) now; without a registry, nothing.

        A writer calls it at start so that a registry that is down, or refuses a schema, stops
        it before it consumes anything rather than in the middle of a batch.
        """
        if self._registry is None:
            return
        for record_name in record_names if record_names is not None else self.record_names():
            self._registry_header(self._record(record_name, EncodeError))

    def encode_single_object(self, record_name: str, datum: Mapping[str, Any]) -> bytes:
        """Encode as an Avro single object whatever the mode (a migration test writes both framings)."""
        record = self._record(record_name, EncodeError)
        return record.header + self._body(record, datum)

    def _registry_header(self, record: RecordSchema) -> bytes:
        header = self._registry_headers.get(record.name)
        if header is None:
            assert self._registry is not None
            schema_id = self._registry.schema_id(record.subject, record.schema_text())
            if not isinstance(schema_id, int) or not 0 <= schema_id <= CONFLUENT_SCHEMA_ID_MAX:
                raise InvariantViolation(
                    f"schema registry {self._registry.url} gave {record.name} the id {schema_id!r}, "
                    f"not a schema id of the Confluent wire format (0 to {CONFLUENT_SCHEMA_ID_MAX})"
                )
            header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._registry_headers[record.name] = header
            # What this process writes it can read back without asking the registry again.
            self._plans_by_schema_id[schema_id] = self._plans[record.fingerprint]
        return header

    def _body(self, record: RecordSchema, datum: Mapping[str, Any]) -> bytes:
        record_name = record.name
        # fastavro's writer silently truncates a float written to a long and takes True for 1,
        # so every datum is validated, not only one the writer rejects: money is a long. The
        # quiet check is fast; raise_errors=True costs about 8 us per non-null optional field
        # (it builds an exception for each union branch tried), so it only runs to explain.
        if not validate(datum, record.parsed, raise_errors=False):
            try:
                validate(datum, record.parsed, raise_errors=True)
            except ValidationError as error:
                problems = "; ".join(_describe_problem(problem) for problem in error.errors)
                raise EncodeError(f"cannot encode {record_name}: {problems}") from None
            raise EncodeError(f"cannot encode {record_name}: fastavro rejects it without a reason")
        for field_name in record.timestamp_fields:
            _check_timestamp(record_name, field_name, datum[field_name])
        stream = io.BytesIO()
        try:
            schemaless_writer(stream, record.parsed, datum, strict_allow_default=True)
        except _WRITE_ERRORS as error:
            raise EncodeError(f"cannot encode {record_name}: {error}") from error
        return stream.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode an Avro single object, or a Confluent-framed record, of any known revision.

        Return the record name and the datum resolved to the record's current schema.
        Timestamps come back as timezone-aware (UTC) datetimes, as fastavro reads them.
        Raise DecodeError saying why when the bytes are neither; a registry-framed record needs
        a registry (use_registry) to learn its schema id once. Raise TransientError when that
        registry cannot be reached: the record may be fine, so it must not be dead-lettered.
        """
        if not isinstance(data, (bytes, bytearray)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if data[:2] == MAGIC:
            if len(data) < HEADER_SIZE:
                raise DecodeError(
                    f"too short for an Avro single object: {len(data)} bytes, "
                    f"the header alone is {HEADER_SIZE}"
                )
            fingerprint_bytes = bytes(data[2:HEADER_SIZE])
            plan = self._plans.get(fingerprint_bytes)
            if plan is None:
                reason = self._unreadable.get(
                    fingerprint_bytes, "is not any known revision of any record"
                )
                raise DecodeError(f"unknown schema fingerprint {fingerprint_bytes.hex()}: {reason}")
            return self._read_body(data, HEADER_SIZE, plan, f"fingerprint {fingerprint_bytes.hex()}")
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < CONFLUENT_HEADER_SIZE:
                raise DecodeError(
                    f"too short for the Confluent wire format: {len(data)} bytes, "
                    f"the header alone is {CONFLUENT_HEADER_SIZE}"
                )
            schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
            plan = self._plans_by_schema_id.get(schema_id)
            if plan is None:
                plan = self._plan_of_schema_id(schema_id)
            return self._read_body(data, CONFLUENT_HEADER_SIZE, plan, f"registry schema id {schema_id}")
        if len(data) < len(MAGIC):
            raise DecodeError(f"too short for any wire format: {len(data)} bytes")
        raise DecodeError(
            f"bad magic bytes {bytes(data[:2]).hex()}: expected {MAGIC.hex()} "
            f"(Avro single-object encoding) or {CONFLUENT_MAGIC.hex()} (Confluent wire format)"
        )

    def _read_body(self, data: bytes, offset: int, plan: _DecodePlan, writer: str) -> tuple[str, dict[str, Any]]:
        stream = io.BytesIO(data)
        stream.seek(offset)
        try:
            datum = schemaless_reader(stream, plan.writer, plan.reader)
        except _BODY_ERRORS as error:
            raise DecodeError(
                f"truncated or corrupt {plan.name} body ({writer}): {type(error).__name__}: {error}"
            ) from error
        trailing = len(data) - stream.tell()
        if trailing != 0:
            raise DecodeError(f"{trailing} trailing bytes after the {plan.name} body ({writer})")
        return plan.name, datum

    def _plan_of_schema_id(self, schema_id: int) -> _DecodePlan:
        """How to read a registry schema id: asked of the registry once, then remembered either way."""
        reason = self._unreadable_schema_ids.get(schema_id)
        if reason is None:
            if self._registry is None:
                # Not remembered: a registry may be configured later in this process.
                raise DecodeError(
                    f"registry-framed record (Confluent wire format, schema id {schema_id}) but this "
                    "reader has no schema registry; set REMEDY_SCHEMA_REGISTRY_URL"
                )
            found = self._ask_registry(self._registry, schema_id)
            if isinstance(found, _DecodePlan):
                self._plans_by_schema_id[schema_id] = found
                return found
            reason = found
            if len(self._unreadable_schema_ids) >= UNREADABLE_SCHEMA_IDS_MAX:
                self._unreadable_schema_ids.clear()
            self._unreadable_schema_ids[schema_id] = reason
        raise DecodeError(reason)

    def _ask_registry(self, registry: SchemaRegistryPort, schema_id: int) -> _DecodePlan | str:
        """The plan for the writer schema of a registry id, or why there is none.

        The registry's TransientError goes through: an unreachable registry says nothing about
        the record, which must not become a dead letter for it.
        """
        where = f"schema id {schema_id} of the registry {registry.url}"
        try:
            text = registry.schema_by_id(schema_id)
        except DecodeError as error:
            return f"{where}: {error}"
        if text is None:
            return f"{where} does not exist"
        try:
            parsed = parse_schema(json.loads(text))
            writer_fingerprint = canonical_form_fingerprint(to_parsing_canonical_form(parsed))
        except (ValueError, TypeError, SchemaParseException, UnknownType) as error:
            return f"{where} is no Avro schema this reader can parse: {error}"
        plan = self._plans.get(writer_fingerprint)
        if plan is not None:
            return plan
        why = self._unreadable.get(writer_fingerprint, "is not any known revision of any record")
        name = parsed.get("name", "?") if isinstance(parsed, dict) else "?"
        return f"{where} ({name}) has unknown schema fingerprint {writer_fingerprint.hex()}: {why}"

    def _record(self, record_name: str, error_type: type[Exception]) -> RecordSchema:
        record = self._current.get(record_name)
        if record is None:
            raise error_type(
                f"unknown record {record_name!r} in revision {self.current_revision}; "
                f"known: {', '.join(self.record_names())}"
            )
        return record


@functools.cache
def default_schema_set() -> SchemaSet:
    """The schema set of this package, loaded and checked once, on first use."""
    return SchemaSet.load(SCHEMA_ROOT_DEFAULT)


def canonical_form_fingerprint(canonical_form: str) -> bytes:
    """The CRC-64-AVRO fingerprint of a Parsing Canonical Form, in wire (little-endian) order."""
    # fastavro returns the 64-bit value as hex of its little-endian bytes, which is the order
    # the spec's single-object encoding writes (checked against the spec's vectors in tests).
    fingerprint_bytes = bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))
    assert len(fingerprint_bytes) == FINGERPRINT_SIZE, fingerprint_bytes
    return fingerprint_bytes


def schema_fingerprint(schema: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of a self-contained schema, in wire (little-endian) order."""
    return canonical_form_fingerprint(to_parsing_canonical_form(parse_schema(schema)))


def _describe_problem(problem: Any) -> str:
    """One validation problem as 'field is value (type), expected schema', without the docs."""
    value = repr(problem.datum)
    if len(value) > 80:
        value = value[:77] + "..."
    return f"{problem.field} is {value} ({type(problem.datum).__name__}), expected {_describe_schema(problem.schema)}"


def _describe_schema(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_describe_schema(branch) for branch in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "enum":
            return f"one of {schema['symbols']}"
        if kind == "array":
            return f"array of {_describe_schema(schema['items'])}"
        if kind == "map":
            return f"map of {_describe_schema(schema['values'])}"
        if "name" in schema:
            return f"record {schema['name']}"
        if "logicalType" in schema:
            return f"{kind} ({schema['logicalType']})"
        return str(kind)
    return str(schema)


def _check_timestamp(record_name: str, field_name: str, value: Any) -> None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise EncodeError(
                f"cannot encode {record_name}: {field_name} is a naive datetime; "
                "pass a timezone-aware datetime or milliseconds since the epoch (UTC)"
            )
    elif isinstance(value, int) and not TIMESTAMP_MS_MIN <= value <= TIMESTAMP_MS_MAX:
        raise EncodeError(
            f"cannot encode {record_name}: {field_name}={value} ms is outside the "
            f"decodable range [{TIMESTAMP_MS_MIN}, {TIMESTAMP_MS_MAX}] (years 1 to 9999)"
        )


def _read_revisions(root: Path) -> dict[int, dict[str, dict[str, Any]]]:
    if not root.is_dir():
        raise DecodeError(f"schema root {root} is not a directory")
    revisions: dict[int, dict[str, dict[str, Any]]] = {}
    for directory in sorted(root.iterdir()):
        match = _REVISION_DIRECTORY.fullmatch(directory.name)
        if directory.is_dir() and match:
            revisions[int(match.group(1))] = _read_revision(directory)
    if not revisions:
        raise DecodeError(f"schema root {root} has no revision directory (r1, r2, ...)")
    # Revisions start at r1 and only increase; a number may be missing (a branch that reserved r6
    # while another released r7): the effective schema of revision N still takes each type from
    # the highest revision present that is not above N.
    if 1 not in revisions:
        raise DecodeError(
            f"schema root {root}: revisions must start at r1, "
            f"found {['r%d' % revision for revision in sorted(revisions)]}"
        )
    short_names: dict[str, str] = {}
    for definitions in revisions.values():
        for full_name in definitions:
            short_name = full_name.rsplit(".", 1)[-1]
            if short_names.setdefault(short_name, full_name) != full_name:
                raise DecodeError(
                    f"schema root {root}: {full_name} and {short_names[short_name]} share "
                    "a short name; one major version uses one namespace"
                )
    return revisions


def _read_revision(directory: Path) -> dict[str, dict[str, Any]]:
    definitions: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*" + SCHEMA_FILE_SUFFIX)):
        try:
            definition = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise DecodeError(f"{path}: not valid JSON: {error}") from error
        if not isinstance(definition, dict) or definition.get("type") not in NAMED_KINDS:
            raise DecodeError(f"{path}: must define one named type (record, enum or fixed)")
        name = definition.get("name")
        if not isinstance(name, str) or name.rsplit(".", 1)[-1] != path.stem:
            raise DecodeError(f"{path}: defines {name!r}; the file name must be the type name")
        definitions[_full_name(name, definition.get("namespace", ""))] = definition
    return definitions


def _record_schema(
    root: Path, revision: int, full_name: str, definitions: Mapping[str, dict[str, Any]]
) -> RecordSchema:
    where = f"{root}/r{revision} {full_name}"
    source = _inline_named(full_name, definitions, set(), where)
    try:
        parsed = parse_schema(copy.deepcopy(source))
    except (SchemaParseException, UnknownType, ValueError) as error:
        raise DecodeError(f"{where}: invalid schema: {error}") from error
    canonical_form = to_parsing_canonical_form(parsed)
    return RecordSchema(
        name=full_name.rsplit(".", 1)[-1],
        full_name=full_name,
        revision=revision,
        source=source,
        parsed=parsed,
        canonical_form=canonical_form,
        fingerprint=canonical_form_fingerprint(canonical_form),
        timestamp_fields=tuple(
            field["name"]
            for field in source["fields"]
            if isinstance(field["type"], dict)
            and field["type"].get("logicalType") == "timestamp-millis"
        ),
    )


def _full_name(name: str, namespace: str) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _inline_named(
    full_name: str, definitions: Mapping[str, dict[str, Any]], defined: set[str], where: str
) -> dict[str, Any]:
    """Return the named type as a standalone schema, each named type defined at its first use.

    fastavro's canonical form leaves a reference to a type parsed earlier as a bare name, so
    a fingerprint computed from it would not change when, say, an enum gains a symbol. The
    fingerprint is therefore computed from this self-contained form.
    """
    definition = definitions[full_name]
    namespace = full_name.rsplit(".", 1)[0] if "." in full_name else ""
    defined.add(full_name)
    standalone = {key: value for key, value in definition.items() if key != "namespace"}
    standalone["name"] = full_name
    if definition["type"] in ("record", "error"):
        standalone["fields"] = [
            {**field, "type": _inline(field["type"], namespace, definitions, defined, where)}
            for field in definition["fields"]
        ]
    return standalone


def _inline(
    schema: Any,
    namespace: str,
    definitions: Mapping[str, dict[str, Any]],
    defined: set[str],
    where: str,
) -> Any:
    if isinstance(schema, str):
        if schema in PRIMITIVE_TYPES:
            return schema
        full_name = _full_name(schema, namespace)
        if full_name in defined:
            return full_name
        if full_name not in definitions:
            raise DecodeError(f"{where}: unknown type {full_name}")
        return _inline_named(full_name, definitions, defined, where)
    if isinstance(schema, list):
        return [_inline(branch, namespace, definitions, defined, where) for branch in schema]
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED_KINDS:
            raise DecodeError(
                f"{where}: {schema.get('name')} is defined inline; "
                "define each named type in its own file"
            )
        if kind == "array":
            return {**schema, "items": _inline(schema["items"], namespace, definitions, defined, where)}
        if kind == "map":
            return {**schema, "values": _inline(schema["values"], namespace, definitions, defined, where)}
        if kind in PRIMITIVE_TYPES:
            return dict(schema)
        return _inline(kind, namespace, definitions, defined, where)
    raise DecodeError(f"{where}: not a schema: {schema!r}")


def _decode_plans(
    history: Mapping[str, tuple[RecordSchema, ...]], current: Mapping[str, RecordSchema]
) -> tuple[dict[bytes, _DecodePlan], dict[bytes, str]]:
    """Map every known writer fingerprint to how it is read; check each pair once, here."""
    plans: dict[bytes, _DecodePlan] = {}
    unreadable: dict[bytes, str] = {}
    owners: dict[bytes, str] = {}
    for name, versions in history.items():
        reader = current.get(name)
        for writer in versions:
            owner = owners.setdefault(writer.fingerprint, name)
            if owner != name:
                raise DecodeError(
                    f"records {owner} and {name} have the same fingerprint "
                    f"{writer.fingerprint.hex()}"
                )
            if writer.fingerprint in plans or writer.fingerprint in unreadable:
                continue
            if reader is None:
                unreadable[writer.fingerprint] = (
                    f"{name} r{writer.revision} is newer than this reader's current revision"
                )
            elif writer.fingerprint == reader.fingerprint:
                # Same canonical form: the bytes are the same, so read with no resolution.
                plans[writer.fingerprint] = _DecodePlan(name, reader.parsed, None)
            else:
                problems = can_read(reader.source, writer.source)
                if problems:
                    raise DecodeError(
                        f"{name} r{reader.revision} cannot read {name} r{writer.revision}: "
                        + "; ".join(problems)
                    )
                plans[writer.fingerprint] = _DecodePlan(name, writer.parsed, reader.parsed)
    return plans, unreadable


def check_full_transitive(record_name: str, schema_set: SchemaSet | None = None) -> list[str]:
    """List the problems that stop any revision of a record from reading any other (empty: none)."""
    if schema_set is None:
        schema_set = default_schema_set()
    versions = schema_set.history(record_name)
    problems = []
    for reader in versions:
        for writer in versions:
            if reader is writer:
                continue
            for problem in can_read(reader.source, writer.source):
                problems.append(f"r{reader.revision} reading r{writer.revision}: {problem}")
    return problems
