"""An in-memory model of the whole decision pipeline for unit tests: customers, scopes and the
limit-check messages between them, delivered synchronously or held back to model interleavings."""

from __future__ import annotations

from streams.core import decision as core

from streams.core import scopes
from streams.errors import InvariantViolation
from streams.core.policy import Policy


class World:
    """Every customer's and every scope's state, plus limit checks in flight."""

    def __init__(self, policy: Policy | None = None):
        self.policy = policy or Policy()
        self.customers: dict[str, dict] = {}
        self.scopes: dict[str, dict] = {}
        self.in_flight: list[dict] = []
        self.decisions: list[dict] = []
        self.recoveries: list[dict] = []  # RecoverySuggested events (routed apart from decisions, as the worker does)
        self.rejected: list[tuple[dict, str]] = []  # what the worker would dead-letter

    def feed(self, event: dict, deliver: bool = True) -> list[dict]:
        """Apply an upstream event at its customer; by default deliver every resulting check too."""
        before = len(self.decisions)
        self._at_customer({**event})
        if deliver:
            self.deliver_all()
        return self.decisions[before:]

    def _at_customer(self, event: dict) -> None:
        customer = event["customer_id"]
        state = self.customers.get(customer) or core.empty_state()
        try:
            state, decisions, checks = core.handle(state, event, self.policy)
        except InvariantViolation as error:
            self.rejected.append((event, str(error)))
            return
        self.customers[customer] = state
        self.decisions.extend(d for d in decisions if not core.is_recovery(d))
        self.recoveries.extend(d for d in decisions if core.is_recovery(d))
        self.in_flight.extend(checks)

    def deliver_one(self, index: int = 0) -> None:
        """Deliver one in-flight check (RESULTs go to the customer, the rest to their scope)."""
        check = self.in_flight.pop(index)
        if check["action"] == "RESULT":
            self._at_customer({**check, "type": "LimitCheck"})
            return
        key = f"{check['scope']}:{check['scope_key']}"
        state = self.scopes.get(key) or scopes.empty_scope_state()
        state, out = scopes.handle_check(state, check, self.policy)
        self.scopes[key] = state
        self.in_flight.extend(out)

    def deliver_all(self) -> None:
        """Deliver checks until none is in flight."""
        while self.in_flight:
            self.deliver_one()

    def final_decisions(self) -> dict[str, dict]:
        """The last decision emitted per request id."""
        return {d["request_id"]: d for d in self.decisions}
