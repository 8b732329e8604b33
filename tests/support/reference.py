"""An independent reference for what the worker must decide, computed straight from a publish file.

Deliberately written without streams.core.decision: a plain loop over the file with the default policy's
numbers, so a bug in the core cannot hide in the expectation too. Valid for files whose events
fit in one 30-day window and whose requests name orders that exist somewhere in the file.
It follows issue 12's rules too: confirmed incidents (carrier, QoS monitor, system) judged by their
own room and ceiling and never at the household; one remedy of value per incident; WATCH from
claims made against orders placed; the signals (recovery strikes, a lost claim at or after the
delivery scan or before the parcel is overdue, new accounts' never-received claims), an
associate's repeated goodwill for one customer, and associate concentration (one customer's share
of an associate's discretionary grants, judged in file order: the order the associate judges them),
an order's value given back once (refunds plus reshipments), and a first request larger than the
whole 30-day room sent to a person. The linked-accounts scopes (off by default) are not modelled.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAP_30D_CENTS = 25_000
CAP_90D_CENTS = 50_000
CEILING_CENTS = 25_000
KIND_CAP_30D_CENTS = {"CREDIT": 10_000, "REFUND": 25_000, "RESHIP": 25_000, "SHIPPING_UPGRADE": 5_000, "GIFT_WRAP": 2_500}
INCIDENT_CLAIMS_90D = {"LOST_IN_TRANSIT": 3, "STOLEN_AFTER_DELIVERY": 2, "DAMAGED": 4, "LATE_DELIVERY": 6,
                       "WRONG_ITEM": 4, "SLOW_DOWNLOAD": 8, "SERVICE_OUTAGE": 12}
HOUSEHOLD_CLAIMS_90D = 6
HOUSEHOLD_CENTS_30D = 60_000
HOUSEHOLD_INCIDENT_CLAIMS_90D = {"LOST_IN_TRANSIT": 4, "STOLEN_AFTER_DELIVERY": 2, "DAMAGED": 6, "LATE_DELIVERY": 12,
                                 "WRONG_ITEM": 6, "SLOW_DOWNLOAD": 12, "SERVICE_OUTAGE": 24}
ASSOCIATE_CENTS_PER_DAY = 150_000
# Issue 12: evidence, one remedy of value per incident, signals.
CONFIRMING_SOURCES = ("CARRIER", "QOS_MONITOR", "SYSTEM")
CONFIRMED_CEILING_CENTS = 150_000
CONFIRMED_CAP_30D_CENTS = 300_000
VALUE_KINDS = ("REFUND", "RESHIP", "CREDIT")
NON_RECEIPT = ("LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY")
NEW_ACCOUNT_DAYS, NEW_ACCOUNT_ORDERS = 30, 1
LOST_CLAIM_DAYS_AFTER_ORDER_MIN = 7
ASSOCIATE_GOODWILL_REQUESTS_30D = 2
# Associate concentration: a customer's share of an associate's discretionary (not confirmed) grants.
CONCENTRATION_SHARE_MAX_PERCENT = 20
CONCENTRATION_CENTS_MIN = 7_500
CONCENTRATION_GRANTS_MIN = 2
WATCH_CLAIMS_MIN = 3
DAY_MS = 24 * 60 * 60 * 1000
KINDS = ("CREDIT", "REFUND", "RESHIP", "SHIPPING_UPGRADE", "GIFT_WRAP")


def _ms(value: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LimitsWouldBind(AssertionError):
    """The file reaches a household or associate limit, or the WATCH tier, whose outcome depends on
    cross-partition timing; this reference only predicts files that stay clear of them."""


PROACTIVE = {"SLOW_DOWNLOAD": ("QOS_MONITOR", "REFUND", None), "LOST_IN_TRANSIT": ("CARRIER", "RESHIP", None),
             "SERVICE_OUTAGE": ("ANY", "CREDIT", 500)}


def _with_proactive(events, orders, seen):
    """The file's events with the requests the service makes by itself right after their incidents."""
    for e in events:
        yield e
        if e["type"] != "IncidentReported" or (e["customer_id"], e["incident_id"]) in seen:
            continue
        seen.add((e["customer_id"], e["incident_id"]))
        rule = PROACTIVE.get(e["kind"])
        if rule is None or rule[0] not in ("ANY", e["source"]):
            continue
        amount = rule[2] if rule[2] is not None else orders[e["order_id"]]["total_cents"]
        yield {"type": "RemedyRequested", "request_id": f"proactive:{e['incident_id']}:{e['customer_id']}:{rule[1]}",
               "customer_id": e["customer_id"], "order_id": e.get("order_id"), "incident_id": e["incident_id"],
               "kind": rule[1], "amount_cents": amount, "currency": "USD", "requested_by": "system"}


def _unless_proactive_race(request: dict, proactive_customers: dict) -> None:
    """A cap that binds for a customer who also gets a proactive remedy binds in an order that
    depends on which topic the worker reads first (incidents or requests), unless the request names
    the same incident (it then waits for it and comes after the proactive remedy): not predictable here."""
    if request["customer_id"] in proactive_customers and request.get("incident_id") != proactive_customers[request["customer_id"]]:
        raise LimitsWouldBind(f"{request['customer_id']}: a cap binds while a proactive remedy races the requests")


def expected_decisions(path: Path) -> dict[str, tuple[str, int]]:
    """request_id -> (outcome, granted cents), for files within one 30-day window."""
    events = load(path)
    orders = {e["order_id"]: e for e in events if e["type"] == "OrderPlaced"}
    incidents = {e["incident_id"]: e for e in events if e["type"] == "IncidentReported"}
    refunded: dict[str, int] = {}
    reshipped: dict[str, int] = {}
    grants: dict[str, list[tuple[str, int, str | None, str | None]]] = {}  # customer -> (kind, cents, incident, incident kind)
    household: dict[str, dict] = {}
    associate: dict[str, int] = {}
    out: dict[str, tuple[str, int]] = {}
    seen_incidents = set()
    proactive_customers = {e["customer_id"]: e["incident_id"] for e in _with_proactive(events, orders, set())
                           if e["type"] == "RemedyRequested" and e["request_id"].startswith("proactive:")}
    placed: dict[str, list[dict]] = {}  # customer -> orders seen so far (file order is the worker's order)
    delivered: dict[str, int] = {}  # order id -> delivered at (ms)
    lost_grants: dict[str, list[str]] = {}  # order id -> request ids granted for an asserted lost claim
    strikes: dict[str, int] = {}
    new_account_addresses: set = set()  # addresses where a new account's never-received claim was made
    goodwill: dict[tuple[str, str], int] = {}  # (customer, associate) -> goodwill requests seen
    discretionary: dict[str, int] = {}  # associate -> cents of its grants but confirmed incidents' remedies
    favoured: dict[tuple[str, str], tuple[int, set]] = {}  # (associate, customer) -> (those cents, grants: incidents or goodwill request ids)
    for e in _with_proactive(events, orders, seen_incidents):
        if e["type"] == "OrderPlaced":
            placed.setdefault(e["customer_id"], []).append(e)
        if e["type"] == "OrderDelivered" and e["order_id"] not in delivered:
            delivered[e["order_id"]] = _ms(e["delivered_at"])
            if lost_grants.get(e["order_id"]):
                strikes[e["customer_id"]] = strikes.get(e["customer_id"], 0) + 1
        if e["type"] != "RemedyRequested" or e["request_id"] in out:
            continue
        amount, kind, order = e["amount_cents"], e["kind"], orders.get(e.get("order_id"))
        mine = grants.setdefault(e["customer_id"], [])
        incident_id = e.get("incident_id")
        incident = incidents.get(incident_id)
        incident_kind = incident["kind"] if incident else None
        confirmed = incident is not None and incident["source"] in CONFIRMING_SOURCES
        asserted = [g for g in mine if not g[4]]
        claims_of_kind = len({g[2] for g in asserted if g[3] == incident_kind and g[2]})
        # WATCH: customer-asserted incidents reported so far against the orders placed so far; it
        # halves the customer caps and sends the claims (not the system's requests) to a person.
        made = {i for i, inc in incidents.items() if inc["customer_id"] == e["customer_id"]
                and inc["source"] not in CONFIRMING_SOURCES and (e["customer_id"], i) in seen_incidents}
        watch = len(made) >= WATCH_CLAIMS_MIN and len(made) * 100 > len(placed.get(e["customer_id"], [])) * 25
        percent = 50 if watch else 100
        goodwill_key = (e["customer_id"], e["requested_by"])
        is_goodwill = not incident_id and e["requested_by"] not in ("system", "customer")
        by_associate = e["requested_by"] not in ("system", "customer")
        favour = favoured.get((e["requested_by"], e["customer_id"]), (0, set()))
        favour_cents, favour_total = favour[0] + amount, discretionary.get(e["requested_by"], 0) + amount
        favour_grants = favour[1] | {incident_id or e["request_id"]}  # an incident's remedies are one grant
        # The customer's caps (30-day and the kind's): each exceeded one with its cents granted so far.
        over_caps = [used for used, cap in ((sum(g[1] for g in asserted), CAP_30D_CENTS),
                                            (sum(g[1] for g in asserted if g[0] == kind), KIND_CAP_30D_CENTS[kind]))
                     if used + amount > cap * percent // 100]
        too_large = bool(over_caps) and kind in ("REFUND", "RESHIP") and not any(over_caps)
        if e["currency"] != "USD":
            result = ("ESCALATED", 0)
        elif kind in ("REFUND", "RESHIP") and order is None:
            result = ("DENIED", 0)
        elif kind == "RESHIP" and order["digital"]:
            result = ("DENIED", 0)
        elif kind == "REFUND" and refunded.get(order["order_id"], 0) + amount > order["total_cents"]:
            result = ("DENIED", 0)
        elif incident_id and any(g[2] == incident_id and g[0] == kind for g in mine):
            result = ("DENIED", 0)
        elif incident_id and kind in VALUE_KINDS and any(g[2] == incident_id and g[0] in VALUE_KINDS for g in mine):
            result = ("DENIED", 0)  # one remedy of value per incident
        elif confirmed:
            room = sum(g[1] for g in mine if g[4])
            ok = room + amount <= CONFIRMED_CAP_30D_CENTS and amount <= CONFIRMED_CEILING_CENTS
            result = ("GRANTED", amount) if ok else ("ESCALATED", 0)
            if ok and order is not None and kind in ("REFUND", "RESHIP"):
                given = refunded if kind == "REFUND" else reshipped
                given[order["order_id"]] = given.get(order["order_id"], 0) + amount
        elif over_caps and not too_large:
            result = ("DENIED", 0)
            _unless_proactive_race(e, proactive_customers)
        elif (incident_kind and not any(g[2] == incident_id for g in asserted)
              and claims_of_kind + 1 > INCIDENT_CLAIMS_90D[incident_kind]):
            result = ("DENIED", 0)
        elif too_large:
            result = ("ESCALATED", 0)  # a refund or reshipment larger than the whole room: a person looks
            _unless_proactive_race(e, proactive_customers)
        elif (kind in ("REFUND", "RESHIP") and order is not None and refunded.get(order["order_id"], 0)
              + reshipped.get(order["order_id"], 0) + amount > order["total_cents"]):
            result = ("ESCALATED", 0)  # the order's value is given back once
        elif amount > CEILING_CENTS:
            result = ("ESCALATED", 0)
        elif watch and incident_id and e["requested_by"] != "system":
            result = ("ESCALATED", 0)
        elif _signal(e, incident, orders, placed, delivered, strikes, new_account_addresses):
            result = ("ESCALATED", 0)
        elif is_goodwill and goodwill.get(goodwill_key, 0) >= ASSOCIATE_GOODWILL_REQUESTS_30D:
            result = ("ESCALATED", 0)
        elif (by_associate and not confirmed and len(favour_grants) >= CONCENTRATION_GRANTS_MIN
              and favour_cents > CONCENTRATION_CENTS_MIN
              and favour_cents * 100 > CONCENTRATION_SHARE_MAX_PERCENT * favour_total):
            result = ("ESCALATED", 0)  # at the associate scope, after the household took it
            if order is not None:
                _household_fits(household, order, incident_id or e["request_id"], incident_kind, amount)
        else:
            result = ("GRANTED", amount)
            mine.append((kind, amount, incident_id, incident_kind, confirmed))
            if (incident_kind == "LOST_IN_TRANSIT" and kind in ("RESHIP", "REFUND") and not confirmed
                    and order is not None):
                lost_grants.setdefault(order["order_id"], []).append(e["request_id"])
            if kind in ("REFUND", "RESHIP"):
                given = refunded if kind == "REFUND" else reshipped
                given[order["order_id"]] = given.get(order["order_id"], 0) + amount
            associate_goodwill = (e["requested_by"] not in ("system", "customer") and not incident_id
                                  and kind in ("CREDIT", "SHIPPING_UPGRADE", "GIFT_WRAP"))
            if order is not None and not confirmed and not associate_goodwill and not order.get("digital"):
                home = household.setdefault(order["shipping_address_id"], {"claims": set(), "cents": 0, "kinds": {}})
                home["claims"].add(incident_id or e["request_id"])
                home["cents"] += amount
                if incident_kind:
                    home["kinds"].setdefault(incident_kind, set()).add(incident_id)
                if (len(home["claims"]) > HOUSEHOLD_CLAIMS_90D or home["cents"] > HOUSEHOLD_CENTS_30D
                        or any(len(ids) > HOUSEHOLD_INCIDENT_CLAIMS_90D[k] for k, ids in home["kinds"].items())):
                    raise LimitsWouldBind(f"household {order['shipping_address_id']} nears its limits")
            if by_associate:
                associate[e["requested_by"]] = associate.get(e["requested_by"], 0) + amount
                if associate[e["requested_by"]] > ASSOCIATE_CENTS_PER_DAY:
                    raise LimitsWouldBind(f"associate {e['requested_by']} nears the daily budget")
                if not confirmed:
                    discretionary[e["requested_by"]] = favour_total
                    favoured[(e["requested_by"], e["customer_id"])] = (favour_cents, favour_grants)
        if is_goodwill:
            goodwill[goodwill_key] = goodwill.get(goodwill_key, 0) + 1
        out[e["request_id"]] = result
    return out


def _household_fits(household: dict, order: dict, claim: str, incident_kind: str | None, amount: int) -> None:
    """A request refused at its associate passed its household first; this reference predicts it only
    when the household was clear of its limits (else which limit refused it depends on the route)."""
    home = household.get(order["shipping_address_id"], {"claims": set(), "cents": 0, "kinds": {}})
    kinds = home["kinds"].get(incident_kind, set()) | ({claim} if incident_kind else set())
    if (len(home["claims"] | {claim}) > HOUSEHOLD_CLAIMS_90D or home["cents"] + amount > HOUSEHOLD_CENTS_30D
            or (incident_kind and len(kinds) > HOUSEHOLD_INCIDENT_CLAIMS_90D[incident_kind])):
        raise LimitsWouldBind(f"household {order['shipping_address_id']} nears its limits")


def _signal(request: dict, incident: dict | None, orders: dict, placed: dict, delivered: dict, strikes: dict,
            new_account_addresses: set) -> bool:
    """Whether a customer-asserted claim goes to a person: a recovery strike, a lost claim at or after
    the delivery scan or before the parcel is overdue, a new account's never-received claim."""
    if incident is None or request["requested_by"] == "system" or incident["source"] in CONFIRMING_SOURCES:
        return False
    if strikes.get(request["customer_id"]):
        return True
    order = orders.get(request.get("order_id") or incident.get("order_id"))
    reported = _ms(incident["reported_at"])
    if incident["kind"] == "LOST_IN_TRANSIT" and order is not None:
        scan = delivered.get(order["order_id"])
        if scan is not None and scan <= reported:
            return True
        if (scan is None and request["requested_by"] == "customer"
                and (reported - _ms(order["placed_at"])) // DAY_MS < LOST_CLAIM_DAYS_AFTER_ORDER_MIN):
            return True  # self-service only: an associate's early reshipment is their judgement
    mine = placed.get(request["customer_id"], [])
    if incident["kind"] in NON_RECEIPT and mine:
        first = min(_ms(o["placed_at"]) for o in mine)
        if (_ms(request["requested_at"]) - first) // DAY_MS < NEW_ACCOUNT_DAYS and len(mine) <= NEW_ACCOUNT_ORDERS:
            # One new account's claim is trusted; the address counts them, and which of two claims
            # at one address comes first is the household's order, not this model's.
            address = order["shipping_address_id"] if order is not None else None
            if address in new_account_addresses:
                raise LimitsWouldBind(f"household {address}: a second new account's never-received claim")
            new_account_addresses.add(address)
    return False


def expected_totals(path: Path) -> dict:
    """The by_kind / by_outcome part of `finance totals --json` the file must produce."""
    events = load(path)
    orders = {e["order_id"]: e for e in events if e["type"] == "OrderPlaced"}
    requests = {e["request_id"]: e for e in _with_proactive(events, orders, set()) if e["type"] == "RemedyRequested"}
    by_kind = {kind: {"count": 0, "cents": {}} for kind in KINDS}
    by_outcome = {"GRANTED": 0, "DENIED": 0, "ESCALATED": 0}
    for request_id, (outcome, cents) in expected_decisions(path).items():
        by_outcome[outcome] += 1
        if outcome == "GRANTED":
            request = requests[request_id]
            by_kind[request["kind"]]["count"] += 1
            granted = by_kind[request["kind"]]["cents"]  # cents per currency, never added across currencies
            granted[request["currency"]] = granted.get(request["currency"], 0) + cents
    return {"by_kind": by_kind, "by_outcome": by_outcome}


def write_workload(path: Path, customers: int, seed: int) -> Path:
    """A reproducible file of orders and requests within one day, several requests per customer."""
    rng = random.Random(seed)
    lines = []
    for n in range(customers):
        customer = f"c{seed}-{n}"
        orders = []
        for k in range(rng.randint(1, 2)):
            total = rng.randint(500, 20_000)
            order = {"type": "OrderPlaced", "event_id": f"eo-{customer}-{k}", "order_id": f"o-{customer}-{k}",
                     "customer_id": customer, "placed_at": f"2026-11-21T08:{k:02d}:00Z", "total_cents": total,
                     "currency": "USD", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": total}],
                     "shipping_address_id": f"a-{n}", "digital": rng.random() < 0.2}
            orders.append(order)
            lines.append(order)
        for r in range(rng.randint(1, 4)):
            order = rng.choice(orders)
            kind = rng.choice(KINDS)
            lines.append({"type": "RemedyRequested", "event_id": f"er-{customer}-{r}", "request_id": f"r-{customer}-{r}",
                          "customer_id": customer, "order_id": order["order_id"] if kind != "CREDIT" else None,
                          "incident_id": None, "kind": kind, "amount_cents": rng.randint(100, 16_000),
                          "currency": "USD", "requested_by": f"assoc-{n % 100}" if kind == "CREDIT" else "customer",
                          "requested_at": f"2026-11-21T09:{r:02d}:{n % 60:02d}Z", "reason": "test"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
