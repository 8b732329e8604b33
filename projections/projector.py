"""The projector's batch logic: decision messages to ledger rows, kept apart from Faust.

The `project` agent hands a batch of consumed decision messages to `build_batch` and writes the
result with `Store.write_batch`; undecodable messages come back as dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import schemas
from projections.rows import dedup_token, ledger_row
from streams.batch import Incoming, dead_letter
from streams.errors import DecodeError, InvariantViolation
from streams.topics import TopicNames


@dataclass
class ProjectionBatch:
    """Rows to insert for one batch, the insert deduplication token, and dead letters."""

    ledger_rows: list[list] = field(default_factory=list)
    token: str = ""
    dead_letters: list[dict] = field(default_factory=list)


def build_batch(messages: list[Incoming], names: TopicNames) -> ProjectionBatch:
    """Decode a batch of decision messages into ledger rows; bad messages become dead letters."""
    batch = ProjectionBatch()
    positions = []
    for message in messages:
        try:
            record_name, decision = schemas.decode(message.value or b"")
            if record_name != "RemedyDecided":
                raise InvariantViolation(f"{record_name} does not belong on {message.topic}")
        except (DecodeError, InvariantViolation) as error:
            batch.dead_letters.append(dead_letter(message, type(error).__name__, str(error)))
            continue
        batch.ledger_rows.append(ledger_row(decision, message.partition, message.offset))
        positions.append((message.partition, message.offset))
    batch.token = dedup_token(names.decisions, positions) if positions else ""
    return batch
