"""`remedy-ledger review ...` (the escalation queue) and `remedy-ledger policy ...` (the fraud team's policy lifecycle)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import schemas
from streams.commands.worker_http import call_worker
from streams.core.money import money_text
from streams.errors import InvariantViolation
from streams.runtime.kafka_io import read_topic, topic_names
from streams.runtime.settings import load_settings

# Longest `review list` spends reading the decision topic to its end.
DECISION_READ_TIMEOUT_S = 120
# Longest a review waits for the worker: a ClickHouse lookup and one acknowledged Kafka write.
WORKER_POST_TIMEOUT_S = 30


def current_decisions(settings) -> dict[str, dict]:
    """The decision in force for every request: the newest one that nothing supersedes."""
    current: dict[str, dict] = {}
    superseded: set[str] = set()
    for record in read_topic(settings.kafka, topic_names(settings).decisions, DECISION_READ_TIMEOUT_S,
                             "remedy-review"):
        _, decision = schemas.decode(record.value)
        if decision["supersedes_decision_id"]:
            superseded.add(decision["supersedes_decision_id"])
        if decision["decision_id"] not in superseded:
            current[decision["request_id"]] = decision
    return {rid: d for rid, d in current.items() if d["decision_id"] not in superseded}


def cmd_review_list(args) -> int:
    """List escalated requests waiting for a person, oldest first, with their reasons."""
    waiting = sorted(
        (d for d in current_decisions(load_settings()).values() if d["outcome"] == "ESCALATED"),
        key=lambda d: (d["requested_at"], d["request_id"]),
    )
    if args.json:
        rows = [{**d, "requested_at": d["requested_at"].isoformat(), "decided_at": d["decided_at"].isoformat()}
                for d in waiting]
        print(json.dumps(rows, indent=2))
        return 0
    if not waiting:
        print("no escalated requests are waiting")
        return 0
    print(f"{'request':34} {'customer':14} {'kind':16} {'amount':>10}  {'requested (UTC)':16}  reasons")
    for d in waiting:
        amount = money_text(d["requested_cents"], d["currency"])  # escalated requests are often in another currency
        print(f"{d['request_id'][:34]:34} {d['customer_id'][:14]:14} {d['kind']:16} {amount:>10}  "
              f"{d['requested_at']:%Y-%m-%d %H:%M}  {', '.join(d['reason_codes'])}")
    print(f"{len(waiting)} waiting")
    return 0


def cmd_review_decide(args) -> int:
    """Approve or deny an escalated request through the worker, which records the review as made by
    the person REMEDY_HTTP_TOKEN names (never one's own request) and supersedes the escalation."""
    settings = load_settings()
    if settings.http_token and args.by:
        raise InvariantViolation("--by: reviewers are identified by their token (REMEDY_HTTP_TOKEN); leave --by out")
    if not settings.http_token and not args.by:
        raise InvariantViolation("REMEDY_HTTP_TOKEN: set your reviewer token (or --by ID when the worker runs "
                                 "without tokens, on loopback)")
    body = {"request_id": args.request_id, "verdict": "APPROVE" if args.action == "approve" else "DENY",
            "note": args.note}
    if args.by:
        body["by"] = args.by
    answer = call_worker(settings, "POST", "/v1/reviews", body, WORKER_POST_TIMEOUT_S,
                         "reviews go through the worker, which identifies the reviewer by the token")
    print(f"{args.action}d {answer['request_id']} as {answer['reviewed_by']}; the worker records the decision")
    return 0


def _when(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=timezone.utc):%Y-%m-%d %H:%M:%S}"


def cmd_policy_show(args) -> int:
    """Print the policy in force (from the policy topic, else the worker's configured default)."""
    from streams.runtime.policy_log import AppliedPolicy, RejectedPolicy, entries

    settings = load_settings()
    found = entries(settings)
    valid = [entry for entry in found if isinstance(entry, AppliedPolicy)]
    applied = valid[-1] if valid else None
    rejected = [entry for entry in found if isinstance(entry, RejectedPolicy)]
    policy = applied.policy if applied else settings.policy
    document = {"version": policy.version, **policy.as_document()}
    if args.json:
        # The document alone on stdout, so it can be edited and applied again; rejections on stderr.
        print(json.dumps(document, indent=2, sort_keys=True))
        for entry in rejected:
            print(f"rejected policy message at offset {entry.offset}: {entry.reason}", file=sys.stderr)
        return 0
    source = f"applied by {applied.author}: {applied.reason}" if applied else "configured default (none applied yet)"
    print(f"policy {policy.version} ({source})")
    for key, value in policy.as_document().items():
        print(f"  {key:40} {json.dumps(value)}")
    for entry in rejected:
        print(f"rejected: offset {entry.offset}: {entry.reason}")
    return 0


def cmd_policy_apply(args) -> int:
    """Validate a policy document and publish it; running workers switch to it without a restart."""
    from streams.runtime.policy_log import apply, preview

    settings = load_settings()
    if args.dry_run:
        change = preview(settings, Path(args.file))
        differences = change.differences()
        print(f"{args.file}: valid, policy {change.policy.version}; in force: {change.current.version} "
              f"({change.current_source}); nothing published (--dry-run)")
        if not differences:
            print("  no threshold changes")
        for name, old, new in differences:
            print(f"  {name:50} {json.dumps(old)} -> {json.dumps(new)}")
        return 0
    if args.author is None or args.reason is None:
        raise InvariantViolation("--author and --reason are required to apply a policy (or use --dry-run)")
    applied = apply(settings, Path(args.file), args.author, args.reason, int(time.time() * 1000))
    print(f"applied policy {applied.policy.version} (was {applied.previous_version}); workers switch within seconds")
    return 0


def cmd_policy_rollback(args) -> int:
    """Apply an earlier policy version again, as the newest version; workers switch within seconds."""
    from streams.runtime.policy_log import rollback

    applied = rollback(load_settings(), args.version, args.author, args.reason, int(time.time() * 1000))
    print(f"rolled back to policy {applied.policy.version} (was {applied.previous_version}); "
          "workers switch within seconds")
    return 0


def cmd_policy_history(args) -> int:
    """List every message on the policy topic, oldest first: each applied version with the thresholds it
    changed against the version before it, or why a message was rejected."""
    from streams.runtime.policy_log import RejectedPolicy, entries, version_changes

    settings = load_settings()
    found = entries(settings)
    changes = {applied.offset: moved for applied, moved in version_changes(settings)}
    if args.json:
        print(json.dumps([_history_row(entry, changes) for entry in found], indent=2))
        return 0
    if not found:
        print("no policy applied yet; workers use their configured default")
    for entry in found:
        if isinstance(entry, RejectedPolicy):
            print(f"offset {entry.offset:<6} rejected: {entry.reason}")
            continue
        print(f"offset {entry.offset:<6} {_when(entry.applied_at_ms)}  {entry.policy.version}  by {entry.author}: "
              f"{entry.reason}  (replaced {entry.previous_version})")
        moved = changes.get(entry.offset, [])
        if not moved:
            print("    no threshold changes")
        for name, old, new in moved:
            print(f"    {name:50} {json.dumps(old)} -> {json.dumps(new)}")
    return 0


def _history_row(entry, changes: dict) -> dict:
    from streams.runtime.policy_log import RejectedPolicy

    if isinstance(entry, RejectedPolicy):
        return {"offset": entry.offset, "rejected": entry.reason}
    return {"offset": entry.offset, "version": entry.policy.version, "author": entry.author, "reason": entry.reason,
            "applied_at": _when(entry.applied_at_ms), "previous_version": entry.previous_version,
            "changes": [{"threshold": name, "before": old, "after": new} for name, old, new in changes.get(entry.offset, [])]}


def cmd_policy_diff(args) -> int:
    """Print every threshold that differs between two versions (from `policy history`, or the default's)."""
    from streams.runtime.policy_log import policy_of_version

    settings = load_settings()
    first, second = policy_of_version(settings, args.first), policy_of_version(settings, args.second)
    moved = [(name, old, new) for name, new, old in second.differences(first)]
    if args.json:
        print(json.dumps({"from": first.version, "to": second.version,
                          "changes": [{"threshold": n, "before": o, "after": v} for n, o, v in moved]}, indent=2))
        return 0
    print(f"policy {first.version} -> {second.version}")
    if not moved:
        print("  no threshold changes")
    for name, old, new in moved:
        print(f"  {name:50} {json.dumps(old)} -> {json.dumps(new)}")
    return 0


def register(sub) -> None:
    """Add the review and policy subcommands to the root parser's subparsers."""
    review = sub.add_parser("review", help="the queue of escalated requests")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    listing = review_sub.add_parser("list", help=cmd_review_list.__doc__)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_review_list)
    for action in ("approve", "deny"):
        decide = review_sub.add_parser(action, help=cmd_review_decide.__doc__)
        decide.add_argument("request_id")
        decide.add_argument("--by", help="the reviewer's id, only for a worker without tokens (loopback); "
                                         "otherwise REMEDY_HTTP_TOKEN says who reviews")
        decide.add_argument("--note", help="why, in a sentence")
        decide.set_defaults(run=cmd_review_decide, action=action)

    policy = sub.add_parser("policy", help="the fraud team's policy: show, apply, rollback, history, diff, backtest")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    show = policy_sub.add_parser("show", help=cmd_policy_show.__doc__)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_policy_show)
    apply = policy_sub.add_parser("apply", help=cmd_policy_apply.__doc__)
    apply.add_argument("file")
    apply.add_argument("--author", help="who applies it (required unless --dry-run)")
    apply.add_argument("--reason", help="why, in a sentence (required unless --dry-run)")
    apply.add_argument("--dry-run", action="store_true",
                       help="validate and print the threshold changes against the version in force; publish nothing")
    apply.set_defaults(run=cmd_policy_apply)
    rollback = policy_sub.add_parser("rollback", help=cmd_policy_rollback.__doc__)
    rollback.add_argument("version", help="a version from `policy history` (or the configured default's)")
    rollback.add_argument("--author", required=True)
    rollback.add_argument("--reason", required=True)
    rollback.set_defaults(run=cmd_policy_rollback)
    history = policy_sub.add_parser("history", help=cmd_policy_history.__doc__)
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=cmd_policy_history)
    diff = policy_sub.add_parser("diff", help=cmd_policy_diff.__doc__)
    diff.add_argument("first", help="the version to compare from")
    diff.add_argument("second", help="the version to compare to")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(run=cmd_policy_diff)
    from streams.commands import backtest

    backtest.register(policy_sub)

