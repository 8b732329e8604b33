"""Publishing for upstream systems: validate a JSON-lines file completely, then publish it.

`validate_file` and `publish_file` are the Python API; `remedy-ledger publish FILE` wraps them.
A file with any bad line publishes nothing.
"""

from __future__ import annotations

import io
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import schemas
from streams.errors import EncodeError, InvariantViolation, ValidationError
from streams.inbound import LineProblems, parse_event_line
from streams.kafka_io import read_frames, send_frames, topic_names, write_frame
from streams.settings import Settings

# Problems printed for one file at most; past this the file is clearly not in the publish format.
PROBLEMS_REPORTED_MAX = 200
# Progress is reported every this many lines.
PROGRESS_EVERY_LINES = 50_000
# Buffer of the spool file that holds encoded events between validation and sending.
SPOOL_BUFFER_BYTES = 1 << 20


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


def _scan(path: Path, on_event: Callable[[int, str, dict], None] | None,
          progress: Callable[[int], None] | None) -> int:
    """Parse and check every line, handing each valid event to `on_event(line, record, datum)`.

    Returns the event count, or raises ValidationError listing every `FILE:LINE: problem`.
    """
    avro = avro_json_by_name()
    problems: list[str] = []
    count = 0
    try:
        for number, text in iter_file(path):
            try:
                record_name, datum = parse_event_line(text, avro)
                if on_event is not None and not problems:
                    on_event(number, record_name, datum)
                count += 1
            except LineProblems as bad:
                problems.extend(f"{path}:{number}: {problem}" for problem in bad.problems)
            except EncodeError as error:
                problems.append(f"{path}:{number}: {error}")
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


def validate_file(path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Check every line; return the event count or raise ValidationError listing `FILE:LINE: problem`."""
    return _scan(path, None, progress)


def read_events(path: Path) -> Iterator[tuple[str, dict]]:
    """(record name, datum) for every line of an already validated file."""
    avro = avro_json_by_name()
    for _, text in iter_file(path):
        yield parse_event_line(text, avro)


def publish_file(path: Path, settings: Settings, progress: Callable[[str, int], None] | None = None) -> int:
    """Validate the whole file, then publish every event with an idempotent producer; returns the count.

    One pass parses, checks and encodes each line into a spool file (so a file with a bad line
    publishes nothing, and no line is parsed twice); the spool is then sent in record batches.
    """
    names = topic_names(settings)
    topics = list(names.inputs())
    with tempfile.TemporaryFile(prefix="remedy-publish-") as spool:
        writer = io.BufferedWriter(spool, buffer_size=SPOOL_BUFFER_BYTES)

        def encode(number: int, record_name: str, datum: dict) -> None:
            write_frame(writer, topics.index(names.for_event(record_name)), datum["customer_id"].encode(),
                        schemas.encode(record_name, datum))

        total = _scan(path, encode, (lambda n: progress("validated", n)) if progress else None)
        writer.flush()
        spool.seek(0)
        reader = io.BufferedReader(spool, buffer_size=SPOOL_BUFFER_BYTES)
        published = send_frames(settings, topics, read_frames(reader),
                                (lambda n: progress("published", n)) if progress else None, PROGRESS_EVERY_LINES)
    if published != total:
        raise InvariantViolation(f"{path}: {total} lines validated but {published} published")
    return published
