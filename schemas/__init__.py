"""The Avro contract of Remedy Ledger: schema files, the single-object codec and its checks.

Every event on every topic is an Avro single object (the Avro spec's single-object encoding):
`C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form
(little-endian), then the Avro binary body. The fingerprint is looked up among every revision
under `schemas/avro/`, so no schema registry is needed.

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
    HEADER_SIZE,
    MAGIC,
    SCHEMA_ROOT_DEFAULT,
    RecordSchema,
    SchemaSet,
    default_schema_set,
)
from schemas._compat import can_read, check_full_transitive

NAMESPACE = "remedy_ledger.v1"

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "NAMESPACE",
    "SCHEMA_ROOT_DEFAULT",
    "RecordSchema",
    "SchemaSet",
    "can_read",
    "check_full_transitive",
    "current_schema",
    "decode",
    "default_schema_set",
    "encode",
    "fingerprint_hex",
    "record_names",
]


def encode(record_name: str, datum: Mapping[str, Any]) -> bytes:
    """Encode a datum with the current schema of record_name; raise EncodeError if it does not fit."""
    return default_schema_set().encode(record_name, datum)


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a single object into (record name, datum in the current schema); raise DecodeError."""
    return default_schema_set().decode(data)


def fingerprint_hex(record_name: str) -> str:
    """The current fingerprint of a record, hex in wire (little-endian) byte order."""
    return default_schema_set().fingerprint_hex(record_name)


def record_names() -> tuple[str, ...]:
    """Names of all records (events and nested records) of the current revision, sorted."""
    return default_schema_set().record_names()


def current_schema(record_name: str) -> dict[str, Any]:
    """A copy of the current self-contained JSON schema of a record."""
    return default_schema_set().current_schema(record_name)
