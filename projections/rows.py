"""Decision events to ledger rows (pure): the column order the ledger table is written in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

LEDGER_COLUMNS = (
    "decision_id",
    "request_id",
    "customer_id",
    "order_id",
    "incident_id",
    "kind",
    "outcome",
    "requested_cents",
    "granted_cents",
    "currency",
    "reason_codes",
    "policy_version",
    "requested_by",
    "requested_at",
    "decided_at",
    "inputs",
    "source_partition",
    "source_offset",
)

REMEDY_KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")
OUTCOMES = ("GRANTED", "DENIED", "ESCALATED")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(value: datetime | int) -> datetime:
    if isinstance(value, int):
        # Integer milliseconds via timedelta: float seconds would round some milliseconds down.
        return _EPOCH + timedelta(milliseconds=value)
    return value.astimezone(timezone.utc)


def ledger_row(decision: dict, partition: int, offset: int) -> list:
    """One ledger row for a decoded RemedyDecided datum and its position on the decision topic."""
    return [
        decision["decision_id"],
        decision["request_id"],
        decision["customer_id"],
        decision.get("order_id"),
        decision.get("incident_id"),
        decision["kind"],
        decision["outcome"],
        decision["requested_cents"],
        decision["granted_cents"],
        decision["currency"],
        list(decision["reason_codes"]),
        decision["policy_version"],
        decision["requested_by"],
        _utc(decision["requested_at"]),
        _utc(decision["decided_at"]),
        dict(decision["inputs"]),
        partition,
        offset,
    ]


def dedup_token(topic: str, positions: list[tuple[int, int]]) -> str:
    """A deterministic insert deduplication token for a batch: its topic and offset range per partition."""
    ranges: dict[int, list[int]] = {}
    for partition, offset in positions:
        low_high = ranges.setdefault(partition, [offset, offset])
        low_high[0] = min(low_high[0], offset)
        low_high[1] = max(low_high[1], offset)
    parts = ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))
    return f"{topic}/{parts}"
