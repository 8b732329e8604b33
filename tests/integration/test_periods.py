"""Closed periods on the real broker, a real worker and the real ClickHouse engine (issue 10):
close October, then publish an October-dated request: October's figures are unchanged, November
shows it with LATE_POSTING; a rebuild from the log gives the same books."""

from __future__ import annotations

import csv
import io
import json

import schemas

from tests.integration.test_stories import publish


def credit(request_id, customer, cents, day, currency="USD"):
    return {"type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": customer,
            "order_id": None, "incident_id": None, "kind": "CREDIT", "amount_cents": cents, "currency": currency,
            "requested_by": "customer", "requested_at": f"{day}T12:00:00Z", "reason": "periods"}


def month(deployment, first: str, last: str, dates: str = "posting") -> dict:
    return json.loads(deployment.cli("finance", "totals", "--since", first, "--until", last, "--dates", dates,
                                     "--json").stdout)


def test_close_october_then_an_october_dated_request_posts_in_november_marked_late(deployment, tmp_path):
    deployment.start_worker()
    publish(deployment, tmp_path / "october.jsonl", [credit("oct-a", "cust-a", 1_000, "2026-10-15"),
                                                     credit("oct-b", "cust-b", 2_500, "2026-10-31"),
                                                     credit("nov-a", "cust-c", 400, "2026-11-10")])
    deployment.cli("wait", "--decisions", "3", "--timeout", "120")
    october = month(deployment, "2026-10-01", "2026-10-31")
    assert october["granted"] == {"count": 2, "cents": {"USD": 3_500}} and october["late_postings"] == 0

    closed = deployment.cli("finance", "close-period", "2026-10", "--by", "fin-ana").stdout
    assert closed.startswith("closed 2026-10 by fin-ana at decision offsets ")
    again = deployment.cli("finance", "close-period", "2026-10", "--by", "fin-ana", check=False)
    assert again.returncode != 0 and "2026-10 is already closed" in again.stderr
    bad = deployment.cli("finance", "close-period", "2026-13", "--by", "fin-ana", check=False)
    assert bad.returncode != 0 and "field 'period'" in bad.stderr

    # Dated 2026-10-20, learned after October closed.
    publish(deployment, tmp_path / "late.jsonl", [credit("late-oct", "cust-d", 700, "2026-10-20")])
    deployment.cli("wait", "--decisions", "4", "--timeout", "120")
    assert month(deployment, "2026-10-01", "2026-10-31") == october  # October never changes
    november = month(deployment, "2026-11-01", "2026-11-30")
    assert november["granted"] == {"count": 2, "cents": {"USD": 1_100}} and november["late_postings"] == 1
    by_event = month(deployment, "2026-10-01", "2026-10-31", dates="event")
    assert by_event["granted"] == {"count": 3, "cents": {"USD": 4_200}}

    out = tmp_path / "ledger.csv"
    deployment.cli("finance", "export", "--format", "csv", "--out", str(out))
    rows = {row["request_id"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
    late = rows["late-oct"]
    assert (late["decided_at"][:10], late["posting_mark"]) == ("2026-10-20", "LATE_POSTING")
    assert late["posting_date"][:7] == "2026-11" and late["posted_at"] > "2026-11"
    assert [(rows[r]["posting_date"], rows[r]["posting_mark"]) for r in ("oct-a", "oct-b")] == [
        ("2026-10-15", ""), ("2026-10-31", "")]
    page = json.loads(deployment.cli("finance", "customer", "cust-d", "--json").stdout)
    assert [(d["posting_date"], d["posting_mark"]) for d in page["decisions"]] == [(late["posting_date"], "LATE_POSTING")]

    # The closed month is a fact on the finance-periods topic, and the books rebuilt from the log agree.
    closes = [json.loads(json.dumps(m.key.decode())) for m in deployment.read_topic(deployment.names.periods)]
    assert closes == ["2026-10"]
    rebuilt = deployment.cli("projections", "rebuild")
    assert "every figure is unchanged" in rebuilt.stdout
    assert month(deployment, "2026-10-01", "2026-10-31") == october
    assert month(deployment, "2026-11-01", "2026-11-30") == november


def test_a_clickhouse_that_lost_its_data_learns_the_closed_months_from_the_topic_again(deployment, tmp_path):
    import shutil

    deployment.start_worker()
    publish(deployment, tmp_path / "october.jsonl", [credit("oct-a", "cust-a", 1_000, "2026-10-15")])
    deployment.cli("wait", "--decisions", "1", "--timeout", "120")
    deployment.cli("finance", "close-period", "2026-10", "--by", "fin-ana")
    publish(deployment, tmp_path / "late.jsonl", [credit("late-oct", "cust-d", 700, "2026-10-20")])
    deployment.cli("wait", "--decisions", "2", "--timeout", "120")
    october, november = month(deployment, "2026-10-01", "2026-10-31"), month(deployment, "2026-11-01", "2026-11-30")
    assert (october["granted"]["cents"], november["granted"]["cents"], november["late_postings"]) == (
        {"USD": 1_000}, {"USD": 700}, 1)

    # A new, empty ClickHouse volume: the worker reads the closed month back from the topic, and
    # the books rebuilt from the decision log are the same.
    deployment.stop_worker()
    shutil.rmtree(deployment.settings.data_dir / "clickhouse")
    deployment.start_worker()
    deployment.cli("projections", "rebuild")
    assert month(deployment, "2026-10-01", "2026-10-31") == october
    assert month(deployment, "2026-11-01", "2026-11-30") == november
    again = deployment.cli("finance", "close-period", "2026-10", "--by", "fin-bo", check=False)
    assert again.returncode != 0 and "2026-10 is already closed" in again.stderr


def test_a_close_recorded_but_never_published_is_published_when_the_worker_opens_clickhouse(deployment, tmp_path):
    from projections.store import Store

    # As if the worker had recorded the close and died before its send was acknowledged.
    store = Store(deployment.settings.clickhouse_dsn, deployment.settings.clickhouse_database)
    store.migrate()
    store.close_period("2026-09", "fin-ana", 1_790_000_000_000)
    store.close()
    assert deployment.read_topic(deployment.names.periods) == []
    deployment.start_worker()
    deployment.cli("finance", "totals")  # the worker opens ClickHouse
    deployment.wait_for("the close on the topic", lambda: deployment.read_topic(deployment.names.periods))
    (message,) = deployment.read_topic(deployment.names.periods)
    assert message.key == b"2026-09"
    assert schemas.decode(message.value)[1]["closed_by"] == "fin-ana"
