"""The projection store on the real ClickHouse engine (chDB): exact figures, replays, the rebuild trap.

No broker here: decisions are encoded and handed to the projector as consumed messages would be.
The same Store code runs against an http(s) server; nothing below uses a chDB-only feature.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime, timedelta, timezone

import pytest

import schemas
from projections.figures import differences, fold
from projections.projector import build_batch
from projections.store import Store
from streams.core.money import merged_cents
from streams.runtime.batch import Incoming
from streams.runtime.topics import TopicNames
from tests.unit.test_projection_postings import KINDS, decision

NAMES = TopicNames(prefix="t", app_id="t-worker")


@pytest.fixture
def store(tmp_path):
    opened = Store(f"chdb://{tmp_path / 'clickhouse'}", "remedy")
    opened.migrate()
    yield opened
    opened.close()


def workload(count: int, seed: int) -> list[dict]:
    """Decisions of every kind and outcome over a few days, with reviews and reversals of earlier ones."""
    rng = random.Random(seed)
    out = []
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    for n in range(count):
        when = start + timedelta(minutes=7 * n)
        out.append(decision(n, kind=rng.choice(KINDS), outcome=rng.choice(("GRANTED", "GRANTED", "DENIED", "ESCALATED")),
                            cents=rng.randint(100, 20_000), customer_id=f"c{n % 40}", decided_at=when,
                            origin=rng.choice(("CUSTOMER", "ASSOCIATE", "PROACTIVE")),
                            requested_by=rng.choice(("system", "assoc-1", "assoc-2")),
                            incident_kind=rng.choice((None, "LOST_IN_TRANSIT", "DAMAGED"))))
        if n % 9 == 8:  # a person reviews an earlier decision of the same customer
            earlier = out[-5]
            if earlier["customer_id"] == out[-1]["customer_id"] or True:
                review = decision(10_000 + n, kind=earlier["kind"], outcome=rng.choice(("GRANTED", "DENIED")),
                                  cents=rng.randint(100, 5_000), customer_id=earlier["customer_id"],
                                  request_id=earlier["request_id"], decided_at=when + timedelta(minutes=1),
                                  supersedes_decision_id=earlier["decision_id"], decided_by="lead-1")
                out.append(review)
    # Only one decision may supersede a given one; keep the first review.
    seen, unique = set(), []
    for d in out:
        target = d["supersedes_decision_id"]
        if target and (target in seen or any(x["supersedes_decision_id"] == d["decision_id"] for x in out)):
            continue
        if target:
            seen.add(target)
        unique.append(d)
    return unique


def messages(decisions: list[dict], partitions: int = 4) -> list[Incoming]:
    """Decisions as consumed messages: partitioned by customer, offsets in order per partition."""
    offsets = [0] * partitions
    out = []
    for d in decisions:
        partition = sum(d["customer_id"].encode()) % partitions
        out.append(Incoming(topic=NAMES.decisions, partition=partition, offset=offsets[partition], key=None,
                            value=schemas.encode("RemedyDecided", d)))
        offsets[partition] += 1
    return out


def project(store: Store, consumed: list[Incoming], batch_size: int, suffix: str = "") -> None:
    for start in range(0, len(consumed), batch_size):
        store.write_batch(build_batch(consumed[start:start + batch_size], NAMES), suffix)


def test_clickhouse_figures_equal_the_fold_including_reviews_and_reversals(store):
    decisions = workload(600, seed=1)
    assert any(d["supersedes_decision_id"] for d in decisions)
    project(store, messages(decisions), batch_size=97)
    figures = store.figures()
    assert differences(fold(decisions), figures) == []
    assert figures["unbalanced_decisions"] == {}
    assert figures["posting_lines"]["reversal"] > 0


def test_replaying_every_decision_twice_with_other_batch_bounds_changes_no_figure(store):
    decisions = workload(400, seed=2)
    consumed = messages(decisions)
    project(store, consumed, batch_size=50)
    before, totals_before = store.figures(), store.totals()
    project(store, consumed, batch_size=50)   # the same tokens: retried inserts are no-ops
    project(store, consumed, batch_size=71)   # other tokens: rows land again, FINAL collapses them
    assert store.figures() == before
    assert store.totals() == totals_before


def test_a_rebuild_into_the_same_table_with_old_tokens_loses_rows_so_rebuilds_use_new_tables(store):
    decisions = workload(300, seed=3)
    consumed = messages(decisions)
    project(store, consumed, batch_size=60)
    before = store.figures()
    # The trap (FIELD_NOTES): empty the live table and re-send the same batches with the same tokens.
    store.client.command("ALTER TABLE remedy.decisions_v2 DELETE WHERE 1 SETTINGS mutations_sync = 2")
    project(store, consumed, batch_size=60)
    assert store.figures()["decisions"]["all"] == 0, "ClickHouse dropped the re-sent rows as duplicates"
    # The versioned-table rebuild: fresh tables, the same tokens, then an exchange.
    store.rebuild_begin()
    project(store, consumed, batch_size=60, suffix="_rebuild")
    result = store.rebuild_swap({}, "test-rebuild", datetime.now(timezone.utc))
    assert store.figures() == before
    assert result["decisions"] == len(decisions)
    assert result["changed_figures_count"] > 0  # the emptied table differed from the log; the rebuild fixed it


def test_a_rebuild_keeps_rows_projected_while_it_ran(store):
    decisions = workload(300, seed=4)
    consumed = messages(decisions)
    head, tail = consumed[:200], consumed[200:]
    project(store, head, batch_size=40)
    store.rebuild_begin()
    project(store, head, batch_size=40, suffix="_rebuild")
    positions = {}
    for message in head:
        positions[message.partition] = max(message.offset, positions.get(message.partition, -1))
    project(store, tail, batch_size=40)  # the live projector goes on meanwhile
    totals_before = store.totals()
    result = store.rebuild_swap(positions, "test-catch-up", datetime.now(timezone.utc))
    assert result["caught_up_rows"] > 0 and result["changed_figures_count"] == 0
    assert store.totals() == totals_before
    assert differences(fold(decisions), store.figures()) == []
    assert [r["rebuild_id"] for r in store.rebuild_history()] == ["test-catch-up"]


def test_finance_views_answer_from_the_current_decisions(store):
    decisions = workload(200, seed=5)
    project(store, messages(decisions), batch_size=200)
    figures = fold(decisions)
    customer = store.customer("c3")
    assert customer["credit_balance_cents"] == {
        key.split("|")[1]: cents for key, cents in figures["customer_credit_balances"].items() if key.startswith("c3|")}
    assert sum(1 for d in customer["decisions"] if d["current"]) == sum(
        1 for d in decisions if d["customer_id"] == "c3" and d["decision_id"] not in
        {x["supersedes_decision_id"] for x in decisions})
    associates: dict[str, int] = {}
    for r in store.associates():
        for currency, cents in r["granted_cents"].items():
            key = f"{r['role']}|{r['associate_id']}|{currency}"
            associates[key] = associates.get(key, 0) + cents
    assert associates == {k: v[1] for k, v in figures["associate_grants"].items()}
    daily = store.daily_granted()  # every granted kind (issue 10: the chart shows refunds too)
    assert merged_cents(r["granted_cents"] for r in daily) == merged_cents(
        {k.split("|")[6]: v[1]} for k, v in figures["granted_totals"].items())
    exported = store.export("csv").decode()
    assert exported.splitlines()[0].startswith('"decision_id"') and len(exported.splitlines()) == len(decisions) + 1
    assert store.export("parquet")[:4] == b"PAR1"
    grouped = merged_cents(r["granted_cents"] for r in store.totals(by="kind")["rows"])
    assert grouped == store.totals()["granted"]["cents"]


def test_a_day_of_usd_and_eur_grants_gives_exact_sums_per_currency_and_never_a_mixed_sum(store):
    day = datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    decisions = [
        decision(1, cents=4500, decided_at=day, requested_by="assoc-1"),
        decision(2, cents=1500, currency="EUR", customer_id="c-eu", decided_at=day, requested_by="assoc-1"),
        decision(3, kind="REFUND", cents=399, currency="EUR", customer_id="c-eu", decided_at=day),
        decision(4, kind="RESHIP", cents=2000, decided_at=day),
        decision(5, outcome="DENIED", cents=700, currency="EUR", customer_id="c-eu", decided_at=day),
    ]
    project(store, messages(decisions), batch_size=10)
    totals = store.totals(by="day")
    assert totals["by_kind"]["CREDIT"] == {"count": 2, "cents": {"EUR": 1500, "USD": 4500}}
    assert totals["by_kind"]["REFUND"] == {"count": 1, "cents": {"EUR": 399}}
    assert totals["by_kind"]["RESHIP"] == {"count": 1, "cents": {"USD": 2000}}
    assert totals["by_kind"]["GIFT_WRAP"] == {"count": 0, "cents": {}}
    assert totals["granted"] == {"count": 4, "cents": {"EUR": 1899, "USD": 6500}}
    assert totals["by_outcome"] == {"GRANTED": 4, "DENIED": 1, "ESCALATED": 0}
    credit_row = next(r for r in totals["rows"] if r["kind"] == "CREDIT")
    assert credit_row == {"day": "2026-11-22", "kind": "CREDIT", "granted_count": 2,
                          "granted_cents": {"EUR": 1500, "USD": 4500}, "decisions": 3}
    assert store.daily_granted() == [
        {"day": "2026-11-22", "kind": "CREDIT", "granted_count": 2, "granted_cents": {"EUR": 1500, "USD": 4500}},
        {"day": "2026-11-22", "kind": "REFUND", "granted_count": 1, "granted_cents": {"EUR": 399}},
        {"day": "2026-11-22", "kind": "RESHIP", "granted_count": 1, "granted_cents": {"USD": 2000}}]
    assert store.associates() == [{"role": "requested", "associate_id": "assoc-1", "kind": "CREDIT",
                                   "granted_count": 2, "granted_cents": {"EUR": 1500, "USD": 4500}}]
    customer = store.customer("c-eu")
    assert customer["credit_balance_cents"] == {"EUR": 1500}
    assert customer["accounts"]["customer_credit_balance"] == {"EUR": -1500}
    # The views finance may query directly carry the currency as well.
    assert sorted(store.client.query(
        "SELECT kind, currency, granted_cents FROM remedy.daily_granted_totals ORDER BY kind, currency").result_rows) == [
        ("CREDIT", "EUR", 1500), ("CREDIT", "USD", 4500), ("REFUND", "EUR", 399), ("RESHIP", "USD", 2000)]
    assert differences(fold(decisions), store.figures()) == []


def test_the_csv_export_opens_cleanly_in_a_spreadsheet(store):
    decisions = [decision(1, cents=1500, currency="EUR", incident_id=None, note=None),
                 decision(2, outcome="DENIED", reason_codes=["CUSTOMER_30D_CAP_EXCEEDED", "NO_INCIDENT"])]
    project(store, messages(decisions), batch_size=10)
    exported = list(csv.DictReader(io.StringIO(store.export("csv").decode())))
    assert [row["decision_id"] for row in exported] == ["dec-1", "dec-2"]  # a header row names the fields
    first, second = exported
    assert (first["incident_id"], first["note"], first["supersedes_decision_id"]) == ("", "", "")  # NULL: empty
    assert (first["granted_cents"], first["currency"], first["reason_codes"]) == ("1500", "EUR", "WITHIN_LIMITS")
    assert second["reason_codes"] == "CUSTOMER_30D_CAP_EXCEEDED;NO_INCIDENT"
    assert "\\N" not in store.export("csv").decode() and "['" not in store.export("csv").decode()
