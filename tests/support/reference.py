"""An independent reference for what the worker must decide, computed straight from a publish file.

Deliberately written without streams.core: a plain loop over the file with the default policy's
numbers, so a bug in the core cannot hide in the expectation too. Valid for files whose events
fit in one 30-day window and whose requests name orders that exist somewhere in the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAP_30D_CENTS = 25_000
CEILING_CENTS = 15_000
KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_decisions(path: Path) -> dict[str, tuple[str, int]]:
    """request_id -> (outcome, granted cents)."""
    events = load(path)
    orders = {e["order_id"]: e for e in events if e["type"] == "OrderPlaced"}
    refunded: dict[str, int] = {}
    granted: dict[str, int] = {}
    out: dict[str, tuple[str, int]] = {}
    for e in events:
        if e["type"] != "RemedyRequested" or e["request_id"] in out:
            continue
        amount, kind, order = e["amount_cents"], e["kind"], orders.get(e.get("order_id"))
        customer_total = granted.get(e["customer_id"], 0)
        if e["currency"] != "USD":
            result = ("ESCALATED", 0)
        elif kind in ("REFUND", "RESHIP") and order is None:
            result = ("DENIED", 0)
        elif kind == "RESHIP" and order["digital"]:
            result = ("DENIED", 0)
        elif kind == "REFUND" and refunded.get(order["order_id"], 0) + amount > order["total_cents"]:
            result = ("DENIED", 0)
        elif customer_total + amount > CAP_30D_CENTS:
            result = ("DENIED", 0)
        elif amount > CEILING_CENTS:
            result = ("ESCALATED", 0)
        else:
            result = ("GRANTED", amount)
            granted[e["customer_id"]] = customer_total + amount
            if kind == "REFUND":
                refunded[order["order_id"]] = refunded.get(order["order_id"], 0) + amount
        out[e["request_id"]] = result
    return out


def expected_totals(path: Path) -> dict:
    """The by_kind / by_outcome part of `finance totals --json` the file must produce."""
    kinds = {e["request_id"]: e["kind"] for e in load(path) if e["type"] == "RemedyRequested"}
    by_kind = {kind: {"count": 0, "cents": 0} for kind in KINDS}
    by_outcome = {"GRANTED": 0, "DENIED": 0, "ESCALATED": 0}
    for request_id, (outcome, cents) in expected_decisions(path).items():
        by_outcome[outcome] += 1
        if outcome == "GRANTED":
            by_kind[kinds[request_id]]["count"] += 1
            by_kind[kinds[request_id]]["cents"] += cents
    return {"by_kind": by_kind, "by_outcome": by_outcome}


def write_workload(path: Path, customers: int, seed: int) -> Path:
    """A reproducible file of orders and requests within one day, several requests per customer."""
    rng = random.Random(seed)
    lines = []
    for n in range(customers):
        customer = f"c{seed}-{n}"
        orders = []
        for k in range(rng.randint(1, 2)):
            total = rng.randint(500, 20_000)
            order = {"type": "OrderPlaced", "event_id": f"eo-{customer}-{k}", "order_id": f"o-{customer}-{k}",
                     "customer_id": customer, "placed_at": f"2026-11-21T08:{k:02d}:00Z", "total_cents": total,
                     "currency": "USD", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": total}],
                     "shipping_address_id": f"a-{n % 50}", "digital": rng.random() < 0.2}
            orders.append(order)
            lines.append(order)
        for r in range(rng.randint(1, 4)):
            order = rng.choice(orders)
            kind = rng.choice(KINDS)
            lines.append({"type": "RemedyRequested", "event_id": f"er-{customer}-{r}", "request_id": f"r-{customer}-{r}",
                          "customer_id": customer, "order_id": order["order_id"] if kind != "CREDIT" else None,
                          "incident_id": None, "kind": kind, "amount_cents": rng.randint(100, 16_000),
                          "currency": "USD", "requested_by": "assoc-1",
                          "requested_at": f"2026-11-21T09:{r:02d}:{n % 60:02d}Z", "reason": "test"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
