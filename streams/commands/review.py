"""`remedy-ledger review ...` (the escalation queue) and `remedy-ledger policy ...` (the fraud team's policy lifecycle)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import schemas
from streams.commands.worker_http import call_worker
from streams.core import cases
from streams.errors import InvariantViolation
from streams.runtime.settings import load_settings

# Longest a review waits for the worker: a ClickHouse lookup and one acknowledged Kafka write.
WORKER_POST_TIMEOUT_S = 30


def _now_ms() -> int:
    return int(time.time() * 1000)  # the shell's clock: how long a case has waited, never part of a decision


def _filter_of(args) -> cases.CaseFilter:
    return cases.CaseFilter(kind=args.kind, reason=args.reason, customer_id=args.customer, household_id=args.household,
                            associate=args.associate, assigned_to=args.assigned_to,
                            older_than_hours=args.older_than_hours, newer_than_hours=args.newer_than_hours)


def cmd_review_list(args) -> int:
    """List escalated requests waiting for a person (oldest first unless --sort), filtered, with reasons and owner."""
    from streams.runtime import cases as on_kafka

    settings = load_settings()
    rows = cases.queue(on_kafka.decisions(settings), on_kafka.assignments(settings), _filter_of(args), args.sort,
                       _now_ms())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no escalated requests or recovery cases are waiting"
              + (" that match" if any(vars(_filter_of(args)).values()) else ""))
        return 0
    print(f"{'case':8} {'request':34} {'customer':14} {'kind':16} {'amount':>10}  {'requested (UTC)':16} {'age h':>5}  "
          f"{'assigned':12} reasons")
    for row in rows:
        print(f"{row['case']:8} {row['request_id'][:34]:34} {row['customer_id'][:14]:14} {row['kind']:16} {row['amount']:>10}  "
              f"{_when(row['requested_at'])[:16]:16} {row['age_hours']:>5}  {(row['assigned_to'] or '-')[:12]:12} "
              f"{', '.join(row['reason_codes'])}")
    print(f"{len(rows)} waiting")
    return 0


def cmd_review_show(args) -> int:
    """Show one case: the decision, its reasons and inputs in words, and the recent history around it."""
    from streams.runtime import cases as on_kafka

    settings = load_settings()
    detail = cases.case_detail(args.request_id, on_kafka.decisions(settings), on_kafka.assignments(settings), _now_ms())
    if detail is None:
        raise InvariantViolation(f"{args.request_id}: no decision for this request (yet)")
    if args.json:
        print(json.dumps(detail, indent=2))
        return 0
    print(f"{detail['request_id']}: {detail['outcome']} ({detail['decided_by']}), {detail['kind']} {detail['amount']} "
          f"for customer {detail['customer_id']}, asked by {detail['requested_by']} {detail['age_hours']} h ago; "
          f"assigned to {detail['assigned_to'] or 'nobody'}")
    for reason in detail["reasons"]:
        print(f"  {reason['code']}: {reason['meaning']}")
    print("what the decision saw:")
    for line in detail["inputs_in_words"]:
        print(f"  {line}")
    print("what the customer has now:")
    for line in detail["now_in_words"]:
        print(f"  {line}")
    for scope, rows in detail["history"].items():
        print(f"recent decisions of this {scope}:" if rows else f"no other decisions of this {scope}")
        for row in rows:
            print(f"  {_when(row['requested_at'])[:16]}  {row['request_id'][:30]:30} {row['kind']:16} {row['amount']:>10} "
                  f"{row['outcome']:9} {', '.join(row['reason_codes'])}")
    return 0


def cmd_review_assign(args) -> int:
    """Assign a case to a person through the worker (the assigner is the person REMEDY_HTTP_TOKEN names)."""
    settings = load_settings()
    body = {"request_id": args.request_id, "assigned_to": args.to}
    if not settings.http_token:
        if not args.by:
            raise InvariantViolation("REMEDY_HTTP_TOKEN: set your token (or --by ID when the worker runs without "
                                     "tokens, on loopback)")
        body["by"] = args.by
    answer = call_worker(settings, "POST", "/v1/review-assignments", body, WORKER_POST_TIMEOUT_S,
                         "assignments go through the worker, which identifies the assigner by the token")
    print(f"assigned {answer['request_id']} to {answer['assigned_to']} (by {answer['assigned_by']})")
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
    done = {"approve": "approved", "deny": "denied"}[args.action]
    print(f"{done} {answer['request_id']} as {answer['reviewed_by']}; the worker records the decision")
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
    from streams.runtime.policy_log import history_rows

    rows = history_rows(load_settings())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no policy applied yet; workers use their configured default")
    for row in rows:
        if "rejected" in row:
            print(f"offset {row['offset']:<6} rejected: {row['rejected']}")
            continue
        print(f"offset {row['offset']:<6} {_when(row['applied_at_ms'])}  {row['version']}  by {row['author']}: "
              f"{row['reason']}  (replaced {row['previous_version']})")
        if not row["changes"]:
            print("    no threshold changes")
        for change in row["changes"]:
            print(f"    {change['threshold']:50} {json.dumps(change['before'])} -> {json.dumps(change['after'])}")
    return 0


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
    listing.add_argument("--kind", help="only this remedy kind (CREDIT, REFUND, ...)")
    listing.add_argument("--reason", help="only decisions carrying this reason code")
    listing.add_argument("--customer", help="only this customer_id")
    listing.add_argument("--household", help="only this household (shipping address id)")
    listing.add_argument("--associate", help="only requests this associate asked for")
    listing.add_argument("--assigned-to", help="only cases assigned to this person")
    listing.add_argument("--older-than-hours", type=int, help="only cases waiting at least this many hours")
    listing.add_argument("--newer-than-hours", type=int, help="only cases waiting fewer than this many hours")
    listing.add_argument("--sort", choices=cases.SORTS, default="age", help="age: oldest first; amount: largest first")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_review_list)
    show = review_sub.add_parser("show", help=cmd_review_show.__doc__)
    show.add_argument("request_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_review_show)
    assign = review_sub.add_parser("assign", help=cmd_review_assign.__doc__)
    assign.add_argument("request_id")
    assign.add_argument("--to", required=True, help="the person who takes the case")
    assign.add_argument("--by", help="the assigner's id, only for a worker without tokens (loopback)")
    assign.set_defaults(run=cmd_review_assign)
    for action in ("approve", "deny"):
        decide = review_sub.add_parser(action, help=cmd_review_decide.__doc__)
        decide.add_argument("request_id")
        decide.add_argument("--by", help="the reviewer's id, only for a worker without tokens (loopback); "
                                         "otherwise REMEDY_HTTP_TOKEN says who reviews")
        decide.add_argument("--note", help="why, in a sentence (required: every review says why)")
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

