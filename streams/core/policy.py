"""The remedy policy: named thresholds, their defaults, their bounds, and the checks that relate them.

Pure module: no clock, environment or I/O. A policy is a document the fraud team edits (JSON);
`Policy.from_document` validates one — every threshold against its bounds (`BOUNDS`, tabled in
docs/bounds.md) and the relations between them, every problem at once — and `as_document` writes
one. Every default treats an ordinary customer generously.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from streams.core.inbound import MONEY_CENTS_MAX
from streams.errors import PolicyError

DAY_MS = 24 * 60 * 60 * 1000
HOUR_MS = 60 * 60 * 1000
REMEDY_KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")
INCIDENT_KINDS = (
    "LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY", "DAMAGED", "LATE_DELIVERY", "WRONG_ITEM", "SLOW_DOWNLOAD",
    "SERVICE_OUTAGE",
)
TIERS = ("NEW", "ESTABLISHED", "LOYAL", "WATCH")
# What links accounts (OrderPlaced revision 7): one payment instrument, one device, one building.
LINK_KINDS = ("payment_instrument", "device", "building")


def _kind_caps() -> dict[str, int]:
    # Per kind, in 30 days: room for a couple of ordinary mishaps of that kind.
    return {"CREDIT": 10_000, "REFUND": 25_000, "RESHIP": 25_000, "SHIPPING_UPGRADE": 5_000, "GIFT_WRAP": 2_500}


def _incident_claims() -> dict[str, int]:
    # Distinct incidents remedied per customer in 90 days, by incident kind. Thefts are rare for an
    # honest customer; outages and slow downloads are our fault and get the most room.
    return {
        "LOST_IN_TRANSIT": 3, "STOLEN_AFTER_DELIVERY": 2, "DAMAGED": 4, "LATE_DELIVERY": 6, "WRONG_ITEM": 4,
        "SLOW_DOWNLOAD": 8, "SERVICE_OUTAGE": 12,
    }


def _proactive_rules() -> dict[str, dict]:
    # Which reported incidents the service remedies by itself, before anyone asks. "source" is the
    # reporter that must have reported it (or ANY); "amount" is cents, or ORDER_TOTAL for the
    # order's price (a refund of a slow download, a reshipment of the lost items).
    return {
        "SLOW_DOWNLOAD": {"source": "QOS_MONITOR", "remedy": "REFUND", "amount": "ORDER_TOTAL"},
        "LOST_IN_TRANSIT": {"source": "CARRIER", "remedy": "RESHIP", "amount": "ORDER_TOTAL"},
        "SERVICE_OUTAGE": {"source": "ANY", "remedy": "CREDIT", "amount": 500},
    }


INCIDENT_SOURCES = ("CUSTOMER", "CARRIER", "QOS_MONITOR", "ASSOCIATE", "SYSTEM")
# Evidence (issue 12): an incident a carrier, our download monitor or our own systems reported is
# confirmed by someone other than the customer; one the customer (or an associate on the
# customer's word) reported is asserted. Abuse caps judge asserted claims; confirmed ones have
# their own, much wider room (confirmed_remedy_cents_max_*).
CONFIRMING_SOURCES = ("CARRIER", "QOS_MONITOR", "SYSTEM")
# Remedies of value: one incident gets at most one of them, whatever the kind (a replacement or a
# refund, not both). The accompanying kinds may go with it (a reshipment gift-wrapped and upgraded).
VALUE_REMEDY_KINDS = ("REFUND", "RESHIP", "CREDIT")
ACCOMPANYING_REMEDY_KINDS = ("SHIPPING_UPGRADE", "GIFT_WRAP")
# "It never came": the incident kinds that claim the goods were not received.
NON_RECEIPT_INCIDENT_KINDS = ("LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY")


def _household_incident_claims() -> dict[str, int]:
    # Distinct incidents of a kind remedied at one address in 90 days, across all its accounts.
    # An honest household loses a parcel to a porch thief perhaps once a year.
    return {
        "LOST_IN_TRANSIT": 4, "STOLEN_AFTER_DELIVERY": 2, "DAMAGED": 6, "LATE_DELIVERY": 12, "WRONG_ITEM": 6,
        "SLOW_DOWNLOAD": 12, "SERVICE_OUTAGE": 24,
    }


def _linked_claims() -> dict[str, int]:
    # Distinct customer-asserted incidents remedied in 90 days across the accounts one link ties
    # together. A card or a device is a household's at most; a building holds many households.
    return {"payment_instrument": 6, "device": 6, "building": 24}


def _linked_cents() -> dict[str, int]:
    # Granted value of customer-asserted claims in 30 days across the linked accounts.
    return {"payment_instrument": 60_000, "device": 60_000, "building": 250_000}


def _tier_percent() -> dict[str, int]:
    # How much of each customer cents cap a tier gets, in percent (integers: no float money).
    return {"NEW": 100, "ESTABLISHED": 150, "LOYAL": 200, "WATCH": 50}


@dataclass(frozen=True)
class Bound:
    """The integers one threshold may take (both ends included), and why."""

    minimum: int
    maximum: int
    reason: str


# A cap in cents: at most the money one record may carry (10^11 cents, $1 billion), so every cap
# a decision records, scaled by at most 1,000% (10^12), is far inside an Avro long.
_CAP = Bound(1, MONEY_CENTS_MAX, "money: at most 10^11 cents ($1 billion), so every scaled cap a decision records fits an Avro long")
# A count of claims in a window: 10,000 in 90 days is over a hundred a day, no limit at all.
_CLAIMS = Bound(1, 10_000, "a count: 10,000 claims in 90 days is over 100 a day, which limits nothing")
# A rolling window: under an hour a cap becomes a rate limit (and 1 ms windows forget every
# grant); over 400 days it outlives the orders a state remembers.
_WINDOW = Bound(HOUR_MS, 400 * DAY_MS, "a rolling window: under an hour it forgets grants at once; over 400 days it outlives the orders a state keeps")
_SWITCH = Bound(0, 1, "a switch: 0 (off) or 1 (on)")
_TENURE = Bound(1, 36_500, "days of tenure: a century at most")

# Every threshold's bounds. Together they keep every decision encodable (the largest figure a
# decision carries is a cap scaled by a tier, at most 10^12) and every window and wait meaningful;
# the relations between thresholds are checked in Policy.problems. docs/bounds.md has the table.
BOUNDS: dict[str, Bound] = {
    "remedy_cents_max_per_customer_30d": _CAP,
    "remedy_cents_max_per_customer_90d": _CAP,
    "kind_cents_max_per_customer_30d": _CAP,
    "incident_claims_max_per_customer_90d": _CLAIMS,
    "household_claims_max_90d": _CLAIMS,
    "household_cents_max_30d": _CAP,
    "household_incident_claims_max_90d": _CLAIMS,
    "linked_accounts_scope_enabled": _SWITCH,
    "linked_claims_max_90d": _CLAIMS,
    "linked_cents_max_30d": _CAP,
    "associate_cents_max_per_day": _CAP,
    "remedy_cents_max_per_request": _CAP,
    "confirmed_remedy_cents_max_per_request": _CAP,
    "confirmed_remedy_cents_max_per_customer_30d": _CAP,
    "one_value_remedy_per_incident": _SWITCH,
    "lost_claim_after_delivery_scan_escalated": _SWITCH,
    "request_above_customer_cap_escalated": _SWITCH,
    "order_value_remedied_once": _SWITCH,
    "new_account_days_max": _TENURE,
    "new_account_orders_max": Bound(1, 100, "orders: an account with more than 100 orders is not new"),
    "shared_new_account_claims_max_90d": Bound(0, 10_000, "a count: 0 sends every new account's never-received claim to a person; 10,000 in 90 days limits nothing"),
    "recovery_strikes_escalate_min": _CLAIMS,
    "lost_claim_days_after_order_min": Bound(1, 365, "days: a parcel a year on its way is lost by any measure"),
    "associate_goodwill_requests_max_30d": _CLAIMS,
    "associate_concentration_share_max_percent_30d": Bound(1, 100, "percent of an associate's discretionary grants: at 100 no share is ever above it (the rule is off)"),
    "associate_concentration_cents_min_30d": _CAP,
    "associate_concentration_grants_min_30d": _CLAIMS,
    "recovery_strike_window_ms": _WINDOW,
    "flag_delivery_after_lost_claim": _SWITCH,
    "tier_percent": Bound(1, 1_000, "percent of a customer cap: at most 10 times it, so a scaled cap stays under 10^12 cents"),
    "established_tenure_days_min": _TENURE,
    "established_spend_cents_min": _CAP,
    "loyal_tenure_days_min": _TENURE,
    "loyal_spend_cents_min": _CAP,
    "watch_claims_min": _CLAIMS,
    "watch_claims_percent_of_orders_min": Bound(1, 1_000, "percent of orders: above 1,000% (ten claims an order) WATCH is never reached"),
    "watch_claims_escalated": _SWITCH,
    "customer_window_ms": _WINDOW,
    "long_window_ms": _WINDOW,
    "request_lateness_ms_max": Bound(60_000, 30 * DAY_MS, "under a minute ordinary reordering between topics moves decisions in time; over 30 days every state keeps a month more of grants"),
    "order_wait_ms_max": Bound(60_000, 30 * DAY_MS, "under a minute a request whose order is on its way is escalated; over 30 days a request waits a month for a person"),
    "order_wait_by_requests_ms_max": Bound(HOUR_MS, 90 * DAY_MS, "the backstop wait: under an hour a catch-up escalates requests whose orders are still being read; over 90 days it is no backstop"),
    "pending_requests_max_per_customer": Bound(1, 100, "parked requests are held in the customer's state record, which must stay under Kafka's 1 MB message limit"),
    "decided_retention_ms": Bound(DAY_MS, 800 * DAY_MS, "must cover long_window_ms + request_lateness_ms_max (at most 430 days); over 800 days the state only grows"),
    "decided_max_per_customer": Bound(1, 2_000, "a remembered decision is about 1.2 KB of the customer's state record (Kafka's 1 MB message limit); never above the default"),
    "order_retention_ms": Bound(DAY_MS, 1_100 * DAY_MS, "orders older than this cannot be refunded against their total; about three years at most, or the state only grows"),
    "orders_max_per_customer": Bound(1, 2_000, "orders and incidents are held in the customer's state record (Kafka's 1 MB message limit); never above the default"),
    "scope_entries_max": Bound(1, 5_000, "answers are held in one household or associate state record (Kafka's 1 MB message limit); never above the default"),
}
# Bounds of a proactive rule's fixed amount, in cents.
PROACTIVE_AMOUNT_BOUND = _CAP
# The thresholds that are objects keyed by kind or tier, and the keys each must have.
KEYED_THRESHOLDS = {
    "kind_cents_max_per_customer_30d": REMEDY_KINDS,
    "incident_claims_max_per_customer_90d": INCIDENT_KINDS,
    "household_incident_claims_max_90d": INCIDENT_KINDS,
    "linked_claims_max_90d": LINK_KINDS,
    "linked_cents_max_30d": LINK_KINDS,
    "tier_percent": TIERS,
}
# Pairs (smaller, larger) whose order is a rule: the larger limit could otherwise never be reached.
RELATIONS = (
    ("remedy_cents_max_per_request", "remedy_cents_max_per_customer_30d"),
    ("remedy_cents_max_per_request", "confirmed_remedy_cents_max_per_request"),
    ("confirmed_remedy_cents_max_per_request", "confirmed_remedy_cents_max_per_customer_30d"),
    ("remedy_cents_max_per_customer_30d", "remedy_cents_max_per_customer_90d"),
    ("customer_window_ms", "long_window_ms"),
    ("order_wait_ms_max", "order_wait_by_requests_ms_max"),
    ("established_tenure_days_min", "loyal_tenure_days_min"),
    ("established_spend_cents_min", "loyal_spend_cents_min"),
)


@dataclass(frozen=True)
class Policy:
    """Thresholds the decision core applies; every one is named with its unit last."""

    # The currency all caps are counted in; a request in another currency goes to a person.
    currency: str = "USD"
    # Customer exposure: granted value of every kind together. $250 in any 30 days covers several
    # ordinary mishaps (a lost parcel plus goodwill credits) without friction.
    remedy_cents_max_per_customer_30d: int = 25_000
    # The same over 90 days: a steady stream of claims is stopped even when each month is under the cap.
    remedy_cents_max_per_customer_90d: int = 50_000
    # Granted value per remedy kind per customer in 30 days.
    kind_cents_max_per_customer_30d: dict = field(default_factory=_kind_caps)
    # Distinct incidents remedied per customer in 90 days, by incident kind.
    incident_claims_max_per_customer_90d: dict = field(default_factory=_incident_claims)
    # Household (shipping_address_id, across all accounts shipping there): distinct incidents
    # remedied in 90 days, and granted value in 30 days. Porch-pirate rings show up here.
    household_claims_max_90d: int = 6
    household_cents_max_30d: int = 60_000
    # Household: distinct incidents of each kind remedied in 90 days (thefts above all).
    household_incident_claims_max_90d: dict = field(default_factory=_household_incident_claims)
    # Linked accounts (OrderPlaced revision 7: payment_instrument_id, device_id, building_id): per
    # link, distinct customer-asserted incidents remedied in 90 days and their value in 30 days
    # across every account the link ties together (a scope per link id, like the household).
    # Rings that rotate apartment-level addresses in one building, or open fresh accounts on one
    # card or device, meet here.
    # 1: used, each link kind a level of the cross-partition order (docs/decisions.md, "Order across
    # partitions"). 0 (the default): not used; each linked scope a request passes is one more Kafka
    # hop (the synchronous API's household + associate path: p50 314 ms on, 99 ms off; docs/decisions.md).
    linked_accounts_scope_enabled: int = 0
    linked_claims_max_90d: dict = field(default_factory=_linked_claims)
    linked_cents_max_30d: dict = field(default_factory=_linked_cents)
    # Granted value per associate per UTC day; above it the request goes to a second person.
    associate_cents_max_per_day: int = 150_000
    # Auto-approval ceiling for a single request: above it a person looks (ESCALATED, not denied).
    # $250 (the whole 30-day room): at $150, 2% of honest customers' requests (refunds of
    # larger orders) waited for a person with no effect on abuse (bench/policy_sweep.py).
    remedy_cents_max_per_request: int = 25_000
    # Proactive remedies by incident kind (see _proactive_rules); decided by the same limits.
    proactive_rules: dict = field(default_factory=_proactive_rules)
    # Confirmed incidents (CONFIRMING_SOURCES: the carrier, the QoS monitor or our systems said so)
    # are not judged by the abuse caps above: a carrier-confirmed $400 loss is reshipped even for a
    # customer at the cap. They go to a person only above this much higher ceiling ($1,500) ...
    confirmed_remedy_cents_max_per_request: int = 150_000
    # ... or past this room for confirmed remedies in any 30 days ($3,000): a carrier losing more
    # for one account in a month is itself worth a look.
    confirmed_remedy_cents_max_per_customer_30d: int = 300_000
    # 1: one remedy of value (VALUE_REMEDY_KINDS) per incident, whatever the kind: a refund after a
    # reshipment of the same incident is DENIED (ANOTHER_VALUE_REMEDY_FOR_INCIDENT). Gift wrap and
    # a shipping upgrade (ACCOMPANYING_REMEDY_KINDS) may accompany it. 0: only the same kind twice is refused.
    one_value_remedy_per_incident: int = 1
    # 1: an order's value is given back once to customer-asserted claims: a REFUND or RESHIP that
    # would take the order's refunds plus reshipments (granted or reserved, any incident) past its
    # total goes to a person (ORDER_VALUE_ALREADY_REMEDIED). A reshipment and then a refund of the
    # same goods under a second incident is the double dip one incident cannot see; a replacement
    # that arrived broken too is real, and a person can say so. Confirmed incidents are not judged here.
    order_value_remedied_once: int = 1
    # 1: a customer-asserted LOST_IN_TRANSIT claim on an order the carrier already scanned as
    # delivered goes to a person (LOST_CLAIM_AFTER_DELIVERY_SCAN).
    lost_claim_after_delivery_scan_escalated: int = 1
    # 1: a REFUND or RESHIP larger than every customer cap it exceeds (30- or 90-day room after
    # the tier, the kind's 30-day cap), from a customer granted nothing in those windows, goes to a
    # person (REQUEST_ABOVE_CUSTOMER_CAP) instead of being denied: the first loss of an expensive
    # order is bad luck to look at, not abuse. Any earlier grant in an exceeded window still denies;
    # goodwill above its kind's cap stays denied. 0: denied by the cap as any other request.
    request_above_customer_cap_escalated: int = 1
    # A new account: first order less than this many days ago and at most new_account_orders_max
    # orders. Its customer-asserted "never received" claims (NON_RECEIPT_INCIDENT_KINDS) are
    # counted at the address and at every link (card, device, building) of the order: past
    # shared_new_account_claims_max_90d such claims there in 90 days, the next goes to a person
    # (NEW_ACCOUNT_NON_RECEIPT_CLAIM). One new customer robbed on the porch is trusted; fresh
    # accounts claiming one after another at one address or building are not.
    new_account_days_max: int = 30
    new_account_orders_max: int = 1
    shared_new_account_claims_max_90d: int = 1
    # A customer-asserted LOST_IN_TRANSIT claim less than this many days after the order was placed,
    # with no delivery scan yet, goes to a person (LOST_CLAIM_BEFORE_OVERDUE): the parcel is still
    # within its delivery window (1-5 days), so it cannot be called lost yet.
    lost_claim_days_after_order_min: int = 7
    # Goodwill (a request naming no incident) one associate asks for one customer: past this many
    # requests in 30 days (any outcome), the next goes to a second person
    # (ASSOCIATE_REPEAT_GOODWILL_REVIEW): an associate crediting the same friends again and again.
    # 2: a second goodwill for a caller who rings again is ordinary; at 1 as at 2 the simulated
    # friends of a generous associate are stopped alike (bench/policy_sweep.py).
    associate_goodwill_requests_max_30d: int = 2
    # Associate concentration (judged at the associate scope): the discretionary grants an
    # associate made in the 30 UTC days up to the request's day (everything it asked for but the
    # remedies of confirmed incidents), per customer. A request goes to a second person
    # (ASSOCIATE_CUSTOMER_CONCENTRATION) when, with it, one customer would hold more than
    # associate_concentration_share_max_percent_30d of the associate's discretionary cents AND more
    # than associate_concentration_cents_min_30d of them AND at least
    # associate_concentration_grants_min_30d of its grants: an associate whose goodwill goes to the
    # same few friends. The cents floor keeps small amounts out, the grants floor a single large
    # claim (one grant is no relationship; a quiet or new associate's first large grant is 100% of
    # its book; an incident's remedies count as one grant); an associate serving many customers
    # never gives one of them a fifth of its book.
    # Defaults: a fifth, above $75 (three quarters of a NEW customer's 30-day credit room, so two
    # credits under the $100 credit cap count), in at least a second grant in 30 days. On the
    # simulated profiles no honest request is escalated by it (README "Decision quality").
    associate_concentration_share_max_percent_30d: int = 20
    associate_concentration_cents_min_30d: int = 7_500
    associate_concentration_grants_min_30d: int = 2
    # A strike: an order delivered after the customer claimed it lost and was remedied. With at
    # least this many strikes in the strike window, the customer's asserted claims go to a person
    # (RECOVERY_STRIKE_REVIEW).
    recovery_strikes_escalate_min: int = 1
    recovery_strike_window_ms: int = 365 * DAY_MS
    # When an order claimed LOST_IN_TRANSIT is delivered after all, flag the reshipment for
    # review (the customer is never charged); 0 turns the flag off.
    flag_delivery_after_lost_claim: int = 1
    # Trust tiers scale every customer cents cap by a percentage.
    tier_percent: dict = field(default_factory=_tier_percent)
    # ESTABLISHED: customer for a year with $500 spent; LOYAL: five years and $2,000.
    established_tenure_days_min: int = 365
    established_spend_cents_min: int = 50_000
    loyal_tenure_days_min: int = 5 * 365
    loyal_spend_cents_min: int = 200_000
    # WATCH: at least this many customer-asserted incidents remedied in the long (90-day) window,
    # and more of them than this percent of the orders placed in that window (recent orders, not
    # lifetime: a long history no longer dilutes a burst of claims). Outranks the other tiers.
    # 3 claims: on the default simulated profile, 2 put unlucky honest customers on WATCH and 4
    # let serial claimers through longer (README "Decision quality"). 25%: one recent order in
    # four claimed on, several times any honest claim rate; at 50% a claimer ordering steadily
    # (three claims in twelve orders) stayed under the line.
    watch_claims_min: int = 3
    watch_claims_percent_of_orders_min: int = 25
    # 1: every claim (a request naming an incident) of a WATCH customer goes to a person instead
    # of being granted automatically; 0: WATCH only scales the caps.
    watch_claims_escalated: int = 1
    # Length of the customer's short rolling window.
    customer_window_ms: int = 30 * DAY_MS
    # Length of the long rolling window (90-day caps, claim counts).
    long_window_ms: int = 90 * DAY_MS
    # How far behind the newest request of a customer a request may be dated and still be decided
    # at its own time; an older one is decided as of (newest - this). Without a bound, pruning old
    # grants could let a backdated request escape the rolling caps.
    request_lateness_ms_max: int = 7 * DAY_MS
    # How long a request naming an unknown order waits for it, measured on the customer's order
    # events: once an order event a day newer than the request has arrived, the named order is
    # not coming and a person looks (ESCALATED ORDER_NOT_FOUND).
    order_wait_ms_max: int = DAY_MS
    # The same measured on the customer's later requests, as a backstop for customers with no
    # further order events; longer because the requests topic can run ahead of the orders topic
    # by hours of event time when a worker catches up or replays.
    order_wait_by_requests_ms_max: int = 7 * DAY_MS
    # Parked requests per customer: bounds memory if an upstream never sends the orders.
    pending_requests_max_per_customer: int = 20
    # How long a decided request is remembered, so a redelivered request gets the same decision.
    decided_retention_ms: int = 120 * DAY_MS
    # Decided requests remembered per customer at most (bounds state for a flood of requests).
    decided_max_per_customer: int = 2_000
    # How long an order is remembered after it was placed (refunds need the order total).
    order_retention_ms: int = 400 * DAY_MS
    # Orders (and incidents) remembered per customer at most.
    orders_max_per_customer: int = 2_000
    # Reservations and answers a household or associate scope remembers at most.
    scope_entries_max: int = 5_000

    @cached_property
    def version(self) -> str:
        """A version derived from the thresholds, so any change yields a different version."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return "p1-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def tier_cap(self, cents: int, tier: str) -> int:
        """A customer cents cap scaled by the tier's percentage (integer cents, rounded down)."""
        return cents * self.tier_percent[tier] // 100

    def problems(self) -> list[str]:
        """Every reason this policy is unusable, relations included; empty when it is sound."""
        found: list[str] = []
        usable: set[str] = set()  # thresholds whose every value is in bounds, so relations can use them
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "currency":
                if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isupper()
                        and value.isalpha()):
                    found.append(f"currency: must be a 3-letter ISO 4217 code, got {_shown(value)}")
            elif item.name == "proactive_rules":
                found += _rule_problems(value)
            elif item.name in KEYED_THRESHOLDS:
                wanted = KEYED_THRESHOLDS[item.name]
                if not isinstance(value, dict):
                    found.append(f"{item.name}: must be an object with the keys {', '.join(wanted)}, got {_shown(value)}")
                    continue
                before = len(found)
                for key in sorted(set(value) - set(wanted), key=str):
                    found.append(f"{item.name}.{_shown_key(key)}: unknown key; expected one of {', '.join(wanted)}")
                for key in wanted:
                    if key not in value:
                        found.append(f"{item.name}.{key}: missing")
                    else:
                        found += _bound_problems(f"{item.name}.{key}", value[key], BOUNDS[item.name])
                if len(found) == before:
                    usable.add(item.name)
            else:
                problems = _bound_problems(item.name, value, BOUNDS[item.name])
                found += problems
                if not problems:
                    usable.add(item.name)
        for smaller, larger in RELATIONS:
            if {smaller, larger} <= usable and getattr(self, smaller) > getattr(self, larger):
                found.append(
                    f"{smaller}: {getattr(self, smaller)} exceeds {larger} {getattr(self, larger)}; "
                    "the larger limit could never be reached"
                )
        if {"kind_cents_max_per_customer_30d", "remedy_cents_max_per_customer_30d", "tier_percent"} <= usable:
            widest = self.remedy_cents_max_per_customer_30d * max(self.tier_percent.values()) // 100
            for kind, cap in self.kind_cents_max_per_customer_30d.items():
                if cap > widest:
                    found.append(f"kind_cents_max_per_customer_30d.{kind}: {cap} exceeds the 30-day exposure cap of every tier")
        if {"decided_retention_ms", "long_window_ms", "request_lateness_ms_max"} <= usable:
            if self.decided_retention_ms < self.long_window_ms + self.request_lateness_ms_max:
                found.append(
                    "decided_retention_ms: must cover long_window_ms + request_lateness_ms_max, or a "
                    "redelivered request could be decided again inside the window"
                )
        return found

    def checked(self) -> "Policy":
        """This policy, or PolicyError listing every problem."""
        found = self.problems()
        if found:
            raise PolicyError("invalid policy:\n  " + "\n  ".join(found))
        return self

    def as_document(self) -> dict:
        """The thresholds as the JSON document the fraud team edits (without the derived version)."""
        return asdict(self)

    @classmethod
    def from_document(cls, document: dict, base: "Policy | None" = None) -> "Policy":
        """A checked policy from a document; keys not given keep `base`'s values (default policy)."""
        if not isinstance(document, dict):
            raise PolicyError(f"policy document: expected a JSON object, got {type(document).__name__}")
        known = {item.name for item in fields(cls)}
        unknown = [f"{_shown_key(key)}: unknown key" for key in sorted(set(document) - known - {"version"}, key=str)]
        values = (base or cls()).as_document()
        for key, value in document.items():
            if key not in known:
                continue
            if isinstance(values.get(key), dict) and isinstance(value, dict) and key != "proactive_rules":
                value = {**values[key], **value}
            values[key] = value
        found = unknown + cls(**values).problems()
        if found:
            raise PolicyError("invalid policy:\n  " + "\n  ".join(found))
        return cls(**values)

    def differences(self, other: "Policy") -> list[tuple[str, object, object]]:
        """(threshold, this value, the other's value) for every threshold that differs, dotted for keyed ones."""
        mine, theirs = self.as_document(), other.as_document()
        changed = []
        for key in mine:
            if isinstance(mine[key], dict) and isinstance(theirs[key], dict):
                for inner in sorted(set(mine[key]) | set(theirs[key])):
                    if mine[key].get(inner) != theirs[key].get(inner):
                        changed.append((f"{key}.{inner}", mine[key].get(inner), theirs[key].get(inner)))
            elif mine[key] != theirs[key]:
                changed.append((key, mine[key], theirs[key]))
        return changed


# A threshold added without bounds would be accepted at any size: fail at import, not in production.
assert set(BOUNDS) == {item.name for item in fields(Policy)} - {"currency", "proactive_rules"}, \
    "every policy threshold needs an entry in BOUNDS"


def _rule_problems(rules) -> list[str]:
    if not isinstance(rules, dict):
        return [f"proactive_rules: must be an object by incident kind, got {_shown(rules)}"]
    found = []
    for kind, rule in rules.items():
        where = f"proactive_rules.{_shown_key(kind)}"
        if kind not in INCIDENT_KINDS:
            found.append(f"{where}: unknown incident kind; expected one of {', '.join(INCIDENT_KINDS)}")
            continue
        if not isinstance(rule, dict) or set(rule) != {"source", "remedy", "amount"}:
            found.append(f"{where}: must have exactly the keys source, remedy, amount")
            continue
        if not isinstance(rule["source"], str) or rule["source"] not in INCIDENT_SOURCES + ("ANY",):
            found.append(f"{where}.source: {_shown(rule['source'])} is not one of {', '.join(INCIDENT_SOURCES)}, ANY")
        if not isinstance(rule["remedy"], str) or rule["remedy"] not in REMEDY_KINDS:
            found.append(f"{where}.remedy: {_shown(rule['remedy'])} is not one of {', '.join(REMEDY_KINDS)}")
        if rule["amount"] != "ORDER_TOTAL":
            if not _is_int(rule["amount"]):
                found.append(f"{where}.amount: must be ORDER_TOTAL or a positive number of cents, got {_shown(rule['amount'])}")
            else:
                found += _bound_problems(f"{where}.amount", rule["amount"], PROACTIVE_AMOUNT_BOUND)
    return found


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound_problems(where: str, value, bound: Bound) -> list[str]:
    """Why a threshold's value is not an integer within its bounds (empty when it is)."""
    if (bound.minimum, bound.maximum) == (0, 1):
        return [] if _is_int(value) and value in (0, 1) else [f"{where}: must be 0 or 1, got {_shown(value)}"]
    if not _is_int(value) or value < 1 <= bound.minimum:
        return [f"{where}: must be a positive integer, got {_shown(value)}"]
    if not bound.minimum <= value <= bound.maximum:
        unit = _unit(where)
        return [f"{where}: must be between {bound.minimum}{unit(bound.minimum)} and "
                f"{bound.maximum}{unit(bound.maximum)}, got {_shown(value)} ({bound.reason})"]
    return []


def _unit(where: str):
    """How a bound is explained next to its number: ms as a span, cents as dollars."""
    if where.endswith("_ms") or where.endswith("_ms_max"):
        return lambda ms: f" ({_span(ms)})"
    if "cents" in where.split(".")[0] or where.endswith(".amount"):
        return lambda cents: f" (${cents // 100:,}.{cents % 100:02d})"
    return lambda number: ""


def _span(ms: int) -> str:
    for unit_ms, unit in ((DAY_MS, "day"), (HOUR_MS, "hour"), (60_000, "minute"), (1_000, "second")):
        if ms % unit_ms == 0:
            return f"{ms // unit_ms} {unit}" + ("s" if ms // unit_ms != 1 else "")
    return f"{ms} ms"


def _shown(value) -> str:
    # A short, printable rendering of any JSON value: repr escapes what a terminal would obey.
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _shown_key(key) -> str:
    return key if isinstance(key, str) and key.isprintable() else repr(key)[1:-1] if isinstance(key, str) else repr(key)
