"""Publishing for upstream systems: validate a JSON-lines file completely, then publish it.

`validate_file` and `publish_file` are the Python API; `remedy-ledger publish FILE` wraps them.
A file with any bad line publishes nothing. Besides each line's own checks, a file may not repeat
an `event_id` or `request_id` with different content (CONFLICTING_DUPLICATE, naming both lines),
and every timestamp is bounded by the publisher's clock (streams.core.inbound.TimeBounds).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
import time
from array import array
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import schemas
from streams.errors import EncodeError, InvariantViolation, ValidationError
from streams.core.inbound import (
    PUBLISHABLE_TYPES,
    LineProblems,
    TimeBounds,
    conflict_problem,
    identities,
    identity_content,
    parse_event_line,
)
from streams.runtime.kafka_io import read_frames, send_frames, topic_names, write_frame
from streams.runtime.settings import Settings

# Problems printed for one file at most; past this the file is clearly not in the publish format.
PROBLEMS_REPORTED_MAX = 200
# Progress is reported every this many lines.
PROGRESS_EVERY_LINES = 50_000
# Buffer of the spool files that hold encoded events between validation and sending.
SPOOL_BUFFER_BYTES = 1 << 20
# Files at least this big are scanned by one process per core: below it, starting the processes
# costs more than it saves (about 37,000 events of the simulator's format).
PARALLEL_SCAN_BYTES_MIN = 8 << 20
# Scanning processes at most: past the cores the machine has, more only adds switching.
PARALLEL_SCAN_PROCESSES_MAX = 4


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


def _line_ranges(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """Split a file into `parts` byte ranges on line boundaries: (start, end, first line number)."""
    size = path.stat().st_size
    bounds = [0]
    with open(path, "rb") as handle:
        for index in range(1, parts):
            handle.seek(max(bounds[-1], size * index // parts))
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                handle.readline()  # to the start of the next line
            bounds.append(max(bounds[-1], handle.tell()))
        bounds.append(size)
        ranges, line = [], 1
        for start, end in zip(bounds, bounds[1:]):
            ranges.append((start, end, line))
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(remaining, SPOOL_BUFFER_BYTES))
                line += chunk.count(b"\n")
                remaining -= len(chunk)
    return [r for r in ranges if r[1] > r[0]] or [(0, 0, 1)]


class _Identities:
    """Where each event and request id of a byte range appears, compactly: 8-byte digests and positions."""

    # Every valid line adds one entry per id it carries (streams.core.inbound.identities), 24 bytes
    # each, so a file of millions of events is checked for conflicting repeats without holding its ids.

    def __init__(self):
        self.digests = array("Q")
        self.offsets = array("Q")
        self.lines = array("Q")

    def add(self, record_name: str, datum: dict, offset: int, line: int) -> None:
        """Remember the ids of one valid line at its byte offset and line number."""
        for field_name, value in identities(record_name, datum):
            digest = hashlib.blake2b(f"{field_name}\0{value}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
            self.digests.append(int.from_bytes(digest, "little"))
            self.offsets.append(offset)
            self.lines.append(line)

    def extend(self, other: "_Identities") -> None:
        """Append another range's ids (ranges are merged in file order)."""
        self.digests.extend(other.digests)
        self.offsets.extend(other.offsets)
        self.lines.extend(other.lines)


def _conflicts(path: Path, found: _Identities) -> list[str]:
    """`FILE:LINE:` problems for every id repeated with different content, naming its first line."""
    # Digests that repeat are candidates; their lines are read again and compared by the ids and
    # contents themselves, so a digest collision can never report a false conflict.
    import numpy

    if len(found.digests) < 2:
        return []
    digests = numpy.frombuffer(found.digests, dtype=numpy.uint64)
    order = numpy.argsort(digests, kind="stable")  # stable: file order within one digest
    ordered = digests[order]
    repeated = numpy.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(repeated):
        return []
    candidates = sorted({int(i) for i in order[repeated]} | {int(i) for i in order[repeated + 1]})
    avro = avro_json_by_name()
    first: dict[tuple[str, str], tuple[int, tuple]] = {}
    problems = []
    with open(path, "rb") as handle:
        for index in candidates:
            handle.seek(found.offsets[index])
            record_name, datum = parse_event_line(handle.readline().decode("utf-8"), avro)
            line = found.lines[index]
            for field_name, value in identities(record_name, datum):
                content = identity_content(field_name, record_name, datum)
                seen = first.setdefault((field_name, value), (line, content))
                if seen[0] != line and seen[1] != content:
                    problems.append((line, f"{path}:{line}: {conflict_problem(field_name, value, seen[0])}"))
    return [text for _, text in sorted(problems)]


def _scan_range(path: Path, start: int, end: int, first_line: int, spool_path: str | None,
                topic_of: dict[str, int], progress: Callable[[int], None] | None = None,
                now_ms: int | None = None, bounds: TimeBounds = TimeBounds()) -> tuple[int, list[str], int, _Identities]:
    """Parse and check the lines of one byte range; encode valid events into a spool while all is well.

    Returns (events, the first problems found (at most PROBLEMS_REPORTED_MAX), problems in all,
    the ids of its valid lines). Runs in a pool process for large files, so everything it needs
    comes in as arguments (the publisher's clock too, so every range judges by the same instant).
    """
    avro = avro_json_by_name()
    problems: list[str] = []
    problem_count = count = 0
    found = _Identities()
    out = open(spool_path, "wb", buffering=SPOOL_BUFFER_BYTES) if spool_path else None

    def problem(text: str) -> None:
        nonlocal problem_count
        problem_count += 1
        if len(problems) < PROBLEMS_REPORTED_MAX:
            problems.append(text)

    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            position, number = start, first_line - 1
            while position < end:
                raw = handle.readline()
                if not raw:
                    break
                number += 1
                line_start = position
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    problem(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {position + error.start})")
                    position += len(raw)
                    continue
                position += len(raw)
                if not text.strip():
                    continue
                try:
                    record_name, datum = parse_event_line(text, avro, now_ms, bounds)
                    found.add(record_name, datum, line_start, number)
                    if out is not None and not problem_count:
                        write_frame(out, topic_of[record_name], datum["customer_id"].encode(),
                                    schemas.encode(record_name, datum))
                    count += 1
                except LineProblems as bad:
                    for line_problem in bad.problems:
                        problem(f"{path}:{number}: {line_problem}")
                except EncodeError as error:
                    problem(f"{path}:{number}: {error}")
                if progress and number % PROGRESS_EVERY_LINES == 0:
                    progress(number)
    except OSError as error:
        problem(f"{path}: cannot read: {error.strerror}")
    finally:
        if out is not None:
            out.close()
    return count, problems, problem_count, found


def _scan(path: Path, spool_dir: str | None, topic_of: dict[str, int], parts: int,
          progress: Callable[[int], None] | None, now_ms: int | None = None,
          bounds: TimeBounds = TimeBounds()) -> tuple[int, list[str]]:
    """Scan a whole file in `parts` ranges (in parallel processes when more than one).

    Returns (event count, spool files in file order), or raises ValidationError listing every
    `FILE:LINE: problem` (the first PROBLEMS_REPORTED_MAX of them). Timestamps are bounded by
    `now_ms` (the publisher's clock; read here when not given) and `bounds`.
    """
    bound_problems = bounds.problems()
    if bound_problems:
        raise ValidationError([f"time bounds: {problem}" for problem in bound_problems])
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    try:
        ranges = _line_ranges(path, parts)
    except OSError as error:
        raise ValidationError([f"{path}: cannot read: {error.strerror}"]) from None
    spools = [f"{spool_dir}/part-{index}" if spool_dir else None for index in range(len(ranges))]
    if len(ranges) == 1:
        results = [_scan_range(path, *ranges[0], spools[0], topic_of, progress, now_ms, bounds)]
    else:
        # fork: the children inherit the loaded schemas instead of importing everything again.
        with ProcessPoolExecutor(len(ranges), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_scan_range, path, *r, spool, topic_of, None, now_ms, bounds)
                       for r, spool in zip(ranges, spools)]
            results, done = [], 0
            for future in futures:
                results.append(future.result())
                done += results[-1][0]
                if progress:
                    progress(done)
    problems = [p for _, found, _, _ in results for p in found]
    problem_count = sum(total for _, _, total, _ in results)
    ids = _Identities()
    for *_, found_ids in results:
        ids.extend(found_ids)
    conflicts = _conflicts(path, ids)
    problems += conflicts
    problem_count += len(conflicts)
    if problem_count:
        if problem_count > len(problems) or len(problems) > PROBLEMS_REPORTED_MAX:
            shown = problems[:PROBLEMS_REPORTED_MAX]
            problems = shown + [f"{path}: ... and {problem_count - len(shown)} more problems"]
        raise ValidationError(problems)
    return sum(count for count, *_ in results), [s for s in spools if s]


def _parts_for(path: Path) -> int:
    """How many processes scan a file: one below PARALLEL_SCAN_BYTES_MIN, else one per core (at most 4)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 1
    if size < PARALLEL_SCAN_BYTES_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, PARALLEL_SCAN_PROCESSES_MAX))


def validate_file(path: Path, progress: Callable[[int], None] | None = None,
                  bounds: TimeBounds = TimeBounds(), now_ms: int | None = None) -> int:
    """Check every line; return the event count or raise ValidationError listing `FILE:LINE: problem`."""
    return _scan(path, None, {}, _parts_for(path), progress, now_ms, bounds)[0]


def read_events(path: Path) -> Iterator[tuple[str, dict]]:
    """(record name, datum) for every line of an already validated file."""
    avro = avro_json_by_name()
    for _, text in iter_file(path):
        yield parse_event_line(text, avro)


def read_spools(spools: list[str]) -> Iterator[tuple[int, bytes, bytes]]:
    """Every frame of the spool files, in order (what `_scan` wrote)."""
    for spool in spools:
        with open(spool, "rb", buffering=SPOOL_BUFFER_BYTES) as handle:
            yield from read_frames(handle)


def publish_file(path: Path, settings: Settings, progress: Callable[[str, int], None] | None = None,
                 parts: int | None = None, bounds: TimeBounds = TimeBounds(), now_ms: int | None = None) -> int:
    """Validate the whole file, then publish every event with an idempotent producer; returns the count.

    One pass parses, checks and encodes each line into spool files (so a file with a bad line
    publishes nothing, and no line is parsed twice; large files are scanned by one process per
    core); the spools are then sent in file order, in record batches.
    """
    names = topic_names(settings)
    topics = list(names.upstream())
    topic_of = {record_name: topics.index(names.for_event(record_name)) for record_name in PUBLISHABLE_TYPES}
    schemas.prepare(PUBLISHABLE_TYPES)  # registry mode: the ids once, before the scan processes fork
    with tempfile.TemporaryDirectory(prefix="remedy-publish-") as spool_dir:
        total, spools = _scan(path, spool_dir, topic_of, parts or _parts_for(path),
                              (lambda n: progress("validated", n)) if progress else None, now_ms, bounds)

        published = send_frames(settings, topics, read_spools(spools),
                                (lambda n: progress("published", n)) if progress else None, PROGRESS_EVERY_LINES)
    if published != total:
        raise InvariantViolation(f"{path}: {total} lines validated but {published} published")
    return published
