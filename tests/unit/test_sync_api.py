"""The synchronous API's pure parts: the body as a publish-format event, decisions in words,
and repeats told apart from conflicts (no broker)."""

from __future__ import annotations

import json

import pytest

from streams.core import decision as core
from streams.core.explain import NEXT_STEPS, REASON_WORDS, explained
from streams.runtime.sync_api import ApiProblem, parse_event, same_request_or_refuse

NOW_MS = 1_795_000_000_000  # 2026-11-18
REQUEST = {"event_id": "e1", "request_id": "r1", "customer_id": "c1", "order_id": "o1", "incident_id": None,
           "kind": "CREDIT", "amount_cents": 1500, "currency": "USD", "requested_by": "assoc-1",
           "requested_at": "2026-11-17T10:00:00Z", "reason": "late"}


def body(**changes) -> bytes:
    return json.dumps({**REQUEST, **changes}).encode()


def test_a_body_of_the_publish_format_becomes_the_event():
    datum = parse_event(body(), "RemedyRequested", NOW_MS)
    assert datum["request_id"] == "r1" and datum["amount_cents"] == 1500
    assert datum["requested_at"] == 1_794_909_600_000  # 2026-11-17T10:00:00Z in ms


@pytest.mark.parametrize("raw, named", [
    (body(amount_cents=-1), "'amount_cents'"),
    (body(amount_cents=0), "'amount_cents'"),
    (body(currency="usd"), "'currency'"),
    (body(kind="CASH"), "'kind'"),
    (body(colour="red"), "colour"),
    (body(type="RemedyRequested"), "type"),
    (body(requested_at="2026-11-17 10:00"), "'requested_at'"),
    (b"{}", "request_id"),
    (b"[1, 2]", "JSON object"),
    (b"{nope", "not valid JSON"),
    (b"\xff\xfe", "UTF-8"),
    (b"{" + b" " * 20_000 + b"}", "larger than"),
])
def test_a_bad_body_is_refused_naming_what_is_wrong(raw, named):
    with pytest.raises(ApiProblem, match=named) as caught:
        parse_event(raw, "RemedyRequested", NOW_MS)
    assert caught.value.status == 400


def test_one_cent_is_a_valid_amount():
    assert parse_event(body(amount_cents=1), "RemedyRequested", NOW_MS)["amount_cents"] == 1


def decision_for(request: dict, **changes) -> dict:
    return {"decision_id": "d1", "request_id": request["request_id"], "customer_id": "c1", "order_id": request["order_id"],
            "incident_id": request["incident_id"], "kind": request["kind"], "outcome": "GRANTED",
            "requested_cents": request["amount_cents"], "granted_cents": request["amount_cents"], "currency": "USD",
            "reason_codes": ["WITHIN_LIMITS"], "policy_version": "p1", "requested_by": request["requested_by"],
            "requested_at": request["requested_at"], "decided_by": "policy", **changes}


def test_a_repeat_is_answered_and_a_conflict_refused():
    request = parse_event(body(), "RemedyRequested", NOW_MS)
    same_request_or_refuse(request, decision_for(request))  # the same facts: no problem
    other = parse_event(body(amount_cents=1600), "RemedyRequested", NOW_MS)
    with pytest.raises(ApiProblem, match="amount_cents") as caught:
        same_request_or_refuse(other, decision_for(request))
    assert caught.value.status == 409


def test_every_reason_code_and_outcome_has_words():
    assert set(core.REASON_CODES) <= set(REASON_WORDS)
    assert set(NEXT_STEPS) == {"GRANTED", "DENIED", "ESCALATED"}


def test_a_decision_explained():
    request = parse_event(body(), "RemedyRequested", NOW_MS)
    shown = explained(decision_for(request, granted_cents=1505, reason_codes=["WITHIN_LIMITS"]))
    assert shown["granted"] == "15.05 USD" and shown["reasons"][0]["meaning"] == REASON_WORDS["WITHIN_LIMITS"]
    assert shown["next"] == NEXT_STEPS["GRANTED"]


def test_the_follower_learns_this_workers_decisions_from_the_decide_agent_at_once():
    """A decision the decide agent sent (and Kafka acknowledged) completes the waiter without the
    follower's fetch; entries of other topics are not decisions and are ignored."""
    import asyncio
    from collections import namedtuple

    import schemas
    from streams.runtime.settings import KafkaConnection
    from streams.runtime.sync_api import DecisionFollower
    from tests.support.world import World

    world = World()
    world.feed({"type": "RemedyRequested", "event_id": "e1", "request_id": "r1", "customer_id": "c1",
                "order_id": None, "incident_id": None, "kind": "CREDIT", "amount_cents": 500, "currency": "USD",
                "requested_by": "system", "requested_at": NOW_MS, "reason": "slow"})
    [decided] = world.decisions
    Entry = namedtuple("Entry", "topic key value")

    async def scenario():
        follower = DecisionFollower(KafkaConnection(), "t.decisions", 4)
        waiter = follower.waiter("r1")
        follower.sent([Entry("t.limit-checks", b"c1", b"not a decision"),
                       Entry("t.decisions", b"c1", schemas.encode("RemedyDecided", decided))])
        got = await follower.outcome("r1", waiter, 0.5)
        other = follower.waiter("r2")
        missing = await follower.outcome("r2", other, 0.01)
        return got, missing

    got, missing = asyncio.run(scenario())
    assert got["request_id"] == "r1" and got["outcome"] == decided["outcome"]
    assert missing is None


@pytest.mark.parametrize("queued, waited_s", [(0, 0.0), (1, 0.0), (2, 0.005), (500, 0.005)])
def test_a_lone_event_is_handled_at_once_and_events_in_numbers_gather(queued, waited_s):
    from streams.runtime.agents import gather_wait_s

    assert gather_wait_s(queued, 0.005) == waited_s


def test_the_customers_state_tells_a_decided_request_a_new_one_and_when_it_cannot_tell():
    """decision_on_record: the state answers the synchronous API's lookup without a query, except
    for a customer it has no state of, or a request dated at or before the remembered horizon."""
    from streams.core.policy import Policy
    from tests.support.world import World

    policy = Policy()
    world = World(policy)
    request = {"type": "RemedyRequested", "event_id": "e1", "request_id": "r1", "customer_id": "c1", "order_id": None,
               "incident_id": None, "kind": "CREDIT", "amount_cents": 500, "currency": "USD", "requested_by": "system",
               "requested_at": NOW_MS, "reason": "slow"}
    assert core.decision_on_record(None, request, policy) == (False, None)
    world.feed(request)
    state = world.customers["c1"]
    told, decided = core.decision_on_record(state, request, policy)
    assert told and decided["request_id"] == "r1" and decided == world.decisions[0]
    horizon_ms = state["clock_ms"] - policy.request_lateness_ms_max - policy.decided_retention_ms
    new = {**request, "request_id": "r2"}
    assert core.decision_on_record(state, {**new, "requested_at": horizon_ms + 1}, policy) == (True, None)
    assert core.decision_on_record(state, {**new, "requested_at": horizon_ms}, policy) == (False, None)
    assert core.decision_on_record(state, {**new, "requested_at": horizon_ms - 1}, policy) == (False, None)
