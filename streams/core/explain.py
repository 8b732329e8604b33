"""Decisions in words, for the person on the phone: what each reason code means and what happens
next. Pure: the synchronous API (streams/runtime/sync_api.py) and any console share these texts."""

from __future__ import annotations

from streams.core import decision as core
from streams.core import remedy_detail as detail

# What each reason code means, in a sentence an associate can read to a customer.
REASON_WORDS = {
    core.WITHIN_LIMITS: "within every limit: granted in full",
    core.CUSTOMER_30D_CAP_EXCEEDED: "this would take the customer past the value remedied in any 30 days",
    core.CUSTOMER_90D_CAP_EXCEEDED: "this would take the customer past the value remedied in any 90 days",
    core.CUSTOMER_KIND_30D_CAP_EXCEEDED: "this would take the customer past the 30-day limit for this kind of remedy",
    core.CUSTOMER_INCIDENT_CLAIMS_EXCEEDED: "this kind of incident was already remedied the most times allowed in 90 days",
    core.DUPLICATE_REMEDY_FOR_INCIDENT: "a remedy of this kind was already granted for this incident",
    core.REFUND_EXCEEDS_ORDER_TOTAL: "the refund is more than was paid for the order, less earlier refunds",
    core.RESHIP_OF_DIGITAL_ORDER: "a digital order cannot be reshipped",
    core.ORDER_REQUIRED: "a refund or reshipment needs the order it is for",
    core.REQUEST_ABOVE_CUSTOMER_CAP: "larger than all the customer may be granted in 30 or 90 days, with nothing granted yet; a person looks",
    core.ABOVE_AUTO_APPROVAL_CEILING: "above the amount granted without a second look",
    core.CURRENCY_NOT_SUPPORTED: "the limits are kept in another currency; a person decides",
    core.ORDER_NOT_FOUND: "the named order has not arrived here yet",
    core.INCIDENT_NOT_FOUND: "the named incident has not arrived here yet",
    core.CUSTOMER_UNKNOWN: "no order of this customer is known yet",
    core.HOUSEHOLD_CLAIMS_EXCEEDED: "the shipping address already had the most incidents remedied in 90 days",
    core.HOUSEHOLD_30D_CAP_EXCEEDED: "this would take the shipping address past the value remedied in 30 days",
    core.HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED: "the shipping address already had this kind of incident remedied the most times",
    core.WATCH_TIER_REVIEW: "this account's claims are looked at by a person first",
    core.ASSOCIATE_DAILY_BUDGET_EXCEEDED: "past the associate's budget for today: a second person looks",
    core.APPROVED_BY_REVIEW: "approved by a reviewer",
    core.DENIED_BY_REVIEW: "denied by a reviewer",
    core.DELIVERED_AFTER_LOST_CLAIM: "the carrier delivered the order after it was reported lost",
    core.CONFIRMED_REMEDY_CEILING: "a confirmed incident, but above the amount granted for one without a second look",
    core.CONFIRMED_30D_CAP_EXCEEDED: "past the room for confirmed incidents in 30 days: a person looks",
    core.ORDER_VALUE_ALREADY_REMEDIED: "the order's value was already given back (refunded or reshipped); a person looks",
    core.ANOTHER_VALUE_REMEDY_FOR_INCIDENT: "this incident was already remedied with a refund, reshipment or credit",
    core.LOST_CLAIM_AFTER_DELIVERY_SCAN: "the carrier scanned the order as delivered before it was reported lost",
    core.NEW_ACCOUNT_NON_RECEIPT_CLAIM: "a new account's first order reported not received where other new accounts (same address, card, device or building) already claimed so in 90 days: a person looks",
    core.RECOVERY_STRIKE_REVIEW: "an earlier order reported lost was delivered after all: a person looks at claims",
    core.LINKED_PAYMENT_INSTRUMENT_LIMIT_EXCEEDED: "accounts paying with this payment instrument already had the most claims remedied",
    core.LINKED_DEVICE_LIMIT_EXCEEDED: "accounts ordering from this device already had the most claims remedied",
    core.LINKED_BUILDING_LIMIT_EXCEEDED: "accounts shipping to this building already had the most claims remedied",
    core.LOST_CLAIM_BEFORE_OVERDUE: "the parcel is still within its delivery window: a person looks before it is called lost",
    core.ASSOCIATE_REPEAT_GOODWILL_REVIEW: "the same associate already asked goodwill for this customer this month: a second person looks",
    core.ASSOCIATE_CUSTOMER_CONCENTRATION: "this customer already received a large share of this associate's goodwill and discretionary remedies this month: a second person looks",
    "CUSTOMER_ERASED": "the customer's personal data was erased; nothing more is decided for this account",
    detail.ITEM_NOT_IN_ORDER: "an item named is not part of the order",
    detail.ITEM_QUANTITY_EXCEEDS_ORDER: "more of an item was named than the order holds",
    detail.ITEM_PRICE_NOT_ORDER_PRICE: "an item's unit price is not the price paid for it in the order",
    detail.RESHIP_AMOUNT_NOT_ITEMS_VALUE: "a reshipment's amount must be the value of the items reshipped",
    detail.REFUND_EXCEEDS_ITEMS_VALUE: "the refund is more than the items named are worth",
    detail.ITEM_ALREADY_DELIVERED: "an item named has already been delivered; only the missing items can be claimed lost",
}

# What happens next, by outcome.
NEXT_STEPS = {
    "GRANTED": "the remedy goes ahead now; nothing more is needed from the customer",
    "DENIED": "nothing is granted; the customer may ask again if something changes, or an associate may escalate",
    "ESCALATED": "a person reviews this request (remedy-ledger review list); the answer follows when they decide",
}


def reason_words(code: str) -> str:
    """The meaning of a reason code (a code without words is shown as itself)."""
    return REASON_WORDS.get(code, code)


def explained(decision: dict) -> dict:
    """A decision as the synchronous API answers it: outcome, amount, reasons in words, next step."""
    cents, currency = decision["granted_cents"], decision["currency"]
    return {
        "request_id": decision["request_id"],
        "decision_id": decision["decision_id"],
        "outcome": decision["outcome"],
        "granted_cents": cents,
        "currency": currency,
        "granted": f"{cents // 100}.{cents % 100:02d} {currency}",
        "reasons": [{"code": code, "meaning": reason_words(code)} for code in decision["reason_codes"]],
        "next": NEXT_STEPS.get(decision["outcome"], ""),
        "decided_by": decision["decided_by"],
        "policy_version": decision["policy_version"],
    }
