"""Remedies a warehouse and a customer can act on (issue 10), end to end on the real broker, a real
worker and the real ClickHouse engine: the gift story, items that do not fit the order, partial
delivery, and one notification per proactive remedy, also after a kill."""

from __future__ import annotations

import csv
import io
import json
import signal
from collections import defaultdict
from pathlib import Path

import schemas
from tests.integration.conftest import Deployment
from tests.integration.test_stories import current, publish

DAY = "2026-11-20"
# The Christmas order: many presents, all shipped to the customer to wrap herself.
PRESENTS = [
    {"sku": "scarf-red", "quantity": 1, "unit_price_cents": 2_500},
    {"sku": "book-atlas", "quantity": 2, "unit_price_cents": 1_800},
    {"sku": "mug-owl", "quantity": 1, "unit_price_cents": 1_200},
    {"sku": "puzzle-1000", "quantity": 1, "unit_price_cents": 3_000},
    {"sku": "candle-fig", "quantity": 3, "unit_price_cents": 900},
    {"sku": "socks-wool", "quantity": 4, "unit_price_cents": 700},
]


def at(minute: int) -> str:
    return f"{DAY}T{9 + minute // 60:02d}:{minute % 60:02d}:00Z"


def order(order_id, customer, items, address, digital=False, minute=0):
    return {"type": "OrderPlaced", "event_id": f"e-{order_id}", "order_id": order_id, "customer_id": customer,
            "placed_at": at(minute), "total_cents": sum(i["quantity"] * i["unit_price_cents"] for i in items),
            "currency": "USD", "items": items, "shipping_address_id": address, "digital": digital}


def incident(incident_id, customer, kind, source, order_id=None, minute=1):
    return {"type": "IncidentReported", "event_id": f"e-{incident_id}-{customer}", "incident_id": incident_id,
            "customer_id": customer, "order_id": order_id, "kind": kind, "source": source, "reported_at": at(minute),
            "description": None}


def request(request_id, customer, kind, amount, by, order_id=None, incident_id=None, minute=2, **detail):
    return {"type": "RemedyRequested", "event_id": f"e-request-{request_id}", "request_id": request_id,
            "customer_id": customer, "order_id": order_id, "incident_id": incident_id, "kind": kind,
            "amount_cents": amount, "currency": "USD", "requested_by": by, "requested_at": at(minute),
            "reason": "issue 10", **detail}


def line(sku, quantity=1):
    price = next(i["unit_price_cents"] for i in PRESENTS if i["sku"] == sku)
    return {"sku": sku, "quantity": quantity, "unit_price_cents": price}


def topic_records(deployment: Deployment, topic: str) -> list[tuple[bytes, bytes, dict]]:
    """(key, value bytes, decoded datum) of every record on a topic."""
    return [(m.key, m.value, schemas.decode(m.value)[1]) for m in deployment.read_topic(topic)]


def gift_story() -> list[dict]:
    return [
        # Ordered ten days before the partial delivery: past the delivery window, so the missing
        # presents can be called lost (lost_claim_days_after_order_min).
        {**order("xmas", "holly", PRESENTS, "addr-holly"), "placed_at": "2026-11-10T09:00:00Z"},
        # Partly delivered: everything but the scarf and the puzzle arrived.
        {"type": "OrderDelivered", "event_id": "e-xmas-d1", "order_id": "xmas", "customer_id": "holly",
         "delivered_at": at(30), "shipment_id": "shp-1",
         "items": [line("book-atlas", 2), line("mug-owl"), line("candle-fig", 3), line("socks-wool", 4)]},
        incident("xmas-lost", "holly", "LOST_IN_TRANSIT", "CUSTOMER", "xmas", minute=40),
        request("gift-gran", "holly", "RESHIP", 2_500, "assoc-noel", "xmas", "xmas-lost", minute=41,
                items=[line("scarf-red")], shipping_address_id="addr-gran", shipping_speed="NEXT_DAY",
                gift_message="Merry Christmas, Gran"),
        request("gift-tom", "holly", "RESHIP", 3_000, "assoc-noel", "xmas", "xmas-lost", minute=42,
                items=[line("puzzle-1000")], shipping_address_id="addr-tom", shipping_speed="NEXT_DAY",
                gift_message="For Tom, with love"),
        # Items that do not fit the order, or that already arrived: denied, named.
        request("bad-sku", "holly", "RESHIP", 999, "assoc-noel", "xmas", "xmas-lost", minute=43,
                items=[{"sku": "drone-x", "quantity": 1, "unit_price_cents": 999}], shipping_address_id="addr-tom"),
        request("bad-quantity", "holly", "REFUND", 5_400, "assoc-noel", "xmas", minute=44,
                items=[line("book-atlas", 3)]),
        request("bad-delivered", "holly", "RESHIP", 1_200, "assoc-noel", "xmas", "xmas-lost", minute=45,
                items=[line("mug-owl")], shipping_address_id="addr-gran"),
    ]


def test_the_gift_story_reships_two_lost_presents_to_two_recipients_and_denies_what_does_not_fit(tmp_path):
    deployment = Deployment(tmp_path)
    try:
        deployment.start_worker()
        publish(deployment, tmp_path / "gift.jsonl", gift_story())
        decided = current(deployment.decisions())
        gifts = [decided["gift-gran"], decided["gift-tom"]]
        assert [(d["outcome"], d["granted_cents"], d["reason_codes"]) for d in gifts] == [
            ("GRANTED", 2_500, ["WITHIN_LIMITS"]), ("GRANTED", 3_000, ["WITHIN_LIMITS"])]
        assert [(d["items"], d["shipping_address_id"], d["shipping_speed"], d["gift_message"]) for d in gifts] == [
            ([line("scarf-red")], "addr-gran", "NEXT_DAY", "Merry Christmas, Gran"),
            ([line("puzzle-1000")], "addr-tom", "NEXT_DAY", "For Tom, with love"),
        ]
        assert [(decided[r]["outcome"], decided[r]["reason_codes"]) for r in ("bad-sku", "bad-quantity", "bad-delivered")] == [
            ("DENIED", ["ITEM_NOT_IN_ORDER"]), ("DENIED", ["ITEM_QUANTITY_EXCEEDS_ORDER"]),
            ("DENIED", ["ITEM_ALREADY_DELIVERED"])]

        # The warehouse is told exactly these two parcels, and nothing else of the order.
        instructions = topic_records(deployment, deployment.names.instructions)
        by_id = {datum["instruction_id"]: (key, datum) for key, _, datum in instructions}
        assert set(by_id) == {d["decision_id"] for d in gifts}
        shipped = sorted((key, d["target"], d["shipping_address_id"], d["shipping_speed"], d["gift_wrapped"],
                          d["gift_message"], [(i["sku"], i["quantity"]) for i in d["items"]], d["amount_cents"])
                         for key, d in by_id.values())
        assert shipped == [
            (b"warehouse:holly", "WAREHOUSE", "addr-gran", "NEXT_DAY", True, "Merry Christmas, Gran", [("scarf-red", 1)], 2_500),
            (b"warehouse:holly", "WAREHOUSE", "addr-tom", "NEXT_DAY", True, "For Tom, with love", [("puzzle-1000", 1)], 3_000),
        ]
        assert topic_records(deployment, deployment.names.notifications) == []  # asked for: nobody to warn

        # The ledger: finance export and finance customer show the skus and the recipients.
        deployment.cli("wait", "--decisions", "0", "--timeout", "120")
        out = tmp_path / "ledger.csv"
        deployment.cli("finance", "export", "--format", "csv", "--out", str(out))
        rows = {row["request_id"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
        assert [(json.loads(rows[r]["items_json"]), rows[r]["shipping_address_id"], rows[r]["shipping_speed"])
                for r in ("gift-gran", "gift-tom")] == [
            ([line("scarf-red")], "addr-gran", "NEXT_DAY"), ([line("puzzle-1000")], "addr-tom", "NEXT_DAY")]
        assert rows["bad-sku"]["outcome"] == "DENIED" and rows["bad-sku"]["reason_codes"] == "ITEM_NOT_IN_ORDER"
        page = json.loads(deployment.cli("finance", "customer", "holly", "--json").stdout)
        shown = {d["request_id"]: (d["items"], d["shipping_address_id"]) for d in page["decisions"]}
        assert shown["gift-gran"] == ([line("scarf-red")], "addr-gran")
        assert shown["gift-tom"] == ([line("puzzle-1000")], "addr-tom")
        text = deployment.cli("finance", "customer", "holly").stdout
        assert "scarf-red x1 -> addr-gran NEXT_DAY, gift-wrapped" in text
        assert "puzzle-1000 x1 -> addr-tom NEXT_DAY, gift-wrapped" in text
    finally:
        deployment.stop_worker()


def notification_story(batch: int) -> list[dict]:
    """Rentals whose download was slow and customers hit by an outage: each remedied proactively."""
    events = []
    for n in range(batch):
        film = [{"sku": f"film-{n}", "quantity": 1, "unit_price_cents": 399}]
        events += [order(f"rent-{batch}-{n}", f"viewer-{batch}-{n}", film, f"home-{n}", digital=True, minute=n % 50),
                   incident(f"slow-{batch}-{n}", f"viewer-{batch}-{n}", "SLOW_DOWNLOAD", "QOS_MONITOR",
                            f"rent-{batch}-{n}", minute=n % 50 + 1),
                   incident(f"outage-{batch}", f"fan-{batch}-{n}", "SERVICE_OUTAGE", "SYSTEM", minute=n % 50 + 2)]
    return events


# Rentals and outage victims in the file the worker is killed in: enough that the kill lands mid-way.
SECOND_FILE_CUSTOMERS = 600


def test_a_proactive_refund_and_an_outage_credit_each_notify_exactly_once_also_after_a_kill(tmp_path):
    deployment = Deployment(tmp_path)
    try:
        deployment.start_worker()
        first, second = notification_story(1), notification_story(SECOND_FILE_CUSTOMERS)
        publish(deployment, tmp_path / "first.jsonl", first)
        # A kill while the second file is being decided: the worker dies mid-way, a new one resumes.
        path = tmp_path / "second.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in second))
        deployment.cli("publish", str(path))
        deployment.wait_for("some of the second file decided", lambda: len(deployment.decisions()) > 20)
        deployment.stop_worker(signal.SIGKILL)
        decided_at_kill = len(current(deployment.decisions()))
        assert decided_at_kill < 2 * (SECOND_FILE_CUSTOMERS + 1), "the kill came after everything was decided; it tested nothing"
        deployment.start_worker()
        deployment.cli("wait", "--file", str(path), "--timeout", "240")
        # The first file again, as a redelivering producer would: nothing new is decided or told.
        deployment.cli("publish", str(tmp_path / "first.jsonl"))
        deployment.cli("wait", "--file", str(tmp_path / "first.jsonl"), "--timeout", "240")

        decided = current(deployment.decisions())
        proactive = {d["decision_id"]: d for d in decided.values() if d["origin"] == "PROACTIVE"}
        assert len(proactive) == 2 * (SECOND_FILE_CUSTOMERS + 1) and all(d["outcome"] == "GRANTED" for d in proactive.values())
        copies: dict[str, set[bytes]] = defaultdict(set)
        for key, value, datum in topic_records(deployment, deployment.names.notifications):
            assert key == datum["customer_id"].encode()
            copies[datum["decision_id"]].add(value)
        # Exactly one notification per proactive grant: one id each, and every copy the same bytes
        # (a re-send after the kill repeats them; the sender acts once per notification_id).
        assert set(copies) == set(proactive)
        assert all(len(values) == 1 for values in copies.values())
        notes = {d: schemas.decode(next(iter(v)))[1] for d, v in copies.items()}
        refund = decided["proactive:slow-1-0:viewer-1-0:REFUND"]
        credit = decided["proactive:outage-1:fan-1-0:CREDIT"]
        assert notes[refund["decision_id"]]["message"] == "We refunded your order ($3.99) because the download was slow."
        assert notes[credit["decision_id"]]["message"] == "We credited your account ($5.00) because our service was down."
        # Payments and accounts got their instructions, one id per grant as well.
        instructed = {datum["instruction_id"]: (key, datum["target"])
                      for key, _, datum in topic_records(deployment, deployment.names.instructions)}
        assert instructed[refund["decision_id"]] == (b"payments:viewer-1-0", "PAYMENTS")
        assert instructed[credit["decision_id"]] == (b"accounts:fan-1-0", "ACCOUNTS")
        assert set(instructed) == set(proactive)
    finally:
        deployment.stop_worker()
