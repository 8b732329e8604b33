"""Decision events to ledger rows (pure): the column order the ledger table is written in."""

from __future__ import annotations

import json
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


# The columns of decisions_v2 (migration 0002), in the order decision_row writes them.
DECISION_COLUMNS = (
    *LEDGER_COLUMNS[:-2],
    "supersedes_decision_id",
    "decided_by",
    "origin",
    "incident_kind",
    "trust_tier",
    "household_id",
    "note",
    "items_json",
    "shipping_address_id",
    "shipping_speed",
    "gift_message",
    "source_partition",
    "source_offset",
    # Posting (migration 0006; projections/periods.py): filled by ProjectionBatch.posted_rows.
    "posted_at",
    "posting_date",
    "posting_mark",
)
# The posting columns at the end of a decisions_v2 row.
POSTING_FIELDS = 3
# The columns of postings_v2 (migration 0002), in the order posting_row writes them.
POSTING_COLUMNS = (
    "decision_id",
    "line",
    "request_id",
    "customer_id",
    "kind",
    "account",
    "amount_cents",
    "currency",
    "role",
    "source_decision_id",
    "decided_at",
    "source_partition",
    "source_offset",
)


def decision_row(decision: dict, partition: int, offset: int) -> list:
    """One decisions_v2 row for a decoded RemedyDecided datum (older revisions read with the defaults)."""
    base = ledger_row(decision, partition, offset)
    return [
        *base[:-2],
        decision.get("supersedes_decision_id"),
        decision.get("decided_by", "policy"),
        decision.get("origin") or "UNKNOWN",
        decision.get("incident_kind") or "",
        decision.get("trust_tier"),
        decision.get("household_id"),
        decision.get("note"),
        items_json(decision.get("items")),
        decision.get("shipping_address_id"),
        decision.get("shipping_speed"),
        decision.get("gift_message"),
        partition,
        offset,
        # Posting: the event date until ProjectionBatch.posted_rows places it (projections/periods.py).
        _utc(decision["decided_at"]),
        _utc(decision["decided_at"]).date(),
        "",
    ]


def items_json(items: list[dict] | None) -> str | None:
    """A decision's items as compact JSON in sku order of the request (None: the whole order)."""
    if items is None:
        return None
    return json.dumps([{"sku": i["sku"], "quantity": i["quantity"], "unit_price_cents": i["unit_price_cents"]}
                       for i in items], separators=(",", ":"))


def posting_row(posting, decision: dict, partition: int, offset: int) -> list:
    """One postings_v2 row: a projections.postings.Posting of a decision at its topic position."""
    return [
        posting.decision_id,
        posting.line,
        decision["request_id"],
        decision["customer_id"],
        decision["kind"],
        posting.account,
        posting.amount_cents,
        posting.currency,
        posting.role,
        posting.source_decision_id,
        _utc(decision["decided_at"]),
        partition,
        offset,
    ]


# The columns of shadow_decisions (migration 0010), in order.
SHADOW_COLUMNS = ("decision_id", "request_id", "customer_id", "kind", "outcome", "requested_cents", "granted_cents",
                  "currency", "reason_codes", "policy_version", "requested_at", "decided_at")


def shadow_row(decision: dict) -> list:
    """A shadow decision as a shadow_decisions row."""
    return [decision["decision_id"], decision["request_id"], decision["customer_id"], decision["kind"],
            decision["outcome"], decision["requested_cents"], decision["granted_cents"], decision["currency"],
            list(decision["reason_codes"]), decision["policy_version"], _utc(decision["requested_at"]),
            _utc(decision["decided_at"])]
