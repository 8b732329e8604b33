"""Decision quality with ideal ordering: a simulated workload folded through the decision core
and the scopes in process, every limit check followed at once (no broker, no timing).

Pure apart from the simulator's own seeded randomness: the same configuration and policy always
give the same decisions. Used by `remedy-ledger report quality --in-process`, the quality tests
and bench/quality_in_process.py; a Kafka run of the same workload differs only by timing.
"""

from __future__ import annotations

from streams.core import decision as core
from streams.core import saga
from streams.core.policy import Policy
from streams.measure import quality
from streams.measure.simulate import WorkloadConfig, generate


def fold_one(event: dict, states: dict, scope_states: dict, policy: Policy, sink: list) -> None:
    """Fold one event at its customer and follow its limit checks to the end, in order (the one
    in-process model of the saga, streams/core/saga.py); recovery cases are not decisions."""
    customer_id = event["customer_id"]
    state, made, checks = core.handle(states.get(customer_id) or core.empty_state(), event, policy)
    states[customer_id] = state
    made = list(made)
    saga.follow(checks, states, scope_states, policy, made)
    sink.extend(d for d in made if not core.is_recovery(d))


def fold_all(config: WorkloadConfig, policy: Policy | None = None) -> tuple[list[dict], list[dict]]:
    """Every decision and label of a workload folded in process (keeps them all: small workloads)."""
    policy, scope_states, decisions, labels = policy or Policy(), {}, [], []
    for events, chunk_labels in generate(config):
        labels.extend(chunk_labels)
        states: dict[str, dict] = {}
        for event in events:
            try:
                fold_one(event, states, scope_states, policy, decisions)
            except core.InvariantViolation:
                continue  # what the worker would dead-letter
    return decisions, labels


def report(config: WorkloadConfig, policy: Policy | None = None) -> dict:
    """The quality report of a workload decided in process."""
    decisions, labels = fold_all(config, policy)
    run = {"label": "run", "customers": config.customers, "days": config.days, "seed": config.seed,
           "abuse_rate": config.abuse_rate, "profile": getattr(config, "profile", "default")}
    return quality.evaluate(decisions, [run] + labels)
