"""The remedy policy: named thresholds, their defaults, and the checks that relate them.

Pure module: no clock, no environment, no I/O. The composition root builds a Policy from
settings; the decision core only ever receives one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from streams.errors import PolicyError

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Policy:
    """Thresholds the decision core applies; every one is named with its unit last."""

    # The currency all caps are counted in; a request in another currency goes to a person.
    currency: str = "USD"
    # Rolling cap on granted remedy value per customer: $250 in any 30 days covers several
    # ordinary mishaps (a lost parcel plus goodwill credits) without any friction.
    remedy_cents_max_per_customer_30d: int = 25_000
    # Length of the rolling window the customer cap is counted over.
    customer_window_ms: int = 30 * DAY_MS
    # How far behind the newest request of a customer a request may be dated and still be decided
    # at its own time; an older one is decided as of (newest - this). Without a bound, pruning old
    # grants could let a backdated request escape the rolling cap.
    request_lateness_ms_max: int = 7 * DAY_MS
    # Auto-approval ceiling for a single request: above it a person looks (ESCALATED, not denied).
    remedy_cents_max_per_request: int = 15_000
    # How long (event time) a request naming an unknown order waits for that order before it is
    # escalated: upstream systems publish orders and requests on separate topics, so a request
    # can overtake its order by seconds; a day covers any upstream backlog we expect.
    order_wait_ms_max: int = DAY_MS
    # Parked requests per customer: bounds memory if an upstream never sends the orders.
    pending_requests_max_per_customer: int = 20
    # How long a decided request is remembered, so a redelivered request gets the same decision.
    decided_retention_ms: int = 120 * DAY_MS
    # Decided requests remembered per customer at most (bounds state for a flood of requests).
    decided_max_per_customer: int = 2_000
    # How long an order is remembered after it was placed (refunds need the order total).
    order_retention_ms: int = 400 * DAY_MS
    # Orders remembered per customer at most.
    orders_max_per_customer: int = 2_000

    @property
    def version(self) -> str:
        """A version derived from the thresholds, so any change yields a different version."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return "p1-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def problems(self) -> list[str]:
        """Every reason this policy is unusable; empty when it is sound."""
        found = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "int" or isinstance(field.default, int):
                if not isinstance(value, int) or isinstance(value, bool):
                    found.append(f"{field.name}: must be an integer, got {value!r}")
                elif value <= 0:
                    found.append(f"{field.name}: must be positive, got {value}")
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isupper()):
            found.append(f"currency: must be a 3-letter ISO 4217 code, got {self.currency!r}")
        if not found and self.remedy_cents_max_per_request > self.remedy_cents_max_per_customer_30d:
            found.append(
                "remedy_cents_max_per_request: "
                f"{self.remedy_cents_max_per_request} exceeds remedy_cents_max_per_customer_30d "
                f"{self.remedy_cents_max_per_customer_30d}; a single request could never use it"
            )
        if not found and self.decided_retention_ms < self.customer_window_ms:
            found.append(
                "decided_retention_ms: must cover customer_window_ms, or a redelivered request "
                "could be decided again inside the window"
            )
        return found

    def checked(self) -> "Policy":
        """This policy, or PolicyError listing every problem."""
        found = self.problems()
        if found:
            raise PolicyError("invalid policy:\n  " + "\n  ".join(found))
        return self

    def as_dict(self) -> dict:
        """The thresholds plus the derived version, for display and audit."""
        return {"version": self.version, **asdict(self)}
