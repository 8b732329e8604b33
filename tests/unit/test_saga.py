"""The in-process limit saga (streams/core/saga.py) decides as the unit tests' model of the pipeline."""

from __future__ import annotations

import pytest

from streams.core import decision as core
from streams.core import saga
from streams.core.policy import Policy
from streams.measure.simulate import WorkloadConfig, generate
from tests.support.world import World


def saga_fold(events, policy):
    states, scope_states, decisions = {}, {}, []
    for event in events:
        state, made, checks = core.handle(states.get(event["customer_id"]) or core.empty_state(), event, policy)
        states[event["customer_id"]] = state
        decisions.extend(made)
        saga.follow(checks, states, scope_states, policy, decisions)
    return decisions, scope_states


@pytest.mark.parametrize("policy", [Policy(), Policy.from_document({"household_incident_claims_max_90d": {
    "STOLEN_AFTER_DELIVERY": 1}, "associate_cents_max_per_day": 20_000})])
def test_the_saga_decides_a_simulated_month_exactly_as_the_pipeline_model(policy):
    events = [event for chunk, _ in generate(WorkloadConfig(customers=400, days=30, seed=3, abuse_rate=0.15))
              for event in chunk]
    world = World(policy)
    for event in events:
        world.feed(event)
    decisions, scope_states = saga_fold(events, policy)
    assert decisions == world.decisions and len(decisions) > 300
    assert scope_states == world.scopes
    assert {"HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED", "WITHIN_LIMITS"} <= {c for d in decisions for c in d["reason_codes"]}


def test_scope_keys_name_the_scope_or_the_customer():
    assert saga.scope_key_of({"action": "RESERVE", "scope": "household", "scope_key": "a-1"}) == "household:a-1"
    assert saga.scope_key_of({"action": "RESULT", "customer_id": "c1"}) == "c1"
