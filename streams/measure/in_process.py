"""Decision quality with ideal ordering: a simulated workload folded through the decision core
and the scopes in process, every limit check followed at once (no broker, no timing).

Pure apart from the simulator's own seeded randomness: the same configuration and policy always
give the same decisions. Used by `remedy-ledger report quality --in-process`, the quality tests
and bench/quality_in_process.py; a Kafka run of the same workload differs only by timing.
"""

from __future__ import annotations

from streams.core import decision as core
from streams.core import scopes
from streams.core.policy import Policy
from streams.measure import quality
from streams.measure.simulate import WorkloadConfig, generate


def _scope_key(check: dict) -> str:
    return f"{check['scope']}:{check['scope_key']}"


def fold_one(event: dict, states: dict, scope_states: dict, policy: Policy, sink: list) -> None:
    """Fold one event at its customer and follow its limit checks to the end, in order."""
    customer_id = event["customer_id"]
    state, decisions, pending = core.handle(states.get(customer_id) or core.empty_state(), event, policy)
    states[customer_id] = state
    sink.extend(d for d in decisions if not core.is_recovery(d))
    pending = list(pending)
    while pending:
        check = pending.pop(0)
        if check["action"] == "RESULT":
            owner = check["customer_id"]
            state, decisions, more = core.handle(states.get(owner) or core.empty_state(), {**check, "type": "LimitCheck"},
                                                 policy)
            states[owner] = state
            sink.extend(d for d in decisions if not core.is_recovery(d))
            pending.extend(more)
        else:
            key = _scope_key(check)
            scope_states[key], more = scopes.handle_check(scope_states.get(key) or scopes.empty_scope_state(), check,
                                                          policy)
            pending.extend(more)


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
