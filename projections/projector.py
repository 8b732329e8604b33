"""The projector's batch logic: decision messages to ledger and posting rows, kept apart from Kafka.

The `project` agent hands a batch of consumed decision messages to `build_batch` and writes the
result with `Store.write_batch`; undecodable messages come back as dead letters. The postings of
a superseding decision need the decision it supersedes: it is earlier on the same partition (both
are keyed by customer), so it is either in the batch or already in ClickHouse, and the store
passes it in through `posting_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datetime import datetime, timedelta, timezone

import schemas

from projections.periods import Closes, posting
from projections.postings import postings_for
from projections.rows import POSTING_FIELDS, decision_row, dedup_token, posting_row
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
    # Per ledger row: the decision record's Kafka timestamp (ms), when the ledger learned it.
    posted_ms: list[int] = field(default_factory=list)

    def posted_rows(self, closes: Closes, earlier: dict[str, tuple]) -> list[list]:
        """The ledger rows with their posting (posted_at, posting_date, posting_mark): a decision
        already in the ledger (`earlier`, by id) or earlier in the batch keeps its first posting,
        so a copy sent again after a crash never moves it; others post by projections.periods."""
        first = dict(earlier)
        rows = []
        for row, (decision, partition, offset), posted_ms in zip(self.ledger_rows, self.decisions, self.posted_ms):
            known = first.get(decision["decision_id"])
            if known is None:
                day, mark = posting(_ms(decision["decided_at"]), posted_ms, partition, offset, closes)
                known = (_EPOCH + timedelta(milliseconds=posted_ms), day, mark)
                first[decision["decision_id"]] = known
            rows.append([*row[:-POSTING_FIELDS], *known])
        return rows

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


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms(value: datetime | int) -> int:
    """Milliseconds since the epoch of a decoded timestamp (exact: no float seconds)."""
    if isinstance(value, int):
        return value
    return (value - _EPOCH) // timedelta(milliseconds=1)


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
        batch.posted_ms.append(message.timestamp_ms if message.timestamp_ms is not None else _ms(decision["decided_at"]))
        batch.decisions.append((decision, message.partition, message.offset))
        positions.append((message.partition, message.offset))
    batch.token = dedup_token(names.decisions, positions) if positions else ""
    return batch
