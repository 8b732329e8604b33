"""The limit saga followed in one process: every LimitCheck answered at once, scope by scope.

Pure module. The worker sends each check through Kafka to the limits agent and back, and every
household and associate judges its checks in order-key order (docs/decisions.md "Order across
partitions"); a replay that feeds the log in that order and follows each check at once reaches
the same decisions (a customer's events never have to wait behind a check in flight). Used by the
backtest's replay (streams/runtime/replay.py) and the benchmarks' in-process folds
(bench/state_size.py), so there is one in-process model of the saga.
"""

from __future__ import annotations

from typing import Callable, MutableMapping

from streams.core import decision as core
from streams.core import scopes
from streams.core.policy import Policy

Check = dict


def scope_key_of(check: Check) -> str:
    """The message key of a LimitCheck: scope:key for RESERVE/RELEASE, the customer for a RESULT."""
    if check["action"] == "RESULT":
        return check["customer_id"]
    return f"{check['scope']}:{check['scope_key']}"


def follow(
    checks: list[Check],
    states: MutableMapping[str, core.State],
    scope_states: MutableMapping[str, dict],
    policy: Policy,
    decisions: list[core.Decision],
    on_customer: Callable[[str, core.State], None] | None = None,
) -> None:
    """Answer `checks` and everything they lead to, in order; customer states and scope states are
    updated in place, decisions appended. `on_customer(customer_id, state)` runs after each answer
    a customer folds (the shell notes parked requests there)."""
    pending = list(checks)
    while pending:
        check = pending.pop(0)
        if check["action"] == "RESULT":
            owner = check["customer_id"]
            state, made, more = core.handle(states.get(owner) or core.empty_state(), {**check, "type": "LimitCheck"},
                                            policy)
            states[owner] = state
            decisions.extend(made)
            pending.extend(more)
            if on_customer is not None:
                on_customer(owner, state)
        else:
            key = scope_key_of(check)
            scope_states[key], out = scopes.handle_check(scope_states.get(key) or scopes.empty_scope_state(), check,
                                                         policy)
            pending.extend(out)
