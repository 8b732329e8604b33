"""Record new schema revision files in released.json: `python -m schemas.release [--check]`.

released.json maps the path of every released schema file (relative to `schemas/`) to the
sha256 of its bytes. Released files are never edited: this tool only ever adds entries, and
refuses to run while a released file has changed or disappeared, or while the schemas are not
FULL_TRANSITIVE compatible. Adding a revision is a deliberate step: create `avro/rN/...`,
run this tool, review the diff of released.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from streams.errors import DecodeError

SCHEMAS_DIRECTORY = Path(__file__).resolve().parent
RELEASED_FILE_NAME = "released.json"
SCHEMA_ROOT_NAME = "avro"


def sha256_hex(path: Path) -> str:
    """The sha256 of a file's exact bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def revision_files(schemas_directory: Path) -> dict[str, Path]:
    """Every schema file in a revision directory, keyed by its path relative to schemas_directory."""
    root = schemas_directory / SCHEMA_ROOT_NAME
    return {
        path.relative_to(schemas_directory).as_posix(): path
        for path in sorted(root.glob("r*/*.avsc"))
    }


def released_hashes(schemas_directory: Path) -> dict[str, str]:
    """The recorded sha256 of every released file (empty if released.json does not exist)."""
    path = schemas_directory / RELEASED_FILE_NAME
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def release_problems(schemas_directory: Path) -> list[str]:
    """Released files whose bytes changed or that disappeared (empty: none)."""
    files = revision_files(schemas_directory)
    problems = []
    for relative, expected in sorted(released_hashes(schemas_directory).items()):
        path = files.get(relative)
        if path is None:
            problems.append(f"{relative}: released but missing; released schemas are never deleted")
        elif sha256_hex(path) != expected:
            problems.append(f"{relative}: changed since release; released schemas are never edited")
    return problems


def unreleased_files(schemas_directory: Path) -> list[str]:
    """Revision files not yet in released.json."""
    released = released_hashes(schemas_directory)
    return [relative for relative in revision_files(schemas_directory) if relative not in released]


def compatibility_problems(schemas_directory: Path) -> list[str]:
    """Why the schema set fails to load or is not FULL_TRANSITIVE (empty: it is fine)."""
    from schemas._codec import SchemaSet
    from schemas._codec import check_full_transitive

    try:
        schema_set = SchemaSet.load(schemas_directory / SCHEMA_ROOT_NAME)
    except DecodeError as error:
        return [str(error)]
    problems = []
    for name in schema_set.record_names():
        problems.extend(f"{name}: {problem}" for problem in check_full_transitive(name, schema_set))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Add unreleased revision files to released.json; exit 1 with the reasons if it must not."""
    parser = argparse.ArgumentParser(prog="python -m schemas.release", description=__doc__)
    parser.add_argument(
        "--schemas-dir", type=Path, default=SCHEMAS_DIRECTORY, help="the schemas/ directory"
    )
    parser.add_argument(
        "--check", action="store_true", help="only report; exit 1 if anything is unreleased"
    )
    arguments = parser.parse_args(argv)
    schemas_directory: Path = arguments.schemas_dir

    problems = release_problems(schemas_directory) + compatibility_problems(schemas_directory)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    new_files = unreleased_files(schemas_directory)
    if not new_files:
        print("nothing to release")
        return 0
    if arguments.check:
        for relative in new_files:
            print(f"unreleased: {relative}", file=sys.stderr)
        return 1

    files = revision_files(schemas_directory)
    released = released_hashes(schemas_directory)
    for relative in new_files:
        released[relative] = sha256_hex(files[relative])
        print(f"released {relative}")
    path = schemas_directory / RELEASED_FILE_NAME
    path.write_text(json.dumps(dict(sorted(released.items())), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
