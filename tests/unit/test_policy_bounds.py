"""Policy safety: every threshold has a type, a minimum and a maximum, tested at, below and above
each; a hostile document is rejected with every problem at once, relations included; the widest
valid policy still yields decisions Avro can encode."""

from __future__ import annotations

from dataclasses import fields

import pytest

import schemas
from streams.core.inbound import MONEY_CENTS_MAX
from streams.core.policy import BOUNDS, DAY_MS, HOUR_MS, KEYED_THRESHOLDS, REMEDY_KINDS, TIERS, Policy
from streams.errors import PolicyError
from streams.runtime.policy_log import POLICY_DOCUMENT_BYTES_MAX, read_document
from tests.support.world import World

T0 = 1_790_000_000_000


def rejected(document: dict) -> list[str]:
    """The problems `Policy.from_document` lists for a document (empty when it is accepted)."""
    try:
        Policy.from_document(document)
    except PolicyError as error:
        return [line.strip() for line in str(error).splitlines()[1:]]
    return []


def bound_problems(document: dict, where: str) -> list[str]:
    # Only the bound's own verdict on `where`: a value at a bound may still break a relation.
    return [p for p in rejected(document) if p.startswith(f"{where}:") and " must be " in p]


def test_every_threshold_has_bounds_and_every_default_is_inside_them():
    bounded = {item.name for item in fields(Policy)} - {"currency", "proactive_rules"}
    assert bounded == set(BOUNDS)
    assert Policy().problems() == []
    for name, bound in BOUNDS.items():
        value = getattr(Policy(), name)
        values = value.values() if isinstance(value, dict) else [value]
        assert all(bound.minimum <= v <= bound.maximum for v in values), name
        assert bound.reason


def _document(name: str, value) -> tuple[dict, str]:
    if name in KEYED_THRESHOLDS:
        key = KEYED_THRESHOLDS[name][0]
        return {name: {key: value}}, f"{name}.{key}"
    return {name: value}, name


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_threshold_is_accepted_at_its_bounds_and_rejected_one_past_them(name):
    bound = BOUNDS[name]
    for value, ok in [(bound.minimum - 1, False), (bound.minimum, True), (bound.minimum + 1, True),
                      (bound.maximum - 1, True), (bound.maximum, True), (bound.maximum + 1, False)]:
        document, where = _document(name, value)
        assert (bound_problems(document, where) == []) is ok, (value, rejected(document))


@pytest.mark.parametrize("name", sorted(BOUNDS))
@pytest.mark.parametrize("value", ["5", 5.0, True, None, [5], {"x": 5}])
def test_each_threshold_must_be_an_integer(name, value):
    document, where = _document(name, value)
    assert bound_problems(document, where) or rejected(document), (name, value)


def test_the_hostile_policy_of_the_issue_is_rejected_with_every_problem_listed():
    problems = rejected({
        "remedy_cents_max_per_customer_30d": 10**30,
        "remedy_cents_max_per_customer_90d": 2**63,
        "household_cents_max_30d": 2**63 - 1,
        "kind_cents_max_per_customer_30d": {"CREDIT": 10**30},
        "tier_percent": {"LOYAL": 10**25},
        "customer_window_ms": 1,
        "long_window_ms": 1,
        "request_lateness_ms_max": 1,
        "order_wait_ms_max": 1,
        "proactive_rules": {"SERVICE_OUTAGE": {"source": "ANY", "remedy": "CREDIT", "amount": 10**30}},
    })
    named = [p.split(":", 1)[0] for p in problems]
    assert named == [
        "remedy_cents_max_per_customer_30d", "remedy_cents_max_per_customer_90d",
        "kind_cents_max_per_customer_30d.CREDIT", "household_cents_max_30d",
        "proactive_rules.SERVICE_OUTAGE.amount", "tier_percent.LOYAL", "customer_window_ms", "long_window_ms",
        "request_lateness_ms_max", "order_wait_ms_max",
    ], problems
    assert f"must be between 1 ($0.01) and {MONEY_CENTS_MAX} ($1,000,000,000.00), got {10**30}" in problems[0]
    assert "must be between 3600000 (1 hour) and 34560000000 (400 days), got 1" in problems[6]


def test_a_relation_is_reported_together_with_every_other_problem():
    problems = rejected({"remedy_cents_max_per_request": 90_000, "household_claims_max_90d": "six",
                         "kind_cents_max_per_customer_30d": {"CASH": 5}, "typo_cap": 1})
    assert problems == [
        "typo_cap: unknown key",
        "kind_cents_max_per_customer_30d.CASH: unknown key; expected one of " + ", ".join(REMEDY_KINDS),
        "household_claims_max_90d: must be a positive integer, got 'six'",
        "remedy_cents_max_per_request: 90000 exceeds remedy_cents_max_per_customer_30d 25000; "
        "the larger limit could never be reached",
    ]


@pytest.mark.parametrize("offset, count", [(-1, 0), (0, 0), (1, 1)])
def test_the_per_request_ceiling_may_equal_the_30_day_cap_but_not_exceed_it(offset, count):
    cap = Policy().remedy_cents_max_per_customer_30d
    problems = rejected({"remedy_cents_max_per_request": cap + offset})
    assert len(problems) == count


@pytest.mark.parametrize("offset, count", [(-1, 1), (0, 0), (1, 0)])
def test_decided_retention_must_cover_the_long_window_plus_lateness(offset, count):
    policy = Policy()
    needed = policy.long_window_ms + policy.request_lateness_ms_max
    assert len(rejected({"decided_retention_ms": needed + offset})) == count


def test_relations_between_out_of_bounds_values_are_not_guessed_at():
    # Both sides are already named as out of bounds; comparing them would add noise, not information.
    problems = rejected({"remedy_cents_max_per_request": 10**30, "remedy_cents_max_per_customer_30d": 2**63})
    assert [p.split(":", 1)[0] for p in problems] == ["remedy_cents_max_per_customer_30d", "remedy_cents_max_per_request"]


def test_keyed_thresholds_must_be_objects_with_their_keys():
    assert rejected({"tier_percent": [100, 150]}) == [
        "tier_percent: must be an object with the keys " + ", ".join(TIERS) + ", got [100, 150]"]


def test_problems_print_safely_whatever_the_document_holds():
    problems = rejected({"bad\x1bkey": 1, "currency": "U\x1bD", "tier_percent": {"\x1b[2J": 1},
                         "household_claims_max_90d": "\ud800", "long_window_ms": 10**400})
    assert len(problems) == 5
    assert all(p.isprintable() and len(p) < 400 for p in problems), problems


def test_the_widest_valid_policy_still_yields_decisions_avro_can_encode():
    cap = MONEY_CENTS_MAX
    widest = Policy.from_document({
        "remedy_cents_max_per_customer_30d": cap, "remedy_cents_max_per_customer_90d": cap,
        "remedy_cents_max_per_request": cap, "household_cents_max_30d": cap, "associate_cents_max_per_day": cap,
        "confirmed_remedy_cents_max_per_request": cap, "confirmed_remedy_cents_max_per_customer_30d": cap,
        "kind_cents_max_per_customer_30d": {kind: cap for kind in REMEDY_KINDS},
        "tier_percent": {tier: BOUNDS["tier_percent"].maximum for tier in TIERS},
        "customer_window_ms": 400 * DAY_MS, "long_window_ms": 400 * DAY_MS,
        "request_lateness_ms_max": 30 * DAY_MS, "decided_retention_ms": 800 * DAY_MS,
    })
    world = World(widest)
    world.feed({"type": "OrderPlaced", "event_id": "e-o1", "order_id": "o1", "customer_id": "c1", "placed_at": T0,
                "total_cents": cap, "currency": "USD", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": cap}],
                "shipping_address_id": "a1", "digital": False})
    for n, kind in enumerate(REMEDY_KINDS):
        world.feed({"type": "RemedyRequested", "event_id": f"e{n}", "request_id": f"r{n}", "customer_id": "c1",
                    "order_id": "o1", "incident_id": None, "kind": kind, "amount_cents": cap, "currency": "USD",
                    "requested_by": "assoc-1", "requested_at": T0 + HOUR_MS * (n + 1), "reason": "widest"})
    assert len(world.decisions) >= len(REMEDY_KINDS)
    for decision in world.decisions:
        schemas.encode("RemedyDecided", decision)  # raises EncodeError when a figure does not fit
        assert max(decision["inputs"].values()) <= cap * BOUNDS["tier_percent"].maximum // 100


@pytest.mark.parametrize("offset, accepted", [(-1, True), (0, True), (1, False)])
def test_a_policy_file_is_bounded_in_size(tmp_path, offset, accepted):
    path = tmp_path / "policy.json"
    prefix = '{"household_claims_max_90d": 4, "padding": "'
    path.write_text(prefix + "x" * (POLICY_DOCUMENT_BYTES_MAX + offset - len(prefix) - 2) + '"}')
    assert path.stat().st_size == POLICY_DOCUMENT_BYTES_MAX + offset
    if accepted:
        assert read_document(path)["household_claims_max_90d"] == 4
    else:
        with pytest.raises(PolicyError, match=f"a policy document is at most {POLICY_DOCUMENT_BYTES_MAX}"):
            read_document(path)


@pytest.mark.parametrize("content, expected", [
    (b'{"household_claims_max_90d": 4, "household_claims_max_90d": 40}', "'household_claims_max_90d' appears more than once"),
    (b'{"tier_percent": {"NEW": 1, "NEW": 2}}', "'NEW' appears more than once"),
    (b'{"household_claims_max_90d": 4,}', "not valid JSON"),
    (b'\xff\xfe{}', "not UTF-8 text"),
    (b'{"long_window_ms": ' + b"9" * 5000 + b"}", "not valid JSON: Exceeds the limit"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
])
def test_a_malformed_policy_file_is_a_policy_error_not_a_traceback(tmp_path, content, expected):
    path = tmp_path / "policy.json"
    path.write_bytes(content)
    with pytest.raises(PolicyError, match=expected):
        read_document(path)
