"""What exactly a remedy covers, and what each system must do once it is granted (pure).

A request may name order lines (`items`), a destination (`shipping_address_id`), a speed and a
gift message (RemedyRequested r6). This module checks the lines against the order the customer
placed (and, for a lost parcel delivered in part, against what did not arrive), carries the detail
into the decision, and derives from a granted decision the instruction for the system that acts
on it (warehouse, payments, accounts) and, for remedies the customer did not ask for, the
notification. Instructions and notifications are functions of the decision alone, so the shell
sends them in the same changelog outbox as the decision: exactly once with it, byte for byte on
a re-send (docs/decisions.md, "Remedy detail and instructions").

Pure module: no clock, environment, randomness or I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.core.money import money_text

Event = dict[str, Any]
Decision = dict[str, Any]
Order = dict[str, Any]

# Reason codes of the item checks (docs/decisions.md explains each).
ITEM_NOT_IN_ORDER = "ITEM_NOT_IN_ORDER"
ITEM_QUANTITY_EXCEEDS_ORDER = "ITEM_QUANTITY_EXCEEDS_ORDER"
ITEM_PRICE_NOT_ORDER_PRICE = "ITEM_PRICE_NOT_ORDER_PRICE"
RESHIP_AMOUNT_NOT_ITEMS_VALUE = "RESHIP_AMOUNT_NOT_ITEMS_VALUE"
REFUND_EXCEEDS_ITEMS_VALUE = "REFUND_EXCEEDS_ITEMS_VALUE"
ITEM_ALREADY_DELIVERED = "ITEM_ALREADY_DELIVERED"

ITEM_REASON_CODES = (
    ITEM_NOT_IN_ORDER,
    ITEM_QUANTITY_EXCEEDS_ORDER,
    ITEM_PRICE_NOT_ORDER_PRICE,
    RESHIP_AMOUNT_NOT_ITEMS_VALUE,
    REFUND_EXCEEDS_ITEMS_VALUE,
    ITEM_ALREADY_DELIVERED,
)

# Kinds that send goods somewhere: they get a destination and a speed.
SHIPPING_KINDS = frozenset({"RESHIP", "GIFT_WRAP", "SHIPPING_UPGRADE"})
DEFAULT_SHIPPING_SPEED = "STANDARD"
# The system that acts on each granted kind.
TARGET_OF_KIND = {"RESHIP": "WAREHOUSE", "GIFT_WRAP": "WAREHOUSE", "SHIPPING_UPGRADE": "WAREHOUSE",
                  "REFUND": "PAYMENTS", "CREDIT": "ACCOUNTS"}
# Incidents whose lost goods a partial delivery bounds (the claim is on what did not arrive).
LOST_INCIDENT_KINDS = frozenset({"LOST_IN_TRANSIT"})
# Reason code of a decision that only flags an earlier grant (no new instruction, no notification).
_FLAG_REASON = "DELIVERED_AFTER_LOST_CLAIM"


# Order lines -------------------------------------------------------------------------------------

def order_lines(order_event: Event) -> dict[str, list[int]]:
    """An order's lines as {sku: [quantity, unit_price_cents]} (a sku on two lines adds up; the
    first line's price stands)."""
    lines: dict[str, list[int]] = {}
    for item in order_event.get("items") or []:
        known = lines.get(item["sku"])
        if known is None:
            lines[item["sku"]] = [item["quantity"], item["unit_price_cents"]]
        else:
            lines[item["sku"]] = [known[0] + item["quantity"], known[1]]
    return lines


def delivered_lines(delivered: dict[str, int], delivery: Event, lines: dict[str, list[int]]) -> dict[str, int]:
    """The quantities delivered so far after one more delivery: {sku: quantity}, each at most the
    order's. A delivery without items delivers the whole order."""
    if delivery.get("items") is None:
        return {sku: quantity for sku, (quantity, _) in lines.items()}
    out = dict(delivered)
    for item in delivery["items"]:
        if item["sku"] in lines:
            out[item["sku"]] = min(lines[item["sku"]][0], out.get(item["sku"], 0) + item["quantity"])
    return out


def missing_lines(order: Order) -> dict[str, list[int]] | None:
    """The lines of an order delivered in part that have not arrived, or None when nothing says
    the order arrived in part (no partial delivery recorded)."""
    delivered = order.get("delivered_items")
    lines = order.get("lines")
    if delivered is None or not lines:
        return None
    missing = {sku: [quantity - delivered.get(sku, 0), price] for sku, (quantity, price) in lines.items()}
    return {sku: line for sku, line in missing.items() if line[0] > 0}


def lines_value_cents(lines: dict[str, list[int]]) -> int:
    """The value of order lines: quantity times unit price, summed."""
    return sum(quantity * price for quantity, price in lines.values())


def as_items(lines: dict[str, list[int]]) -> list[dict]:
    """Order lines as OrderItem records, by sku."""
    return [{"sku": sku, "quantity": quantity, "unit_price_cents": price} for sku, (quantity, price) in sorted(lines.items())]


def requested_lines(request: Event) -> dict[str, list[int]] | None:
    """The request's items as {sku: [quantity, unit_price_cents]} (a sku twice adds up), or None."""
    items = request.get("items")
    if items is None:
        return None
    lines: dict[str, list[int]] = {}
    for item in items:
        known = lines.get(item["sku"], [0, item["unit_price_cents"]])
        lines[item["sku"]] = [known[0] + item["quantity"], item["unit_price_cents"]]
    return lines


def item_problem(order: Order | None, request: Event, incident_kind: str | None) -> str | None:
    """Why the request's items cannot be granted against its order, as a reason code; None when
    they can (or name nothing). The order is known here (callers check ORDER_REQUIRED first)."""
    wanted = requested_lines(request)
    if wanted is None or order is None:
        return None
    lines = order.get("lines") or {}
    for sku, (quantity, price) in sorted(wanted.items()):
        if sku not in lines:
            return ITEM_NOT_IN_ORDER
        if quantity > lines[sku][0]:
            return ITEM_QUANTITY_EXCEEDS_ORDER
        if price != lines[sku][1]:
            return ITEM_PRICE_NOT_ORDER_PRICE
    missing = missing_lines(order) if incident_kind in LOST_INCIDENT_KINDS else None
    if missing is not None and any(quantity > missing.get(sku, [0])[0] for sku, (quantity, _) in wanted.items()):
        return ITEM_ALREADY_DELIVERED
    value = lines_value_cents(wanted)
    if request["kind"] == "RESHIP" and request["amount_cents"] != value:
        return RESHIP_AMOUNT_NOT_ITEMS_VALUE
    if request["kind"] == "REFUND" and request["amount_cents"] > value:
        return REFUND_EXCEEDS_ITEMS_VALUE
    return None


def priced_lost_reship(request: Event, order: Order) -> Event:
    """The service's own reshipment of a lost order priced by what is missing: the whole order, or
    only the lines that did not arrive when it was delivered in part."""
    missing = missing_lines(order)
    if missing is None:
        return {**request, "amount_cents": order["total_cents"], "amount_rule": None}
    return {**request, "amount_cents": lines_value_cents(missing), "items": as_items(missing), "amount_rule": None}


def overlaps(first_items: list[dict] | None, second_items: list[dict] | None) -> bool:
    """Whether two remedies cover a common order line (None, the whole order, covers every line)."""
    if first_items is None or second_items is None:
        return True
    return bool({i["sku"] for i in first_items} & {i["sku"] for i in second_items})


# Decision detail ---------------------------------------------------------------------------------

def detail_of(request: Event, order_address_id: str | None) -> dict:
    """The remedy detail a decision records: the request's lines, and for goods that ship, the
    destination (the order's address unless the request named one) and speed (STANDARD unless named)."""
    ships = request["kind"] in SHIPPING_KINDS
    return {
        "items": [dict(item) for item in request["items"]] if request.get("items") is not None else None,
        "shipping_address_id": (request.get("shipping_address_id") or order_address_id) if ships else None,
        "shipping_speed": (request.get("shipping_speed") or DEFAULT_SHIPPING_SPEED) if ships else None,
        "gift_message": request.get("gift_message") if ships else None,
    }


def grants_anew(decision: Decision) -> bool:
    """True for a decision that grants something to be carried out (not a flag on an earlier grant)."""
    return decision["outcome"] == "GRANTED" and _FLAG_REASON not in decision["reason_codes"]


def _derived_id(prefix: str, decision_id: str) -> str:
    return prefix + hashlib.sha256((prefix + "/v1/" + decision_id).encode()).hexdigest()[:32]


def instruction_for(decision: Decision) -> dict | None:
    """The RemedyInstruction for a granted decision (None for other decisions or unknown kinds)."""
    target = TARGET_OF_KIND.get(decision["kind"])
    if target is None or not grants_anew(decision):
        return None
    warehouse = target == "WAREHOUSE"
    gift_message = decision.get("gift_message") if warehouse else None
    return {
        "event_id": decision["decision_id"],
        "instruction_id": decision["decision_id"],
        "decision_id": decision["decision_id"],
        "request_id": decision["request_id"],
        "customer_id": decision["customer_id"],
        "order_id": decision.get("order_id"),
        "target": target,
        "kind": decision["kind"],
        "amount_cents": decision["granted_cents"],
        "currency": decision["currency"],
        "items": decision.get("items"),
        "shipping_address_id": decision.get("shipping_address_id") if warehouse else None,
        "shipping_speed": (decision.get("shipping_speed") or DEFAULT_SHIPPING_SPEED) if warehouse else None,
        "gift_wrapped": warehouse and (decision["kind"] == "GIFT_WRAP" or gift_message is not None),
        "gift_message": gift_message,
        "decided_at": decision["decided_at"],
    }


def effects_of(decision: Decision) -> list[tuple[str, dict]]:
    """What a decision makes other systems do, in order: ("instruction", RemedyInstruction) for a
    grant, ("notification", CustomerNotification) when the customer is told."""
    effects = []
    instruction = instruction_for(decision)
    if instruction is not None:
        effects.append(("instruction", instruction))
    notification = notification_for(decision)
    if notification is not None:
        effects.append(("notification", notification))
    return effects


def instruction_key(instruction: dict) -> str:
    """The message key of an instruction: its target system and customer (`warehouse:c1`)."""
    return f"{instruction['target'].lower()}:{instruction['customer_id']}"


# Plain words for a notification, by incident kind; other kinds get the generic sentence.
_BECAUSE = {
    "SLOW_DOWNLOAD": "because the download was slow",
    "SERVICE_OUTAGE": "because our service was down",
    "LOST_IN_TRANSIT": "because your parcel was lost in transit",
    "LATE_DELIVERY": "because your delivery was late",
    "DAMAGED": "because your order arrived damaged",
    "WRONG_ITEM": "because you received the wrong item",
    "STOLEN_AFTER_DELIVERY": "because your parcel was stolen after delivery",
}
_DID = {"REFUND": "We refunded your order", "CREDIT": "We credited your account", "RESHIP": "We are reshipping your order",
        "SHIPPING_UPGRADE": "We upgraded your shipping", "GIFT_WRAP": "We gift-wrapped your order"}


def notifies(decision: Decision) -> bool:
    """Whether the customer is told: every granted proactive remedy and every granted outage credit."""
    if not grants_anew(decision):
        return False
    outage_credit = decision["kind"] == "CREDIT" and decision.get("incident_kind") == "SERVICE_OUTAGE"
    return decision.get("origin") == "PROACTIVE" or outage_credit


def notification_for(decision: Decision) -> dict | None:
    """The CustomerNotification for a decision the customer is told about, else None."""
    if not notifies(decision):
        return None
    did = _DID.get(decision["kind"], "We made good on your order")
    because = _BECAUSE.get(decision.get("incident_kind") or "", "to make things right")
    notification_id = _derived_id("ntf-", decision["decision_id"])
    return {
        "event_id": notification_id,
        "notification_id": notification_id,
        "decision_id": decision["decision_id"],
        "customer_id": decision["customer_id"],
        "order_id": decision.get("order_id"),
        "incident_id": decision.get("incident_id"),
        "incident_kind": decision.get("incident_kind"),
        "kind": decision["kind"],
        "amount_cents": decision["granted_cents"],
        "currency": decision["currency"],
        "message": f"{did} ({money_text(decision['granted_cents'], decision['currency'])}) {because}.",
        "decided_at": decision["decided_at"],
    }
