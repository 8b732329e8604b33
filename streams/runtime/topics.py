"""Every Kafka topic Remedy Ledger uses, in one place, with its explicit configuration.

All input topics and the decision topic are keyed by customer_id and have the same partition
count (co-partitioned), so one worker owns everything about a customer.
"""

from __future__ import annotations

from dataclasses import dataclass

# Which input topic carries which event type.
EVENT_TOPIC_ROLE = {
    "OrderPlaced": "orders",
    "OrderDelivered": "orders",
    "IncidentReported": "incidents",
    "RemedyRequested": "requests",
    "RemedyReviewed": "requests",
    "CustomerErased": "requests",
    "LimitCheck": "limit_results",
}

# Retention of the event log: forever. The log is the source of truth that audits replay.
RETENTION_FOREVER_MS = "-1"
# Retention of the limit-checks topic: internal saga messages and PROGRESS watermarks (every
# partition's, again every few seconds), read within seconds; a week covers any outage.
LIMIT_CHECKS_RETENTION_MS = str(7 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicNames:
    """Topic names for one deployment (the prefix isolates test runs and environments)."""

    prefix: str
    app_id: str

    @property
    def orders(self) -> str:
        """OrderPlaced and OrderDelivered events."""
        return f"{self.prefix}.orders.v1"

    @property
    def incidents(self) -> str:
        """IncidentReported events."""
        return f"{self.prefix}.incidents.v1"

    @property
    def requests(self) -> str:
        """RemedyRequested and RemedyReviewed events, and the worker's CustomerErased (docs/privacy.md)."""
        return f"{self.prefix}.remedy-requests.v1"

    @property
    def decisions(self) -> str:
        """RemedyDecided events the worker emits (GRANTED, DENIED, ESCALATED)."""
        return f"{self.prefix}.remedy-decisions.v1"

    @property
    def recoveries(self) -> str:
        """RecoverySuggested events the worker emits (a delivery after a remedied lost claim), keyed by customer_id."""
        return f"{self.prefix}.recoveries.v1"

    @property
    def instructions(self) -> str:
        """RemedyInstruction events: what the warehouse, payments or accounts must do for a grant;
        keyed target:customer_id (schemas/README.md, "Topics the worker writes for other systems")."""
        return f"{self.prefix}.remedy-instructions.v1"

    @property
    def notifications(self) -> str:
        """CustomerNotification events: a granted proactive remedy or outage credit to tell the customer about."""
        return f"{self.prefix}.customer-notifications.v1"

    @property
    def periods(self) -> str:
        """PeriodClosed events: the accounting months finance closed (one partition, kept forever)."""
        return f"{self.prefix}.finance-periods.v1"

    @property
    def dead_letter(self) -> str:
        """DeadLetter records: the original bytes, the reason and the source position."""
        return f"{self.prefix}.dead-letter.v1"

    @property
    def limit_checks(self) -> str:
        """LimitCheck RESERVE/RELEASE/SETTLE messages, keyed by scope:key (household or associate), and
        PROGRESS watermarks (keyed progress:<source>, sent to every partition); kept a week."""
        return f"{self.prefix}.limit-checks.v1"

    @property
    def review_assignments(self) -> str:
        """ReviewAssigned records keyed by request_id (compacted: the newest assignment of a case stands)."""
        return f"{self.prefix}.review-assignments.v1"

    @property
    def policy_shadow(self) -> str:
        """ShadowPolicy records under the key 'shadow' (compacted: the newest state of the shadow stands)."""
        return f"{self.prefix}.policy-shadow.v1"

    @property
    def shadow_decisions(self) -> str:
        """RemedyDecided records a shadow policy made (keyed by customer_id); never read by the ledger."""
        return f"{self.prefix}.shadow-decisions.v1"

    @property
    def limit_results(self) -> str:
        """LimitCheck RESULT messages back to the customer's partition, keyed by customer_id."""
        return f"{self.prefix}.limit-results.v1"

    @property
    def scope_state_changelog(self) -> str:
        """The limits agent's changelog of household/associate states (compacted, with outboxes; see docs/exactly-once.md)."""
        return f"{self.app_id}-scope_state-changelog"

    @property
    def policy(self) -> str:
        """PolicyApplied events, compacted and keyed by version; the newest by offset is in force."""
        return f"{self.prefix}.policy.v1"

    @property
    def customer_state_changelog(self) -> str:
        """The decide agent's changelog of customer states and partition clocks (compacted, with outboxes; see docs/exactly-once.md)."""
        return f"{self.app_id}-customer_state-changelog"

    def for_event(self, record_name: str) -> str:
        """The input topic an upstream event of this type is published to."""
        return getattr(self, EVENT_TOPIC_ROLE[record_name])

    def upstream(self) -> tuple[str, ...]:
        """The topics upstream systems publish to (the only ones the upstream Kafka role may write)."""
        return (self.orders, self.incidents, self.requests)

    def inputs(self) -> tuple[str, ...]:
        """The topics the decide agent consumes (all keyed by customer_id)."""
        return (self.orders, self.incidents, self.requests, self.limit_results)

    def all_with_configs(self, partitions: int, min_insync_replicas: int = 1) -> list[tuple[str, int, dict[str, str]]]:
        """(name, partitions, configs) for every topic the project creates itself; min_insync_replicas
        copies must hold a write before it is acknowledged (producers use acks=all)."""
        insync = str(min_insync_replicas)
        log = {"cleanup.policy": "delete", "retention.ms": RETENTION_FOREVER_MS, "min.insync.replicas": insync}
        compacted = {"cleanup.policy": "compact", "min.insync.replicas": insync}
        return [
            (self.orders, partitions, log),
            (self.incidents, partitions, log),
            (self.requests, partitions, log),
            (self.decisions, partitions, log),
            (self.recoveries, partitions, log),
            (self.instructions, partitions, log),
            (self.notifications, partitions, log),
            (self.periods, 1, log),
            (self.dead_letter, partitions, log),
            (self.limit_checks, partitions, {**log, "retention.ms": LIMIT_CHECKS_RETENTION_MS}),
            (self.limit_results, partitions, log),
            (self.policy, 1, compacted),
            (self.review_assignments, 1, compacted),
            (self.policy_shadow, 1, compacted),
            (self.shadow_decisions, partitions, log),
            (self.customer_state_changelog, partitions, compacted),
            (self.scope_state_changelog, partitions, compacted),
        ]
