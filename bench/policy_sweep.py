"""The effect of threshold changes on decision quality: one workload, folded in process under each
policy variant, as a table (for the fraud team deciding a `remedy-ledger policy apply`).

    .venv/bin/python bench/policy_sweep.py [--customers 20000] [--days 30] [--seed 20261101] [--json]

Ideal ordering (every limit check followed at once), so rows differ only by policy. Variants are
deltas from the default policy; add your own in VARIANTS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state_size import fold_all  # noqa: E402  (a sibling script, not a package)

from streams.measure import quality  # noqa: E402
from streams.core.policy import Policy  # noqa: E402
from streams.measure.simulate import WorkloadConfig  # noqa: E402

VARIANTS: list[tuple[str, dict]] = [
    ("default", {}),
    ("auto-approval ceiling $150", {"remedy_cents_max_per_request": 15_000}),
    ("WATCH only scales caps", {"watch_claims_escalated": 0}),
    ("household thefts 1 / 90d", {"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1}}),
    ("household thefts 3 / 90d", {"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 3}}),
    ("customer cap $150 / 30d", {"remedy_cents_max_per_customer_30d": 15_000, "remedy_cents_max_per_request": 15_000,
                                  "kind_cents_max_per_customer_30d": {"REFUND": 15_000, "RESHIP": 15_000}}),
    ("damage claims 2 / 90d", {"incident_claims_max_per_customer_90d": {"DAMAGED": 2, "WRONG_ITEM": 2}}),
    ("WATCH from 2 claims", {"watch_claims_min": 2}),
    ("WATCH from 4 claims", {"watch_claims_min": 4}),
    ("confirmed ceiling $250 (as asserted)", {"confirmed_remedy_cents_max_per_request": 25_000,
                                              "confirmed_remedy_cents_max_per_customer_30d": 25_000}),
    ("two value remedies per incident", {"one_value_remedy_per_incident": 0}),
    ("no new-account signal", {"new_account_days_max": 1}),
    ("lost claims from 3 days", {"lost_claim_days_after_order_min": 3}),
    ("associate goodwill 1 / 30d", {"associate_goodwill_requests_max_30d": 1}),
    ("associate budget $800 / day", {"associate_cents_max_per_day": 80_000}),
    ("no associate concentration", {"associate_concentration_share_max_percent_30d": 100}),
    ("concentration from one grant", {"associate_concentration_grants_min_30d": 1}),
    ("concentration 10% above $50", {"associate_concentration_share_max_percent_30d": 10,
                                      "associate_concentration_cents_min_30d": 5_000}),
    ("a first claim $250+ denied", {"request_above_customer_cap_escalated": 0}),
    # How far the rules reach when honest customers pay for it (the 95% question, issue 12).
    ("WATCH from 1 claim", {"watch_claims_min": 1}),
    ("WATCH at half of orders (was)", {"watch_claims_percent_of_orders_min": 50}),
    ("WATCH at 15% of orders", {"watch_claims_percent_of_orders_min": 15}),
    ("one claim per incident kind / 90d", {"incident_claims_max_per_customer_90d": {
        kind: 1 for kind in ("LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY", "DAMAGED", "WRONG_ITEM")}}),
    ("linked accounts on", {"linked_accounts_scope_enabled": 1}),
    ("all of the strict ones", {"watch_claims_min": 2, "household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1},
                                "incident_claims_max_per_customer_90d": {
                                    kind: 1 for kind in ("LOST_IN_TRANSIT", "STOLEN_AFTER_DELIVERY", "DAMAGED", "WRONG_ITEM")},
                                "linked_accounts_scope_enabled": 1, "associate_goodwill_requests_max_30d": 1}),
]


def dollars(cents: int) -> str:
    return f"${cents / 100:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--profile", choices=("default", "adversarial"), default="default",
                        help="tune on default; adversarial is the holdout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = WorkloadConfig(customers=args.customers, days=args.days, seed=args.seed, profile=args.profile)
    rows = []
    for name, delta in VARIANTS:
        started = time.monotonic()
        policy = Policy.from_document(delta)
        decisions, labels = fold_all(config, policy)
        header = {"label": "run", "customers": args.customers, "days": args.days, "seed": args.seed,
                  "abuse_rate": config.abuse_rate}
        report = quality.evaluate(decisions, [header] + labels)
        rows.append({"variant": name, "policy_version": policy.version, "report": report})
        print(f"  {name}: {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"workload: {args.customers:,} customers x {args.days} days, seed {args.seed} (in process, ideal ordering)")
    print(f"{'variant':32} {'honest frictionless':>19} {'honest denied':>13} {'abuse stopped':>13} {'by cents':>9} {'abuse leaked':>12}")
    for row in rows:
        print(f"{row['variant']:32} {_summary(row['report'])}")


def _summary(report: dict) -> str:
    honest, excess = report["honest"], report["excess"]
    return (f"{honest['frictionless_share'] * 100:18.1f}% {dollars(honest['wrongly_denied_cents']):>13} "
            f"{excess['stopped_share'] * 100:12.1f}% {excess['stopped_cents_share'] * 100:8.1f}% "
            f"{dollars(excess['leaked_cents']):>12}")


if __name__ == "__main__":
    main()
