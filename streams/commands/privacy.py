"""`remedy-ledger privacy erase|list`: erase a customer's personal data, list the erasures (docs/privacy.md).

Both go through the running worker that projects (it owns embedded ClickHouse, holds the privacy
key and publishes the erasure for the decide agent), as ops, with REMEDY_HTTP_TOKEN. The customer
id travels in the request body, never in a URL, and is never printed back: the pseudonym is.
"""

from __future__ import annotations

import json
import sys

from streams.commands.worker_http import call_worker
from streams.runtime.settings import Settings, load_settings

# Longest the CLI waits for the worker to rewrite the projections and publish the erasure.
ERASE_TIMEOUT_S = 300


def _call(settings: Settings, method: str, path: str, body: dict | None = None) -> object:
    """The worker's JSON answer; errors name the worker's reason, or that no worker answers."""
    return call_worker(settings, method, path, body, ERASE_TIMEOUT_S,
                       "an erasure needs the running worker that projects (it owns the projections and the privacy key)")


def cmd_privacy_erase(args) -> int:
    """Erase a customer's personal data from projections and state (keyed pseudonym; docs/privacy.md)."""
    result = _call(load_settings(), "POST", "/privacy/erase", {"customer_id": args.customer_id, "reason": args.reason})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = result["rows_rewritten"]
    print(f"erased: the customer is now {result['pseudonym']} in projections and state")
    print("  projection rows rewritten: " + (", ".join(f"{table} {count:,}" for table, count in sorted(rows.items()))
                                            or "none (nothing projected for this id)"))
    print(f"  state: {result['state']}")
    print("  the input topics, the decision topic and dead letters keep the id (docs/privacy.md)", file=sys.stderr)
    return 0


def cmd_privacy_list(args) -> int:
    """List every erasure: pseudonym, when, and the reason given."""
    rows = _call(load_settings(), "GET", "/privacy/erased")
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no customer erased")
    else:
        for row in rows:
            print(f"{row['erased_at'][:19]}  {row['pseudonym']}  {row['reason']}")
    return 0


def register(sub) -> None:
    """Add the privacy subcommands to the root parser's subparsers."""
    privacy = sub.add_parser("privacy", help="personal data: erase a customer, list erasures (docs/privacy.md)")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    erase = privacy_sub.add_parser("erase", help=cmd_privacy_erase.__doc__)
    erase.add_argument("customer_id")
    erase.add_argument("--reason", required=True, help="why (a ticket number); never the customer's name or id")
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(run=cmd_privacy_erase)
    listing = privacy_sub.add_parser("list", help=cmd_privacy_list.__doc__)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_privacy_list)
