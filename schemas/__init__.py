"""The Avro contract of Remedy Ledger: schema files, the single-object codec and its checks.

Every event on every topic is an Avro single object (the Avro spec's single-object encoding):
`C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form
(little-endian), then the Avro binary body. The fingerprint is looked up among every revision
under `schemas/avro/`, so no schema registry is needed.

Registry mode, for producers and consumers in other languages (`use_registry`, which the
composition root calls when REMEDY_SCHEMA_REGISTRY_URL is set): `encode` writes the Confluent
wire format instead, `00` + the 4-byte big-endian schema id the registry gave the record's
subject (its full name) + the same body. `decode` reads both framings in either mode.

    data = encode("RemedyRequested", {...})
    record_name, datum = decode(data)

Timestamps (logical type timestamp-millis, UTC): `encode` takes an int of milliseconds since
the Unix epoch or a timezone-aware datetime (a naive one is refused); `decode` returns what
fastavro returns, a timezone-aware datetime in UTC.

The functions below use the package's own schemas, loaded once on first use. Tests and tools
that need another schema root use `SchemaSet.load(root)`, which has the same methods.
"""

from __future__ import annotations

from typing import Any, Mapping

from schemas._codec import (
    CONFLUENT_HEADER_SIZE,
    CONFLUENT_MAGIC,
    HEADER_SIZE,
    MAGIC,
    SCHEMA_ROOT_DEFAULT,
    RecordSchema,
    SchemaRegistryPort,
    SchemaSet,
    check_full_transitive,
    default_schema_set,
)
from schemas._compat import can_read

NAMESPACE = "remedy_ledger.v1"

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "HEADER_SIZE",
    "MAGIC",
    "NAMESPACE",
    "SCHEMA_ROOT_DEFAULT",
    "RecordSchema",
    "SchemaRegistryPort",
    "SchemaSet",
    "can_read",
    "check_full_transitive",
    "current_schema",
    "decode",
    "default_schema_set",
    "encode",
    "fingerprint_hex",
    "prepare",
    "record_names",
    "use_registry",
]


def encode(record_name: str, datum: Mapping[str, Any]) -> bytes:
    """Encode a datum with the current schema of record_name; raise EncodeError if it does not fit.

    Every record the project writes goes through here: a single object, or the Confluent wire
    format once `use_registry` has been called.
    """
    return default_schema_set().encode(record_name, datum)


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a single object or a registry-framed record into (record name, datum); raise DecodeError."""
    return default_schema_set().decode(data)


def use_registry(registry: SchemaRegistryPort | None) -> None:
    """Registry mode for this process (None: back to single objects); see SchemaSet.use_registry."""
    default_schema_set().use_registry(registry)


def prepare(record_names: tuple[str, ...] | None = None) -> None:
    """In registry mode, learn the registry ids of these records (default: all) now; see SchemaSet.prepare."""
    default_schema_set().prepare(record_names)


def fingerprint_hex(record_name: str) -> str:
    """The current fingerprint of a record, hex in wire (little-endian) byte order."""
    return default_schema_set().fingerprint_hex(record_name)


def record_names() -> tuple[str, ...]:
    """Names of all records (events and nested records) of the current revision, sorted."""
    return default_schema_set().record_names()


def current_schema(record_name: str) -> dict[str, Any]:
    """A copy of the current self-contained JSON schema of a record."""
    return default_schema_set().current_schema(record_name)
