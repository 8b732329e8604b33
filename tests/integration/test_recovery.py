"""A delivery after a granted lost claim emits RecoverySuggested exactly once, also when the worker
is SIGKILLed while it handles the deliveries (issue 12).

The recovery event travels in the decide agent's outbox with the decision that flags the grant
(docs/exactly-once.md): a crash between the changelog write and the sends re-sends the same
bytes; a crash before the write redelivers the delivery, which the restored state has not seen
yet, so it is flagged once. Consumers deduplicate on event_id: copies must be identical.
"""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

import schemas
from streams.measure.simulate import iso_ms
from tests.integration.conftest import Deployment

pytestmark = pytest.mark.integration

CUSTOMERS = 24
DAY_MS = 24 * 60 * 60 * 1000
WORKER_ENV = {"REMEDY_DECIDE_BATCH_MAX": "5", "REMEDY_PROJECT_BATCH_MAX": "20"}


def line(event: dict) -> str:
    return json.dumps({name: iso_ms(value) if name.endswith("_at") else value for name, value in event.items()})


def claims_file(path, now_ms: int) -> None:
    """Per customer: an old order (not a new account), a recent one (12 days ago: overdue, so its
    loss can be claimed), its loss claimed by the customer and a reshipment asked for."""
    lines = []
    for n in range(CUSTOMERS):
        customer = f"cust-{n}"
        for order_id, at in ((f"old-{n}", now_ms - 60 * DAY_MS), (f"ord-{n}", now_ms - 12 * DAY_MS)):
            lines.append(line({"type": "OrderPlaced", "event_id": f"e-{order_id}", "order_id": order_id,
                               "customer_id": customer, "placed_at": at, "total_cents": 2_500 + n, "currency": "USD",
                               "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 2_500 + n}],
                               "shipping_address_id": f"addr-{n}", "digital": False}))
        lines.append(line({"type": "IncidentReported", "event_id": f"e-inc-{n}", "incident_id": f"inc-{n}",
                           "customer_id": customer, "order_id": f"ord-{n}", "kind": "LOST_IN_TRANSIT",
                           "source": "CUSTOMER", "reported_at": now_ms - 2 * DAY_MS, "description": None}))
        lines.append(line({"type": "RemedyRequested", "event_id": f"e-req-{n}", "request_id": f"req-{n}",
                           "customer_id": customer, "order_id": f"ord-{n}", "incident_id": f"inc-{n}",
                           "kind": "RESHIP", "amount_cents": 2_500 + n, "currency": "USD",
                           "requested_by": "customer", "requested_at": now_ms - 2 * DAY_MS + 60_000,
                           "reason": "never arrived"}))
    path.write_text("\n".join(lines) + "\n")


def deliveries_file(path, now_ms: int) -> None:
    path.write_text("".join(
        line({"type": "OrderDelivered", "event_id": f"e-del-{n}", "order_id": f"ord-{n}", "customer_id": f"cust-{n}",
              "delivered_at": now_ms - DAY_MS + n}) + "\n" for n in range(CUSTOMERS)))


def recoveries(deployment: Deployment) -> list[dict]:
    return [schemas.decode(m.value)[1] for m in deployment.read_topic(deployment.names.recoveries)]


def test_a_delivery_after_a_granted_lost_claim_suggests_recovery_once_also_after_kills(tmp_path):
    deployment = Deployment(tmp_path, **WORKER_ENV)
    now_ms = int(time.time() * 1000)
    claims, deliveries = tmp_path / "claims.jsonl", tmp_path / "deliveries.jsonl"
    claims_file(claims, now_ms)
    deliveries_file(deliveries, now_ms)
    rng = random.Random(12)
    try:
        deployment.start_worker()
        deployment.cli("publish", str(claims))
        deployment.cli("wait", "--file", str(claims), "--timeout", "240")
        granted = {d["request_id"]: d for d in deployment.decisions() if d["outcome"] == "GRANTED"}
        assert set(granted) == {f"req-{n}" for n in range(CUSTOMERS)}

        # The deliveries arrive; the worker is SIGKILLed while it handles them, twice, and restarted.
        deployment.cli("publish", str(deliveries))
        for _ in range(2):
            time.sleep(rng.uniform(0.2, 1.5))
            deployment.stop_worker(signal.SIGKILL)
            deployment.start_worker()
        deployment.wait_for("a recovery per delivered claim",
                            lambda: len({r["event_id"] for r in recoveries(deployment)}) == CUSTOMERS)
        # Redelivered deliveries suggest nothing new.
        deployment.cli("publish", str(deliveries))
        deployment.wait_for("the flags", lambda: sum(
            "DELIVERED_AFTER_LOST_CLAIM" in d["reason_codes"] for d in deployment.decisions()) >= CUSTOMERS)
        time.sleep(3)
        seen = recoveries(deployment)
        # Each flagged grant waits in the case queue as a RECOVERY case (review list reads the log).
        listed = json.loads(deployment.cli("review", "list", "--json").stdout)
        assert {row["request_id"] for row in listed if row["case"] == "RECOVERY"} == {f"req-{n}" for n in range(CUSTOMERS)}
    finally:
        deployment.stop_worker()

    by_id: dict[str, list[dict]] = {}
    for recovery in seen:
        by_id.setdefault(recovery["event_id"], []).append(recovery)
    assert len(by_id) == CUSTOMERS  # exactly one recovery case per remedied request
    assert all(copy == copies[0] for copies in by_id.values() for copy in copies)  # repeats are identical
    flags = {d["decision_id"]: d for d in deployment.decisions() if "DELIVERED_AFTER_LOST_CLAIM" in d["reason_codes"]}
    for copies in by_id.values():
        recovery = copies[0]
        flag = flags[recovery["decision_id"]]
        assert flag["supersedes_decision_id"] == granted[recovery["request_id"]]["decision_id"]
        assert recovery["recoverable_cents"] == granted[recovery["request_id"]]["granted_cents"] == flag["granted_cents"]
        assert recovery["customer_asserted"] is True and recovery["kind"] == "RESHIP"
