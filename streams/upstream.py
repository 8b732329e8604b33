"""Publishing for upstream systems: validate a JSON-lines file completely, then publish it.

`validate_file` and `publish_file` are the Python API; `remedy-ledger publish FILE` wraps them.
A file with any bad line publishes nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import schemas
from streams.errors import InvariantViolation, ValidationError
from streams.inbound import LineProblems, parse_event_line
from streams.kafka_io import Publisher
from streams.settings import Settings

# Problems printed for one file at most; past this the file is clearly not in the publish format.
PROBLEMS_REPORTED_MAX = 200
# Progress is reported every this many lines.
PROGRESS_EVERY_LINES = 50_000


@lru_cache(maxsize=1)
def avro_json_by_name() -> dict[str, dict]:
    """The current Avro schema JSON of every record, by short name, plus every named type inside.

    Built from the codec's self-contained schemas (each named type defined at its first use), so
    the publish format and the wire contract come from the same loaded files.
    """
    found: dict[str, dict] = {}

    def harvest(node) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                found.setdefault(node["name"].split(".")[-1], node)
            for value in node.values():
                harvest(value)
        elif isinstance(node, list):
            for value in node:
                harvest(value)

    for name in schemas.record_names():
        found[name] = schemas.current_schema(name)
        harvest(found[name])
    return found


def iter_file(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for every non-blank line of a file."""
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                yield number, text


def validate_file(path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Check every line; return the event count or raise ValidationError listing `FILE:LINE: problem`."""
    avro = avro_json_by_name()
    problems: list[str] = []
    count = 0
    try:
        for number, text in iter_file(path):
            try:
                parse_event_line(text, avro)
                count += 1
            except LineProblems as bad:
                problems.extend(f"{path}:{number}: {problem}" for problem in bad.problems)
            if progress and number % PROGRESS_EVERY_LINES == 0:
                progress(number)
    except UnicodeDecodeError as error:
        problems.append(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})")
    except OSError as error:
        problems.append(f"{path}: cannot read: {error.strerror}")
    if problems:
        if len(problems) > PROBLEMS_REPORTED_MAX:
            hidden = len(problems) - PROBLEMS_REPORTED_MAX
            problems = problems[:PROBLEMS_REPORTED_MAX] + [f"{path}: ... and {hidden} more problems"]
        raise ValidationError(problems)
    return count


def read_events(path: Path) -> Iterator[tuple[str, dict]]:
    """(record name, datum) for every line of an already validated file."""
    avro = avro_json_by_name()
    for _, text in iter_file(path):
        yield parse_event_line(text, avro)


def publish_file(path: Path, settings: Settings, progress: Callable[[str, int], None] | None = None) -> int:
    """Validate the whole file, then publish every event with an idempotent producer; returns the count."""
    total = validate_file(path, progress=(lambda n: progress("validated", n)) if progress else None)
    published = 0
    with Publisher(settings) as publisher:
        for record_name, datum in read_events(path):
            publisher.publish(record_name, datum)
            published += 1
            if progress and published % PROGRESS_EVERY_LINES == 0:
                progress("published", published)
    if published != total:
        raise InvariantViolation(f"{path}: changed while publishing ({total} lines validated, {published} published)")
    return published
