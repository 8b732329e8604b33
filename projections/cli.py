"""`remedy-ledger finance ...` and `remedy-ledger projections ...`: the finance and projection commands."""

from __future__ import annotations

import json

from streams.settings import load_settings


def cmd_finance_totals(args) -> int:
    """Print granted totals by kind and decisions by outcome, optionally grouped by day, kind or reason."""
    from projections import finance

    result = finance.totals(load_settings(), args.since, args.until, args.by)
    print(json.dumps(result, indent=2) if args.json else finance.render_totals(result))
    return 0


def cmd_projections(args) -> int:
    """Apply or list ClickHouse migrations (stop the worker first in embedded mode)."""
    from projections.finance import _direct

    store = _direct(load_settings())
    try:
        if args.action == "migrate":
            print("\n".join(store.migrate()) or "up to date")
        for row in store.migration_status():
            print(f"{row['version']:04d} {row['name']:30} {row['applied_at'] or 'pending'}")
    finally:
        store.close()
    return 0


def register(sub) -> None:
    """Add the finance and projections subcommands to the root parser's subparsers."""
    finance = sub.add_parser("finance", help="finance queries over the projections")
    finance_sub = finance.add_subparsers(dest="finance_command", required=True)
    totals = finance_sub.add_parser("totals", help=cmd_finance_totals.__doc__)
    totals.add_argument("--since", help="first UTC day, YYYY-MM-DD (inclusive)")
    totals.add_argument("--until", help="last UTC day, YYYY-MM-DD (inclusive)")
    totals.add_argument("--by", choices=["day", "kind", "reason"])
    totals.add_argument("--json", action="store_true")
    totals.set_defaults(run=cmd_finance_totals)

    projections = sub.add_parser("projections", help=cmd_projections.__doc__)
    projections.add_argument("action", choices=["migrate", "status"])
    projections.set_defaults(run=cmd_projections)
