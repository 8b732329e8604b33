"""Decision quality against ground truth: how well the engine spares the honest and stops abusers.

Pure module: it takes decisions (RemedyDecided data, as decoded from the decision topic) and
labels (the JSON lines `remedy-ledger simulate` writes next to its events) and computes the
report; reading Kafka and files is the caller's job.

Definitions (also in README "Workload, quality and performance"):
- Requests the engine makes by itself (proactive remedies, request ids `proactive:...`) are not
  in the labels; they count in their customer's population and are never excess claims.
- A request's *final decision* is the last decision for its request id that no other decision
  supersedes (redeliveries carry the same decision id and count once).
- An honest request is *granted without friction* when its final decision is GRANTED for the
  full amount asked. Friction is anything else: DENIED (its cents are *wrongly denied*) or
  ESCALATED (a person must look; its cents are *held*).
- An *excess claim* is a request the simulator made as part of an abuse scheme (serial claiming,
  a household ring's porch-theft claims, an over-generous associate's credits to friends): a
  claim an honest customer in the same situation would not have made. Genuine incidents that
  happen to abusers are not excess and are reported apart.
- An excess claim is *stopped* when its final decision is not GRANTED: DENIED (its cents are
  *prevented*) or ESCALATED (a person decides; its cents are *held*, not yet prevented).
"""

from __future__ import annotations

from typing import Iterable

GRANTED, DENIED, ESCALATED = "GRANTED", "DENIED", "ESCALATED"
# Targets from issue 5.
HONEST_FRICTIONLESS_SHARE_TARGET = 0.99
EXCESS_STOPPED_SHARE_TARGET = 0.95


def final_decisions(decisions: Iterable[dict]) -> dict[str, dict]:
    """The final decision per request id: the latest one that no other decision supersedes."""
    by_request: dict[str, list[dict]] = {}
    superseded: set[str] = set()
    for decision in decisions:
        if decision.get("supersedes_decision_id"):
            superseded.add(decision["supersedes_decision_id"])
        by_request.setdefault(decision["request_id"], []).append(decision)
    finals = {}
    for request_id, candidates in by_request.items():
        standing = [d for d in candidates if d["decision_id"] not in superseded]
        finals[request_id] = (standing or candidates)[-1]
    return finals


def _bucket() -> dict:
    return {
        "requests": 0, "decided": 0, "requested_cents": 0,
        "granted": 0, "granted_full": 0, "granted_cents": 0,
        "denied": 0, "denied_cents": 0, "escalated": 0, "escalated_cents": 0,
    }


def _add(bucket: dict, label: dict, decision: dict | None) -> None:
    bucket["requests"] += 1
    bucket["requested_cents"] += label["requested_cents"]
    if decision is None:
        return
    bucket["decided"] += 1
    outcome = decision["outcome"]
    if outcome == GRANTED:
        bucket["granted"] += 1
        bucket["granted_cents"] += decision["granted_cents"]
        bucket["granted_full"] += decision["granted_cents"] >= decision["requested_cents"]
    elif outcome == DENIED:
        bucket["denied"] += 1
        bucket["denied_cents"] += decision["requested_cents"]
    else:
        bucket["escalated"] += 1
        bucket["escalated_cents"] += decision["requested_cents"]


def _add_reasons(by_reason: dict, group: str, decision: dict) -> None:
    for reason in decision["reason_codes"]:
        cell = by_reason.setdefault(reason, {}).setdefault(group, {"decisions": 0, "requested_cents": 0, "granted_cents": 0})
        cell["decisions"] += 1
        cell["requested_cents"] += decision["requested_cents"]
        cell["granted_cents"] += decision["granted_cents"]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def evaluate(decisions: Iterable[dict], labels: Iterable[dict]) -> dict:
    """The quality report (a JSON-ready dict) for these decisions against these labels."""
    finals = final_decisions(decisions)
    honest, excess, genuine = _bucket(), _bucket(), _bucket()
    by_scheme: dict[str, dict] = {}
    by_group: dict[str, dict] = {}  # honest groups (labels of issue 12's simulator; older labels: "ordinary")
    by_reason: dict[str, dict] = {}
    labelled: set[str] = set()
    population_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    run = None
    for label in labels:
        kind = label.get("label")
        if kind == "run":
            run = label
        if kind == "customer":
            population_of[label["customer_id"]] = label["population"]
            group_of[label["customer_id"]] = label.get("group") or "ordinary"
        if kind != "request":
            continue
        labelled.add(label["request_id"])
        decision = finals.get(label["request_id"])
        if label["population"] == "honest":
            group, target = "honest", honest
            _add(by_group.setdefault(label.get("group") or "ordinary", _bucket()), label, decision)
        elif label["excess"]:
            group, target = "excess", excess
            _add(by_scheme.setdefault(label["scheme"], _bucket()), label, decision)
        else:
            group, target = "abuser_genuine", genuine
        _add(target, label, decision)
        if decision is not None:
            _add_reasons(by_reason, group, decision)

    # Requests the engine made by itself (proactive remedies) have no request label; they belong to
    # their customer's population and are never an abuser's excess claim.
    engine_initiated = unlabelled = 0
    for request_id, decision in finals.items():
        if request_id in labelled:
            continue
        population = population_of.get(decision["customer_id"])
        if population is None:
            unlabelled += 1
            continue
        engine_initiated += 1
        label = {"requested_cents": decision["requested_cents"]}
        group, target = ("honest", honest) if population == "honest" else ("abuser_genuine", genuine)
        _add(target, label, decision)
        if population == "honest":
            _add(by_group.setdefault(group_of.get(decision["customer_id"], "ordinary"), _bucket()), label, decision)
        _add_reasons(by_reason, group, decision)

    honest_share = _share(honest["granted_full"], honest["decided"])
    stopped = excess["denied"] + excess["escalated"]
    stopped_share = _share(stopped, excess["decided"])
    stopped_cents_share = _share(excess["denied_cents"] + excess["escalated_cents"], _decided_cents(excess))
    for bucket in by_scheme.values():
        bucket["stopped_share"] = _share(bucket["denied"] + bucket["escalated"], bucket["decided"])
        bucket["stopped_cents_share"] = _share(bucket["denied_cents"] + bucket["escalated_cents"], _decided_cents(bucket))
    for bucket in by_group.values():
        bucket["frictionless_share"] = _share(bucket["granted_full"], bucket["decided"])
    return {
        "run": run,
        "honest": {
            **honest,
            "frictionless_share": honest_share,
            "target": HONEST_FRICTIONLESS_SHARE_TARGET,
            "meets_target": honest_share is not None and honest_share >= HONEST_FRICTIONLESS_SHARE_TARGET,
            "wrongly_denied_cents": honest["denied_cents"],
        },
        "excess": {
            **excess,
            "stopped": stopped,
            "stopped_share": stopped_share,
            "target": EXCESS_STOPPED_SHARE_TARGET,
            "meets_target": stopped_share is not None and stopped_share >= EXCESS_STOPPED_SHARE_TARGET,
            "stopped_cents_share": stopped_cents_share,
            "meets_cents_target": stopped_cents_share is not None and stopped_cents_share >= EXCESS_STOPPED_SHARE_TARGET,
            "prevented_cents": excess["denied_cents"],
            "leaked_cents": excess["granted_cents"],
        },
        "abuser_genuine": genuine,
        "by_scheme": dict(sorted(by_scheme.items())),
        "by_honest_group": dict(sorted(by_group.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "engine_initiated_decisions": engine_initiated,
        "decisions_without_label": unlabelled,
    }


def _decided_cents(bucket: dict) -> int:
    """Cents asked by the decided requests of a bucket (granted + denied + escalated)."""
    return bucket["granted_cents"] + bucket["denied_cents"] + bucket["escalated_cents"]


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.2f}%"


def render(report: dict) -> str:
    """The report as a terminal table."""
    honest, excess, genuine = report["honest"], report["excess"], report["abuser_genuine"]
    lines = []
    run = report.get("run")
    if run:
        lines.append(f"workload: {run['customers']:,} customers, {run['days']} days, seed {run['seed']}, "
                     f"abuse rate {run['abuse_rate']}, profile {run.get('profile') or 'default'}")
    verdict = lambda ok: "meets target" if ok else "MISSES target"
    lines += [
        "",
        f"honest requests        {honest['requests']:>9,}  decided {honest['decided']:,}",
        f"  granted, no friction {honest['granted_full']:>9,}  {_pct(honest['frictionless_share'])}"
        f"  (target >= {_pct(honest['target'])}: {verdict(honest['meets_target'])})",
        f"  denied (wrongly)     {honest['denied']:>9,}  {_money(honest['wrongly_denied_cents'])}",
        f"  escalated (held)     {honest['escalated']:>9,}  {_money(honest['escalated_cents'])}",
        "",
        f"abusers' excess claims {excess['requests']:>9,}  decided {excess['decided']:,}  asked {_money(excess['requested_cents'])}",
        f"  stopped              {excess['stopped']:>9,}  {_pct(excess['stopped_share'])}"
        f"  (target >= {_pct(excess['target'])}: {verdict(excess['meets_target'])})",
        f"  stopped, by cents              {_pct(excess['stopped_cents_share'])}"
        f"  (target >= {_pct(excess['target'])}: {verdict(excess['meets_cents_target'])})",
        f"  denied (prevented)   {excess['denied']:>9,}  {_money(excess['prevented_cents'])}",
        f"  escalated (held)     {excess['escalated']:>9,}  {_money(excess['escalated_cents'])}",
        f"  granted (leaked)     {excess['granted']:>9,}  {_money(excess['leaked_cents'])}",
        "",
        f"abusers' genuine claims {genuine['requests']:>8,}  granted {genuine['granted']:,}  "
        f"denied {genuine['denied']:,}  escalated {genuine['escalated']:,}",
        "",
        f"{'scheme':22} {'claims':>8} {'stopped':>9} {'by cents':>9} {'asked':>14} {'granted':>14}",
    ]
    for scheme, bucket in report["by_scheme"].items():
        lines.append(f"{scheme:22} {bucket['decided']:>8,} {_pct(bucket['stopped_share']):>9} "
                     f"{_pct(bucket.get('stopped_cents_share')):>9} {_money(bucket['requested_cents']):>14} "
                     f"{_money(bucket['granted_cents']):>14}")
    lines += ["", f"{'honest group':22} {'requests':>8} {'no friction':>11} {'denied $':>14} {'escalated $':>14}"]
    for group, bucket in report.get("by_honest_group", {}).items():
        lines.append(f"{group:22} {bucket['decided']:>8,} {_pct(bucket['frictionless_share']):>11} "
                     f"{_money(bucket['denied_cents']):>14} {_money(bucket['escalated_cents']):>14}")
    lines += ["", f"{'reason code':28} {'honest':>9} {'honest $':>14} {'excess':>9} {'excess $':>14} {'genuine':>8}"]
    for reason, row in report["by_reason"].items():
        h, x, g = (row.get(k, {"decisions": 0, "requested_cents": 0}) for k in ("honest", "excess", "abuser_genuine"))
        lines.append(f"{reason:28} {h['decisions']:>9,} {_money(h['requested_cents']):>14} "
                     f"{x['decisions']:>9,} {_money(x['requested_cents']):>14} {g['decisions']:>8,}")
    if report["engine_initiated_decisions"]:
        lines += ["", f"engine-initiated (proactive) decisions, counted with their customer: "
                      f"{report['engine_initiated_decisions']:,}"]
    if report["decisions_without_label"]:
        lines += ["", f"decisions without a label: {report['decisions_without_label']:,} (another workload on these topics?)"]
    undecided = honest["requests"] - honest["decided"] + excess["requests"] - excess["decided"]
    if undecided:
        lines += ["", f"labelled requests with no decision yet: {undecided:,}"]
    return "\n".join(lines)
