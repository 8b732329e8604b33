"""Print every revision of every record with its fingerprint: `python -m schemas [ROOT]`."""

from __future__ import annotations

import sys

from schemas._codec import SCHEMA_ROOT_DEFAULT, SchemaSet


def fingerprint_table(schema_set: SchemaSet) -> str:
    """One line per record revision: name, revision, wire fingerprint, and which is current."""
    lines = [f"{'record':<20} {'revision':<9} {'fingerprint (wire order)':<25} current"]
    for name in schema_set.record_names():
        current = schema_set.current_record(name)
        for version in schema_set.history(name):
            marker = "*" if version is current else ""
            lines.append(
                f"{name:<20} r{version.revision:<8} {version.fingerprint.hex():<25} {marker}"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the fingerprint table of the schema root given, or of the package's own schemas."""
    root = argv[0] if argv else SCHEMA_ROOT_DEFAULT
    print(fingerprint_table(SchemaSet.load(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
