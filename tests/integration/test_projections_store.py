"""The projection store on the real ClickHouse engine (chDB): exact figures, replays, the rebuild trap.

No broker here: decisions are encoded and handed to the projector as consumed messages would be.
The same Store code runs against an http(s) server; nothing below uses a chDB-only feature.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

import schemas
from projections.figures import differences, fold
from projections.projector import build_batch
from projections.store import Store
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
    assert customer["credit_balance_cents"] == figures["customer_credit_balances"].get("c3", 0)
    assert sum(1 for d in customer["decisions"] if d["current"]) == sum(
        1 for d in decisions if d["customer_id"] == "c3" and d["decision_id"] not in
        {x["supersedes_decision_id"] for x in decisions})
    associates = {(r["role"], r["associate_id"]): 0 for r in store.associates()}
    for r in store.associates():
        associates[(r["role"], r["associate_id"])] += r["granted_cents"]
    assert {f"{k[0]}|{k[1]}": v for k, v in associates.items()} == {
        k: v[1] for k, v in figures["associate_grants"].items()}
    daily = store.daily_granted()
    assert sum(r["granted_cents"] for r in daily) == sum(
        v[1] for k, v in figures["granted_totals"].items() if k.split("|")[2] in ("CREDIT", "RESHIP"))
    csv = store.export("csv").decode()
    assert csv.splitlines()[0].startswith('"decision_id"') and len(csv.splitlines()) == len(decisions) + 1
    assert store.export("parquet")[:4] == b"PAR1"
    grouped = {r["kind"]: r["granted_cents"] for r in store.totals(by="kind")["rows"]}
    assert sum(grouped.values()) == store.totals()["granted"]["cents"]
