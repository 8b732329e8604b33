"""Posting dates and closed periods (pure): where in the books a decision is posted.

Every ledger line has two dates: its event date (the UTC day of `decided_at`, the decision's event
time) and its posting date. A month finance has closed (`remedy-ledger finance close-period`,
a PeriodClosed event) is described by log positions, not by a clock: the first offset, per
partition of the decision topic, that its figures do not include (everything below it had been
projected when it closed). A decision at a position at or past a closed month's offsets posts to
the first month, from its event month on, that was still open at that position: its event date
is kept and it carries the LATE_POSTING mark. Every other decision posts on its event date.

So the posting of a decision is a function of its event time, its place in the decision log and
the closes, all facts in logs: a replay or a rebuild gives the same posting, and a closed month's
figures can never change (every decision that could still arrive is past its offsets). `posted_at`
(when the ledger learned a decision) is the decision record's Kafka timestamp, also a fact of the
log; a decision sent again after a crash keeps its first copy's posting (docs/projections.md).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Mapping

LATE_POSTING = "LATE_POSTING"
PERIOD_PATTERN = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# closed period "YYYY-MM" -> {partition: first offset not in its figures}
Closes = Mapping[str, Mapping[int, int]]


def period_problem(text: object) -> str | None:
    """Why a text is not a month to close (YYYY-MM, years 2000 to 9999), or None."""
    if not isinstance(text, str) or not PERIOD_PATTERN.match(text):
        return f"expected a month as YYYY-MM, got {text!r}"
    if int(text[:4]) < 2000:
        return f"{text} is before 2000"
    return None


def period_of(day: date) -> str:
    """The month a day is in, YYYY-MM."""
    return f"{day.year:04d}-{day.month:02d}"


def first_day(period: str) -> date:
    """The first day of a month YYYY-MM."""
    return date(int(period[:4]), int(period[5:7]), 1)


def next_period(period: str) -> str:
    """The month after a month."""
    year, month = int(period[:4]), int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def last_day(period: str) -> date:
    """The last day of a month YYYY-MM."""
    return first_day(next_period(period)) - timedelta(days=1)


def _day(ms: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)).date()


def closed_before(closes: Closes, period: str, partition: int, offset: int) -> bool:
    """True when `period` was closed before this position of the decision log."""
    offsets = closes.get(period)
    return offsets is not None and offset >= offsets.get(partition, 0)


def posting(event_ms: int, posted_ms: int, partition: int, offset: int, closes: Closes) -> tuple[date, str]:
    """(posting date, mark) of a decision: its event date and "" while its month is open at its
    position; else the first open month's day it was posted (or that month's first day, when it was
    posted after that month ended) and LATE_POSTING."""
    event_day = _day(event_ms)
    period = period_of(event_day)
    if not closed_before(closes, period, partition, offset):
        return event_day, ""
    while closed_before(closes, period, partition, offset):
        period = next_period(period)
    posted_day = _day(posted_ms)
    if first_day(period) <= posted_day <= last_day(period):
        return posted_day, LATE_POSTING
    return first_day(period), LATE_POSTING


def decision_offsets(projected: Mapping[int, int]) -> dict[str, int]:
    """A PeriodClosed's decision_offsets from the projected positions (highest offset per
    partition): the first offset past each; a partition with nothing projected is absent (0)."""
    return {str(partition): offset + 1 for partition, offset in sorted(projected.items())}
