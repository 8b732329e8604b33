"""The remedy policy: named thresholds, their defaults, and the checks that relate them.

Pure module: no clock, environment or I/O. A policy is a document the fraud team edits (JSON,
see docs/policy.md); `Policy.from_document` validates one and `as_document` writes one. Every
default treats an ordinary customer generously.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from streams.errors import PolicyError

DAY_MS = 24 * 60 * 60 * 1000
REMEDY_KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")
INCIDENT_KINDS = (
    "LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY", "DAMAGED", "LATE_DELIVERY", "WRONG_ITEM", "SLOW_DOWNLOAD",
    "SERVICE_OUTAGE",
)
TIERS = ("NEW", "ESTABLISHED", "LOYAL", "WATCH")


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


def _household_incident_claims() -> dict[str, int]:
    # Distinct incidents of a kind remedied at one address in 90 days, across all its accounts.
    # An honest household loses a parcel to a porch thief perhaps once a year.
    return {
        "LOST_IN_TRANSIT": 4, "STOLEN_AFTER_DELIVERY": 2, "DAMAGED": 6, "LATE_DELIVERY": 12, "WRONG_ITEM": 6,
        "SLOW_DOWNLOAD": 12, "SERVICE_OUTAGE": 24,
    }


def _tier_percent() -> dict[str, int]:
    # How much of each customer cents cap a tier gets, in percent (integers: no float money).
    return {"NEW": 100, "ESTABLISHED": 150, "LOYAL": 200, "WATCH": 50}


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
    # Granted value per associate per UTC day; above it the request goes to a second person.
    associate_cents_max_per_day: int = 150_000
    # Auto-approval ceiling for a single request: above it a person looks (ESCALATED, not denied).
    # $250 (the whole 30-day room): at $150, 2% of honest customers' requests (refunds of
    # larger orders) waited for a person with no effect on abuse (bench/policy_sweep.py).
    remedy_cents_max_per_request: int = 25_000
    # Proactive remedies by incident kind (see _proactive_rules); decided by the same limits.
    proactive_rules: dict = field(default_factory=_proactive_rules)
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
    # WATCH: at least this many remedied incidents, and more remedied incidents than this percent
    # of orders (lifetime). Outranks the other tiers.
    watch_claims_min: int = 4
    watch_claims_percent_of_orders_min: int = 50
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
        """Every reason this policy is unusable; empty when it is sound."""
        found = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "currency":
                if not (isinstance(value, str) and len(value) == 3 and value.isupper() and value.isalpha()):
                    found.append(f"currency: must be a 3-letter ISO 4217 code, got {value!r}")
            elif item.name == "proactive_rules":
                found += _rule_problems(value)
            elif item.name in ("flag_delivery_after_lost_claim", "watch_claims_escalated"):
                if value not in (0, 1) or isinstance(value, bool):
                    found.append(f"{item.name}: must be 0 or 1, got {value!r}")
            elif isinstance(value, dict):
                wanted = {
                    "kind_cents_max_per_customer_30d": REMEDY_KINDS,
                    "incident_claims_max_per_customer_90d": INCIDENT_KINDS,
                    "household_incident_claims_max_90d": INCIDENT_KINDS,
                    "tier_percent": TIERS,
                }[item.name]
                for key in sorted(set(value) - set(wanted)):
                    found.append(f"{item.name}.{key}: unknown key; expected one of {', '.join(wanted)}")
                for key in wanted:
                    if key not in value:
                        found.append(f"{item.name}.{key}: missing")
                    elif not _positive_int(value[key]):
                        found.append(f"{item.name}.{key}: must be a positive integer, got {value[key]!r}")
            elif not _positive_int(value):
                found.append(f"{item.name}: must be a positive integer, got {value!r}")
        if found:
            return found
        relations = [
            ("remedy_cents_max_per_request", "remedy_cents_max_per_customer_30d"),
            ("remedy_cents_max_per_customer_30d", "remedy_cents_max_per_customer_90d"),
            ("customer_window_ms", "long_window_ms"),
            ("order_wait_ms_max", "order_wait_by_requests_ms_max"),
            ("established_tenure_days_min", "loyal_tenure_days_min"),
            ("established_spend_cents_min", "loyal_spend_cents_min"),
        ]
        for smaller, larger in relations:
            if getattr(self, smaller) > getattr(self, larger):
                found.append(
                    f"{smaller}: {getattr(self, smaller)} exceeds {larger} {getattr(self, larger)}; "
                    "the larger limit could never be reached"
                )
        for kind, cap in self.kind_cents_max_per_customer_30d.items():
            if cap > self.remedy_cents_max_per_customer_30d * max(self.tier_percent.values()) // 100:
                found.append(f"kind_cents_max_per_customer_30d.{kind}: {cap} exceeds the 30-day exposure cap of every tier")
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
        unknown = [f"{key}: unknown key" for key in sorted(set(document) - known - {"version"})]
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


def _rule_problems(rules) -> list[str]:
    if not isinstance(rules, dict):
        return [f"proactive_rules: must be an object by incident kind, got {rules!r}"]
    found = []
    for kind, rule in rules.items():
        where = f"proactive_rules.{kind}"
        if kind not in INCIDENT_KINDS:
            found.append(f"{where}: unknown incident kind; expected one of {', '.join(INCIDENT_KINDS)}")
            continue
        if not isinstance(rule, dict) or set(rule) != {"source", "remedy", "amount"}:
            found.append(f"{where}: must have exactly the keys source, remedy, amount")
            continue
        if rule["source"] not in INCIDENT_SOURCES + ("ANY",):
            found.append(f"{where}.source: {rule['source']!r} is not one of {', '.join(INCIDENT_SOURCES)}, ANY")
        if rule["remedy"] not in REMEDY_KINDS:
            found.append(f"{where}.remedy: {rule['remedy']!r} is not one of {', '.join(REMEDY_KINDS)}")
        if rule["amount"] != "ORDER_TOTAL" and not _positive_int(rule["amount"]):
            found.append(f"{where}.amount: must be ORDER_TOTAL or a positive number of cents, got {rule['amount']!r}")
    return found


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
