"""The finance chart and the associates view on the real ClickHouse engine (chDB), issue 10: every
granted kind on a real date axis for a one-day and a 60-day ledger, and associates only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from projections.finance import CHART_KINDS, chart
from projections.projector import build_batch
from projections.store import parse_day
from tests.integration.test_projections_store import NAMES, messages, store  # noqa: F401 - the chDB store fixture
from tests.unit.test_projection_postings import decision

KINDS = tuple(CHART_KINDS)
START = datetime(2026, 9, 1, 10, tzinfo=timezone.utc)


def ledger(days: int, per_day: int) -> list[dict]:
    """Grants of every kind on each of `days` days (EUR on even decisions of a day), plus one denial a day."""
    out = []
    for day in range(days):
        for n in range(per_day):
            number = day * 100 + n
            out.append(decision(number, kind=KINDS[n % len(KINDS)], cents=100 * (n + 1) + day,
                                currency="EUR" if n % 2 else "USD", customer_id=f"c{n}",
                                decided_at=START + timedelta(days=day, minutes=n)))
        out.append(decision(day * 100 + 99, kind="CREDIT", outcome="DENIED", decided_at=START + timedelta(days=day)))
    return out


def expected_cents(decisions: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """Per currency, kind and day: the granted cents the chart must show, summed here independently."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for d in decisions:
        if d["outcome"] == "GRANTED":
            by_day = out.setdefault(d["currency"], {}).setdefault(d["kind"], {})
            day = d["decided_at"].date().isoformat()
            by_day[day] = by_day.get(day, 0) + d["granted_cents"]
    return out


@pytest.mark.parametrize("days", [1, 60])
def test_the_chart_shows_every_granted_kind_per_currency_on_a_date_axis(store, tmp_path, days):
    decisions = ledger(days, per_day=10)
    store.write_batch(build_batch(messages(decisions), NAMES))
    first, last = START.date().isoformat(), (START.date() + timedelta(days=days - 1)).isoformat()
    rows = store.daily_granted(parse_day(first, "since"), parse_day(last, "until"))
    out = tmp_path / f"chart-{days}.png"
    data = chart(rows, str(out), first, last)

    assert (data["first_day"], data["last_day"], data["days"]) == (first, last, days)
    assert data["x_label"] == "day granted (UTC)"
    assert [panel["currency"] for panel in data["panels"]] == ["EUR", "USD"]
    assert [panel["y_label"] for panel in data["panels"]] == ["amount granted (EUR)", "amount granted (USD)"]
    drawn = {panel["currency"]: panel["cents"] for panel in data["panels"]}
    assert drawn == expected_cents(decisions)
    assert {kind for panel in drawn.values() for kind in panel} == set(KINDS)  # refunds too: every kind
    assert {len(by_day) for panel in drawn.values() for by_day in panel.values()} == {days}
    assert data["counts"] == {}  # two currencies: a count per day would mix them
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] >= 1200  # the same width for one day and for sixty


def test_associates_counts_only_associates_within_the_period(store):
    at = START + timedelta(days=3)
    decisions = [
        decision(1, requested_by="assoc-ann", cents=1_000, decided_at=at),
        decision(2, requested_by="assoc-ann", cents=500, currency="EUR", decided_at=at),
        decision(3, requested_by="customer", cents=700, decided_at=at),
        decision(4, requested_by="system", cents=900, decided_at=at),
        decision(5, requested_by="assoc-bob", cents=300, decided_at=at + timedelta(days=10)),
        decision(6, requested_by="customer", cents=800, decided_at=at, decided_by="lead-1"),
    ]
    store.write_batch(build_batch(messages(decisions), NAMES))
    rows = store.associates(parse_day("2026-09-04", "since"), parse_day("2026-09-04", "until"))
    assert [(r["role"], r["associate_id"], r["granted_count"], r["granted_cents"]) for r in rows] == [
        ("requested", "assoc-ann", 2, {"EUR": 500, "USD": 1_000}),
        ("decided", "lead-1", 1, {"USD": 800}),
    ]
    everyone = {r["associate_id"] for r in store.associates()}
    assert everyone == {"assoc-ann", "assoc-bob", "lead-1"}
