"""`remedy-ledger dead-letters list|show|replay`: the dead-letter topic as an operator's tool.

Every dead letter keeps the original key and bytes, the source topic, partition and offset, and
the reason (schemas/avro/r1/DeadLetter.avsc). `replay` sends the original bytes back to their
source topic with provenance headers; a dead letter is replayed at most once, because the replay
carries a `remedy-replay-of` header naming it and `replay` reads the source topics for those
headers before it sends anything (docs/dead-letters.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

import schemas
from streams.errors import DecodeError, InvariantViolation, TransientError
from streams.runtime.kafka_io import idempotent_aio_producer, read_topic, topic_names
from streams.runtime.settings import load_settings

# Longest a read of the dead-letter topic to its end may take.
DEAD_LETTER_READ_TIMEOUT_S = 120
# Longest `replay` may spend reading the source topics for earlier replays: they hold every
# event, so this is sized for millions of records (kafka-python reads ~50k records/s here).
REPLAY_SCAN_TIMEOUT_S = 900
# Headers of a replayed record: which dead letter it replays, and where the original was read.
REPLAY_OF_HEADER = "remedy-replay-of"
REPLAY_SOURCE_HEADER = "remedy-replay-source"
# Characters of a reason shown in one row of `list` (the whole reason is in `show` and --json).
REASON_CHARS_SHOWN = 90
# Bytes of the original value per line of the hex dump in `show`.
HEX_BYTES_PER_LINE = 32


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic: where it is, when it was written, and its DeadLetter datum."""

    partition: int
    offset: int
    written_ms: int | None
    datum: dict | None
    problem: str | None = None  # why the record is not a readable DeadLetter (then datum is None)

    @property
    def position(self) -> str:
        """`PARTITION:OFFSET` on the dead-letter topic: what `show` takes."""
        return f"{self.partition}:{self.offset}"


def _printable(text: str) -> str:
    # Reasons and ids came from outside: escape anything a terminal would obey (ESC, NUL, ...).
    return text if text.isprintable() else repr(text)[1:-1]


def _iso_ms(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def read_letters(settings) -> list[Letter]:
    """Every record on the dead-letter topic, decoded where it is a DeadLetter."""
    topic = topic_names(settings).dead_letter
    letters = []
    for record in read_topic(settings.kafka, topic, DEAD_LETTER_READ_TIMEOUT_S, "remedy-dead-letters",
                             missing_ok=True):
        written_ms = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None
        try:
            if record.value is None:
                raise DecodeError("empty message (null value)")
            record_name, datum = schemas.decode(record.value)
            if record_name != "DeadLetter":
                raise DecodeError(f"a {record_name}, not a DeadLetter")
            letters.append(Letter(record.partition, record.offset, written_ms, datum))
        except DecodeError as error:
            letters.append(Letter(record.partition, record.offset, written_ms, None, f"not a readable DeadLetter: {error}"))
    return sorted(letters, key=lambda letter: (letter.written_ms or 0, letter.partition, letter.offset))


def _since_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvariantViolation(f"--since: expected a date like 2026-11-21, got {text!r}") from None
    return int(day.timestamp() * 1000)


def _matches(letter: Letter, reason: str | None, since_ms: int | None) -> bool:
    if since_ms is not None and (letter.written_ms is None or letter.written_ms < since_ms):
        return False
    if reason is None:
        return True
    text = letter.problem if letter.datum is None else f"{letter.datum['error_type']} {letter.datum['reason']}"
    return reason.lower() in text.lower()


def _original(datum: dict) -> dict:
    """The dead letter's original bytes decoded, or why they cannot be."""
    try:
        record_name, original = schemas.decode(datum["original_value"])
    except DecodeError as error:
        return {"decodes": False, "error": str(error)}
    return {"decodes": True, "record": record_name, "datum": _jsonable(original)}


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    return value


def _as_json(letter: Letter, with_bytes: bool) -> dict:
    row = {"position": letter.position, "partition": letter.partition, "offset": letter.offset,
           "written_at": _iso_ms(letter.written_ms)}
    if letter.datum is None:
        return {**row, "readable": False, "problem": letter.problem}
    datum = letter.datum
    row.update({
        "readable": True,
        "source": f"{datum['source_topic']}:{datum['source_partition']}:{datum['source_offset']}",
        "source_topic": datum["source_topic"], "source_partition": datum["source_partition"],
        "source_offset": datum["source_offset"], "source_timestamp": _iso_ms(datum["source_timestamp_ms"]),
        "error_type": datum["error_type"], "reason": datum["reason"],
        "key_hex": datum["key"].hex() if datum["key"] is not None else None,
        "original_bytes": len(datum["original_value"]),
    })
    if with_bytes:
        row["original_hex"] = datum["original_value"].hex()
        row["original"] = _original(datum)
    return row


def cmd_list(args) -> int:
    """List dead letters, oldest first, with their source position and reason."""
    letters = [letter for letter in read_letters(load_settings())
               if _matches(letter, args.reason, _since_ms(args.since))]
    if args.json:
        print(json.dumps([_as_json(letter, with_bytes=False) for letter in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters" + (" match" if args.reason or args.since else ""))
        return 0
    print(f"{'position':10} {'written (UTC)':19}  {'source':44} {'error':18} reason")
    for letter in letters:
        when = _iso_ms(letter.written_ms)[:19]
        if letter.datum is None:
            print(f"{letter.position:10} {when:19}  {'-':44} {'-':18} {_printable(letter.problem)}")
            continue
        datum = letter.datum
        source = f"{datum['source_topic']}:{datum['source_partition']}:{datum['source_offset']}"
        reason = _printable(datum["reason"])
        if len(reason) > REASON_CHARS_SHOWN:
            reason = reason[:REASON_CHARS_SHOWN - 3] + "..."
        print(f"{letter.position:10} {when:19}  {_printable(source):44} {_printable(datum['error_type']):18} {reason}")
    print(f"{len(letters)} dead letter(s); `remedy-ledger dead-letters show PARTITION:OFFSET` for one")
    return 0


def _find(letters: list[Letter], position: str, partition: int | None) -> Letter:
    """The dead letter at `PARTITION:OFFSET`, or at OFFSET when only one partition has it."""
    text = position.strip()
    if ":" in text:
        partition_text, _, text = text.partition(":")
        if not partition_text.isdigit():
            raise InvariantViolation(f"{position!r}: expected OFFSET or PARTITION:OFFSET")
        partition = int(partition_text)
    if not text.isdigit():
        raise InvariantViolation(f"{position!r}: expected OFFSET or PARTITION:OFFSET")
    offset = int(text)
    found = [letter for letter in letters if letter.offset == offset
             and (partition is None or letter.partition == partition)]
    if not found:
        raise InvariantViolation(f"no dead letter at {position} (see `remedy-ledger dead-letters list`)")
    if len(found) > 1:
        raise InvariantViolation(f"offset {offset} is on partitions {', '.join(str(l.partition) for l in found)}; "
                                 "name one as PARTITION:OFFSET")
    return found[0]


def cmd_show(args) -> int:
    """Show one dead letter: its source, reason, the original decoded where possible, and its bytes as hex."""
    letter = _find(read_letters(load_settings()), args.offset, args.partition)
    if args.json:
        print(json.dumps(_as_json(letter, with_bytes=True), indent=2))
        return 0
    print(f"dead letter {letter.position}, written {_iso_ms(letter.written_ms)}")
    if letter.datum is None:
        print(f"  {_printable(letter.problem)}")
        return 0
    datum = letter.datum
    print(f"  source     {_printable(datum['source_topic'])} partition {datum['source_partition']} "
          f"offset {datum['source_offset']} (timestamp {_iso_ms(datum['source_timestamp_ms'])})")
    print(f"  error      {_printable(datum['error_type'])}")
    print(f"  reason     {_printable(datum['reason'])}")
    key = datum["key"]
    print(f"  key        {'(none)' if key is None else _printable(key.decode('utf-8', 'backslashreplace'))}"
          f"{'' if key is None else '  hex ' + key.hex()}")
    original = _original(datum)
    if original["decodes"]:
        print(f"  original   {original['record']}:")
        for line in json.dumps(original["datum"], indent=2, ensure_ascii=True).splitlines():
            print(f"    {line}")
    else:
        print(f"  original   does not decode: {_printable(original['error'])}")
    value = datum["original_value"]
    print(f"  bytes      {len(value)}")
    for start in range(0, len(value), HEX_BYTES_PER_LINE):
        print(f"    {start:08x}  {value[start:start + HEX_BYTES_PER_LINE].hex(' ')}")
    return 0


def _replayable_topics(settings) -> set[str]:
    """Topics a dead letter may go back to: this deployment's event topics (never the policy, changelogs or DLQ)."""
    names = topic_names(settings)
    return {names.orders, names.incidents, names.requests, names.limit_checks, names.limit_results, names.decisions}


def replayed_already(settings, topics: set[str]) -> dict[str, str]:
    """Dead letters (`DLQ-TOPIC:PARTITION:OFFSET`) already replayed, with where their replay is."""
    found: dict[str, str] = {}
    for topic in sorted(topics):
        for record in read_topic(settings.kafka, topic, REPLAY_SCAN_TIMEOUT_S, "remedy-dead-letters",
                                 missing_ok=True):
            for name, value in record.headers or ():
                if name == REPLAY_OF_HEADER and value is not None:
                    found.setdefault(value.decode("utf-8", "replace"), f"{topic}:{record.partition}:{record.offset}")
    return found


def cmd_replay(args) -> int:
    """Send dead letters' original bytes back to their source topic with provenance headers, each at most once."""
    settings = load_settings()
    dead_letter_topic = topic_names(settings).dead_letter
    allowed = _replayable_topics(settings)
    candidates = [letter for letter in read_letters(settings)
                  if letter.datum is not None and _matches(letter, args.reason, None)]
    done = replayed_already(settings, {letter.datum["source_topic"] for letter in candidates} & allowed)
    plan, skipped = [], []
    for letter in candidates:
        marker = f"{dead_letter_topic}:{letter.position}"
        datum = letter.datum
        if marker in done:
            skipped.append((letter, f"already replayed as {done[marker]}"))
        elif datum["source_topic"] not in allowed:
            skipped.append((letter, f"source topic {_printable(datum['source_topic'])} is not an event topic of this deployment"))
        elif not datum["original_value"]:
            skipped.append((letter, "no original bytes to replay"))
        else:
            plan.append((letter, marker))
    verb = "would replay" if args.dry_run else "replaying"
    for letter, marker in plan:
        datum = letter.datum
        print(f"{verb} {letter.position} -> {_printable(datum['source_topic'])}  ({_printable(datum['error_type'])}: "
              f"{_printable(datum['reason'])[:REASON_CHARS_SHOWN]})")
    for letter, why in skipped:
        print(f"skipped {letter.position}: {why}")
    if not args.dry_run and plan:
        asyncio.run(_send(settings, plan))
    summary = f"{len(plan)} {'to replay (dry run, nothing sent)' if args.dry_run else 'replayed'}, {len(skipped)} skipped"
    print(summary, file=sys.stderr)
    return 0


async def _send(settings, plan: list[tuple[Letter, str]]) -> None:
    """Publish each planned dead letter's original key and bytes to its source topic, waiting for every ack."""
    from aiokafka.errors import KafkaError

    producer = idempotent_aio_producer(settings.kafka, "remedy-dead-letters")
    try:
        await producer.start()
        pending = []
        for letter, marker in plan:
            datum = letter.datum
            source = f"{datum['source_topic']}:{datum['source_partition']}:{datum['source_offset']}"
            # The partition is left to murmur2(key), where the worker expects the key's records,
            # even if the original was mis-partitioned.
            pending.append(await producer.send(
                datum["source_topic"], value=datum["original_value"], key=datum["key"],
                headers=[(REPLAY_OF_HEADER, marker.encode()), (REPLAY_SOURCE_HEADER, source.encode())],
            ))
        await asyncio.gather(*pending)
    except KafkaError as error:
        raise TransientError(f"the broker did not acknowledge every replayed record: {error}") from None
    finally:
        await producer.stop()


def register(sub) -> None:
    """Add the dead-letters subcommands to the root parser's subparsers."""
    dead = sub.add_parser("dead-letters", help="inspect and replay the dead-letter topic")
    dead_sub = dead.add_subparsers(dest="dead_letters_command", required=True)
    listing = dead_sub.add_parser("list", help=cmd_list.__doc__)
    listing.add_argument("--since", help="only dead letters written on or after this UTC date (YYYY-MM-DD)")
    listing.add_argument("--reason", help="only dead letters whose error type or reason contains this text")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)
    show = dead_sub.add_parser("show", help=cmd_show.__doc__)
    show.add_argument("offset", help="PARTITION:OFFSET as `list` prints it, or OFFSET")
    show.add_argument("--partition", type=int, help="the dead-letter partition, when OFFSET alone is ambiguous")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)
    replay = dead_sub.add_parser("replay", help=cmd_replay.__doc__)
    replay.add_argument("--reason", help="only dead letters whose error type or reason contains this text")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed; send nothing")
    replay.set_defaults(run=cmd_replay)
