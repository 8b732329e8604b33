"""Given/when/then tests of remedy detail (issue 10): items checked against the order, partial
delivery, the destination and speed a decision records, and the instruction and notification a
grant makes."""

from __future__ import annotations

import pytest

from streams.core import decision as core
from streams.core import remedy_detail as detail
from streams.core.policy import REMEDY_KINDS, Policy
from tests.support.world import World

T0 = 1_790_000_000_000
HOUR_MS = 3_600_000
POLICY = Policy(kind_cents_max_per_customer_30d={kind: 25_000 for kind in REMEDY_KINDS})
# One order of many Christmas presents, all shipped to the customer's own address.
PRESENTS = [
    {"sku": "scarf", "quantity": 1, "unit_price_cents": 2_500},
    {"sku": "book", "quantity": 2, "unit_price_cents": 1_800},
    {"sku": "mug", "quantity": 1, "unit_price_cents": 1_200},
    {"sku": "puzzle", "quantity": 1, "unit_price_cents": 3_000},
    {"sku": "candle", "quantity": 3, "unit_price_cents": 900},
]
PRESENTS_TOTAL = sum(i["quantity"] * i["unit_price_cents"] for i in PRESENTS)


def order(items=PRESENTS, at=T0):
    return {"type": "OrderPlaced", "event_id": "e-o1", "order_id": "o1", "customer_id": "c1", "placed_at": at,
            "total_cents": sum(i["quantity"] * i["unit_price_cents"] for i in items), "currency": "USD",
            "items": [dict(i) for i in items], "shipping_address_id": "addr-home", "digital": False}


# The loss is reported past the order's delivery window (lost_claim_days_after_order_min, 7 days).
CLAIM_AT = T0 + 8 * 24 * HOUR_MS


def incident(incident_id="i1", kind="LOST_IN_TRANSIT", source="CUSTOMER", at=CLAIM_AT + 5 * HOUR_MS, order_id="o1"):
    return {"type": "IncidentReported", "event_id": f"e-{incident_id}", "incident_id": incident_id,
            "customer_id": "c1", "order_id": order_id, "kind": kind, "source": source, "reported_at": at,
            "description": None}


def delivered(items=None, at=T0 + 4 * HOUR_MS):
    return {"type": "OrderDelivered", "event_id": f"e-d-{at}", "order_id": "o1", "customer_id": "c1",
            "delivered_at": at, "shipment_id": "shp-1" if items else None, "items": items}


def request(request_id, amount, kind="RESHIP", items=None, address=None, speed=None, gift=None,
            incident_id="i1", at=CLAIM_AT + 6 * HOUR_MS, requested_by="assoc-7"):
    return {"type": "RemedyRequested", "event_id": f"e-{request_id}", "request_id": request_id, "customer_id": "c1",
            "order_id": "o1", "incident_id": incident_id, "kind": kind, "amount_cents": amount, "currency": "USD",
            "requested_by": requested_by, "requested_at": at, "reason": "test", "items": items,
            "shipping_address_id": address, "shipping_speed": speed, "gift_message": gift}


def item(sku, quantity=1, price=None):
    prices = {i["sku"]: i["unit_price_cents"] for i in PRESENTS}
    return {"sku": sku, "quantity": quantity, "unit_price_cents": prices.get(sku, 100) if price is None else price}


def earlier_order(days_before=200):
    """An order long before the story: the customer is not a new account (whose first-order lost
    claims go to a person, docs/decisions.md "Signals"), so the items rules are what is tested."""
    return {**order(items=[{"sku": "lamp", "quantity": 1, "unit_price_cents": 4_000}], at=T0 - days_before * 24 * HOUR_MS),
            "event_id": "e-o0", "order_id": "o0"}


def world_after(*events, policy=POLICY):
    world = World(policy)
    for event in (earlier_order(), *events):
        world.feed(event)
    return world


def decided(world, event):
    return [(d["request_id"], d["outcome"], d["reason_codes"]) for d in world.feed(event)]


# The gift story ------------------------------------------------------------------------------

def test_two_lost_presents_reshipped_one_each_to_two_recipients_gift_wrapped():
    world = world_after(order(), incident())
    first = world.feed(request("r-gran", 2_500, items=[item("scarf")], address="addr-gran", speed="EXPRESS",
                               gift="Merry Christmas, Gran"))
    second = world.feed(request("r-tom", 3_000, items=[item("puzzle")], address="addr-tom", speed="EXPRESS",
                                gift="For Tom"))
    decisions = first + second
    assert [(d["outcome"], d["granted_cents"]) for d in decisions] == [("GRANTED", 2_500), ("GRANTED", 3_000)]
    assert [(d["items"], d["shipping_address_id"], d["shipping_speed"], d["gift_message"]) for d in decisions] == [
        ([item("scarf")], "addr-gran", "EXPRESS", "Merry Christmas, Gran"),
        ([item("puzzle")], "addr-tom", "EXPRESS", "For Tom"),
    ]
    instructions = [detail.instruction_for(d) for d in decisions]
    assert [(i["target"], i["items"], i["shipping_address_id"], i["shipping_speed"], i["gift_wrapped"])
            for i in instructions] == [
        ("WAREHOUSE", [item("scarf")], "addr-gran", "EXPRESS", True),
        ("WAREHOUSE", [item("puzzle")], "addr-tom", "EXPRESS", True),
    ]
    # Nothing else of the order: only the two skus, one unit each.
    assert sorted(line["sku"] for i in instructions for line in i["items"]) == ["puzzle", "scarf"]
    assert [detail.instruction_key(i) for i in instructions] == ["warehouse:c1", "warehouse:c1"]
    assert [i["instruction_id"] for i in instructions] == [d["decision_id"] for d in decisions]


def test_the_same_item_twice_for_one_incident_is_a_duplicate_but_another_item_is_not():
    world = world_after(order(), incident(), request("r1", 2_500, items=[item("scarf")]))
    assert decided(world, request("r2", 2_500, items=[item("scarf")])) == [
        ("r2", "DENIED", [core.DUPLICATE_REMEDY_FOR_INCIDENT])]
    assert decided(world, request("r3", 1_200, items=[item("mug")])) == [("r3", "GRANTED", [core.WITHIN_LIMITS])]
    # A whole-order reshipment covers every line: a duplicate of any line already reshipped.
    assert decided(world, request("r4", PRESENTS_TOTAL)) == [("r4", "DENIED", [core.DUPLICATE_REMEDY_FOR_INCIDENT])]


def test_a_reshipment_without_detail_goes_to_the_order_address_at_standard_speed():
    world = world_after(order(), incident())
    (decision,) = world.feed(request("r1", PRESENTS_TOTAL))
    assert (decision["outcome"], decision["items"], decision["shipping_address_id"], decision["shipping_speed"]) == (
        "GRANTED", None, "addr-home", "STANDARD")
    instruction = detail.instruction_for(decision)
    assert (instruction["items"], instruction["shipping_address_id"], instruction["gift_wrapped"]) == (
        None, "addr-home", False)


# Items that do not fit the order --------------------------------------------------------------

@pytest.mark.parametrize("items, amount, reason", [
    ([item("socks", price=500)], 500, detail.ITEM_NOT_IN_ORDER),
    ([item("scarf", quantity=2)], 5_000, detail.ITEM_QUANTITY_EXCEEDS_ORDER),
    ([item("book", quantity=3)], 5_400, detail.ITEM_QUANTITY_EXCEEDS_ORDER),
    ([item("book"), item("book"), item("book")], 5_400, detail.ITEM_QUANTITY_EXCEEDS_ORDER),
    ([item("scarf", price=2_499)], 2_499, detail.ITEM_PRICE_NOT_ORDER_PRICE),
    ([item("scarf")], 2_501, detail.RESHIP_AMOUNT_NOT_ITEMS_VALUE),
    ([item("scarf")], 2_499, detail.RESHIP_AMOUNT_NOT_ITEMS_VALUE),
])
def test_reshipped_items_not_in_the_order_or_above_its_quantities_are_denied(items, amount, reason):
    world = world_after(order(), incident())
    assert decided(world, request("r1", amount, items=items)) == [("r1", "DENIED", [reason])]
    assert detail.instruction_for(world.decisions[-1]) is None


def test_quantities_at_the_order_quantity_are_granted_one_above_denied():
    world = world_after(order(), incident())
    assert decided(world, request("r1", 3_599, items=[item("book", quantity=2)])) == [
        ("r1", "DENIED", [detail.RESHIP_AMOUNT_NOT_ITEMS_VALUE])]
    assert decided(world, request("r2", 3_600, items=[item("book", quantity=2)])) == [
        ("r2", "GRANTED", [core.WITHIN_LIMITS])]
    world = world_after(order(), incident())
    assert decided(world, request("r3", 1_800, items=[item("book", quantity=1)])) == [
        ("r3", "GRANTED", [core.WITHIN_LIMITS])]


def test_a_refund_of_items_is_at_most_their_value():
    world = world_after(order(), incident(kind="DAMAGED"))
    assert decided(world, request("r1", 2_501, kind="REFUND", items=[item("scarf")])) == [
        ("r1", "DENIED", [detail.REFUND_EXCEEDS_ITEMS_VALUE])]
    assert decided(world, request("r2", 2_500, kind="REFUND", items=[item("scarf")])) == [
        ("r2", "GRANTED", [core.WITHIN_LIMITS])]
    assert detail.instruction_for(world.decisions[-1])["target"] == "PAYMENTS"


def test_items_without_a_known_order_need_one():
    world = world_after(order(), incident(order_id=None))
    event = {**request("r1", 500, kind="CREDIT", items=[item("scarf")]), "order_id": None}
    assert decided(world, event) == [("r1", "DENIED", [core.ORDER_REQUIRED])]


# Partial delivery ------------------------------------------------------------------------------

def test_a_lost_item_claim_on_an_order_delivered_in_part_is_judged_on_the_missing_items():
    arrived = [item("book", quantity=2), item("mug"), item("candle", quantity=3)]
    world = world_after(order(), delivered(items=arrived), incident())
    assert decided(world, request("r1", 1_200, items=[item("mug")])) == [("r1", "DENIED", [detail.ITEM_ALREADY_DELIVERED])]
    assert decided(world, request("r2", 5_500, items=[item("scarf"), item("puzzle")])) == [
        ("r2", "GRANTED", [core.WITHIN_LIMITS])]


def test_the_carriers_lost_parcel_reship_of_an_order_delivered_in_part_is_the_missing_items():
    arrived = [item("book", quantity=2), item("mug"), item("candle", quantity=3)]
    world = world_after(order(), delivered(items=arrived))
    (decision,) = world.feed(incident(source="CARRIER"))
    assert decision["origin"] == "PROACTIVE" and decision["outcome"] == "GRANTED"
    assert (decision["granted_cents"], decision["items"]) == (5_500, [item("puzzle"), item("scarf")])


def test_a_partial_delivery_does_not_flag_a_lost_reship_until_every_line_arrived():
    world = world_after(order(), incident())
    world.feed(request("r1", PRESENTS_TOTAL))
    assert world.feed(delivered(items=[item("scarf")], at=T0 + 7 * HOUR_MS)) == []
    rest = [item("book", quantity=2), item("mug"), item("puzzle"), item("candle", quantity=3)]
    (flag,) = world.feed(delivered(items=rest, at=T0 + 8 * HOUR_MS))
    assert core.DELIVERED_AFTER_LOST_CLAIM in flag["reason_codes"]
    assert detail.effects_of(flag) == []  # a flag is no new grant: nothing shipped or told again


# Notifications ----------------------------------------------------------------------------------

def test_a_proactive_refund_and_an_outage_credit_each_notify_once_and_an_asked_remedy_does_not():
    slow = {**order(items=[{"sku": "film", "quantity": 1, "unit_price_cents": 399}]), "digital": True}
    world = world_after(slow)
    (refund,) = world.feed(incident("i-slow", kind="SLOW_DOWNLOAD", source="QOS_MONITOR"))
    (credit,) = world.feed(incident("i-out", kind="SERVICE_OUTAGE", source="QOS_MONITOR", order_id=None))
    assert [d["outcome"] for d in (refund, credit)] == ["GRANTED", "GRANTED"]
    kinds = [[kind for kind, _ in detail.effects_of(d)] for d in (refund, credit)]
    assert kinds == [["instruction", "notification"], ["instruction", "notification"]]
    note = detail.notification_for(refund)
    assert note["message"] == "We refunded your order ($3.99) because the download was slow."
    assert detail.notification_for(credit)["message"] == "We credited your account ($5.00) because our service was down."
    assert note == detail.notification_for(refund)  # derived from the decision alone: the same on a re-send
    asked = world.feed({**request("r-asked", 300, kind="CREDIT", incident_id=None), "order_id": None})
    assert asked[0]["outcome"] == "GRANTED" and detail.notification_for(asked[0]) is None


def test_an_outage_credit_an_associate_asked_for_notifies_too_and_a_denied_one_does_not():
    # Without the proactive outage rule, so the associate's credit is the first for the outage.
    rules = {kind: rule for kind, rule in POLICY.proactive_rules.items() if kind != "SERVICE_OUTAGE"}
    world = world_after(order(), policy=Policy(kind_cents_max_per_customer_30d=POLICY.kind_cents_max_per_customer_30d,
                                              proactive_rules=rules))
    world.feed(incident("i-out", kind="SERVICE_OUTAGE", source="CUSTOMER", order_id=None))
    (granted,) = world.feed({**request("r1", 500, kind="CREDIT", incident_id="i-out"), "order_id": None})
    assert granted["outcome"] == "GRANTED" and detail.notifies(granted)
    denied = {**granted, "outcome": "DENIED", "granted_cents": 0}
    assert detail.effects_of(denied) == []


# Repeats and bounds ------------------------------------------------------------------------------

def test_a_repeat_of_a_request_id_with_other_items_is_refused_and_an_identical_one_answered_again():
    world = world_after(order(), incident())
    (first,) = world.feed(request("r1", 2_500, items=[item("scarf")]))
    assert world.feed(request("r1", 2_500, items=[item("scarf")])) == [first]
    assert world.feed(request("r1", 2_500, items=[item("puzzle", price=2_500)])) == []
    (rejected, reason), = world.rejected  # dead-lettered by the worker, naming the field
    assert rejected["request_id"] == "r1" and reason.startswith("CONFLICTING_DUPLICATE") and "items" in reason


@pytest.mark.parametrize("record_name", ["RemedyRequested", "OrderDelivered"])
def test_an_empty_item_list_is_refused_naming_the_field_and_null_is_the_whole_order(record_name):
    from streams.core.inbound import decoded_event_problems

    assert decoded_event_problems(record_name, {"items": []}) == [
        "field 'items': an empty list; name at least one order line, or null for the whole order"]
    assert decoded_event_problems(record_name, {"items": None}) == []


# The publish format ------------------------------------------------------------------------------

GIFT_LINE = {"type": "RemedyRequested", "event_id": "e5", "request_id": "r2", "customer_id": "c1", "order_id": "o1",
             "incident_id": "i1", "kind": "RESHIP", "amount_cents": 2500, "currency": "USD", "requested_by": "assoc-7",
             "requested_at": "2026-11-20T10:00:00Z", "reason": "lost present",
             "items": [{"sku": "scarf", "quantity": 1, "unit_price_cents": 2500}], "shipping_address_id": "addr-gran",
             "shipping_speed": "NEXT_DAY", "gift_message": "Merry Christmas, Gran"}


def test_the_publish_format_takes_the_remedy_detail_under_exactly_these_names():
    import json

    from streams.core.inbound import parse_event_line
    from streams.runtime.upstream import avro_json_by_name

    name, datum = parse_event_line(json.dumps(GIFT_LINE), avro_json_by_name())
    assert name == "RemedyRequested"
    assert (datum["items"], datum["shipping_address_id"], datum["shipping_speed"], datum["gift_message"]) == (
        [{"sku": "scarf", "quantity": 1, "unit_price_cents": 2500}], "addr-gran", "NEXT_DAY", "Merry Christmas, Gran")


@pytest.mark.parametrize("change, problem", [
    ({"shipping_speed": "FAST"}, "field 'shipping_speed': 'FAST' is not one of STANDARD, EXPEDITED, EXPRESS, NEXT_DAY"),
    ({"items": []}, "field 'items': an empty list"),
    ({"items": [{"sku": "scarf", "quantity": 0, "unit_price_cents": 2500}]}, "field 'items[0].quantity': must be positive"),
    ({"items": [{"sku": "scarf", "quantity": 1}]}, "items[0].unit_price_cents"),
    ({"shipping_address": "1 Main St"}, "shipping_address"),
])
def test_bad_remedy_detail_is_refused_naming_the_field(change, problem):
    import json

    from streams.core.inbound import LineProblems, parse_event_line
    from streams.runtime.upstream import avro_json_by_name

    with pytest.raises(LineProblems) as refused:
        parse_event_line(json.dumps({**GIFT_LINE, **change}), avro_json_by_name())
    assert any(problem in text for text in refused.value.problems), refused.value.problems


def test_a_request_of_an_erased_customer_repeats_no_address_or_gift_message():
    world = world_after(order(), incident())
    world.feed({"type": "CustomerErased", "event_id": "er-1", "customer_id": "c1",
                "pseudonym": "erased:0123456789abcdef0123456789abcdef", "erased_at": T0 + 5 * HOUR_MS + 1})
    (decision,) = world.feed(request("r1", 2_500, items=[item("scarf")], address="addr-gran", gift="For Gran"))
    assert (decision["outcome"], decision["reason_codes"]) == ("ESCALATED", [core.CUSTOMER_ERASED])
    assert (decision["shipping_address_id"], decision["gift_message"]) == (None, None)
    assert detail.effects_of(decision) == []
