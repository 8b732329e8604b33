"""`remedy-ledger finance ...`, `remedy-ledger projections ...` and `remedy-ledger verify`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from streams.runtime.settings import load_settings

# How often the CLI asks the worker how far a rebuild got.
REBUILD_POLL_S = 0.5
# Longest the CLI follows a rebuild in the worker before it stops waiting (the rebuild goes on).
REBUILD_FOLLOW_S_MAX = 3600
# How long verify waits for the projector to catch up with the log by default.
VERIFY_WAIT_S_DEFAULT = 60
PROGRESS_BAR_WIDTH = 40


def cmd_finance_totals(args) -> int:
    """Print granted totals by kind and decisions by outcome, optionally grouped by day, kind or reason."""
    from projections import finance

    result = finance.totals(load_settings(), args.since, args.until, args.by, args.dates)
    print(json.dumps(result, indent=2) if args.json else finance.render_totals(result))
    return 0


def cmd_finance_close_period(args) -> int:
    """Close an accounting month: later decisions dated in it post to the first open month (LATE_POSTING)."""
    from projections import finance

    event = finance.close_period(load_settings(), args.period, args.by)
    offsets = ", ".join(f"{p}:{o}" for p, o in sorted(event["decision_offsets"].items(), key=lambda i: int(i[0])))
    print(f"closed {event['period']} by {event['closed_by']} at decision offsets {offsets or 'none'}")
    return 0


def cmd_finance_customer(args) -> int:
    """Print one customer's decisions, outstanding credit balance and ledger accounts."""
    from projections import finance

    result = finance.customer(load_settings(), args.customer_id)
    print(json.dumps(result, indent=2) if args.json else finance.render_customer(result))
    return 0


def cmd_finance_associates(args) -> int:
    """Print current grants per associate, as requester and as decider, by kind."""
    from projections import finance

    rows = finance.associates(load_settings(), args.since, args.until)
    print(json.dumps(rows, indent=2) if args.json else finance.render_associates(rows))
    return 0


def cmd_finance_export(args) -> int:
    """Write the decision ledger (every decision, with is_current) as CSV or Parquet."""
    from projections import finance

    data = finance.export(load_settings(), args.format, args.since, args.until)
    Path(args.out).write_bytes(data)
    print(f"wrote {len(data):,} bytes of {args.format} to {args.out}")
    return 0


def cmd_finance_chart(args) -> int:
    """Draw a PNG of every granted kind per day on a date axis, one panel per currency."""
    from projections import finance

    rows = finance.daily_granted(load_settings(), args.since, args.until)
    data = finance.chart(rows, args.out, args.since, args.until)
    currencies = [panel["currency"] for panel in data["panels"]]
    print(f"wrote {args.out} ({data['days']} days from {data['first_day']} to {data['last_day']}; "
          f"{', '.join(currencies) or 'no amounts'})")
    return 0


def _draw_progress(done: int, total: int, started: float) -> None:
    filled = PROGRESS_BAR_WIDTH if total == 0 else PROGRESS_BAR_WIDTH * done // total
    percent = 100 if total == 0 else 100 * done // total
    bar = "#" * filled + "." * (PROGRESS_BAR_WIDTH - filled)
    print(f"\r  rebuild [{bar}] {percent:3d}% {done:,}/{total:,} decisions {time.monotonic() - started:5.1f}s",
          end="", file=sys.stderr, flush=True)


def _rebuild_via_worker(settings) -> dict | None:
    from projections.finance import _worker_request
    from streams.errors import TransientError

    started = time.monotonic()
    if _worker_request(settings, "/projections/rebuild", {}, method="POST") is None:
        return None
    print(f"the worker at {settings.worker_url} owns the projections; it runs the rebuild", file=sys.stderr)
    while time.monotonic() - started < REBUILD_FOLLOW_S_MAX:
        answer = _worker_request(settings, "/projections/rebuild", {})
        if answer is None:
            raise TransientError("the worker stopped answering during the rebuild; run the rebuild again")
        state = json.loads(answer)
        _draw_progress(state["done"], state["total"], started)
        if state["state"] == "done":
            print(file=sys.stderr)
            return state["result"]
        if state["state"] == "failed":
            print(file=sys.stderr)
            raise TransientError(f"the rebuild failed in the worker: {state['error']}; the live tables are unchanged")
        time.sleep(REBUILD_POLL_S)
    raise TransientError(f"the rebuild still runs after {REBUILD_FOLLOW_S_MAX}s; follow it with GET /projections/rebuild")


def cmd_projections(args) -> int:
    """Apply or list ClickHouse migrations, or rebuild the projections from the decision topic."""
    from projections.finance import _direct
    from projections.rebuild import rebuild_direct

    settings = load_settings()
    if args.action == "rebuild":
        result = _rebuild_via_worker(settings) if settings.embedded_clickhouse else None
        if result is None:
            store = _direct(settings)
            started = time.monotonic()
            try:
                result = rebuild_direct(store, settings, lambda done, total: _draw_progress(done, total, started))
            finally:
                store.close()
            print(file=sys.stderr)
        changed = result["changed_figures_count"]
        print(f"rebuilt {result['decisions']:,} decisions and {result['postings']:,} postings "
              f"({result['caught_up_rows']:,} rows caught up from the live tables); "
              + ("every figure is unchanged" if changed == 0 else f"{changed} figure(s) changed:"))
        for line in result["changed_figures"]:
            print(f"  {line}")
        return 0
    store = _direct(settings)
    try:
        if args.action == "migrate":
            print("\n".join(store.migrate()) or "up to date")
        for row in store.migration_status():
            print(f"{row['version']:04d} {row['name']:30} {row['applied_at'] or 'pending'}")
        if args.action == "status":
            for rebuild in store.rebuild_history()[:5]:
                print(f"rebuild {rebuild['rebuild_id']}: {rebuild['decisions']:,} decisions, "
                      f"{rebuild['postings']:,} postings, {rebuild['changed_figures']} figure(s) changed")
    finally:
        store.close()
    return 0


def cmd_verify(args) -> int:
    """Fold the decision topic independently and compare every figure with ClickHouse; exit 1 on a mismatch."""
    from projections import finance
    from projections.verify import render, verify

    settings = load_settings()
    report = verify(settings, lambda: finance.audit_snapshot(settings), args.wait)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["ok"] else 1


def register(sub) -> None:
    """Add the finance, projections and verify subcommands to the root parser's subparsers."""
    finance = sub.add_parser("finance", help="finance queries over the projections")
    finance_sub = finance.add_subparsers(dest="finance_command", required=True)
    totals = finance_sub.add_parser("totals", help=cmd_finance_totals.__doc__)
    totals.add_argument("--since", help="first UTC day, YYYY-MM-DD (inclusive)")
    totals.add_argument("--until", help="last UTC day, YYYY-MM-DD (inclusive)")
    totals.add_argument("--by", choices=["day", "kind", "reason"])
    totals.add_argument("--dates", choices=["posting", "event"], default="posting",
                        help="date decisions by posting date (default: closed months never change) or event date")
    totals.add_argument("--json", action="store_true")
    totals.set_defaults(run=cmd_finance_totals)

    close = finance_sub.add_parser("close-period", help=cmd_finance_close_period.__doc__)
    close.add_argument("period", help="the month to close, YYYY-MM (UTC)")
    close.add_argument("--by", required=True, help="who closes it")
    close.set_defaults(run=cmd_finance_close_period)

    customer = finance_sub.add_parser("customer", help=cmd_finance_customer.__doc__)
    customer.add_argument("customer_id")
    customer.add_argument("--json", action="store_true")
    customer.set_defaults(run=cmd_finance_customer)

    associates = finance_sub.add_parser("associates", help=cmd_finance_associates.__doc__)
    associates.add_argument("--since", help="first UTC day, YYYY-MM-DD (inclusive)")
    associates.add_argument("--until", help="last UTC day, YYYY-MM-DD (inclusive)")
    associates.add_argument("--json", action="store_true")
    associates.set_defaults(run=cmd_finance_associates)

    export = finance_sub.add_parser("export", help=cmd_finance_export.__doc__)
    export.add_argument("--format", choices=["csv", "parquet"], required=True)
    export.add_argument("--since", help="first UTC day, YYYY-MM-DD (inclusive)")
    export.add_argument("--until", help="last UTC day, YYYY-MM-DD (inclusive)")
    export.add_argument("--out", required=True, help="file to write")
    export.set_defaults(run=cmd_finance_export)

    chart = finance_sub.add_parser("chart", help=cmd_finance_chart.__doc__)
    chart.add_argument("--since", help="first UTC day, YYYY-MM-DD (inclusive)")
    chart.add_argument("--until", help="last UTC day, YYYY-MM-DD (inclusive)")
    chart.add_argument("--out", required=True, help="PNG file to write")
    chart.set_defaults(run=cmd_finance_chart)

    projections = sub.add_parser("projections", help=cmd_projections.__doc__)
    projections.add_argument("action", choices=["migrate", "status", "rebuild"])
    projections.set_defaults(run=cmd_projections)

    verify = sub.add_parser("verify", help=cmd_verify.__doc__)
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--wait", type=float, default=VERIFY_WAIT_S_DEFAULT,
                        help="seconds to wait for the projector to catch up with the log")
    verify.set_defaults(run=cmd_verify)
