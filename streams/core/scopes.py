"""Household, linked-accounts and associate limits: the scopes a request passes after the customer (pure).

Each scope key ("household:<shipping_address_id>", "linked:<payment_instrument|device|building>:<id>",
"associate:<id>") has a single writer: the
partition of the limit-checks topic that owns the key. A RESERVE either takes room and moves on
to the next scope (or answers PASSED to the customer when it was the last), or answers FAILED to
the customer and RELEASEs the scopes reserved before it. Every message is idempotent: a
redelivered RESERVE gets the same answer, a redelivered RELEASE changes nothing.
"""

from __future__ import annotations

from typing import Any

from streams.core.ordering import order_key
from streams.core.decision import (
    ASSOCIATE_CUSTOMER_CONCENTRATION,
    ASSOCIATE_DAILY_BUDGET_EXCEEDED,
    DENIED,
    ESCALATED,
    GRANTED,
    HOUSEHOLD_30D_CAP_EXCEEDED,
    HOUSEHOLD_CLAIMS_EXCEEDED,
    HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED,
    INCIDENT_CONFIRMED_INPUT,
    LINKED_LIMIT_REASONS,
    NEW_ACCOUNT_CLAIM_INPUT,
    NEW_ACCOUNT_NON_RECEIPT_CLAIM,
)
from streams.core.policy import DAY_MS, LINK_KINDS, Policy
from streams.core.privacy import erased_id

ScopeState = dict[str, Any]
Check = dict[str, Any]


def scope_levels(policy: Policy) -> tuple[str, ...]:
    """The scopes' levels in route order (streams/core/ordering.py): household, the linked scopes
    when the policy uses them (one level per link kind, as `decision.linked_scopes` routes them),
    associate."""
    linked = tuple(f"linked:{kind}" for kind in LINK_KINDS) if policy.linked_accounts_scope_enabled else ()
    return ("household", *linked, "associate")


def empty_scope_state() -> ScopeState:
    """A scope key nothing was reserved at yet."""
    # reservations: request_id -> [at_ms, cents, incident_id, incident_kind, new_account_claim (0/1)]
    #   (an associate's add discretionary (0/1), counted in its concentration totals below, and the
    #   grants it counted there (0/1: a second remedy for one incident is no second grant))
    # answers: request_id -> [at_ms, reason or None, inputs]: enough to send the same checks again
    #   for a redelivered RESERVE (states written before this form hold the checks sent instead).
    # An associate also keeps (added when first judged; see `_with_concentration`):
    # days: UTC day -> granted cents; discretionary_days: UTC day -> discretionary granted cents;
    # customer_days: customer_id -> {UTC day -> [discretionary cents, grants]}.
    return {"reservations": {}, "answers": {}, "released": {}}


def handle_check(state: ScopeState, check: Check, policy: Policy) -> tuple[ScopeState, list[Check]]:
    """Apply one RESERVE, RELEASE or SETTLE at this scope; returns the new state and the checks to send.

    A household that passed a request on to its associate does not know yet whether that room is
    taken for good (the associate may refuse and RELEASE it), so it judges the household's next
    requests only once the associate answered (SETTLE or RELEASE): they wait in `waiting`, in
    order (`order_key`). So every household judges on settled room, whatever the timing.
    """
    request_id = check["request_id"]
    action = check["action"]
    if action == "FORGET":
        return forget(state, check), []
    if action in ("SETTLE", "RELEASE") and state.get("unsettled") == request_id:
        state = {**state, "unsettled": None, "unsettled_key": None}
        if action == "SETTLE":
            return _judge_waiting(state, policy)
        state, released = handle_check(state, check, policy)
        state, out = _judge_waiting(state, policy)
        return state, released + out
    if action == "SETTLE":
        return state, []  # a repeat, or for a request this scope never passed on
    if action == "RELEASE":
        if request_id not in state["reservations"]:
            return state, []
        state = _with_days(state, check["scope"])
        entry = state["reservations"][request_id]
        reservations = {rid: r for rid, r in state["reservations"].items() if rid != request_id}
        released = {**state["released"], request_id: check["at"]}
        state = {**state, "reservations": reservations, "released": released}
        if "days" in state:
            state = {**state, "days": _added(state["days"], entry[0], -entry[1])}
        if len(entry) > 6 and entry[5]:
            state = _with_concentration(state)
            state = _concentration_added(state, check["customer_id"], entry[0], -entry[1], -entry[6])
        return _bounded(state, policy, check["scope"]), []
    if action != "RESERVE":
        raise ValueError(f"handle_check: unexpected action {action!r} at a scope")
    answer = state["answers"].get(request_id)
    if answer is not None:
        if isinstance(answer[0], dict):
            return state, answer  # the checks themselves, as states written before compact answers hold them
        return state, _answer(check, answer[1], _sequenced(check, _loaded_inputs(answer[2]),
                                                           answer[3] if len(answer) > 3 else None))
    if request_id in state["released"]:
        return state, []  # Reserved, failed later and released: a stale redelivery.
    late = False
    if state.get("unsettled") is not None:
        unsettled_key = tuple(state.get("unsettled_key") or ())
        late = bool(unsettled_key) and order_key(check) < unsettled_key
        if not late:
            waiting = state.get("waiting", [])
            if any(w["request_id"] == request_id for w in waiting):
                return state, []
            return {**state, "waiting": sorted(waiting + [check], key=order_key)}, []
        # A check that came late (its partition broke its watermark after idling) goes on first
        # come, first served: judged now, on the room the unsettled reservation leaves, and never
        # waited for; waiting would let it and the request it waits behind hold each other back.
    state = _with_days(state, check["scope"])
    if check["scope"] == "associate":
        state = _with_concentration(state)
    if check["at"] <= _forgotten_before_ms(state, policy, check["scope"]):
        # The scope no longer remembers that period (a catch-up can bring a check dated long
        # before the newest one here): room cannot be proven, so it is never auto-granted.
        reason, inputs = _forgotten_verdict(check, policy)
    else:
        reason, inputs = _verdict(state, check, policy)
    # Who takes the last room at a scope is first come, first served across partitions: the
    # decision records the order in which this scope judged its requests.
    sequence = state.get("judged", 0) + 1
    state = {**state, "judged": sequence}
    if reason is None:
        entry = [check["at"], check["amount_cents"], check["incident_id"], check.get("incident_kind"),
                 int(bool(check["inputs"].get(NEW_ACCOUNT_CLAIM_INPUT)))]
        counted = check["scope"] == "associate" and _discretionary(check)
        grants = int(counted and _new_favour(state, check))
        if check["scope"] == "associate":
            entry += [int(counted), grants]
        state = {**state, "reservations": {**state["reservations"], request_id: entry}}
        if "days" in state:
            state = {**state, "days": _added(state["days"], check["at"], check["amount_cents"])}
        if counted:
            state = _concentration_added(state, check["customer_id"], check["at"], check["amount_cents"], grants)
    state = {**state, "answers": {**state["answers"], request_id: [check["at"], reason, _stored_inputs(inputs), sequence]}}
    if reason is None and check["route"] and not late:
        # Until the next scope answers; its order key bounds what the waiting checks can promise.
        state = {**state, "unsettled": request_id, "unsettled_key": list(order_key(check))}
    return _bounded(state, policy, check["scope"]), _answer(check, reason, _sequenced(check, inputs, sequence))


def forget(state: ScopeState, check: Check) -> ScopeState:
    """An erased customer's request renamed here: every occurrence of the customer id in its request
    id and incident id becomes the pseudonym (`privacy.erased_id`). The entries stay, so the scope's
    room and distinct claims are counted as before; a repeat changes nothing."""
    customer_id, customer_pseudonym = check["customer_id"], check["pseudonym"]
    old = check["request_id"]
    new = erased_id(old, customer_id, customer_pseudonym)

    def renamed(entries: dict, rename_entry=lambda entry: entry) -> dict:
        return {(new if request_id == old else request_id): (rename_entry(entry) if request_id == old else entry)
                for request_id, entry in entries.items()}

    def reservation(entry: list) -> list:
        # [at_ms, cents, incident_id, incident_kind]
        return [entry[0], entry[1], erased_id(entry[2], customer_id, customer_pseudonym), *entry[3:]]

    state = {**state, "reservations": renamed(state["reservations"], reservation),
             "answers": renamed(state["answers"]), "released": renamed(state["released"])}
    if customer_id in state.get("customer_days", {}):
        # An associate's 30-day totals per customer: kept under the pseudonym, still counted.
        customer_days = dict(state["customer_days"])
        mine = customer_days.pop(customer_id)
        earlier = customer_days.get(customer_pseudonym, {})
        for day, (cents, grants) in mine.items():
            before = earlier.get(day, [0, 0])
            earlier = {**earlier, day: [before[0] + cents, before[1] + grants]}
        state = {**state, "customer_days": {**customer_days, customer_pseudonym: earlier}}
    if state.get("unsettled") == old:
        state = {**state, "unsettled": new}
    return state


def _judge_waiting(state: ScopeState, policy: Policy) -> tuple[ScopeState, list[Check]]:
    """Judge the requests that waited for the household's room to settle, in order, until one is passed on again."""
    out: list[Check] = []
    while state.get("waiting") and state.get("unsettled") is None:
        head, rest = state["waiting"][0], state["waiting"][1:]
        state, more = handle_check({**state, "waiting": rest}, head, policy)
        out.extend(more)
    return state, out


def waiting_order_key(state: ScopeState) -> tuple | None:
    """The smallest order key a waiting check can be passed on with later (None: none can bound it).

    A check waiting behind the one passed on has a larger key, unless it came late (a partition
    that was idle sent it below a frontier already passed); such a check goes on first come, first
    served and bounds nothing, or the associate could never answer the one it waits behind.
    """
    unsettled = tuple(state.get("unsettled_key") or ())
    keys = [order_key(check) for check in state.get("waiting", [])]
    later = [key for key in keys if key > unsettled]
    return min(later) if later else None


# The inputs an associate answers with, in the order it builds them: an answer keeps their values
# only (a list), so a busy associate's answers of a day and the lateness stay far below a Kafka
# message (the names alone would triple them).
ASSOCIATE_ANSWER_KEYS = (
    "associate_granted_cents_day", "associate_cap_cents_day",
    "associate_customer_granted_cents_30d", "associate_customer_grants_30d",
    "associate_discretionary_granted_cents_30d", "associate_customer_share_percent_30d",
    "associate_concentration_share_max_percent_30d", "associate_concentration_cents_min_30d",
    "associate_concentration_grants_min_30d",
)


def _stored_inputs(inputs: dict) -> dict | list:
    """The inputs as an answer keeps them: the values alone when they are an associate's (in order)."""
    keys = tuple(inputs)
    if keys and keys == ASSOCIATE_ANSWER_KEYS[: len(keys)]:
        return list(inputs.values())
    return inputs


def _loaded_inputs(stored: dict | list) -> dict:
    """The inputs an answer kept (`_stored_inputs`), as they were answered."""
    if isinstance(stored, list):
        return dict(zip(ASSOCIATE_ANSWER_KEYS, stored))
    return stored


def _sequenced(check: Check, inputs: dict, sequence: int | None) -> dict:
    """The inputs a scope answers with, plus the order in which it judged this request (if known)."""
    if sequence is None:
        return inputs
    return {**inputs, f"{check['scope']}_judged_sequence": sequence}


def _answer(check: Check, reason: str | None, inputs: dict) -> list[Check]:
    """What a RESERVE sends for its verdict: the next scope's RESERVE or PASSED when it fits here,
    else FAILED to the customer and a RELEASE to every scope reserved before (deterministic, so a
    redelivered RESERVE sends the same)."""
    request_id = check["request_id"]
    if reason is None:
        if check["route"]:
            here = f"{check['scope']}:{check['scope_key']}"
            nxt, _, key = check["route"][0].partition(":")
            return [{**check, "event_id": f"{request_id}/RESERVE/{check['route'][0]}", "scope": nxt, "scope_key": key,
                     "route": check["route"][1:], "reserved": check["reserved"] + [here],
                     "inputs": {**check["inputs"], **inputs}}]
        # The last scope had room: the customer is answered, and every scope before it learns
        # that its reservation stands (it judges its next requests only now).
        settles = []
        for earlier in check["reserved"]:
            scope, _, key = earlier.partition(":")
            settles.append({**check, "event_id": f"{request_id}/SETTLE/{earlier}", "action": "SETTLE",
                            "scope": scope, "scope_key": key, "route": [], "reserved": []})
        return [_result(check, True, GRANTED, [], inputs)] + settles
    outcome = ESCALATED if reason in ESCALATING_SCOPE_REASONS else DENIED
    out = [_result(check, False, outcome, [reason], inputs)]
    for earlier in check["reserved"]:
        scope, _, key = earlier.partition(":")
        out.append({**check, "event_id": f"{request_id}/RELEASE/{earlier}", "action": "RELEASE",
                    "scope": scope, "scope_key": key, "route": [], "reserved": []})
    return out


# What a scope refuses by sending the request to a person rather than denying it.
ESCALATING_SCOPE_REASONS = frozenset({ASSOCIATE_DAILY_BUDGET_EXCEEDED, NEW_ACCOUNT_NON_RECEIPT_CLAIM,
                                      ASSOCIATE_CUSTOMER_CONCENTRATION})


def _new_account_verdict(state: ScopeState, check: Check, policy: Policy, inputs: dict) -> str | None:
    """A new account's never-received claim at an address or link: NEW_ACCOUNT_NON_RECEIPT_CLAIM
    once shared_new_account_claims_max_90d of them were remedied there in 90 days, else None.
    Counted only for marked checks (decision.claim_signal); the count goes into the inputs."""
    if not check["inputs"].get(NEW_ACCOUNT_CLAIM_INPUT):
        return None
    floor_90d = check["at"] - policy.long_window_ms
    fresh = {r[2] or rid for rid, r in state["reservations"].items() if r[0] > floor_90d and len(r) > 4 and r[4]}
    inputs[f"{check['scope']}_new_account_claims_90d"] = len(fresh)
    inputs["shared_new_account_claims_max_90d"] = policy.shared_new_account_claims_max_90d
    if (check["incident_id"] or check["request_id"]) not in fresh and len(fresh) + 1 > policy.shared_new_account_claims_max_90d:
        return NEW_ACCOUNT_NON_RECEIPT_CLAIM
    return None


def _verdict(state: ScopeState, check: Check, policy: Policy) -> tuple[str | None, dict]:
    reason, inputs = _scope_verdict(state, check, policy)
    if reason is None and check["scope"] in ("household", "linked"):
        reason = _new_account_verdict(state, check, policy, inputs)
    return reason, inputs


def _scope_verdict(state: ScopeState, check: Check, policy: Policy) -> tuple[str | None, dict]:
    at, amount = check["at"], check["amount_cents"]
    taken = state["reservations"].values()
    if check["scope"] == "household":
        floor_90d, floor_30d = at - policy.long_window_ms, at - policy.customer_window_ms
        incidents = {r[2] or rid for rid, r in state["reservations"].items() if r[0] > floor_90d}
        claims = len(incidents)
        cents = sum(r[1] for r in taken if r[0] > floor_30d)
        inputs = {"household_claims_90d": claims, "household_claims_max_90d": policy.household_claims_max_90d,
                  "household_granted_cents_30d": cents, "household_cap_cents_30d": policy.household_cents_max_30d}
        new_claim = (check["incident_id"] or check["request_id"]) not in incidents
        if new_claim and claims + 1 > policy.household_claims_max_90d:
            return HOUSEHOLD_CLAIMS_EXCEEDED, inputs
        kind = check.get("incident_kind")
        if kind is not None:
            same_kind = {r[2] for r in state["reservations"].values() if r[0] > floor_90d and len(r) > 3 and r[3] == kind}
            inputs["household_incident_claims_90d"] = len(same_kind)
            inputs["household_incident_claims_max_90d"] = policy.household_incident_claims_max_90d[kind]
            if check["incident_id"] not in same_kind and len(same_kind) + 1 > policy.household_incident_claims_max_90d[kind]:
                return HOUSEHOLD_INCIDENT_CLAIMS_EXCEEDED, inputs
        if cents + amount > policy.household_cents_max_30d:
            return HOUSEHOLD_30D_CAP_EXCEEDED, inputs
        return None, inputs
    if check["scope"] == "linked":
        return _linked_verdict(state, check, policy)
    if check["scope"] == "associate":
        day = at // DAY_MS
        if "days" in state:
            cents = state["days"].get(str(day), 0)
        else:
            cents = sum(r[1] for r in taken if r[0] // DAY_MS == day)
        inputs = {"associate_granted_cents_day": cents, "associate_cap_cents_day": policy.associate_cents_max_per_day}
        if cents + amount > policy.associate_cents_max_per_day:
            return ASSOCIATE_DAILY_BUDGET_EXCEEDED, inputs
        if _discretionary(check):
            return _concentration_verdict(state, check, policy, inputs)
        return None, inputs
    raise ValueError(f"unknown scope {check['scope']!r}")


def _discretionary(check: Check) -> bool:
    """Whether an associate's request counts among its discretionary grants: everything it asks for
    but the remedy of a confirmed incident (a carrier's loss, a slow download the monitor saw)."""
    return not check["inputs"].get(INCIDENT_CONFIRMED_INPUT)


def _new_favour(state: ScopeState, check: Check) -> bool:
    """Whether a discretionary request is a new grant for the concentration count: goodwill always;
    a remedy for an incident only if the associate holds no discretionary remedy for that incident
    yet (a reshipment and its express upgrade for one theft are one grant)."""
    incident_id = check["incident_id"]
    return incident_id is None or not any(r[2] == incident_id and len(r) > 5 and r[5]
                                          for r in state["reservations"].values())


def _concentration_verdict(state: ScopeState, check: Check, policy: Policy, inputs: dict) -> tuple[str | None, dict]:
    """Associate concentration: ASSOCIATE_CUSTOMER_CONCENTRATION when, with this request, the
    customer would hold more than associate_concentration_share_max_percent_30d of the associate's
    discretionary cents in the 30 UTC days up to the request's day, more than
    associate_concentration_cents_min_30d of them and at least associate_concentration_grants_min_30d
    of its grants (an incident's remedies count as one grant); else None. The figures go into the inputs (cents and grants before the request,
    the share with it)."""
    at_day = check["at"] // DAY_MS
    floor_day = (check["at"] - policy.customer_window_ms) // DAY_MS

    def in_window(day: str) -> bool:
        return floor_day < int(day) <= at_day

    mine = state["customer_days"].get(check["customer_id"], {})
    cents = sum(figures[0] for day, figures in mine.items() if in_window(day))
    grants = sum(figures[1] for day, figures in mine.items() if in_window(day))
    total = sum(day_cents for day, day_cents in state["discretionary_days"].items() if in_window(day))
    cents_after, total_after = cents + check["amount_cents"], total + check["amount_cents"]
    inputs = {**inputs,
              "associate_customer_granted_cents_30d": cents,
              "associate_customer_grants_30d": grants,
              "associate_discretionary_granted_cents_30d": total,
              "associate_customer_share_percent_30d": cents_after * 100 // total_after if total_after else 0,
              "associate_concentration_share_max_percent_30d": policy.associate_concentration_share_max_percent_30d,
              "associate_concentration_cents_min_30d": policy.associate_concentration_cents_min_30d,
              "associate_concentration_grants_min_30d": policy.associate_concentration_grants_min_30d}
    if (grants + int(_new_favour(state, check)) >= policy.associate_concentration_grants_min_30d
            and cents_after > policy.associate_concentration_cents_min_30d
            and cents_after * 100 > policy.associate_concentration_share_max_percent_30d * total_after):
        return ASSOCIATE_CUSTOMER_CONCENTRATION, inputs
    return None, inputs


def _linked_verdict(state: ScopeState, check: Check, policy: Policy) -> tuple[str | None, dict]:
    """Accounts tied by one payment instrument, device or building (the key "<link kind>:<id>"):
    distinct incidents remedied in 90 days and value in 30 days, against that link kind's caps.
    A refusal names the link kind in its reason code (LINKED_<KIND>_LIMIT_EXCEEDED)."""
    at, amount = check["at"], check["amount_cents"]
    kind = check["scope_key"].partition(":")[0]
    floor_90d, floor_30d = at - policy.long_window_ms, at - policy.customer_window_ms
    incidents = {r[2] or rid for rid, r in state["reservations"].items() if r[0] > floor_90d}
    cents = sum(r[1] for r in state["reservations"].values() if r[0] > floor_30d)
    # Named by link kind: a request passes up to three linked scopes and the decision keeps each one's figures.
    inputs = {f"linked_{kind}_claims_90d": len(incidents), f"linked_{kind}_claims_max_90d": policy.linked_claims_max_90d[kind],
              f"linked_{kind}_granted_cents_30d": cents, f"linked_{kind}_cap_cents_30d": policy.linked_cents_max_30d[kind]}
    new_claim = (check["incident_id"] or check["request_id"]) not in incidents
    if (new_claim and len(incidents) + 1 > policy.linked_claims_max_90d[kind]) or cents + amount > policy.linked_cents_max_30d[kind]:
        return LINKED_LIMIT_REASONS[kind], inputs
    return None, inputs


def _result(check: Check, passed: bool, outcome: str, reasons: list[str], inputs: dict) -> Check:
    """The answer that goes back to the customer's partition (keyed by customer_id)."""
    return {**check, "event_id": f"{check['request_id']}/RESULT", "action": "RESULT", "scope": "customer",
            "scope_key": check["customer_id"], "route": [], "passed": passed, "outcome": outcome,
            "reason_codes": reasons, "inputs": {**check["inputs"], **inputs}}


# Answers a scope keeps whatever the date of their check: the last this many it judged (a crash
# redelivers at most the uncommitted batches, far fewer).
RECENT_ANSWERS_KEPT = 1_000


def _judged_sequence(answer: list) -> int:
    """When an answer was judged (its sequence at the scope; 0 for forms written before sequences)."""
    return (answer[3] or 0) if not isinstance(answer[0], dict) and len(answer) > 3 else 0


def _judged_since(answer: list, sequence: int) -> bool:
    """Whether an answer was judged after `sequence`."""
    return _judged_sequence(answer) > sequence


def _answered_at(answer: list) -> int:
    return answer[0]["at"] if isinstance(answer[0], dict) else answer[0]


def _with_days(state: ScopeState, scope: str) -> ScopeState:
    """An associate's state with its per-day totals (a state written before them gets them from its reservations)."""
    if scope != "associate" or "days" in state:
        return state
    return {**state, "days": _days_of(state["reservations"].values())}


def _with_concentration(state: ScopeState) -> ScopeState:
    """An associate's state with its concentration totals. A state written before them starts them
    from what it has: its daily totals as the discretionary ones (a confirmed remedy among them only
    makes every share smaller) and no customer's grants yet (it kept no customer ids), so the rule
    never escalates more after an upgrade than it would with the full history."""
    if "customer_days" in state:
        return state
    return {**state, "discretionary_days": dict(state.get("days", {})), "customer_days": {}}


def _concentration_added(state: ScopeState, customer_id: str, at_ms: int, cents: int, grants: int) -> ScopeState:
    """The concentration totals with a discretionary grant added (or, with negative figures, released)."""
    day = str(at_ms // DAY_MS)
    # A day stays while it is remembered, even at 0: every customer's day is one of these days.
    discretionary = {**state["discretionary_days"], day: state["discretionary_days"].get(day, 0) + cents}
    mine = dict(state["customer_days"].get(customer_id, {}))
    before = mine.get(day, [0, 0])
    mine[day] = [before[0] + cents, before[1] + grants]
    if mine[day][0] <= 0 and mine[day][1] <= 0:
        mine.pop(day)
    customer_days = {**state["customer_days"], customer_id: mine}
    if not mine:
        customer_days.pop(customer_id)
    return {**state, "discretionary_days": discretionary, "customer_days": customer_days}


def _days_of(entries) -> dict[str, int]:
    """Granted cents per UTC day (keyed by the day's index as text) of reservation entries."""
    days: dict[str, int] = {}
    for entry in entries:
        days = _added(days, entry[0], entry[1])
    return days


def _added(days: dict[str, int], at_ms: int, cents: int) -> dict[str, int]:
    key = str(at_ms // DAY_MS)
    return {**days, key: days.get(key, 0) + cents}


def _newest_ms(state: ScopeState) -> int:
    days = [int(day) * DAY_MS for day in state.get("days", {})]
    return max([r[0] for r in state["reservations"].values()] + list(state["released"].values()) + days + [0])


def _detail_ms(policy: Policy, scope: str) -> int:
    """How far before its newest entry a scope keeps each reservation and answer."""
    return (policy.long_window_ms if scope in ("household", "linked") else DAY_MS) + policy.request_lateness_ms_max


def _memory_ms(policy: Policy, scope: str, state: ScopeState) -> int:
    """How far before its newest entry a scope can still judge a check: the household keeps 90 days
    of reservations; an associate keeps per-day totals for as long (its reservations a day)."""
    if scope == "associate" and "days" not in state:
        return _detail_ms(policy, scope)
    return policy.long_window_ms + policy.request_lateness_ms_max


def _forgotten_before_ms(state: ScopeState, policy: Policy, scope: str) -> int:
    """Checks dated at or before this fall in a period the scope may have pruned (see `_bounded`)."""
    newest = _newest_ms(state)
    return newest - _memory_ms(policy, scope, state) if newest else -1


def _forgotten_verdict(check: Check, policy: Policy) -> tuple[str, dict]:
    """The verdict for a check older than the scope's memory: a person looks (associate) or no room (household)."""
    inputs = {"scope_memory_exceeded": 1}
    if check["scope"] == "associate":
        return ASSOCIATE_DAILY_BUDGET_EXCEEDED, inputs
    if check["scope"] == "linked":
        return LINKED_LIMIT_REASONS[check["scope_key"].partition(":")[0]], inputs
    return HOUSEHOLD_30D_CAP_EXCEEDED, inputs


def _bounded(state: ScopeState, policy: Policy, scope: str) -> ScopeState:
    """Forget what can no longer matter: entries older than the scope's memory before the newest one.

    A household looks back over the long (90-day) window; an associate's budget is per UTC day, so
    an associate keeps each reservation and answer a day plus the lateness a request may have (a
    busy associate's state must stay far below a Kafka message) and its per-day totals for the long
    window: during a catch-up the partitions that feed one associate run days apart in event time,
    and a day is never forgotten while its requests can still arrive. A check dated before even
    that is never auto-granted (`_forgotten_verdict`), so no budget is exceeded. Both keep at most
    scope_entries_max answers. Past the window a redelivered RESERVE is judged again; the customer
    it answers has remembered its decision far longer and re-emits that one.
    """
    newest = _newest_ms(state)
    floor = newest - _detail_ms(policy, scope)
    reservations = {rid: r for rid, r in state["reservations"].items() if r[0] > floor}
    judged = state.get("judged", 0)
    # An answer is also kept while it is among the scope's last RECENT_ANSWERS_KEPT judged, however
    # old its check: a check dated days before the newest (a catch-up, the order keys) is judged
    # now, and a RESERVE redelivered after a crash must find its answer, not be judged and counted again.
    answers = {rid: a for rid, a in state["answers"].items()
               if _answered_at(a) > floor or _judged_since(a, judged - RECENT_ANSWERS_KEPT)}
    released = {rid: at for rid, at in state["released"].items() if at > floor}
    if len(answers) > policy.scope_entries_max:
        # The last judged stay (a redelivery asks for those), then the newest by date.
        keep = sorted(answers, key=lambda rid: (_judged_sequence(answers[rid]), _answered_at(answers[rid]), rid)
                      )[-policy.scope_entries_max :]
        answers = {rid: answers[rid] for rid in keep}
    bounded = {"reservations": reservations, "answers": answers, "released": released, "judged": state.get("judged", 0)}
    if state.get("unsettled") is not None:
        bounded["unsettled"] = state["unsettled"]
        if state.get("unsettled_key") is not None:
            bounded["unsettled_key"] = state["unsettled_key"]
    if state.get("waiting"):
        bounded["waiting"] = state["waiting"]
    if "days" in state:
        days_floor = (newest - _memory_ms(policy, scope, state)) // DAY_MS
        bounded["days"] = {day: cents for day, cents in state["days"].items() if int(day) >= days_floor}
    if "customer_days" in state:
        bounded.update(_bounded_concentration(state, policy, newest - _memory_ms(policy, scope, state)))
    return bounded


# (customer, day) entries an associate keeps for its concentration totals, about 30 bytes each:
# with a day and the lateness of answers beside them, a busy associate (400 grants a day) stays
# under half a Kafka message (tests/unit/test_scopes.py). An associate with this many customer-days
# in four months serves so many customers that none of them can hold a large share.
CONCENTRATION_ENTRIES_MAX = 1_000


def _bounded_concentration(state: ScopeState, policy: Policy, memory_floor_ms: int) -> ScopeState:
    """An associate's concentration totals over the 30 days before the oldest check it can still
    judge (so each such check sees its whole window), at most CONCENTRATION_ENTRIES_MAX (and
    scope_entries_max) (customer, day) entries: past that, the customers with the fewest cents are
    forgotten first, down to a tenth below the bound (their share then only looks smaller; the
    discretionary totals per day stay whole)."""
    floor_day = (memory_floor_ms - policy.customer_window_ms) // DAY_MS
    discretionary = {day: cents for day, cents in state["discretionary_days"].items() if int(day) >= floor_day}
    customer_days = state["customer_days"]
    if len(discretionary) < len(state["discretionary_days"]):  # a day left (every customer's day is one of them)
        customer_days = {}
        for customer_id, days in state["customer_days"].items():
            kept = {day: figures for day, figures in days.items() if int(day) >= floor_day}
            if kept:
                customer_days[customer_id] = kept
    entries = sum(len(days) for days in customer_days.values())
    entries_max = min(CONCENTRATION_ENTRIES_MAX, policy.scope_entries_max)
    if entries > entries_max:
        # The customers with the least cents go first: they are the furthest from a large share.
        forgotten = set()
        for customer_id in sorted(customer_days, key=lambda c: (sum(f[0] for f in customer_days[c].values()), c)):
            forgotten.add(customer_id)
            entries -= len(customer_days[customer_id])
            if entries <= entries_max - entries_max // 10:
                break  # a tenth below the bound, so the next few grants do not sort again
        customer_days = {c: days for c, days in customer_days.items() if c not in forgotten}
    return {"discretionary_days": discretionary, "customer_days": customer_days}
