"""`remedy-ledger wait --file` tells the truth (issue 9): it exits 0 only when every request id of
the file has a decision on the decision topic, and otherwise exits 1 naming each undecided
request and why it waits (not consumed yet, parked at the worker, dead-lettered, not published)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import schemas
from streams.runtime.batch import key_partition
from streams.runtime.kafka_io import Publisher, worker_lag

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def credit(request_id: str, customer: str, when: datetime, **fields) -> dict:
    return {"type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": customer,
            "order_id": None, "incident_id": None, "kind": "CREDIT", "amount_cents": 500, "currency": "USD",
            "requested_by": "customer", "requested_at": iso(when), "reason": "wait test", **fields}


def outage(customer: str, when: datetime) -> dict:
    return {"type": "IncidentReported", "event_id": f"e-outage-{customer}", "incident_id": "outage-1",
            "customer_id": customer, "order_id": None, "kind": "SERVICE_OUTAGE", "source": "SYSTEM",
            "reported_at": iso(when), "description": None}


def write(path, events: list[dict]):
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def wait(deployment, path, timeout: str = "4"):
    return deployment.cli("wait", "--file", str(path), "--timeout", timeout, check=False)


def line_of(stderr: str, request_id: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith(f"  {request_id}: ")), "")


def test_wait_names_every_undecided_request_and_why_and_exits_0_only_when_all_are_decided(deployment, tmp_path):
    start = NOW - timedelta(days=3)
    order = {"type": "OrderPlaced", "event_id": "e-o-has", "order_id": "o-has", "customer_id": "w-parked",
             "placed_at": iso(start), "total_cents": 5_000, "currency": "USD",
             "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": 5_000}],
             "shipping_address_id": "home-w-parked", "digital": False}
    ok = credit("r-ok", "w-ok", start)
    parked = credit("r-parked", "w-parked", start + timedelta(minutes=1), kind="REFUND", amount_cents=1_000,
                    order_id="o-never")
    dead = credit("r-dead", "w-dead", start)
    unpublished = credit("r-unpublished", "w-unpublished", start)
    # Three proactive outage credits: with them the decisions projected (4) reach the number of
    # requests in the file (4), which is all the old `wait` compared.
    outages = [outage(f"w-fan-{n}", start) for n in range(3)]
    whole = write(tmp_path / "whole.jsonl", [order, ok, parked, dead, unpublished, *outages])
    published = write(tmp_path / "published.jsonl", [order, ok, parked, *outages])
    deployment.cli("publish", str(published))
    # r-dead comes from a producer that keys it by another customer: the worker dead-letters it.
    with Publisher(deployment.settings) as publisher:
        datum = {k: v for k, v in dead.items() if k != "type"}
        publisher.publish_raw(deployment.names.requests, b"w-someone-else", schemas.encode(
            "RemedyRequested", {**datum, "requested_at": start}))

    # No worker yet: nothing is consumed.
    result = wait(deployment, whole, "2")
    print(result.stderr)
    assert result.returncode == 1, result.stderr
    assert "4 of 4 requests" in result.stderr and "have no decision" in result.stderr
    assert "not consumed yet" in line_of(result.stderr, "r-ok")
    assert "not on " in line_of(result.stderr, "r-unpublished") and "not published yet" in result.stderr

    deployment.start_worker()
    deployment.wait_for("r-ok and the proactive credits decided, nothing left to process", lambda: (
        "r-ok" in {d["request_id"] for d in deployment.decisions()} and len(deployment.decisions()) >= 4
        and worker_lag(deployment.settings) == 0), 60)
    result = wait(deployment, whole)
    print(result.stderr)
    assert result.returncode == 1, result.stderr  # the old wait exited 0 here: 4 decisions >= 4 requests
    assert "3 of 4 requests" in result.stderr
    assert line_of(result.stderr, "r-ok") == ""
    assert "parked at the worker" in line_of(result.stderr, "r-parked")
    assert "order o-never" in line_of(result.stderr, "r-parked")
    dead_line = line_of(result.stderr, "r-dead")
    assert "dead-lettered (dead-letters show " in dead_line and "does not match customer_id" in dead_line
    assert "not published yet" in line_of(result.stderr, "r-unpublished")
    assert "requests of the file decided: 1 of 4; decisions projected: 4 of 4 on the topic" in result.stderr

    # The rest arrives: r-dead and r-unpublished as they should be, and a later event on r-parked's
    # partition moves its clock past order_wait_ms_max, so r-parked is ESCALATED ORDER_NOT_FOUND.
    partitions = deployment.settings.topic_partitions
    target = key_partition(b"w-parked", partitions)
    mover = next(f"w-clock-{n}" for n in range(1_000) if key_partition(f"w-clock-{n}".encode(), partitions) == target)
    rest = write(tmp_path / "rest.jsonl", [dead, unpublished, credit("r-clock", mover, NOW - timedelta(hours=1))])
    deployment.cli("publish", str(rest))
    result = deployment.cli("wait", "--file", str(whole), "--timeout", "60", check=False)
    assert result.returncode == 0, result.stderr
    decided = {d["request_id"]: d for d in deployment.decisions()}
    assert (decided["r-parked"]["outcome"], decided["r-parked"]["reason_codes"]) == ("ESCALATED", ["ORDER_NOT_FOUND"])
    assert {"r-ok", "r-dead", "r-unpublished"} <= set(decided)
