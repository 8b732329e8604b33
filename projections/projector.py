"""The projector's batch logic: decision messages to ledger and posting rows, kept apart from Kafka.

The `project` agent hands a batch of consumed decision messages to `build_batch` and writes the
result with `Store.write_batch`; undecodable messages come back as dead letters. The postings of
a superseding decision need the decision it supersedes: it is earlier on the same partition (both
are keyed by customer), so it is either in the batch or already in ClickHouse, and the store
passes it in through `posting_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import schemas
from projections.postings import postings_for
from projections.rows import decision_row, dedup_token, posting_row
from streams.core.privacy import Erasure
from streams.runtime.batch import Incoming, dead_letter
from streams.errors import DecodeError, InvariantViolation
from streams.runtime.topics import TopicNames


@dataclass
class ProjectionBatch:
    """Rows to insert for one batch, the insert deduplication token, and dead letters."""

    ledger_rows: list[list] = field(default_factory=list)
    token: str = ""
    dead_letters: list[dict] = field(default_factory=list)
    # (decoded decision, partition, offset) in topic order, for the postings.
    decisions: list[tuple[dict, int, int]] = field(default_factory=list)
    # Highest offset per partition in the batch (decoded or not).
    positions: dict[int, int] = field(default_factory=dict)

    def superseded_ids(self) -> set[str]:
        """Ids of decisions superseded by decisions of this batch."""
        return {d["supersedes_decision_id"] for d, _, _ in self.decisions if d.get("supersedes_decision_id")}

    def posting_rows(self, known: dict[str, dict]) -> list[list]:
        """The postings of every decision in the batch; `known` holds superseded decisions from earlier batches."""
        seen = dict(known)
        rows = []
        for decision, partition, offset in self.decisions:
            superseded = seen.get(decision.get("supersedes_decision_id") or "")
            for posting in postings_for(decision, superseded):
                rows.append(posting_row(posting, decision, partition, offset))
            seen[decision["decision_id"]] = decision
        return rows


def build_batch(messages: list[Incoming], names: TopicNames, erasure: Erasure = Erasure()) -> ProjectionBatch:
    """Decode a batch of decision messages into ledger rows; bad messages become dead letters.

    Decisions of erased customers are written in their erased form (docs/privacy.md)."""
    batch = ProjectionBatch()
    positions = []
    for message in messages:
        batch.positions[message.partition] = max(message.offset, batch.positions.get(message.partition, -1))
        try:
            record_name, decision = schemas.decode(message.value or b"")
            if record_name != "RemedyDecided":
                raise InvariantViolation(f"{record_name} does not belong on {message.topic}")
        except (DecodeError, InvariantViolation) as error:
            batch.dead_letters.append(dead_letter(message, type(error).__name__, str(error)))
            continue
        decision = erasure.decision(decision)
        batch.ledger_rows.append(decision_row(decision, message.partition, message.offset))
        batch.decisions.append((decision, message.partition, message.offset))
        positions.append((message.partition, message.offset))
    batch.token = dedup_token(names.decisions, positions) if positions else ""
    return batch
