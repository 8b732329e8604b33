"""Writes samples/sample-day.jsonl: one reproducible day of orders, incidents and remedy requests.

Run: python samples/make_sample_day.py > samples/sample-day.jsonl
A fixed seed makes the file byte-for-byte reproducible. A few customers claim more than the
30-day cap allows, a few requests are large enough to go to a person, and two requests are
published before the order they name (the worker waits for the order).
"""

import json
import random
import sys
from datetime import datetime, timedelta, timezone

DAY = datetime(2026, 11, 21, tzinfo=timezone.utc)
CUSTOMERS = 120
SEED = 20261121


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def main() -> None:
    rng = random.Random(SEED)
    events, clock = [], DAY + timedelta(hours=6)

    def tick():
        nonlocal clock
        clock += timedelta(seconds=rng.randint(5, 200))
        return clock

    late_orders = []
    for n in range(1, CUSTOMERS + 1):
        customer = f"cust-{n:04d}"
        address = f"addr-{n:04d}"  # one household per customer: household limits are shown in the tests
        orders = []
        for k in range(rng.randint(1, 3)):
            digital = rng.random() < 0.25
            items = [
                {"sku": f"sku-{rng.randint(100, 999)}", "quantity": rng.randint(1, 3), "unit_price_cents": rng.randint(299, 8999)}
                for _ in range(rng.randint(1, 3))
            ]
            total = sum(i["quantity"] * i["unit_price_cents"] for i in items)
            order = {
                "type": "OrderPlaced", "event_id": f"evt-{customer}-o{k}", "order_id": f"ord-{customer}-{k}",
                "customer_id": customer, "placed_at": ts(tick()), "total_cents": total, "currency": "USD",
                "items": items, "shipping_address_id": address, "digital": digital,
            }
            orders.append(order)
            events.append(order)
            if not digital and rng.random() < 0.7:
                events.append({"type": "OrderDelivered", "event_id": f"evt-{customer}-d{k}", "order_id": order["order_id"],
                               "customer_id": customer, "delivered_at": ts(tick())})
        serial_claimer = n % 17 == 0
        requests = rng.randint(3, 6) if serial_claimer else rng.choice([0, 0, 0, 1, 1, 2])
        for r in range(requests):
            order = rng.choice(orders)
            incident_kind, kind, amount = rng.choice([
                ("LOST_IN_TRANSIT", "RESHIP", order["total_cents"]),
                ("DAMAGED", "REFUND", order["total_cents"] // 2),
                ("LATE_DELIVERY", "CREDIT", 1000),
                ("LATE_DELIVERY", "SHIPPING_UPGRADE", 899),
                ("WRONG_ITEM", "GIFT_WRAP", 499),
                ("SLOW_DOWNLOAD", "REFUND", order["total_cents"]),
            ])
            if serial_claimer:
                incident_kind, kind, amount = "DAMAGED", "CREDIT", rng.randint(6000, 12000)
            if n % 29 == 0 and r == 0:
                amount = 18_000  # a large remedy, within the auto-approval ceiling
            incident_id = f"inc-{customer}-{r}"
            # The carrier and the QoS monitor report only for customers with a single claim, so the
            # service's proactive remedy never races the customer's other requests for the caps
            # (which one the worker sees first depends on which topic it reads first).
            single = requests == 1 and not serial_claimer
            source = "CARRIER" if incident_kind == "LOST_IN_TRANSIT" and single else "CUSTOMER"
            if incident_kind == "SLOW_DOWNLOAD" and order["digital"] and single:
                source = "QOS_MONITOR"
            events.append({"type": "IncidentReported", "event_id": f"evt-{incident_id}", "incident_id": incident_id,
                           "customer_id": customer, "order_id": order["order_id"], "kind": incident_kind,
                           "source": source, "reported_at": ts(tick()), "description": None})
            if source in ("CARRIER", "QOS_MONITOR"):
                # The service remedies these by itself (a reshipment, a refund); an associate adds
                # free gift wrap to a lost parcel's replacement.
                if source == "QOS_MONITOR":
                    continue
                kind, amount = "GIFT_WRAP", 499
            events.append({"type": "RemedyRequested", "event_id": f"evt-req-{customer}-{r}",
                           "request_id": f"req-{customer}-{r}", "customer_id": customer, "order_id": order["order_id"],
                           "incident_id": incident_id, "kind": kind, "amount_cents": amount, "currency": "USD",
                           "requested_by": rng.choice(["assoc-ana", "assoc-ben", "system"]),
                           "requested_at": ts(tick()), "reason": f"{incident_kind.lower()} reported"})
        if n % 31 == 0:
            # A customer abroad: a request in another currency goes to a person.
            events.append({"type": "RemedyRequested", "event_id": f"evt-eur-{customer}",
                           "request_id": f"req-eur-{customer}", "customer_id": customer, "order_id": None,
                           "incident_id": None, "kind": "CREDIT", "amount_cents": 1500, "currency": "EUR",
                           "requested_by": "assoc-ben", "requested_at": ts(tick()), "reason": "goodwill, paid in euros"})
        if rng.random() < 0.15:
            events.append({"type": "RemedyRequested", "event_id": f"evt-goodwill-{customer}",
                           "request_id": f"req-goodwill-{customer}", "customer_id": customer, "order_id": None,
                           "incident_id": None, "kind": "CREDIT", "amount_cents": 1000, "currency": "USD",
                           "requested_by": "assoc-ana", "requested_at": ts(tick()), "reason": "goodwill: the moment called for it"})
        if n % 40 == 11 and not serial_claimer:
            # An outage: the service credits every affected customer once, before they call.
            events.append({"type": "IncidentReported", "event_id": f"evt-outage-{customer}", "incident_id": "inc-outage-1",
                           "customer_id": customer, "order_id": None, "kind": "SERVICE_OUTAGE", "source": "SYSTEM",
                           "reported_at": ts(tick()), "description": "checkout unavailable for 40 minutes"})
        if n in (7, 42):
            # Upstream lag: a request for an order that is published after it.
            late = {"type": "OrderPlaced", "event_id": f"evt-{customer}-late", "order_id": f"ord-{customer}-late",
                    "customer_id": customer, "placed_at": ts(tick()), "total_cents": 2599, "currency": "USD",
                    "items": [{"sku": "sku-late", "quantity": 1, "unit_price_cents": 2599}],
                    "shipping_address_id": address, "digital": False}
            events.append({"type": "RemedyRequested", "event_id": f"evt-req-{customer}-late",
                           "request_id": f"req-{customer}-late", "customer_id": customer, "order_id": late["order_id"],
                           "incident_id": None, "kind": "REFUND", "amount_cents": 2599, "currency": "USD",
                           "requested_by": "system", "requested_at": ts(tick()), "reason": "damaged on arrival"})
            late_orders.append(late)
    events.extend(late_orders)
    for event in events:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
