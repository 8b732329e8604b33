"""The stories Remedy Ledger exists for, end to end on the real broker and a real worker."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

from tests.integration.conftest import Deployment

DAY = "2026-11-21"
BUDGET_CENTS = 150_000  # the default associate_cents_max_per_day
HOUSEHOLD_THEFTS = 2  # the default household_incident_claims_max_90d for STOLEN_AFTER_DELIVERY


def at(minute: int) -> str:
    return f"{DAY}T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"


def order(order_id, customer, total, address, digital=False, minute=0):
    return {"type": "OrderPlaced", "event_id": f"e-{order_id}", "order_id": order_id, "customer_id": customer,
            "placed_at": at(minute), "total_cents": total, "currency": "USD",
            "items": [{"sku": f"sku-{order_id}", "quantity": 1, "unit_price_cents": total}],
            "shipping_address_id": address, "digital": digital}


def incident(incident_id, customer, kind, source, order_id=None, minute=1):
    return {"type": "IncidentReported", "event_id": f"e-{incident_id}-{customer}", "incident_id": incident_id,
            "customer_id": customer, "order_id": order_id, "kind": kind, "source": source, "reported_at": at(minute),
            "description": None}


def request(request_id, customer, kind, amount, by, order_id=None, incident_id=None, minute=2, reason="story"):
    return {"type": "RemedyRequested", "event_id": f"e-request-{request_id}", "request_id": request_id, "customer_id": customer,
            "order_id": order_id, "incident_id": incident_id, "kind": kind, "amount_cents": amount, "currency": "USD",
            "requested_by": by, "requested_at": at(minute), "reason": reason}


def earlier_order(customer: str) -> dict:
    """An order weeks before the stories' day, elsewhere: a ring account that is no new account, so
    its household's theft cap is what stops it (fresh accounts claiming one after another at one
    address go to a person instead: NEW_ACCOUNT_NON_RECEIPT_CLAIM)."""
    return {**order(f"earlier-{customer}", customer, 2_000, f"earlier-{customer}"), "placed_at": "2026-10-01T10:00:00Z"}


def stories() -> list[dict]:
    events = []
    # Two Christmas gifts lost in transit: replacements go out at once, gift-wrapped, each to its recipient.
    events += [order("gift-1", "gifter", 3_500, "recipient-ann"), order("gift-2", "gifter", 4_200, "recipient-bob")]
    for n in (1, 2):
        events.append(incident(f"lost-{n}", "gifter", "LOST_IN_TRANSIT", "CARRIER", f"gift-{n}"))
        events.append(request(f"wrap-{n}", "gifter", "GIFT_WRAP", 499, "assoc-joy", f"gift-{n}", f"lost-{n}", minute=3))
    # A porch theft, not our fault: a free express replacement anyway.
    # The victim is a new customer (this is their first order): one new account's theft is trusted.
    events += [order("porch", "porch-victim", 6_000, "victim-home"),
               incident("theft-1", "porch-victim", "STOLEN_AFTER_DELIVERY", "CUSTOMER", "porch"),
               request("theft-reship", "porch-victim", "RESHIP", 6_000, "assoc-max", "porch", "theft-1"),
               request("theft-express", "porch-victim", "SHIPPING_UPGRADE", 1_299, "assoc-max", "porch", "theft-1")]
    # An associate adds a $10 credit because the moment calls for it.
    events.append(request("goodwill", "moment", "CREDIT", 1_000, "assoc-sam"))
    # A video rental refunded before the customer complains: the download was too slow.
    events += [order("rental", "viewer", 399, "viewer-home", digital=True),
               incident("slow-1", "viewer", "SLOW_DOWNLOAD", "QOS_MONITOR", "rental")]
    # An outage: every affected customer credited once, before they call ("fan-2" named twice).
    for customer in ("fan-1", "fan-2", "fan-3", "fan-2"):
        events.append(incident("outage-7", customer, "SERVICE_OUTAGE", "SYSTEM"))
    # A serial claimer, stopped after the cap.
    for n in range(6):
        events.append(incident(f"dmg-{n}", "serial", "DAMAGED", "CUSTOMER", minute=n))
        events.append(request(f"serial-{n}", "serial", "CREDIT", 6_000, "customer", incident_id=f"dmg-{n}", minute=n + 1))
    # Five accounts at one address claiming thefts, stopped by the household cap.
    for account in range(5):
        customer = f"ring-{account}"
        events.append(earlier_order(customer))
        for n in range(2):
            events.append(order(f"ring-{account}-{n}", customer, 3_000, "porch-pirates", minute=n))
            events.append(incident(f"ring-theft-{account}-{n}", customer, "STOLEN_AFTER_DELIVERY", "CUSTOMER",
                                   f"ring-{account}-{n}", minute=n + 1))
            events.append(request(f"ring-{account}-{n}", customer, "RESHIP", 3_000, "customer", f"ring-{account}-{n}",
                                  f"ring-theft-{account}-{n}", minute=n + 2))
    # An associate and a friend: a few small credits for others, then two credits for the friend,
    # each under the friend's $100 credit room and the repeated-goodwill signal; the second would
    # give the friend most of the associate's goodwill this month: a second person looks.
    for n in range(3):
        events.append(request(f"pal-other-{n}", f"pal-caller-{n}", "CREDIT", 1_500, "assoc-pal", minute=n))
    events.append(request("pal-1", "pal", "CREDIT", 4_000, "assoc-pal", minute=10))
    events.append(request("pal-2", "pal", "CREDIT", 4_500, "assoc-pal", minute=20))
    # A busy associate helps thirty callers, one of them twice: a small share of its goodwill.
    for n in range(30):
        events.append(request(f"busy-{n}", f"busy-caller-{n}", "CREDIT", 1_500, "assoc-busy", minute=n))
    events.append(request("busy-again-1", "busy-again", "CREDIT", 4_000, "assoc-busy", minute=40))
    events.append(request("busy-again-2", "busy-again", "CREDIT", 4_500, "assoc-busy", minute=50))
    # An over-generous associate: past the daily budget, requests go to a second person.
    for n in range(BUDGET_CENTS // 9_000 + 3):
        events.append(request(f"generous-{n}", f"lucky-{n}", "CREDIT", 9_000, "assoc-generous", minute=n))
    return events


def current(decisions: list[dict]) -> dict[str, dict]:
    superseded = {d["supersedes_decision_id"] for d in decisions if d["supersedes_decision_id"]}
    return {d["request_id"]: d for d in decisions if d["decision_id"] not in superseded}


def publish(deployment: Deployment, path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    deployment.cli("publish", str(path))
    deployment.cli("wait", "--file", str(path), "--timeout", "240")
    asked = {e["request_id"] for e in events if e["type"] == "RemedyRequested"}
    deployment.wait_for("every request decided", lambda: asked <= set(current(deployment.decisions())))


def test_the_stories(deployment, tmp_path):
    deployment.start_worker()
    publish(deployment, tmp_path / "stories.jsonl", stories())
    decided = current(deployment.decisions())

    def outcome(request_id):
        d = decided[request_id]
        return d["outcome"], d["granted_cents"], d["reason_codes"]

    # Two gifts: two proactive reshipments plus free gift wrap, each to its own recipient.
    reships = [decided[f"proactive:lost-{n}:gifter:RESHIP"] for n in (1, 2)]
    assert [(d["outcome"], d["granted_cents"], d["household_id"]) for d in reships] == [
        ("GRANTED", 3_500, "recipient-ann"), ("GRANTED", 4_200, "recipient-bob")]
    assert [(decided[f"wrap-{n}"]["outcome"], decided[f"wrap-{n}"]["household_id"]) for n in (1, 2)] == [
        ("GRANTED", "recipient-ann"), ("GRANTED", "recipient-bob")]
    # The porch theft: free express replacement.
    assert outcome("theft-reship")[:2] == ("GRANTED", 6_000)
    assert outcome("theft-express")[:2] == ("GRANTED", 1_299)
    # The associate's $10.
    assert outcome("goodwill") == ("GRANTED", 1_000, ["WITHIN_LIMITS"])
    assert decided["goodwill"]["origin"] == "ASSOCIATE"
    # The slow download, refunded proactively.
    refund = decided["proactive:slow-1:viewer:REFUND"]
    assert (refund["outcome"], refund["granted_cents"], refund["origin"]) == ("GRANTED", 399, "PROACTIVE")
    # The outage: each affected customer credited once.
    outage = sorted(d["customer_id"] for d in decided.values() if d["incident_id"] == "outage-7")
    assert outage == ["fan-1", "fan-2", "fan-3"]
    assert all(decided[f"proactive:outage-7:{c}:CREDIT"]["granted_cents"] == 500 for c in outage)
    # The serial claimer: stopped once the CREDIT cap is used.
    serial = [outcome(f"serial-{n}") for n in range(6)]
    assert sum(granted for _, granted, _ in serial) <= 10_000
    assert serial[0][0] == "GRANTED" and all(o == "DENIED" for o, _, _ in serial[1:])
    assert {reason for _, _, reasons in serial[1:] for reason in reasons} <= {
        "CUSTOMER_KIND_30D_CAP_EXCEEDED", "CUSTOMER_30D_CAP_EXCEEDED"}
    # The household ring: at most two thefts remedied at that address, the rest denied there.
    ring = Counter(decided[f"ring-{a}-{n}"]["outcome"] for a in range(5) for n in range(2))
    assert ring == Counter({"GRANTED": HOUSEHOLD_THEFTS, "DENIED": 10 - HOUSEHOLD_THEFTS})
    denied_ring = [decided[f"ring-{a}-{n}"] for a in range(5) for n in range(2) if decided[f"ring-{a}-{n}"]["outcome"] == "DENIED"]
    assert all(d["reason_codes"] == ["HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"] for d in denied_ring)
    # The over-generous associate: escalated past the daily budget.
    generous = [decided[f"generous-{n}"] for n in range(BUDGET_CENTS // 9_000 + 3)]
    assert sum(d["granted_cents"] for d in generous) <= BUDGET_CENTS
    assert Counter(d["outcome"] for d in generous) == Counter({"GRANTED": BUDGET_CENTS // 9_000, "ESCALATED": 3})
    assert all(d["reason_codes"] == ["ASSOCIATE_DAILY_BUDGET_EXCEEDED"] for d in generous if d["outcome"] == "ESCALATED")
    # The associate's friend: the second credit goes to a second person, with the figures.
    assert outcome("pal-1") == ("GRANTED", 4_000, ["WITHIN_LIMITS"])
    assert outcome("pal-2") == ("ESCALATED", 0, ["ASSOCIATE_CUSTOMER_CONCENTRATION"])
    figures = decided["pal-2"]["inputs"]
    assert (figures["associate_customer_granted_cents_30d"], figures["associate_discretionary_granted_cents_30d"],
            figures["associate_customer_share_percent_30d"]) == (4_000, 8_500, 8_500 * 100 // 13_000)
    # The busy associate's caller who rang twice: granted both times.
    assert [outcome(f"busy-again-{n}")[0] for n in (1, 2)] == ["GRANTED", "GRANTED"]
    assert all(outcome(f"busy-{n}")[0] == "GRANTED" for n in range(30))

    # A person reviews one escalation: the approval supersedes it and reaches the finance totals.
    escalated = next(d for d in generous if d["outcome"] == "ESCALATED")
    listed = json.loads(deployment.cli("review", "list", "--json").stdout)
    assert escalated["request_id"] in {row["request_id"] for row in listed}
    deployment.cli("wait", "--decisions", "0", "--timeout", "120")  # reviews look the decision up in the projection
    before = deployment.totals()
    own = deployment.cli("review", "approve", escalated["request_id"], "--by", escalated["requested_by"], check=False)
    assert own.returncode == 1 and "SELF_APPROVAL" in own.stderr and "may not approve it" in own.stderr
    deployment.cli("review", "approve", escalated["request_id"], "--by", "assoc-lead", "--note", "loyal customer")
    deployment.wait_for("the review's decision", lambda: current(deployment.decisions())[escalated["request_id"]]["outcome"] == "GRANTED")
    deployment.cli("wait", "--decisions", "0", "--timeout", "120")
    after = deployment.totals()
    currency = escalated["currency"]
    assert after["by_kind"]["CREDIT"]["cents"] == {
        **before["by_kind"]["CREDIT"]["cents"], currency: before["by_kind"]["CREDIT"]["cents"].get(currency, 0) + 9_000}
    assert escalated["request_id"] not in {row["request_id"] for row in json.loads(deployment.cli("review", "list", "--json").stdout)}

    # The limits hold after a crash: SIGKILL, restart, and the next claims are still stopped.
    deployment.stop_worker(signal.SIGKILL)
    deployment.start_worker()
    more = [earlier_order("ring-new"), order("ring-late", "ring-new", 3_000, "porch-pirates"),
            incident("ring-theft-late", "ring-new", "STOLEN_AFTER_DELIVERY", "CUSTOMER", "ring-late"),
            request("ring-late", "ring-new", "RESHIP", 3_000, "customer", "ring-late", "ring-theft-late", minute=30),
            request("serial-late", "serial", "CREDIT", 6_000, "customer", minute=40),
            request("generous-late", "lucky-late", "CREDIT", 9_000, "assoc-generous", minute=50)]
    publish(deployment, tmp_path / "more.jsonl", more)
    decided = current(deployment.decisions())
    assert outcome("ring-late") == ("DENIED", 0, ["HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED"])
    assert outcome("serial-late")[0] == "DENIED"
    assert outcome("generous-late") == ("ESCALATED", 0, ["ASSOCIATE_DAILY_BUDGET_EXCEEDED"])


def owns_partitions(agents: dict, roles: list[str]) -> bool:
    """True once each of the worker's agents owns at least one partition."""
    return sorted(agents) == sorted(roles) and all(agent["partitions"] for agent in agents.values())


def test_two_workers_sharing_the_load_never_exceed_a_cap(deployment, tmp_path):
    # Same topics and consumer group, its own data directory and web port.
    second = Deployment(tmp_path / "second", REMEDY_TOPIC_PREFIX=deployment.env["REMEDY_TOPIC_PREFIX"])
    events = []
    for household in range(4):  # four rings of eight accounts, spread over every partition
        for account in range(8):
            customer = f"ring{household}-{account}"
            events.append(earlier_order(customer))
            events.append(order(f"o-{customer}", customer, 2_500, f"home-{household}"))
            events.append(incident(f"t-{customer}", customer, "STOLEN_AFTER_DELIVERY", "CUSTOMER", f"o-{customer}"))
            events.append(request(f"r-{customer}", customer, "RESHIP", 2_500, "customer", f"o-{customer}", f"t-{customer}"))
    for n in range(40):  # two associates each asked for far more than a day's budget
        events.append(request(f"a-{n}", f"guest-{n}", "CREDIT", 9_000, f"assoc-{n % 2}", minute=n))
    path = tmp_path / "load.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    deployment.start_worker()
    try:
        # With embedded chDB only one worker projects; the second shares decide and limits.
        second.start_worker("--roles", "decide,limits")
        for worker, roles in ((deployment, ["decide", "limits", "project"]), (second, ["decide", "limits"])):
            worker.wait_for("the worker to own partitions for every agent",
                            lambda: owns_partitions(worker.get("/health")["agents"], roles), timeout_s=120)
        deployment.cli("publish", str(path))
        expected = 4 * 8 + 40
        deployment.wait_for("every request decided", lambda: len(current(deployment.decisions())) >= expected)
        # Both really took part: each decided events on its own partitions.
        assert all(worker.get("/health")["agents"]["decide"]["events"] > 0 for worker in (deployment, second))
    finally:
        second.stop_worker()
    decided = current(deployment.decisions())
    for household in range(4):
        granted = [d for d in decided.values() if d["household_id"] == f"home-{household}" and d["outcome"] == "GRANTED"]
        assert len(granted) == HOUSEHOLD_THEFTS
    for associate in ("assoc-0", "assoc-1"):
        total = sum(d["granted_cents"] for d in decided.values() if d["requested_by"] == associate)
        assert total == (BUDGET_CENTS // 9_000) * 9_000
