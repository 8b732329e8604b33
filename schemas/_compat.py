"""Avro schema-resolution checks: can a reader schema read data written with a writer schema?

Implements the resolution rules of the Avro specification ("Schema Resolution") statically, so
that an incompatible revision is caught by a test or at load time instead of by fastavro's
SchemaResolutionError when a reader meets the data, possibly years later.

One rule is stricter than the specification: a change of logical type (for example
timestamp-millis to timestamp-micros) is reported, because the bytes would still resolve but
their meaning would change.
"""

from __future__ import annotations

from typing import Any, Mapping

from fastavro import parse_schema

PRIMITIVE_TYPES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})

# Writer type -> reader types it may be read as, besides itself (the spec's promotions).
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def can_read(reader_schema: Any, writer_schema: Any) -> list[str]:
    """List why data written with writer_schema cannot be read with reader_schema (empty: it can).

    Both schemas are JSON schemas (dict, list or str) or fastavro-parsed schemas, each
    self-contained. An invalid schema raises fastavro's SchemaParseException.
    """
    reader_names: dict[str, Any] = {}
    writer_names: dict[str, Any] = {}
    reader = parse_schema(reader_schema, reader_names)
    writer = parse_schema(writer_schema, writer_names)
    checker = _Checker(reader_names, writer_names)
    checker.check(reader, writer, _describe(writer))
    return checker.problems


class _Checker:
    """Walks a reader and a writer schema together, collecting problems with their paths."""

    def __init__(self, reader_names: Mapping[str, Any], writer_names: Mapping[str, Any]) -> None:
        self.reader_names = reader_names
        self.writer_names = writer_names
        self.problems: list[str] = []
        # Record pairs being checked, so that recursive types terminate.
        self._in_progress: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = _resolve(reader, self.reader_names)
        writer = _resolve(writer, self.writer_names)
        reader_kind, writer_kind = _kind(reader), _kind(writer)

        if writer_kind == "union":
            # Any branch may have been written, so every branch must be readable.
            for branch in writer:
                branch = _resolve(branch, self.writer_names)
                self.check(reader, branch, f"{path}<{_describe(branch)}>")
            return
        if reader_kind == "union":
            match = self._first_match(reader, writer)
            if match is None:
                self.problems.append(
                    f"{path}: writer type {_describe(writer)} matches no branch of the "
                    f"reader union {_describe(reader)}"
                )
            else:
                self.check(match, writer, path)
            return
        if writer_kind in PRIMITIVE_TYPES or reader_kind in PRIMITIVE_TYPES:
            if writer_kind != reader_kind and reader_kind not in PROMOTIONS.get(
                writer_kind, frozenset()
            ):
                self.problems.append(
                    f"{path}: writer type {writer_kind} cannot be read as {reader_kind}"
                )
                return
            writer_logical, reader_logical = _logical_type(writer), _logical_type(reader)
            if writer_logical != reader_logical:
                self.problems.append(
                    f"{path}: logical type changed from {writer_logical} to {reader_logical}"
                )
            return
        if writer_kind != reader_kind:
            self.problems.append(f"{path}: writer {writer_kind} cannot be read as {reader_kind}")
            return
        if reader_kind == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif reader_kind == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")
        elif not _names_match(reader, writer):
            self.problems.append(
                f"{path}: writer {writer_kind} {writer['name']} does not match reader "
                f"{reader_kind} {reader['name']} (names differ and no reader alias matches)"
            )
        elif reader_kind == "fixed":
            if reader["size"] != writer["size"]:
                self.problems.append(
                    f"{path}: fixed size changed from {writer['size']} to {reader['size']}"
                )
        elif reader_kind == "enum":
            missing = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
            if missing and reader.get("default") is None:
                self.problems.append(
                    f"{path}: writer symbols {missing} are not in reader enum {reader['name']}, "
                    "which has no default"
                )
        else:
            self._check_record(reader, writer, path)

    def _check_record(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> None:
        pair = (reader["name"], writer["name"])
        if pair in self._in_progress:
            return
        self._in_progress.add(pair)
        writer_fields = {field["name"]: field for field in writer["fields"]}
        for reader_field in reader["fields"]:
            field_path = f"{path}.{reader_field['name']}"
            writer_field = writer_fields.get(reader_field["name"])
            if writer_field is None:
                for alias in reader_field.get("aliases", []):
                    if alias in writer_fields:
                        writer_field = writer_fields[alias]
                        break
            if writer_field is None:
                if "default" not in reader_field:
                    self.problems.append(
                        f"{field_path}: field is missing in the writer and has no default "
                        "in the reader"
                    )
                continue
            self.check(reader_field["type"], writer_field["type"], field_path)
        self._in_progress.discard(pair)

    def _first_match(self, reader_union: list[Any], writer: Any) -> Any | None:
        """The reader branch the spec picks: the first of the same type, else the first promotion."""
        writer_kind = _kind(writer)
        branches = [_resolve(branch, self.reader_names) for branch in reader_union]
        for branch in branches:
            if _kind(branch) == writer_kind and (
                writer_kind not in NAMED_KINDS or _names_match(branch, writer)
            ):
                return branch
        for branch in branches:
            if _kind(branch) in PROMOTIONS.get(writer_kind, frozenset()):
                return branch
        return None


def _resolve(schema: Any, names: Mapping[str, Any]) -> Any:
    """Replace a reference to a named type by its definition."""
    if isinstance(schema, str) and schema not in PRIMITIVE_TYPES:
        return names[schema]
    if isinstance(schema, dict) and isinstance(schema.get("type"), str):
        kind = schema["type"]
        if kind not in PRIMITIVE_TYPES and kind not in NAMED_KINDS and kind not in ("array", "map"):
            return names[kind]
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return "record" if schema["type"] == "error" else schema["type"]
    return schema


def _logical_type(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _names_match(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    writer_short = writer["name"].rsplit(".", 1)[-1]
    if reader["name"].rsplit(".", 1)[-1] == writer_short:
        return True
    aliases = reader.get("aliases", [])
    return writer["name"] in aliases or writer_short in aliases


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(branch) for branch in schema) + "]"
    if isinstance(schema, dict):
        if "name" in schema:
            return str(schema["name"])
        return str(schema.get("type"))
    return str(schema)
