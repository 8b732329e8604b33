"""Print every revision of every record with its fingerprint, or register them in a schema registry.

    python -m schemas [ROOT]        the table of revisions and fingerprints
    python -m schemas register [--registry-url URL] [--schemas-root ROOT] [--subject-prefix PREFIX]

`register` pushes every revision of every record, oldest first, to the Confluent-compatible API
of a schema registry (default: REMEDY_SCHEMA_REGISTRY_URL), each record's subject (its full name)
set to FULL_TRANSITIVE first, so the registry checks each revision against all before it. It
exits 1 naming the record and revision the registry refuses as incompatible. `--subject-prefix`
registers under PREFIX + full name: a proposed schema change can be tried against a copy of the
subjects without touching the ones producers use.
"""

from __future__ import annotations

import argparse
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


def register(argv: list[str]) -> int:
    """`python -m schemas register`: push every revision to the registry; 1 if one is refused."""
    # A command, not the codec: it may use the runtime (settings, the HTTP client).
    from streams.errors import RemedyLedgerError
    from streams.runtime.schema_registry import HttpSchemaRegistry, register_released
    from streams.runtime.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m schemas register", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry-url", help="the registry's Confluent-compatible API (default: "
                        "REMEDY_SCHEMA_REGISTRY_URL), e.g. http://127.0.0.1:8081/apis/ccompat/v7")
    parser.add_argument("--schemas-root", default=str(SCHEMA_ROOT_DEFAULT),
                        help="the revision directories (r1, r2, ...)")
    parser.add_argument("--subject-prefix", default="", help="register under PREFIX + record full name")
    arguments = parser.parse_args(argv)

    def shown(entry) -> None:
        state = "registered" if entry.new else "present"
        print(f"{state:<10} {entry.subject:<45} r{entry.revision:<3} id {entry.schema_id}", flush=True)

    try:
        url = arguments.registry_url or load_settings().schema_registry_url
        if not url:
            print("error: no registry: pass --registry-url or set REMEDY_SCHEMA_REGISTRY_URL", file=sys.stderr)
            return 2
        schema_set = SchemaSet.load(arguments.schemas_root)
        done = register_released(schema_set, HttpSchemaRegistry(url), arguments.subject_prefix, shown)
    except RemedyLedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    new = sum(entry.new for entry in done)
    print(f"{len(done)} schema revisions of {len({e.subject for e in done})} subjects in {url} "
          f"(FULL_TRANSITIVE), {new} newly registered")
    return 0


def main(argv: list[str]) -> int:
    """Print the fingerprint table of the schema root given, or of the package's own schemas."""
    if argv[:1] == ["register"]:
        return register(argv[1:])
    root = argv[0] if argv else SCHEMA_ROOT_DEFAULT
    print(fingerprint_table(SchemaSet.load(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
