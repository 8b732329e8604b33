"""Posting dates and closed periods (projections/periods.py): a closed month's figures never change."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from projections import periods
from projections.projector import ProjectionBatch
from projections.rows import decision_row


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


OCT_15 = ms("2026-10-15T12:00:00")
NOV_30 = ms("2026-11-30T09:00:00")
DEC_05 = ms("2026-12-05T09:00:00")
OCTOBER_CLOSED_AT_10 = {"2026-10": {0: 10, 1: 4}}


@pytest.mark.parametrize("offset, expected", [
    (9, (date(2026, 10, 15), "")),                       # one below the close: in October's figures
    (10, (date(2026, 11, 30), periods.LATE_POSTING)),    # at the close: October is closed to it
    (11, (date(2026, 11, 30), periods.LATE_POSTING)),    # above
])
def test_a_decision_dated_in_a_closed_month_posts_late_from_the_close_offset_on(offset, expected):
    assert periods.posting(OCT_15, NOV_30, 0, offset, OCTOBER_CLOSED_AT_10) == expected


def test_the_offsets_are_per_partition_and_a_partition_not_named_closed_from_its_start():
    assert periods.posting(OCT_15, NOV_30, 1, 3, OCTOBER_CLOSED_AT_10) == (date(2026, 10, 15), "")
    assert periods.posting(OCT_15, NOV_30, 1, 4, OCTOBER_CLOSED_AT_10)[1] == periods.LATE_POSTING
    assert periods.posting(OCT_15, NOV_30, 2, 0, OCTOBER_CLOSED_AT_10)[1] == periods.LATE_POSTING


def test_posted_after_the_first_open_month_ended_it_posts_on_that_months_first_day():
    assert periods.posting(OCT_15, DEC_05, 0, 10, OCTOBER_CLOSED_AT_10) == (date(2026, 11, 1), periods.LATE_POSTING)


def test_several_closed_months_skip_to_the_first_open_one_at_that_position():
    closes = {"2026-10": {0: 10}, "2026-11": {0: 20}}
    assert periods.posting(OCT_15, DEC_05, 0, 15, closes) == (date(2026, 11, 1), periods.LATE_POSTING)
    assert periods.posting(OCT_15, DEC_05, 0, 20, closes) == (date(2026, 12, 5), periods.LATE_POSTING)


def test_an_open_month_posts_on_the_event_date_however_late_it_was_learned():
    assert periods.posting(OCT_15, DEC_05, 0, 99, {}) == (date(2026, 10, 15), "")


@pytest.mark.parametrize("text, problem", [
    ("2026-10", None), ("2026-13", "expected a month"), ("2026-1", "expected a month"), ("1999-12", "before 2000"),
    (None, "expected a month"),
])
def test_a_period_is_a_month(text, problem):
    found = periods.period_problem(text)
    assert (found is None) if problem is None else (problem in found)


def test_december_is_followed_by_january():
    assert periods.next_period("2026-12") == "2027-01" and periods.last_day("2026-02") == date(2026, 2, 28)


def test_close_offsets_are_one_past_the_projected_positions():
    assert periods.decision_offsets({1: 4, 0: 9}) == {"0": 10, "1": 5}


def _decision(decision_id: str, decided_ms: int) -> dict:
    return {"decision_id": decision_id, "request_id": "r", "customer_id": "c", "order_id": None, "incident_id": None,
            "kind": "CREDIT", "outcome": "GRANTED", "requested_cents": 100, "granted_cents": 100, "currency": "USD",
            "reason_codes": ["WITHIN_LIMITS"], "policy_version": "p", "requested_by": "customer",
            "requested_at": decided_ms, "decided_at": decided_ms, "inputs": {}}


def test_a_decision_sent_again_after_the_close_keeps_its_first_posting():
    batch = ProjectionBatch()
    for offset, posted in ((9, OCT_15), (12, NOV_30)):  # the same decision, re-sent after a crash
        decision = _decision("dec-1", OCT_15)
        batch.ledger_rows.append(decision_row(decision, 0, offset))
        batch.decisions.append((decision, 0, offset))
        batch.posted_ms.append(posted)
    rows = batch.posted_rows(OCTOBER_CLOSED_AT_10, {})
    assert [row[-2:] for row in rows] == [[date(2026, 10, 15), ""], [date(2026, 10, 15), ""]]
    # Already in the ledger from an earlier batch: that posting stands too.
    earlier = {"dec-1": (datetime(2026, 10, 15, tzinfo=timezone.utc), date(2026, 10, 15), "")}
    batch.ledger_rows, batch.decisions, batch.posted_ms = batch.ledger_rows[1:], batch.decisions[1:], batch.posted_ms[1:]
    assert batch.posted_rows(OCTOBER_CLOSED_AT_10, earlier)[0][-2:] == [date(2026, 10, 15), ""]
    assert batch.posted_rows(OCTOBER_CLOSED_AT_10, {})[0][-2:] == [date(2026, 11, 30), periods.LATE_POSTING]
