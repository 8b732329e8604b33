"""The workload simulator: reproducible, valid publish format, labels kept apart, rates as configured."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from streams.measure import simulate
from streams.measure.simulate import WorkloadConfig, generate, write_workload
from streams.runtime.upstream import validate_file

LABEL_KEYS = {"label", "population", "scheme", "excess", "requested_cents"}


def written(tmp_path: Path, name: str, config: WorkloadConfig) -> tuple[Path, Path]:
    events, labels = tmp_path / f"{name}.jsonl", tmp_path / f"{name}-labels.jsonl"
    write_workload(config, events, labels)
    return events, labels


def collect(config: WorkloadConfig) -> tuple[list[dict], list[dict]]:
    events, labels = [], []
    for chunk_events, chunk_labels in generate(config):
        events.extend(chunk_events)
        labels.extend(chunk_labels)
    return events, labels


@pytest.fixture(scope="module")
def big():
    """Twenty thousand customers over 30 days, generated once for the rate tests."""
    events, labels = [], []
    for chunk_events, chunk_labels in generate(WorkloadConfig(customers=20_000, days=30, seed=11, abuse_rate=0.01)):
        events.extend(chunk_events)
        labels.extend(chunk_labels)
    return events, labels


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    config = WorkloadConfig(customers=500, days=20, seed=42, abuse_rate=0.05)
    first, first_labels = written(tmp_path, "a", config)
    second, second_labels = written(tmp_path, "b", config)
    other, _ = written(tmp_path, "c", WorkloadConfig(customers=500, days=20, seed=43, abuse_rate=0.05))
    assert first.read_bytes() == second.read_bytes()
    assert first_labels.read_bytes() == second_labels.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_every_line_validates_and_no_label_leaks_into_the_events(tmp_path):
    events, labels = written(tmp_path, "w", WorkloadConfig(customers=800, days=30, seed=5, abuse_rate=0.05))
    lines = events.read_text().splitlines()
    # Judged as a live upstream would publish them, after the simulated month (deliveries run up to
    # 5 days past its end): the publish door bounds event time by the publisher's clock.
    published_at_ms = simulate.START_MS_DEFAULT + (30 + 6) * 24 * 60 * 60 * 1000
    assert validate_file(events, now_ms=published_at_ms) == len(lines) > 0
    for line in lines:
        assert not LABEL_KEYS & set(json.loads(line)), line
    label_lines = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {label["label"] for label in label_lines} == {"run", "customer", "request"}
    requests = [json.loads(line) for line in lines if '"RemedyRequested"' in line]
    assert sorted(r["request_id"] for r in requests) == sorted(
        label["request_id"] for label in label_lines if label["label"] == "request"
    )


def test_each_customers_events_are_in_time_order_and_requests_follow_their_order(big):
    events, _ = big
    last_ms: dict[str, int] = {}
    orders_seen: set[str] = set()
    for event in events:
        at = next(event[name] for name in simulate.TIMESTAMP_FIELDS if name in event)
        assert at >= last_ms.get(event["customer_id"], 0)
        last_ms[event["customer_id"]] = at
        if event["type"] == "OrderPlaced":
            orders_seen.add(event["order_id"])
        elif event.get("order_id"):
            assert event["order_id"] in orders_seen


def test_rates_are_roughly_as_configured(big):
    events, labels = big
    customers = [label for label in labels if label["label"] == "customer"]
    assert len(customers) == 20_000
    abusers = Counter(label["scheme"] for label in customers if label["population"] == "abuser")
    assert 0.006 < sum(abusers.values()) / len(customers) < 0.015
    assert set(abusers) == set(simulate.SCHEMES)
    orders = [e for e in events if e["type"] == "OrderPlaced"]
    # The ordinary honest groups (high-value, gift-giving and digital-heavy customers order more).
    honest = {label["customer_id"] for label in customers
              if label["population"] == "honest" and label["group"] in (simulate.ORDINARY, simulate.FAMILY)}
    honest_orders = [o for o in orders if o["customer_id"] in honest]
    # About 0.08 orders a day for 30 days.
    assert 2.0 < len(honest_orders) / len(honest) < 2.8
    assert 0.20 < sum(o["digital"] for o in honest_orders) / len(honest_orders) < 0.30
    incidents = Counter(e["kind"] for e in events if e["type"] == "IncidentReported" and e["customer_id"] in honest)
    physical = sum(not o["digital"] for o in honest_orders)
    assert 0.006 < incidents["LOST_IN_TRANSIT"] / physical < 0.015
    assert 0.035 < incidents["LATE_DELIVERY"] / physical < 0.065
    # One outage, one incident per affected customer, all with the same incident id.
    outage = [e for e in events if e["kind" if e["type"] == "IncidentReported" else "type"] == "SERVICE_OUTAGE"]
    assert len({e["incident_id"] for e in outage}) == 1
    assert len({e["customer_id"] for e in outage}) == len(outage)
    assert 0.17 < len(outage) / len(customers) < 0.23
    requesters = Counter(
        "system" if e["requested_by"] == "system" else "customer" if e["requested_by"] == "customer" else "associate"
        for e in events if e["type"] == "RemedyRequested"
    )
    assert set(requesters) == {"system", "customer", "associate"}


def test_household_rings_share_one_address_and_the_generous_associate_is_one_person(big):
    events, labels = big
    rings = Counter(
        label["shipping_address_id"] for label in labels
        if label["label"] == "customer" and label["scheme"] == "household_ring"
    )
    assert rings and all(simulate.HOUSEHOLD_ACCOUNTS_MIN <= n <= simulate.HOUSEHOLD_ACCOUNTS_MAX for n in rings.values())
    excess = {label["request_id"]: label for label in labels if label["label"] == "request" and label["excess"]}
    associates = {
        e["requested_by"] for e in events
        if e["type"] == "RemedyRequested" and excess.get(e["request_id"], {}).get("scheme") == "generous_associate"
    }
    assert len(associates) == 1


def test_generation_streams_in_bounded_chunks():
    sizes = [
        len({e["customer_id"] for e in events})
        for events, _ in generate(WorkloadConfig(customers=5_000, days=5, seed=1))
    ]
    assert max(sizes) <= simulate.CHUNK_CUSTOMERS + simulate.HOUSEHOLD_ACCOUNTS_MAX
    assert len(sizes) >= 2


@pytest.mark.parametrize("config, problem", [
    (WorkloadConfig(customers=0, days=1, seed=1), "--customers"),
    (WorkloadConfig(customers=1, days=0, seed=1), "--days"),
    (WorkloadConfig(customers=1, days=1, seed=1, abuse_rate=1.5), "--abuse-rate"),
])
def test_an_impossible_configuration_is_refused(config, problem):
    assert any(p.startswith(problem) for p in config.problems())


def test_every_honest_group_and_both_profiles_are_generated():
    for profile in simulate.PROFILES:
        _, labels = collect(WorkloadConfig(customers=6_000, days=30, seed=4, profile=profile, abuse_rate=0.05))
        customers = [label for label in labels if label["label"] == "customer"]
        assert {c["group"] for c in customers if c["population"] == "honest"} == set(simulate.HONEST_GROUPS)
        assert {c["scheme"] for c in customers if c["population"] == "abuser"} == set(simulate.SCHEMES)


def test_the_adversarial_profile_rotates_addresses_and_paces_its_claims():
    events, labels = collect(WorkloadConfig(customers=6_000, days=60, seed=4, profile="adversarial", abuse_rate=0.05))
    rings = [c for c in labels if c["label"] == "customer" and c["scheme"] == simulate.HOUSEHOLD_RING]
    assert len({c["shipping_address_id"] for c in rings}) == len(rings)  # one apartment per account
    serial = {c["customer_id"] for c in labels if c["label"] == "customer" and c["scheme"] == simulate.SERIAL_CLAIMER}
    excess = {label["request_id"] for label in labels if label["label"] == "request" and label["excess"]}
    claims: dict[str, list[int]] = {}
    for e in events:
        if e["type"] == "RemedyRequested" and e["customer_id"] in serial and e["request_id"] in excess:
            claims.setdefault(e["customer_id"], []).append(e["requested_at"])
    gaps = [b - a for times in claims.values() for a, b in zip(sorted(times), sorted(times)[1:])]
    assert gaps and min(gaps) >= simulate.ADVERSARIAL_PROFILE.pace_days * simulate.DAY_MS - 2 * simulate.DAY_MS


def test_an_unknown_profile_is_refused():
    assert any(p.startswith("--profile") for p in WorkloadConfig(customers=1, days=1, seed=1, profile="x").problems())
