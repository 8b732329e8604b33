"""A realistic, reproducible workload: orders, deliveries, incidents, remedy requests and abusers.

`remedy-ledger simulate` writes it in the publish format (one JSON event per line) plus a
separate ground-truth labels file that says who abuses and which requests are excess claims.
Labels never go into the events: the engine must tell abusers apart from what it sees.

Randomness is fine here (this is a load generator, not the decision core), but only through one
`random.Random(seed)` consumed in a fixed order: the same configuration always yields the same
bytes. Customers are generated in chunks and written as they are made, so memory stays bounded
by one chunk whatever the customer count (a million customers fit).

The population (rates are per customer unless said otherwise; see the constants below):
- honest customers place physical and digital orders; parcels arrive, some are late, a few are
  lost, damaged or stolen from the porch, some downloads are slow; remedies follow from the
  system (late deliveries), the customer or an associate; associates also give small goodwill
  credits; one service outage hits a share of all customers (one IncidentReported per affected
  customer, all with the same incident_id); a few honest families share an address. Incidents the
  engine remedies by itself (slow downloads seen by QOS_MONITOR, carrier-reported losses, outages:
  "Proactive remedies" in docs/decisions.md) get no request from upstream, as in production;
- abusers (`--abuse-rate` of the customers): serial claimers who claim on most of their orders,
  household rings (several accounts at one shipping address claiming porch thefts), and the
  friends of one over-generous associate who hands them large goodwill credits.
Every request an abuse scheme makes is an *excess claim* in the labels; genuine incidents that
happen to abusers are labelled as such and are not excess.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

DAY_MS = 24 * 60 * 60 * 1000
HOUR_MS = 60 * 60 * 1000
MINUTE_MS = 60 * 1000
# Simulated time starts here (a Sunday); any fixed instant works, it only has to be reproducible.
START_MS_DEFAULT = int(datetime(2026, 8, 2, tzinfo=timezone.utc).timestamp() * 1000)
# Customers generated and sorted together before they are written: bounds memory (a chunk is a
# few thousand events) while interleaving customers in time the way a real day does.
CHUNK_CUSTOMERS = 2_000
# Progress is reported on stderr after every this many customers.
PROGRESS_EVERY_CUSTOMERS = 100_000

# Honest behaviour.
ORDERS_PER_DAY_HONEST = 0.08  # about one order every 12 days
DIGITAL_SHARE = 0.25
DELIVERY_DAYS_MIN, DELIVERY_DAYS_MAX = 1, 5
LOST_IN_TRANSIT_RATE = 0.010  # of physical orders
PORCH_THEFT_RATE = 0.004  # of delivered orders
DAMAGED_RATE = 0.020
LATE_DELIVERY_RATE = 0.050
WRONG_ITEM_RATE = 0.008
SLOW_DOWNLOAD_RATE = 0.030  # of digital orders
GOODWILL_CREDITS_PER_DAY = 0.001  # associate goodwill credits, without an order
SHARED_ADDRESS_RATE = 0.05  # honest customers living with the previous honest customer
APARTMENT_SHARE = 0.30  # honest customers whose address is in an apartment building (building_id set)
APARTMENT_UNITS = 20  # consecutive honest addresses per building
ASSOCIATES = 60
# The outage: one per run, at a random moment in the middle of the period.
OUTAGE_AFFECTED_SHARE = 0.20
ABUSE_RATE_DEFAULT = 0.01
HOUSEHOLD_ACCOUNTS_MIN, HOUSEHOLD_ACCOUNTS_MAX = 3, 5

HONEST = "honest"
SERIAL_CLAIMER = "serial_claimer"
HOUSEHOLD_RING = "household_ring"
GENEROUS_ASSOCIATE = "generous_associate"
NEVER_ARRIVED = "never_arrived"  # "lost" claims on parcels the carrier delivers (before or after the scan)
FRESH_ACCOUNT_RING = "fresh_account_ring"  # new accounts in one building claiming their first orders
DOUBLE_DIPPER = "double_dipper"  # a replacement and a refund for one incident
SCHEMES = (SERIAL_CLAIMER, HOUSEHOLD_RING, GENEROUS_ASSOCIATE, NEVER_ARRIVED, FRESH_ACCOUNT_RING, DOUBLE_DIPPER)
# Honest groups: customers whose bad luck or habits stress the limits (reported apart).
ORDINARY = "ordinary"
FAMILY = "family"  # shares an address with another honest account
HIGH_VALUE = "high_value"  # expensive orders: carrier-confirmed losses above the ceiling happen
GIFT_GIVER = "gift_giver"  # many parcels to many addresses: several genuine losses a month
DIGITAL_HEAVY = "digital_heavy"  # mostly downloads: slow-download refunds and goodwill credits
HONEST_GROUPS = (ORDINARY, FAMILY, HIGH_VALUE, GIFT_GIVER, DIGITAL_HEAVY)
PROFILES = ("default", "adversarial")
# Event fields holding timestamps: integer ms inside, ISO-8601 UTC in the publish format.
TIMESTAMP_FIELDS = ("placed_at", "delivered_at", "reported_at", "requested_at")


@dataclass(frozen=True)
class Profile:
    """How abusers behave and how the honest groups are mixed: one set per profile.

    "default" is what the policy defaults are tuned on. "adversarial" is parameterised apart, as
    a holdout: its abusers know every configured cap and pace under it, rotate addresses and
    accounts, and start from clean histories; its honest groups are mixed differently too.
    """

    name: str
    # Share of abusive units per scheme (they sum to 1).
    scheme_shares: tuple
    # Share of honest customers per group other than ordinary (family is SHARED_ADDRESS_RATE-like).
    honest_shares: tuple
    serial_orders_per_day: float
    serial_claim_rate: float
    # Least days between two claims of one abusive account (0: no pacing).
    pace_days: int
    # Part of the order total an abuser asks for, in percent (min, max).
    claim_percent: tuple
    ring_orders_per_day: float
    ring_claim_rate: float
    # Abusive ring accounts: each at its own apartment of one building (rotating addresses) or all at one address.
    ring_rotates_addresses: bool
    # Share of a ring's accounts that order from the ring's one device, and pay with its one card.
    ring_shared_device_share: float
    ring_shared_card_share: float
    friend_credits_per_day: float
    friend_credit_cents: tuple
    never_arrived_orders_per_day: float
    never_arrived_claim_rate: float
    # Share of never-arrived claims made after the carrier's delivery scan (the rest before it).
    never_arrived_after_scan_share: float
    fresh_accounts: tuple  # (min, max) accounts per fresh-account ring
    # Orders a fresh account places before the one it claims on (0: claims its first order).
    fresh_orders_before_claim: int
    # Days a fresh account waits after its first order before it claims.
    fresh_wait_days: tuple
    dipper_orders_per_day: float
    dipper_claim_rate: float


DEFAULT_PROFILE = Profile(
    name="default",
    scheme_shares=((SERIAL_CLAIMER, 0.30), (HOUSEHOLD_RING, 0.20), (GENEROUS_ASSOCIATE, 0.15),
                   (NEVER_ARRIVED, 0.15), (FRESH_ACCOUNT_RING, 0.10), (DOUBLE_DIPPER, 0.10)),
    honest_shares=((HIGH_VALUE, 0.04), (GIFT_GIVER, 0.03), (DIGITAL_HEAVY, 0.05)),
    serial_orders_per_day=0.30, serial_claim_rate=0.70, pace_days=0, claim_percent=(100, 100),
    ring_orders_per_day=0.15, ring_claim_rate=0.60, ring_rotates_addresses=False,
    ring_shared_device_share=0.8, ring_shared_card_share=0.5,
    friend_credits_per_day=0.25, friend_credit_cents=(4_000, 12_000),
    never_arrived_orders_per_day=0.25, never_arrived_claim_rate=0.50, never_arrived_after_scan_share=0.6,
    fresh_accounts=(4, 8), fresh_orders_before_claim=0, fresh_wait_days=(0, 3),
    dipper_orders_per_day=0.20, dipper_claim_rate=0.50,
)
ADVERSARIAL_PROFILE = Profile(
    name="adversarial",
    scheme_shares=((SERIAL_CLAIMER, 0.25), (HOUSEHOLD_RING, 0.15), (GENEROUS_ASSOCIATE, 0.15),
                   (NEVER_ARRIVED, 0.15), (FRESH_ACCOUNT_RING, 0.20), (DOUBLE_DIPPER, 0.10)),
    honest_shares=((HIGH_VALUE, 0.06), (GIFT_GIVER, 0.05), (DIGITAL_HEAVY, 0.08)),
    # Paced: a claim at most every 35 days per account (under the 30-day caps), for part of the
    # order (under the kind caps), on a steady stream of orders (under the claims-per-orders line).
    serial_orders_per_day=0.20, serial_claim_rate=0.60, pace_days=35, claim_percent=(40, 90),
    ring_orders_per_day=0.12, ring_claim_rate=0.50, ring_rotates_addresses=True,
    # Rotating accounts: most ring accounts have their own device and card.
    ring_shared_device_share=0.3, ring_shared_card_share=0.2,
    # Under the $100 credit cap in any 30 days, under the associate's daily budget.
    friend_credits_per_day=1 / 32, friend_credit_cents=(4_000, 9_500),
    never_arrived_orders_per_day=0.15, never_arrived_claim_rate=0.40, never_arrived_after_scan_share=0.0,
    fresh_accounts=(5, 10), fresh_orders_before_claim=1, fresh_wait_days=(31, 45),
    dipper_orders_per_day=0.15, dipper_claim_rate=0.40,
)
PROFILE_BY_NAME = {DEFAULT_PROFILE.name: DEFAULT_PROFILE, ADVERSARIAL_PROFILE.name: ADVERSARIAL_PROFILE}


@dataclass(frozen=True)
class WorkloadConfig:
    """What to simulate; the same config always yields the same events and labels."""

    customers: int
    days: int
    seed: int
    abuse_rate: float = ABUSE_RATE_DEFAULT
    start_ms: int = START_MS_DEFAULT
    profile: str = "default"

    def problems(self) -> list[str]:
        """Every reason this configuration cannot be simulated; empty when it is sound."""
        found = []
        if self.customers <= 0:
            found.append(f"--customers: must be positive, got {self.customers}")
        if self.days <= 0:
            found.append(f"--days: must be positive, got {self.days}")
        if not 0.0 <= self.abuse_rate <= 1.0:
            found.append(f"--abuse-rate: must be between 0 and 1, got {self.abuse_rate}")
        if self.profile not in PROFILE_BY_NAME:
            found.append(f"--profile: must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        return found


@dataclass
class Summary:
    """Counts of what a run produced, by event type and by label."""

    customers: int = 0
    events: dict[str, int] = field(default_factory=dict)
    requests_by_population: dict[str, int] = field(default_factory=dict)
    excess_claims: int = 0
    abusers: int = 0

    def as_dict(self) -> dict:
        """A JSON-ready view."""
        return {
            "customers": self.customers,
            "events": dict(sorted(self.events.items())),
            "events_total": sum(self.events.values()),
            "requests_by_population": dict(sorted(self.requests_by_population.items())),
            "excess_claims": self.excess_claims,
            "abusers": self.abusers,
        }


@dataclass
class _Customer:
    index: int
    customer_id: str
    address_id: str
    scheme: str  # HONEST or one of SCHEMES
    household_id: str | None = None
    group: str = ORDINARY  # the honest group (abusers: their scheme)
    events: list = field(default_factory=list)  # (time_ms, seq, event)
    labels: list = field(default_factory=list)
    orders: int = 0
    incidents: int = 0
    requests: int = 0
    last_claim_ms: int | None = None
    # Link ids (OrderPlaced revision 7): the card, the device, the building of the address.
    payment_instrument_id: str | None = None
    device_id: str | None = None
    building_id: str | None = None


class _Generator:
    """Generates customers in a fixed order from one seeded random source."""

    def __init__(self, config: WorkloadConfig):
        self.config = config
        self.profile = PROFILE_BY_NAME[config.profile]
        self.rng = random.Random(config.seed)
        rng = self.rng
        self.end_ms = config.start_ms + config.days * DAY_MS
        self.outage_ms = config.start_ms + int(config.days * DAY_MS * rng.uniform(0.3, 0.7))
        self.outage_id = f"inc-outage-{config.seed}"
        self.generous_associate = f"assoc-{rng.randint(1, ASSOCIATES)}"
        self.next_index = 1
        self.last_honest_address: str | None = None

    # -- units: one customer, or a ring of several accounts ---------------------------------------

    def units(self) -> Iterator[list[_Customer]]:
        """Customers in index order, rings together; stops at exactly `customers`."""
        rng, config, profile = self.rng, self.config, self.profile
        ring_sizes = {HOUSEHOLD_RING: (HOUSEHOLD_ACCOUNTS_MIN, HOUSEHOLD_ACCOUNTS_MAX),
                      FRESH_ACCOUNT_RING: profile.fresh_accounts}
        # A ring is several accounts, so abusive units are rolled less often than abuse_rate: the
        # expected share of abusive *accounts* is then abuse_rate.
        accounts_per_unit = sum(share * (sum(ring_sizes[scheme]) / 2 if scheme in ring_sizes else 1)
                                for scheme, share in profile.scheme_shares)
        unit_rate = config.abuse_rate / (accounts_per_unit - (accounts_per_unit - 1) * config.abuse_rate)
        while self.next_index <= config.customers:
            if rng.random() < unit_rate:
                roll, scheme = rng.random(), profile.scheme_shares[-1][0]
                for name, share in profile.scheme_shares:
                    if roll < share:
                        scheme = name
                        break
                    roll -= share
                if scheme in ring_sizes:
                    remaining = config.customers - self.next_index + 1
                    size = min(remaining, rng.randint(*ring_sizes[scheme]))
                    building = f"addr-ring-{self.next_index:07d}"
                    rotate = scheme == FRESH_ACCOUNT_RING or profile.ring_rotates_addresses
                    links = {"building": "bldg-" + building, "device": "dev-" + building, "card": "card-" + building}
                    yield [self._customer(scheme, f"{building}-apt-{n + 1}" if rotate else building, links)
                           for n in range(size)]
                else:
                    yield [self._customer(scheme)]
            else:
                yield [self._customer(HONEST)]

    def _customer(self, scheme: str, household: str | None = None, ring_links: dict | None = None) -> _Customer:
        index = self.next_index
        self.next_index += 1
        customer_id = f"cust-{index:07d}"
        group = scheme
        if scheme == HONEST:
            group, roll = ORDINARY, self.rng.random()
            for name, share in self.profile.honest_shares:
                if roll < share:
                    group = name
                    break
                roll -= share
        if household is not None:
            address = household
        elif scheme == HONEST and self.last_honest_address and self.rng.random() < SHARED_ADDRESS_RATE:
            address = self.last_honest_address  # an honest family: two accounts, one address
            group = FAMILY
        else:
            address = f"addr-{index:07d}"
        if scheme == HONEST:
            self.last_honest_address = address
        customer = _Customer(index, customer_id, address, scheme, household, group)
        customer.payment_instrument_id, customer.device_id = f"card-{index:07d}", f"dev-{index:07d}"
        if ring_links is not None:
            customer.building_id = ring_links["building"]
            if self.rng.random() < self.profile.ring_shared_device_share:
                customer.device_id = ring_links["device"]
            if self.rng.random() < self.profile.ring_shared_card_share:
                customer.payment_instrument_id = ring_links["card"]
        elif self.rng.random() < APARTMENT_SHARE:
            # An apartment building of about APARTMENT_UNITS honest households (families share one).
            customer.building_id = f"bldg-{int(address.rsplit('-', 1)[-1]) // APARTMENT_UNITS:06d}"
        self._fill(customer)
        return customer

    # -- one customer's history ------------------------------------------------------------------

    def _fill(self, c: _Customer) -> None:
        rng, p = self.rng, self.profile
        if c.scheme == FRESH_ACCOUNT_RING:
            self._fresh_account(c)
        else:
            rate = {SERIAL_CLAIMER: p.serial_orders_per_day, HOUSEHOLD_RING: p.ring_orders_per_day,
                    NEVER_ARRIVED: p.never_arrived_orders_per_day, DOUBLE_DIPPER: p.dipper_orders_per_day,
                    }.get(c.scheme, {GIFT_GIVER: 0.25, DIGITAL_HEAVY: 0.20}.get(c.group, ORDERS_PER_DAY_HONEST))
            for placed_ms in self._arrivals(rate):
                self._order(c, placed_ms)
        if rng.random() < OUTAGE_AFFECTED_SHARE:
            self._outage(c)
        goodwill = GOODWILL_CREDITS_PER_DAY * (3 if c.group == DIGITAL_HEAVY else 1)
        for at_ms in self._arrivals(goodwill):
            associate = f"assoc-{rng.randint(1, ASSOCIATES)}"
            self._request(c, at_ms, None, None, "CREDIT", rng.randint(5, 25) * 100, associate,
                          "goodwill: the moment called for it", excess=False)
        if c.scheme == GENEROUS_ASSOCIATE:
            low, high = p.friend_credit_cents
            for at_ms in self._arrivals(p.friend_credits_per_day):
                amount = rng.randint(low // 100, high // 100) * 100
                self._request(c, at_ms, None, None, "CREDIT", amount, self.generous_associate,
                              "goodwill: valued customer", excess=True)
        c.labels.insert(0, {
            "label": "customer", "customer_id": c.customer_id, "population": _population(c.scheme),
            "scheme": None if c.scheme == HONEST else c.scheme, "shipping_address_id": c.address_id,
            "associate_id": self.generous_associate if c.scheme == GENEROUS_ASSOCIATE else None,
            "group": c.group,
        })

    def _fresh_account(self, c: _Customer) -> None:
        """A new account in a ring: a few orders (or one), then a "never received" claim."""
        rng, p = self.rng, self.profile
        span = max(1, self.config.days - 1)
        first_ms = self.config.start_ms + rng.randint(0, span * 24 - 1) * HOUR_MS
        for n in range(p.fresh_orders_before_claim):
            self._order(c, first_ms + n * DAY_MS, claim=False)
        claim_at = first_ms + rng.randint(*p.fresh_wait_days) * DAY_MS if p.fresh_orders_before_claim else first_ms
        if claim_at < self.end_ms:
            self._order(c, claim_at, claim=True)

    def _arrivals(self, per_day: float) -> Iterator[int]:
        """Event times of a Poisson process over the simulated period."""
        t = self.config.start_ms
        while True:
            t += int(self.rng.expovariate(per_day) * DAY_MS)
            if t >= self.end_ms:
                return
            yield t

    def _paced(self, c: _Customer, at_ms: int) -> bool:
        """Whether an abusive account may claim at `at_ms` under its profile's pacing; records it."""
        pace = self.profile.pace_days
        if pace and c.last_claim_ms is not None and at_ms - c.last_claim_ms < pace * DAY_MS:
            return False
        c.last_claim_ms = at_ms
        return True

    def _claim_amount(self, total: int) -> int:
        low, high = self.profile.claim_percent
        return max(100, total * self.rng.randint(low, high) // 100)

    def _order(self, c: _Customer, placed_ms: int, claim: bool | None = None) -> None:
        rng, p = self.rng, self.profile
        abuser = c.scheme != HONEST and c.scheme != GENEROUS_ASSOCIATE
        digital_share = 0.9 if c.group == DIGITAL_HEAVY else DIGITAL_SHARE
        digital = (not abuser) and rng.random() < digital_share
        if abuser:
            # Abusers learn the auto-approval ceiling: one item, priced to stay under it.
            items = [{"sku": f"sku-{rng.randint(100, 999)}", "quantity": 1, "unit_price_cents": rng.randint(30, 140) * 100 - 1}]
        elif c.group == HIGH_VALUE:
            items = [{"sku": f"sku-{rng.randint(100, 999)}", "quantity": 1, "unit_price_cents": rng.randint(150, 600) * 100 - 1}
                     for _ in range(rng.choice((1, 1, 2)))]
        else:
            items = [
                {"sku": f"sku-{rng.randint(100, 999)}", "quantity": rng.choice((1, 1, 1, 2)),
                 "unit_price_cents": rng.randint(4, 70) * 100 - 1}
                for _ in range(rng.choice((1, 1, 2, 3)))
            ]
        total = sum(i["quantity"] * i["unit_price_cents"] for i in items)
        c.orders += 1
        order_id = f"ord-{c.customer_id}-{c.orders}"
        address = c.address_id
        if c.group == GIFT_GIVER and rng.random() < 0.7:
            address = f"addr-gift-{c.index:07d}-{c.orders}"  # a present, sent to the recipient
        self._emit(c, placed_ms, {
            "type": "OrderPlaced", "event_id": f"ev-{order_id}", "order_id": order_id, "customer_id": c.customer_id,
            "placed_at": placed_ms, "total_cents": total, "currency": "USD", "items": items,
            "shipping_address_id": address, "digital": digital,
            "payment_instrument_id": c.payment_instrument_id, "device_id": c.device_id,
            "building_id": c.building_id if address == c.address_id else None,
        })
        if digital:
            if rng.random() < SLOW_DOWNLOAD_RATE:
                # The engine refunds a QOS_MONITOR slow download by itself (a proactive remedy, see
                # docs/decisions.md); upstream only reports the incident.
                self._incident(c, placed_ms + rng.randint(1, 120) * MINUTE_MS, order_id, "SLOW_DOWNLOAD", "QOS_MONITOR")
            return
        transit_ms = rng.randint(DELIVERY_DAYS_MIN * 24, DELIVERY_DAYS_MAX * 24) * HOUR_MS
        lost_rate = LOST_IN_TRANSIT_RATE * {HIGH_VALUE: 3, GIFT_GIVER: 2}.get(c.group, 1)
        # (A loss reported more than 5 days after the period is left out, as every event is.)
        if rng.random() < lost_rate and placed_ms + transit_ms + 3 * DAY_MS <= self.end_ms + 5 * DAY_MS:
            # A carrier-reported loss is reshipped proactively by the engine: the incident is all upstream sends.
            self._incident(c, placed_ms + transit_ms + 3 * DAY_MS, order_id, "LOST_IN_TRANSIT", "CARRIER")
            return
        delivered_ms = placed_ms + transit_ms
        if abuser and self._abusive_claim(c, order_id, total, placed_ms, delivered_ms, claim):
            return
        self._emit(c, delivered_ms, self._delivered(c, order_id, delivered_ms))
        self._ordinary_luck(c, order_id, total, delivered_ms)

    def _delivered(self, c: _Customer, order_id: str, delivered_ms: int) -> dict:
        return {"type": "OrderDelivered", "event_id": f"ev-{order_id}-delivered", "order_id": order_id,
                "customer_id": c.customer_id, "delivered_at": delivered_ms}

    def _abusive_claim(self, c: _Customer, order_id: str, total: int, placed_ms: int, delivered_ms: int,
                       claim: bool | None) -> bool:
        """An abuse scheme's claim on this order (True: the order's story is told, delivery included)."""
        rng, p = self.rng, self.profile
        rate = {SERIAL_CLAIMER: p.serial_claim_rate, HOUSEHOLD_RING: p.ring_claim_rate,
                NEVER_ARRIVED: p.never_arrived_claim_rate, DOUBLE_DIPPER: p.dipper_claim_rate}.get(c.scheme, 0.0)
        wants = claim if claim is not None else rng.random() < rate
        if not wants or delivered_ms > self.end_ms:
            return False  # (a claim's events stay within 5 days after the period, as the honest ones)
        if c.scheme == NEVER_ARRIVED or c.scheme == FRESH_ACCOUNT_RING and rng.random() < 0.5:
            after_scan = rng.random() < p.never_arrived_after_scan_share
            at = delivered_ms + rng.randint(2, 48) * HOUR_MS if after_scan else delivered_ms - rng.randint(6, 20) * HOUR_MS
            if c.scheme != FRESH_ACCOUNT_RING and not self._paced(c, at):
                return False
            at = max(at, placed_ms + HOUR_MS)
            if after_scan:
                self._emit(c, delivered_ms, self._delivered(c, order_id, delivered_ms))
            incident = self._incident(c, at, order_id, "LOST_IN_TRANSIT", "CUSTOMER")
            self._request(c, at + rng.randint(1, 30) * MINUTE_MS, order_id, incident, rng.choice(("RESHIP", "REFUND")),
                          self._claim_amount(total), self._handler(), "never arrived", excess=True)
            if not after_scan:
                # The parcel was never lost: the carrier's scan comes after the claim.
                scan = at + rng.randint(1, 3) * DAY_MS
                self._emit(c, scan, self._delivered(c, order_id, scan))
            return True
        at = delivered_ms + rng.randint(2, 48) * HOUR_MS
        if c.scheme != FRESH_ACCOUNT_RING and not self._paced(c, at):
            return False
        self._emit(c, delivered_ms, self._delivered(c, order_id, delivered_ms))
        if c.scheme in (HOUSEHOLD_RING, FRESH_ACCOUNT_RING):
            kind = "STOLEN_AFTER_DELIVERY"
        elif c.scheme == DOUBLE_DIPPER:
            kind = "DAMAGED"
        else:
            kind = rng.choice(("STOLEN_AFTER_DELIVERY", "DAMAGED", "WRONG_ITEM") if not p.pace_days
                              else ("DAMAGED", "WRONG_ITEM"))
        incident = self._incident(c, at, order_id, kind, "CUSTOMER")
        amount = self._claim_amount(total)
        first_kind = "RESHIP" if c.scheme == DOUBLE_DIPPER else "REFUND"
        self._request(c, at + rng.randint(1, 30) * MINUTE_MS, order_id, incident, first_kind, amount,
                      self._handler(), f"{kind.lower().replace('_', ' ')}", excess=True)
        if c.scheme == DOUBLE_DIPPER:
            later = at + rng.randint(1, 3) * DAY_MS
            if p.pace_days:
                # Adapted: a second, different incident on the same order for the refund.
                incident = self._incident(c, later - HOUR_MS, order_id, "WRONG_ITEM", "CUSTOMER")
            self._request(c, later, order_id, incident, "REFUND", amount, self._handler(), "refund as well",
                          excess=True)
        return True

    def _ordinary_luck(self, c: _Customer, order_id: str, total: int, delivered_ms: int) -> None:
        """What happens to a delivered order by chance: late, damaged, stolen, the wrong item, or nothing."""
        rng = self.rng
        roll = rng.random()
        if roll < LATE_DELIVERY_RATE:
            incident = self._incident(c, delivered_ms, order_id, "LATE_DELIVERY", "CARRIER")
            kind, amount = rng.choice((("SHIPPING_UPGRADE", 899), ("CREDIT", 500)))
            self._request(c, delivered_ms + MINUTE_MS, order_id, incident, kind, amount, "system", "late delivery")
            return
        roll -= LATE_DELIVERY_RATE
        at = delivered_ms + rng.randint(2, 72) * HOUR_MS
        if roll < DAMAGED_RATE:
            incident = self._incident(c, at, order_id, "DAMAGED", "CUSTOMER")
            amount = rng.choice((total, total // 2)) or total
            self._request(c, at + rng.randint(1, 60) * MINUTE_MS, order_id, incident, "REFUND", amount,
                          self._handler(), "arrived damaged")
            return
        roll -= DAMAGED_RATE
        if roll < PORCH_THEFT_RATE:
            incident = self._incident(c, at, order_id, "STOLEN_AFTER_DELIVERY", "CUSTOMER")
            self._request(c, at + rng.randint(1, 60) * MINUTE_MS, order_id, incident, "REFUND", total,
                          self._handler(), "stolen from the porch")
            return
        roll -= PORCH_THEFT_RATE
        if roll < WRONG_ITEM_RATE:
            incident = self._incident(c, at, order_id, "WRONG_ITEM", "CUSTOMER")
            self._request(c, at + rng.randint(1, 60) * MINUTE_MS, order_id, incident, "RESHIP", total,
                          self._handler(), "wrong item sent")

    def _outage(self, c: _Customer) -> None:
        # One IncidentReported per affected customer, all with the same incident id; the engine
        # credits each affected customer by itself (a proactive remedy), so no request follows.
        at = self.outage_ms + self.rng.randint(0, 30) * MINUTE_MS
        self._emit(c, at, {
            "type": "IncidentReported", "event_id": f"ev-{self.outage_id}-{c.customer_id}", "incident_id": self.outage_id,
            "customer_id": c.customer_id, "order_id": None, "kind": "SERVICE_OUTAGE", "source": "QOS_MONITOR",
            "reported_at": at, "description": "service outage",
        })

    def _handler(self) -> str:
        """Who files a customer-reported claim: the customer online, or an associate on the phone."""
        if self.rng.random() < 0.6:
            return "customer"
        return f"assoc-{self.rng.randint(1, ASSOCIATES)}"

    def _incident(self, c: _Customer, at_ms: int, order_id: str | None, kind: str, source: str) -> str:
        c.incidents += 1
        incident_id = f"inc-{c.customer_id}-{c.incidents}"
        self._emit(c, at_ms, {
            "type": "IncidentReported", "event_id": f"ev-{incident_id}", "incident_id": incident_id,
            "customer_id": c.customer_id, "order_id": order_id, "kind": kind, "source": source,
            "reported_at": at_ms, "description": None,
        })
        return incident_id

    def _request(self, c: _Customer, at_ms: int, order_id, incident_id, kind: str, amount: int,
                 requested_by: str, reason: str, excess: bool = False) -> None:
        c.requests += 1
        request_id = f"req-{c.customer_id}-{c.requests}"
        self._emit(c, at_ms, {
            "type": "RemedyRequested", "event_id": f"ev-{request_id}", "request_id": request_id,
            "customer_id": c.customer_id, "order_id": order_id, "incident_id": incident_id, "kind": kind,
            "amount_cents": amount, "currency": "USD", "requested_by": requested_by, "requested_at": at_ms,
            "reason": reason,
        })
        c.labels.append({
            "label": "request", "request_id": request_id, "customer_id": c.customer_id,
            "population": _population(c.scheme), "scheme": c.scheme if excess else None, "excess": excess,
            "requested_cents": amount, "group": c.group,
        })

    def _emit(self, c: _Customer, at_ms: int, event: dict) -> None:
        c.events.append((at_ms, len(c.events), event))


def _population(scheme: str) -> str:
    return "honest" if scheme == HONEST else "abuser"


def generate(config: WorkloadConfig) -> Iterator[tuple[list[dict], list[dict]]]:
    """(events, labels) per chunk of customers; events sorted by time, timestamps as integer ms.

    Within a chunk events are in time order (customers interleave); every customer lies in one
    chunk, so each customer's events are in time order in the whole output.
    """
    generator = _Generator(config)
    chunk: list[_Customer] = []
    for unit in generator.units():
        chunk.extend(unit)
        if len(chunk) >= CHUNK_CUSTOMERS:
            yield _flush(chunk)
            chunk = []
    if chunk:
        yield _flush(chunk)


def _flush(chunk: list[_Customer]) -> tuple[list[dict], list[dict]]:
    keyed = [(at_ms, c.index, seq, event) for c in chunk for at_ms, seq, event in c.events]
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    labels = [label for c in chunk for label in c.labels]
    return [k[3] for k in keyed], labels


def iso_ms(ms: int) -> str:
    """Integer ms since the epoch as ISO-8601 UTC with milliseconds (`2026-11-01T09:30:00.000Z`)."""
    moment = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def publish_line(event: dict) -> str:
    """One event in the publish format: type first, timestamps as ISO-8601 UTC, compact JSON."""
    out = dict(event)
    for name in TIMESTAMP_FIELDS:
        if name in out:
            out[name] = iso_ms(out[name])
    return json.dumps(out, separators=(",", ":"))


def write_workload(
    config: WorkloadConfig,
    events_path: Path,
    labels_path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Write the events (publish format) and the labels (JSON lines); returns what was written."""
    summary = Summary()
    next_report = PROGRESS_EVERY_CUSTOMERS
    with open(events_path, "w", encoding="utf-8") as events_out, open(labels_path, "w", encoding="utf-8") as labels_out:
        labels_out.write(json.dumps({"label": "run", "customers": config.customers, "days": config.days,
                                     "seed": config.seed, "abuse_rate": config.abuse_rate, "profile": config.profile,
                                     "start": iso_ms(config.start_ms)}, separators=(",", ":")) + "\n")
        for events, labels in generate(config):
            events_out.write("".join(publish_line(e) + "\n" for e in events))
            labels_out.write("".join(json.dumps(label, separators=(",", ":")) + "\n" for label in labels))
            for event in events:
                summary.events[event["type"]] = summary.events.get(event["type"], 0) + 1
            for label in labels:
                if label["label"] == "customer":
                    summary.customers += 1
                    summary.abusers += label["population"] == "abuser"
                else:
                    summary.requests_by_population[label["population"]] = (
                        summary.requests_by_population.get(label["population"], 0) + 1
                    )
                    summary.excess_claims += label["excess"]
            if progress and summary.customers >= next_report:
                progress(summary.customers, sum(summary.events.values()))
                next_report += PROGRESS_EVERY_CUSTOMERS
    return summary
