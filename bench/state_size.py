"""State size with many customers: fold a simulated workload through the decision core in process.

Run by bench/run.py (cwd = the source tree measured): python bench/state_size.py CUSTOMERS DAYS SEED
Keeps every customer's state exactly as the worker holds it in memory (the JSON bytes, compressed
by `streams.runtime.state.held`, in a dict), then prints JSON: customers, events, held bytes (and the
JSON bytes the changelog carries), peak RSS.
The worker's RSS with N customers is about this dict plus the worker's fixed footprint.
"""

from __future__ import annotations

import json
import sys
import time

from streams.core import decision as core

from streams.core import saga
from streams.runtime.batch import state_to_bytes
from streams.runtime.state import held
from streams.core.policy import Policy
from streams.measure.simulate import WorkloadConfig, generate

# Progress on stderr every this many simulator chunks (2,000 customers each).
PROGRESS_EVERY_CHUNKS = 50


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM from /proc, Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def fold_one(event: dict, states: dict, scope_states: dict, policy: Policy, sink: list | None = None) -> int:
    """Fold one event and follow its limit checks to the end, in process; returns decisions made.

    The worker sends limit checks through Kafka to the limits agent and back; here they are
    followed at once, in order (streams/core/saga.py, the same model the backtest replays with).
    """
    customer_id = event["customer_id"]
    state, made, checks = core.handle(states.get(customer_id) or core.empty_state(), event, policy)
    states[customer_id] = state
    decisions = list(made)
    saga.follow(checks, states, scope_states, policy, decisions)
    if sink is not None:
        sink.extend(decisions)
    return len(decisions)


def fold_all(config: WorkloadConfig, policy: Policy | None = None) -> tuple[list[dict], list[dict]]:
    """Every decision and label of a workload folded in process (small workloads: keeps them all)."""
    policy, scope_states, decisions, labels = policy or Policy(), {}, [], []
    for events, chunk_labels in generate(config):
        labels.extend(chunk_labels)
        states: dict[str, dict] = {}
        for event in events:
            fold_one(event, states, scope_states, policy, decisions)
    return decisions, labels


def main() -> None:
    customers, days, seed = (int(a) for a in sys.argv[1:4])
    policy = Policy()
    table: dict[bytes, bytes] = {}
    scope_states: dict[str, dict] = {}  # household and associate limits (the limits agent's table)
    events_folded = decisions = chunks = json_bytes = 0
    started = time.monotonic()
    rss_before = peak_rss_bytes()
    for events, _labels in generate(WorkloadConfig(customers=customers, days=days, seed=seed)):
        # Every customer lies in exactly one chunk, so states can stay objects within the chunk and
        # be serialised once at its end: the same bytes as a write per event, far less CPU.
        states: dict[str, dict] = {}
        for event in events:
            decisions += fold_one(event, states, scope_states, policy)
            events_folded += 1
        for customer_id, state in states.items():
            value = state_to_bytes(state)
            json_bytes += len(value)
            table[customer_id.encode()] = held(value)
        chunks += 1
        if chunks % PROGRESS_EVERY_CHUNKS == 0:
            print(f"  {len(table):,} customers, {events_folded:,} events ({time.monotonic() - started:.0f}s)",
                  file=sys.stderr, flush=True)
    for key, state in scope_states.items():
        value = state_to_bytes(state)
        json_bytes += len(value)
        table[f"scope:{key}".encode()] = held(value)
    serialised = sum(len(k) + len(v) for k, v in table.items())
    print(json.dumps({
        "customers": len(table) - len(scope_states), "scope_keys": len(scope_states), "events": events_folded, "decisions": decisions,
        "state_bytes": serialised, "state_bytes_per_customer": round(serialised / max(1, len(table)), 1),
        "changelog_json_bytes": json_bytes,
        "peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": rss_before,
        "seconds": round(time.monotonic() - started, 1),
        "events_per_s": round(events_folded / (time.monotonic() - started)),
    }))


if __name__ == "__main__":
    main()
