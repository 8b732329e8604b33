"""An associate's daily budget holds across a catch-up of several days (real broker, real chDB).

One associate ("assoc-x") asks credits for many different customers over DAYS days, each day's
asks well over the budget (policy associate_cents_max_per_day, $1,500). The customers are spread
evenly over the 4 partitions (murmur2 of the customer id, as streams/runtime/batch.py computes
it), each asks once (a CREDIT of $50-$100, inside every customer cap), half of them naming an
order of theirs (so the request passes the household scope first, then the associate's).

The file is published before the worker starts, ordered the way the simulator's customer chunks
order a catch-up: filler orders of other customers on partitions 2-3 first (so those partitions
run behind), then the associate's customers of partitions 0-1 for all days, then those of
partitions 2-3 for all days, and then the same again for a second set of customers. Every
partition's log therefore goes from the last day back to the first, and partitions 2-3 are
decided days of event time behind partitions 0-1: the associate's scope receives checks days
apart in event time, back and forth (printed from the order the scope judged them).

Asserted: every request has exactly one final decision, GRANTED within limits or ESCALATED as
ASSOCIATE_DAILY_BUDGET_EXCEEDED; per UTC day the associate's granted cents are at most the
budget, the excess is escalated, and the budget is filled up to less than one ask (the scope
did not escalate for room it had); `remedy-ledger audit --json` exits 0. The same events folded
in one process in event-time order (tests/support/world.py) give per-day totals that are printed
beside the worker's, and hold the cap too.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from streams.core.policy import DAY_MS, HOUR_MS, Policy
from streams.measure.quality import final_decisions
from streams.measure.simulate import publish_line
from streams.runtime.batch import key_partition
from tests.support.world import World

pytestmark = pytest.mark.integration

ASSOCIATE = "assoc-x"
PARTITIONS = 4  # REMEDY_TOPIC_PARTITIONS of the test deployments
DAYS = 5
# Requests per partition per day, split over two customer sets (two passes over all days).
REQUESTS_PER_PARTITION_DAY = 12
AMOUNT_CENTS_MIN, AMOUNT_CENTS_MAX = 5_000, 10_000  # the CREDIT kind cap is $100 per customer per 30 days
# Orders of other customers on the slow partitions, published first: those partitions run behind.
FILLER_ORDERS = 3_000
SLOW_PARTITIONS = (2, 3)
SEED = 20261130
GRANTED, ESCALATED = "GRANTED", "ESCALATED"
BUDGET_REASON = "ASSOCIATE_DAILY_BUDGET_EXCEEDED"


def say(text: str) -> None:
    print(f"[associate] {text}", flush=True)


def customers_by_partition(count_per_partition: int, prefix: str, partitions=range(PARTITIONS)) -> dict[int, list[str]]:
    """Customer ids whose key lands on each partition (murmur2, as the producer and the worker compute it)."""
    wanted = set(partitions)
    found: dict[int, list[str]] = {p: [] for p in wanted}
    number = 0
    while any(len(found[p]) < count_per_partition for p in wanted):
        number += 1
        customer = f"{prefix}-{number:06d}"
        partition = key_partition(customer.encode(), PARTITIONS)
        if partition in wanted and len(found[partition]) < count_per_partition:
            found[partition].append(customer)
    return found


def order_event(customer: str, order_id: str, at_ms: int, total_cents: int, address: str) -> dict:
    return {
        "type": "OrderPlaced", "event_id": f"ev-{order_id}", "order_id": order_id, "customer_id": customer,
        "placed_at": at_ms, "total_cents": total_cents, "currency": "USD",
        "items": [{"sku": "sku-100", "quantity": 1, "unit_price_cents": total_cents}],
        "shipping_address_id": address, "digital": False,
    }


def request_event(customer: str, request_id: str, at_ms: int, amount_cents: int, order_id: str | None) -> dict:
    return {
        "type": "RemedyRequested", "event_id": f"ev-{request_id}", "request_id": request_id, "customer_id": customer,
        "order_id": order_id, "incident_id": None, "kind": "CREDIT", "amount_cents": amount_cents, "currency": "USD",
        "requested_by": ASSOCIATE, "requested_at": at_ms, "reason": "goodwill: the moment called for it",
    }


def build_workload(first_day_ms: int) -> tuple[list[dict], list[dict]]:
    """(events in publish order, the associate's requests)."""
    rng = random.Random(SEED)
    per_partition = DAYS * REQUESTS_PER_PARTITION_DAY
    customers = customers_by_partition(per_partition, "ax-cust")
    # chunks[(set, partition group)] -> events; set 0 and 1 each hold half of every day's requests.
    chunks: dict[tuple[int, int], list[tuple[int, int, dict]]] = {}
    requests: list[dict] = []
    sequence = 0
    for partition in range(PARTITIONS):
        for day in range(DAYS):
            for slot in range(REQUESTS_PER_PARTITION_DAY):
                customer = customers[partition][day * REQUESTS_PER_PARTITION_DAY + slot]
                asked_ms = first_day_ms + day * DAY_MS + rng.randint(8 * 60, 20 * 60) * 60_000 + rng.randint(0, 59_999)
                ordered_ms = asked_ms - rng.randint(1, 6) * HOUR_MS
                order_id = f"ord-{customer}-1"
                amount = rng.randint(AMOUNT_CENTS_MIN // 100, AMOUNT_CENTS_MAX // 100) * 100
                names_order = slot % 4 < 2  # half name their order: household scope, then the associate's
                request = request_event(customer, f"req-{customer}-1", asked_ms, amount, order_id if names_order else None)
                group = 0 if partition in (0, 1) else 1
                chunk = chunks.setdefault((slot % 2, group), [])
                for event in (order_event(customer, order_id, ordered_ms, rng.randint(40, 90) * 100, f"addr-{customer}"),
                              request):
                    sequence += 1
                    chunk.append((event.get("placed_at") or event["requested_at"], sequence, event))
                requests.append(request)
    filler_customers = customers_by_partition(FILLER_ORDERS // len(SLOW_PARTITIONS), "ax-filler", SLOW_PARTITIONS)
    filler = []
    for partition in SLOW_PARTITIONS:
        for number, customer in enumerate(filler_customers[partition]):
            at = first_day_ms - DAY_MS + number * 1_000
            filler.append(order_event(customer, f"ord-{customer}-1", at, 2_500, f"addr-{customer}"))
    filler.sort(key=lambda event: event["placed_at"])
    ordered = list(filler)
    for key in ((0, 0), (0, 1), (1, 0), (1, 1)):
        ordered += [event for _, _, event in sorted(chunks[key], key=lambda item: (item[0], item[1]))]
    return ordered, requests


def day_of(value) -> int:
    ms = int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)
    return ms // DAY_MS


def granted_by_day(finals: dict[str, dict], request_ids: set[str]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for request_id in request_ids:
        decision = finals.get(request_id)
        if decision is not None and decision["outcome"] == GRANTED:
            day = day_of(decision["decided_at"])
            totals[day] = totals.get(day, 0) + decision["granted_cents"]
    return totals


def judging_rewind_days(decisions: list[dict]) -> float:
    """How far back in event time the associate's scope went between the checks it judged (in days):
    the largest gap between the newest request it had judged and a request it judged after."""
    judged = {}
    for decision in decisions:
        sequence = (decision.get("inputs") or {}).get("associate_judged_sequence")
        if sequence is not None and decision["requested_by"] == ASSOCIATE:
            judged.setdefault(sequence, decision)
    newest = None
    rewind = 0
    for sequence in sorted(judged):
        at = judged[sequence]["requested_at"]
        at = int(at.timestamp() * 1000) if hasattr(at, "timestamp") else int(at)
        if newest is not None:
            rewind = max(rewind, newest - at)
        newest = at if newest is None else max(newest, at)
    return rewind / DAY_MS


def test_an_associates_daily_budget_holds_across_a_catch_up_of_several_days(deployment, tmp_path):
    started = time.monotonic()
    policy: Policy = deployment.settings.policy
    budget = policy.associate_cents_max_per_day
    first_day_ms = (int(time.time() * 1000) // DAY_MS - DAYS - 2) * DAY_MS  # all in the past, whole UTC days
    events, requests = build_workload(first_day_ms)
    path = tmp_path / "associate-catch-up.jsonl"
    path.write_text("".join(publish_line(event) + "\n" for event in events))
    request_ids = {r["request_id"] for r in requests}
    asked: dict[int, int] = {}
    largest_ask: dict[int, int] = {}
    for r in requests:
        day = r["requested_at"] // DAY_MS
        asked[day] = asked.get(day, 0) + r["amount_cents"]
        largest_ask[day] = max(largest_ask.get(day, 0), r["amount_cents"])
    assert len(asked) == DAYS and all(cents > 2 * budget for cents in asked.values()), asked
    say(f"{len(events)} events ({FILLER_ORDERS} filler orders on partitions {SLOW_PARTITIONS}), {len(requests)} "
        f"requests by {ASSOCIATE} for {len(requests)} customers over {DAYS} days; asked per day "
        f"{[f'${c / 100:,.0f}' for c in asked.values()]} against a budget of ${budget / 100:,.0f}")

    # The same events folded in one process, in event-time order.
    world = World(policy)
    timed = sorted(enumerate(events), key=lambda item: (item[1].get("placed_at") or item[1]["requested_at"], item[0]))
    for _, event in timed:
        world.feed(event)
    assert not world.rejected, world.rejected[:5]
    world_totals = granted_by_day(world.final_decisions(), request_ids)

    # The real worker, on a catch-up: everything published before it starts.
    deployment.cli("publish", str(path))
    deployment.start_worker()
    deployment.cli("wait", "--file", str(path), "--timeout", "240")
    decisions = deployment.decisions()
    finals = final_decisions(decisions)
    worker_seconds = time.monotonic() - started

    # Exactly one final decision per request, and only the two expected outcomes.
    superseded = {d["supersedes_decision_id"] for d in decisions if d.get("supersedes_decision_id")}
    standing: dict[str, set[str]] = {}
    for decision in decisions:
        if decision["decision_id"] not in superseded:
            standing.setdefault(decision["request_id"], set()).add(decision["decision_id"])
    assert request_ids <= set(finals), f"undecided: {sorted(request_ids - set(finals))[:20]}"
    several = {r: ids for r, ids in standing.items() if len(ids) != 1}
    assert not several, f"requests with several standing decisions: {list(several.items())[:10]}"
    unexpected = {r: (finals[r]["outcome"], finals[r]["reason_codes"], finals[r].get("inputs")) for r in request_ids
                  if (finals[r]["outcome"], tuple(finals[r]["reason_codes"])) not in
                  ((GRANTED, ("WITHIN_LIMITS",)), (ESCALATED, (BUDGET_REASON,)))}
    assert not unexpected, f"{len(unexpected)} decisions other than granted or budget-escalated: {list(unexpected.items())[:10]}"

    totals = granted_by_day(finals, request_ids)
    escalated: dict[int, int] = {}
    memory_escalations = 0
    for request_id in request_ids:
        decision = finals[request_id]
        if decision["outcome"] == ESCALATED:
            day = day_of(decision["decided_at"])
            escalated[day] = escalated.get(day, 0) + 1
            memory_escalations += "scope_memory_exceeded" in (decision.get("inputs") or {})
    rewind = judging_rewind_days(decisions)
    lines = []
    for day in sorted(asked):
        lines.append(f"  {time.strftime('%Y-%m-%d', time.gmtime(day * DAY_MS / 1000))}: asked ${asked[day] / 100:>8,.2f}, "
                     f"worker granted ${totals.get(day, 0) / 100:>8,.2f} ({escalated.get(day, 0)} escalated), "
                     f"in-process fold granted ${world_totals.get(day, 0) / 100:>8,.2f}; budget ${budget / 100:,.2f}")
    say("per UTC day:\n" + "\n".join(lines))
    say(f"the associate's scope judged checks up to {rewind:.1f} days back in event time; "
        f"{memory_escalations} escalated for being older than the scope's memory; "
        f"{len(decisions)} decision records, {len(finals)} final")

    # The budget holds every day, the excess is escalated, and the budget was used up to one ask.
    for day in sorted(asked):
        assert totals.get(day, 0) <= budget, f"day {day}: granted {totals.get(day, 0)} > budget {budget}"
        assert world_totals.get(day, 0) <= budget, f"in-process fold, day {day}: granted {world_totals.get(day, 0)}"
        assert escalated.get(day, 0) > 0, f"day {day}: asks of {asked[day]} cents and nothing escalated"
        assert totals.get(day, 0) > budget - largest_ask[day], (
            f"day {day}: only {totals.get(day, 0)} cents granted of a {budget} budget, with asks up to "
            f"{largest_ask[day]}: the scope escalated requests it had room for")
    assert memory_escalations == 0, "a check within the associate's memory was escalated as too old"
    assert rewind >= DAYS - 2, f"the scope never saw checks out of event-time order (rewind {rewind:.1f} days)"

    audited = deployment.cli("audit", "--json", check=False)
    try:
        result = json.loads(audited.stdout)
    except json.JSONDecodeError:
        result = {}
    assert audited.returncode == 0, (f"remedy-ledger audit failed (exit {audited.returncode}):\n"
                                     f"{json.dumps(result.get('findings', result), default=str)[:4000]}\n"
                                     f"{'' if result else audited.stdout[-2000:]}{audited.stderr[-2000:]}")
    say("audit ok: " + ", ".join(f"{k} {result[k]}" for k in ("requests", "decided", "cap_breaches") if k in result)
        + f"; {time.monotonic() - started:.0f}s (worker part {worker_seconds:.0f}s)")
