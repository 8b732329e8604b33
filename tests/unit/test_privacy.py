"""Erasure of personal data (docs/privacy.md): pseudonyms, the erased customer state, households
that forget, and the projector's mapping. Given/when/then on the pure core."""

from __future__ import annotations

import json

import pytest

import schemas
from streams.core import decision as core
from streams.core import scopes
from streams.core.privacy import Erasure, erased_decision, erased_id, is_pseudonym, pseudonym
from streams.runtime.batch import Incoming, fold_batch
from streams.runtime.topics import TopicNames
from tests.support.world import World
from tests.unit.test_core import POLICY, T0, incident, order, request

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
CUSTOMER = "cust-erase-7"
ADDRESS = "addr-erase-7"
P = pseudonym(KEY, CUSTOMER)


def erased(at=T0 + 10_000, customer=CUSTOMER, event_id="erasure-1"):
    return {"type": "CustomerErased", "event_id": event_id, "customer_id": customer,
            "pseudonym": pseudonym(KEY, customer), "erased_at": at}


REQUEST = f"req-{CUSTOMER}-1"  # upstream ids often embed the customer id
ASSOCIATE = "assoc-9"


def story() -> World:
    """A customer with an order, a refund an associate asked for (household and associate checks), a
    proactive reshipment of a carrier-confirmed loss (not checked at the household: confirmed) and
    a damage claim the customer asserted (a credit), checked at its household."""
    world = World(POLICY)
    world.feed(order("o1", customer=CUSTOMER, address=ADDRESS))
    world.feed(request(REQUEST, 1_000, kind="REFUND", customer=CUSTOMER, order_id="o1", at=T0 + 1,
                       requested_by=ASSOCIATE))
    world.feed(incident(f"inc-{CUSTOMER}", customer=CUSTOMER, order_id="o1", at=T0 + 2))
    world.feed(incident(f"dmg-{CUSTOMER}", "DAMAGED", customer=CUSTOMER, order_id="o1", at=T0 + 3, source="CUSTOMER"))
    world.feed(request(f"claim-{CUSTOMER}", 1_000, customer=CUSTOMER, order_id="o1", at=T0 + 4, kind="CREDIT",
                       incident_id=f"dmg-{CUSTOMER}"))  # a credit: the order's value was reshipped already
    assert {d["outcome"] for d in world.decisions} == {"GRANTED"}
    return world


def mentions(document, *texts) -> list[str]:
    """Which of `texts` appear anywhere in a JSON-able document."""
    dumped = json.dumps(document)
    return [text for text in texts if text in dumped]


# Pseudonyms ----------------------------------------------------------------------------------

def test_a_pseudonym_is_keyed_stable_and_shaped():
    assert pseudonym(KEY, CUSTOMER) == P and P.startswith("erased:") and is_pseudonym(P)
    assert pseudonym(OTHER_KEY, CUSTOMER) != P  # without the key nobody can recompute it
    assert pseudonym(KEY, CUSTOMER + "x") != P
    assert not is_pseudonym(CUSTOMER) and not is_pseudonym("erased:xyz")


def test_a_short_key_is_refused_by_name():
    with pytest.raises(ValueError, match="privacy key"):
        pseudonym(b"short", CUSTOMER)


@pytest.mark.parametrize("text, expected", [
    (f"proactive:inc-{CUSTOMER}:{CUSTOMER}:RESHIP", f"proactive:inc-{P}:{P}:RESHIP"),
    (f"req-{CUSTOMER}-3", f"req-{P}-3"),
    ("req-17", "req-17"),  # an id that does not embed the customer: unchanged
    (None, None),
])
def test_every_occurrence_of_the_customer_id_in_its_ids_becomes_the_pseudonym(text, expected):
    assert erased_id(text, CUSTOMER, P) == expected


def test_the_projector_maps_only_erased_customers_and_keeps_the_money():
    world = story()
    decision = next(d for d in world.decisions if d["request_id"].startswith("proactive:"))
    other = {**decision, "customer_id": "someone-else"}
    erasure = Erasure(KEY, frozenset({P}))
    mapped = erasure.decision(decision)
    assert mapped == erased_decision(decision, P)
    assert mapped["customer_id"] == P and mapped["household_id"] is None and mapped["note"] is None
    assert not mentions(mapped, CUSTOMER, ADDRESS)
    money = ("decision_id", "kind", "outcome", "requested_cents", "granted_cents", "currency", "reason_codes",
             "decided_at", "policy_version", "supersedes_decision_id")
    assert {name: mapped[name] for name in money} == {name: decision[name] for name in money}
    assert erasure.decision(other) is other
    assert Erasure().decision(decision) is decision  # nobody erased: nothing computed


# The customer state ----------------------------------------------------------------------------

def test_erasure_leaves_no_id_address_or_amount_in_the_state_and_tells_the_household():
    world = story()
    assert mentions(world.customers[CUSTOMER], CUSTOMER, ADDRESS)
    state, decisions, checks = core.handle(world.customers[CUSTOMER], erased(), POLICY)
    assert decisions == []  # nothing was parked
    assert state[core.ERASED] == P and core.state_key(CUSTOMER, state) == P
    assert not mentions(state, CUSTOMER, ADDRESS, "o1", ASSOCIATE)
    assert state["grants"] == [] and state["orders"] == {} and state["decided"] == {}
    known = {core.decision_id_for(d["request_id"]) for d in world.decisions}
    assert set(state[core.ERASED_DECISION_IDS]) == known
    assert sorted((c["action"], c["scope"], c["scope_key"], c["pseudonym"]) for c in checks) == [
        ("FORGET", "associate", ASSOCIATE, P), ("FORGET", "household", ADDRESS, P), ("FORGET", "household", ADDRESS, P)]
    assert not mentions([c["event_id"] for c in checks], CUSTOMER)


def test_households_and_associates_rename_the_erased_customer_s_requests_and_judge_as_before():
    world = story()
    household, associate = f"household:{ADDRESS}", f"associate:{ASSOCIATE}"
    before = {key: world.scopes[key] for key in (household, associate)}
    assert mentions(before, CUSTOMER)
    world.feed(erased())
    after = {key: world.scopes[key] for key in (household, associate)}
    assert not mentions(after, CUSTOMER)
    for key in after:
        assert sorted(r[1] for r in after[key]["reservations"].values()) == sorted(
            r[1] for r in before[key]["reservations"].values())
    assert after[associate]["days"] == before[associate]["days"]
    after = after[household]
    again, out = scopes.handle_check(after, forget_check(), POLICY)
    assert (again, out) == (after, [])  # a repeated FORGET changes nothing
    # Another customer of the same household still meets the erased customer's claims there.
    neighbour = request("n1", 1_000, customer="neighbour", order_id="o9", at=T0 + 20_000)  # same household
    world.feed(order("o9", customer="neighbour", address=ADDRESS, at=T0 + 19_000))
    decision = world.feed(neighbour)[-1]
    assert decision["inputs"]["household_claims_90d"] == 2


def forget_check() -> dict:
    """The FORGET the story's erasure sends to its household."""
    _, _, checks = core.handle(story().customers[CUSTOMER], erased(), POLICY)
    return checks[0]


def test_parked_requests_are_escalated_at_erasure_and_every_later_request_goes_to_a_person():
    world = World(POLICY)
    world.feed(request("r-waits", 2_000, kind="REFUND", customer=CUSTOMER, order_id="o-later", at=T0))
    assert world.decisions == []  # parked: waits for its order
    decided = world.feed(erased(at=T0 + 5))
    assert outcomes(decided) == [("r-waits", "ESCALATED", ["CUSTOMER_ERASED"])]
    later = world.feed(request("r-later", 100, customer=CUSTOMER, at=T0 + 60_000))
    assert outcomes(later) == [("r-later", "ESCALATED", ["CUSTOMER_ERASED"])]
    assert later[0]["granted_cents"] == 0
    proactive = world.feed(incident("i-later", kind="SERVICE_OUTAGE", customer=CUSTOMER, order_id=None,
                                    at=T0 + 61_000, source="QOS_MONITOR"))
    assert outcomes(proactive) == [(f"proactive:i-later:{CUSTOMER}:CREDIT", "ESCALATED", ["CUSTOMER_ERASED"])]
    assert not mentions(world.customers[CUSTOMER], CUSTOMER)


def test_redeliveries_after_erasure_emit_nothing_and_a_second_erasure_changes_nothing():
    world = story()
    world.feed(erased())
    state = world.customers[CUSTOMER]
    for event in (request(REQUEST, 1_000, customer=CUSTOMER, order_id="o1", at=T0 + 1, requested_by=ASSOCIATE),
                  incident(f"inc-{CUSTOMER}", customer=CUSTOMER, order_id="o1", at=T0 + 2),
                  order("o1", customer=CUSTOMER, address=ADDRESS),
                  erased(event_id="erasure-2")):
        assert core.handle(state, event, POLICY) == (state, [], [])
    state, first, _ = core.handle(state, request("r-new", 100, customer=CUSTOMER, at=T0 + 90_000), POLICY)
    assert core.handle(state, request("r-new", 100, customer=CUSTOMER, at=T0 + 90_000), POLICY) == (state, [], [])
    assert len(first) == 1


def test_an_erasure_waits_for_the_check_in_flight_then_applies():
    world = World(POLICY)
    world.feed(order("o1", customer=CUSTOMER, address=ADDRESS))
    world.feed(request(REQUEST, 1_000, customer=CUSTOMER, order_id="o1", at=T0 + 1), deliver=False)
    assert world.in_flight and world.customers[CUSTOMER]["reservations"]
    world.feed(erased(), deliver=False)
    assert core.ERASED not in world.customers[CUSTOMER]  # queued behind the household's answer
    world.deliver_all()
    assert outcomes(world.decisions) == [(REQUEST, "GRANTED", ["WITHIN_LIMITS"])]
    assert world.customers[CUSTOMER][core.ERASED] == P


def outcomes(decisions):
    return [(d["request_id"], d["outcome"], d["reason_codes"]) for d in decisions]


# The shell's guard -----------------------------------------------------------------------------

def test_an_erasure_made_with_another_key_is_dead_lettered_not_applied():
    names = TopicNames("t", "t-worker")
    datum = {key: value for key, value in erased().items() if key != "type"}
    message = Incoming(names.requests, 0, 0, CUSTOMER.encode(), schemas.encode("CustomerErased", datum), T0)
    applied = fold_batch([message], lambda key: None, POLICY, names, privacy_key=KEY)
    assert applied.states[CUSTOMER][core.ERASED] == P and not applied.dead_letters
    refused = fold_batch([message], lambda key: None, POLICY, names, privacy_key=OTHER_KEY)
    assert not refused.states and "REMEDY_PRIVACY_KEY_FILE" in refused.dead_letters[0]["reason"]


# The key on disk -------------------------------------------------------------------------------

def test_the_worker_makes_a_private_key_once_and_a_named_missing_key_is_refused(tmp_path):
    from streams.errors import InvariantViolation
    from streams.runtime.privacy import erasure_for, with_privacy_key
    from streams.runtime.settings import load_settings

    settings = load_settings({"REMEDY_DATA_DIR": str(tmp_path)})
    assert settings.privacy_key == b"" and not settings.privacy_key_path.exists()
    made = with_privacy_key(settings)
    assert (made.privacy_key_path.stat().st_mode & 0o777) == 0o600 and len(made.privacy_key) == 64
    assert load_settings({"REMEDY_DATA_DIR": str(tmp_path)}).privacy_key == made.privacy_key == \
        with_privacy_key(load_settings({"REMEDY_DATA_DIR": str(tmp_path)})).privacy_key
    assert made.privacy_key.decode() in made.secrets() and made.privacy_key.decode() not in repr(made)
    with pytest.raises(InvariantViolation, match="REMEDY_PRIVACY_KEY_FILE .*no such file"):
        load_settings({"REMEDY_PRIVACY_KEY_FILE": str(tmp_path / "missing.key")})
    with pytest.raises(InvariantViolation, match="1 customer.*no privacy key"):
        erasure_for(settings, {P})
