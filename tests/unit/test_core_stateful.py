"""Hypothesis stateful test of the whole decision pipeline: any sequence of orders, incidents,
requests, redeliveries, restarts (state through JSON), policy changes and message interleavings
never exceeds a cap in any scope, and every request keeps one decision id."""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streams.core.policy import DAY_MS, REMEDY_KINDS, Policy
from tests.support.world import World

T0 = 1_790_000_000_000
WIDE_KINDS = {kind: 25_000 for kind in REMEDY_KINDS}  # so the exposure, household and associate caps bind
POLICIES = [
    Policy(kind_cents_max_per_customer_30d=WIDE_KINDS, household_cents_max_30d=30_000, associate_cents_max_per_day=30_000),
    Policy(remedy_cents_max_per_customer_30d=12_000, remedy_cents_max_per_request=10_000,
           kind_cents_max_per_customer_30d={k: 12_000 for k in REMEDY_KINDS}, household_claims_max_90d=3,
           household_cents_max_30d=15_000, associate_cents_max_per_day=20_000),
    Policy(kind_cents_max_per_customer_30d=WIDE_KINDS, household_claims_max_90d=2, associate_cents_max_per_day=9_000),
]
CUSTOMERS = ["c1", "c2", "c3"]
ADDRESSES = ["h1", "h1", "h2"]


class Pipeline(RuleBasedStateMachine):
    """Customers, scopes and limit checks in flight, driven by Hypothesis."""

    def __init__(self):
        super().__init__()
        self.world = World(POLICIES[0])
        self.published: list[dict] = []
        self.clock = T0
        self.counter = 0
        self.emitted: list[dict] = []  # every decision in the order it was emitted

    def _feed(self, event, deliver=False):
        before = len(self.world.decisions)
        self.world.feed(event, deliver=deliver)
        self.published.append(event)
        self._note(before)

    def _note(self, before):
        for decision in self.world.decisions[before:]:
            self.emitted.append(decision)

    @rule(customer=st.sampled_from(CUSTOMERS), address=st.sampled_from(ADDRESSES), total=st.integers(5_000, 20_000),
          digital=st.booleans())
    def place_order(self, customer, address, total, digital):
        self.counter += 1
        self._feed({"type": "OrderPlaced", "event_id": f"eo{self.counter}", "order_id": f"o{self.counter}",
                    "customer_id": customer, "placed_at": self.clock, "total_cents": total, "currency": "USD",
                    "items": [], "shipping_address_id": address, "digital": digital})

    @rule(customer=st.sampled_from(CUSTOMERS), kind=st.sampled_from(["CREDIT", "CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE"]), amount=st.integers(2_000, 15_000), repeat=st.integers(1, 4),
          by=st.sampled_from(["customer", "system", "assoc-1", "assoc-2"]), with_order=st.sampled_from([True, True, False]),
          incident_kind=st.sampled_from([None, None, "STOLEN_AFTER_DELIVERY", "DAMAGED"]), advance=st.sampled_from([0, 0, 60_000, DAY_MS, 20 * DAY_MS]))
    def ask(self, customer, kind, amount, by, with_order, incident_kind, advance, repeat):
        for _ in range(repeat):  # customers who ask often are the ones who reach the caps
            self._ask(customer, kind, amount, by, with_order, incident_kind, advance)

    def _ask(self, customer, kind, amount, by, with_order, incident_kind, advance):
        self.counter += 1
        self.clock += advance
        orders = [oid for oid, o in self.world.customers.get(customer, {"orders": {}})["orders"].items()]
        if with_order and not orders:
            self.place_order(customer, ADDRESSES[self.counter % len(ADDRESSES)], 15_000, False)
            orders = list(self.world.customers[customer]["orders"])
        order_id = orders[self.counter % len(orders)] if (with_order and orders) else None
        incident_id = None
        if incident_kind:
            incident_id = f"i{self.counter}"
            self._feed({"type": "IncidentReported", "event_id": f"ei{self.counter}", "incident_id": incident_id,
                        "customer_id": customer, "order_id": order_id, "kind": incident_kind, "source": "CUSTOMER",
                        "reported_at": self.clock, "description": None})
        self._feed({"type": "RemedyRequested", "event_id": f"er{self.counter}", "request_id": f"{customer}-r{self.counter}",
                    "customer_id": customer, "order_id": order_id, "incident_id": incident_id, "kind": kind,
                    "amount_cents": amount, "currency": "USD", "requested_by": by, "requested_at": self.clock,
                    "reason": "stateful"})

    @precondition(lambda self: self.published)
    @rule(index=st.integers(0, 10_000))
    def redeliver(self, index):
        before = len(self.world.decisions)
        self.world.feed(self.published[index % len(self.published)], deliver=False)
        self._note(before)

    @precondition(lambda self: self.world.in_flight)
    @rule(index=st.integers(0, 10_000), twice=st.booleans())
    def deliver_check(self, index, twice):
        index %= len(self.world.in_flight)
        if twice:
            self.world.in_flight.append(dict(self.world.in_flight[index]))  # a redelivered check
        before = len(self.world.decisions)
        self.world.deliver_one(index)
        self._note(before)

    @rule()
    def restart(self):
        # A restart rebuilds every table from its changelog: the state must survive serialisation.
        self.world.customers = json.loads(json.dumps(self.world.customers))
        self.world.scopes = json.loads(json.dumps(self.world.scopes))

    @rule(which=st.integers(0, len(POLICIES) - 1))
    def change_policy(self, which):
        self.world.policy = POLICIES[which]

    @invariant()
    def no_cap_is_exceeded_in_any_scope(self):
        # For any window, the grant decided last inside it saw every other grant of the window (as a
        # grant or a reservation), so the window's sum never exceeds the largest cap in force there.
        grants = list({d["decision_id"]: d for d in self.emitted if d["outcome"] == "GRANTED"}.values())
        scopes = [
            (lambda g, d: g["customer_id"] == d["customer_id"], 30 * DAY_MS, "customer_cap_cents_30d"),
            # The household counts the grants that passed it (customer-asserted claims): they carry its inputs.
            (lambda g, d: g["household_id"] is not None and g["household_id"] == d["household_id"]
             and "household_cap_cents_30d" in g["inputs"], 30 * DAY_MS, "household_cap_cents_30d"),
        ]
        for d in grants:
            for same, window_ms, cap_key in scopes:
                if cap_key not in d["inputs"]:
                    continue
                window = [g for g in grants if same(g, d) and d["decided_at"] - window_ms < g["decided_at"] <= d["decided_at"]]
                caps = [g["inputs"][cap_key] for g in window if cap_key in g["inputs"]]
                assert sum(g["granted_cents"] for g in window) <= max(caps)
            if "associate_cap_cents_day" in d["inputs"]:
                day = [g for g in grants if g["origin"] == "ASSOCIATE" and g["requested_by"] == d["requested_by"]
                       and g["decided_at"] // DAY_MS == d["decided_at"] // DAY_MS and "associate_cap_cents_day" in g["inputs"]]
                assert sum(g["granted_cents"] for g in day) <= max(g["inputs"]["associate_cap_cents_day"] for g in day)

    @invariant()
    def one_decision_per_request(self):
        by_request = {}
        for decision in self.emitted:
            assert by_request.setdefault(decision["decision_id"], decision) == decision


Pipeline.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestPipeline = Pipeline.TestCase
