"""`remedy-ledger policy backtest FILE`: what a policy document would have decided on the recorded log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streams.core import backtest
from streams.core.money import money_text
from streams.core.policy import Policy
from streams.errors import InvariantViolation
from streams.runtime.policy_log import read_document
from streams.runtime.replay import backtest_report, to_stderr
from streams.runtime.settings import load_settings

# Exit status when the replay under the policy in force does not reproduce every recorded decision.
EXIT_NOT_REPRODUCED = 3


def read_labels(path: Path) -> list[dict]:
    """The labels `remedy-ledger simulate` writes (JSON lines); a bad line is named with its number."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise InvariantViolation(f"--labels {path}: cannot read: {error.strerror}") from None
    labels = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            label = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvariantViolation(f"--labels {path}:{number}: not JSON: {error.msg}") from None
        if not isinstance(label, dict) or "label" not in label:
            raise InvariantViolation(f"--labels {path}:{number}: not a label (an object with a 'label' field)")
        labels.append(label)
    return labels


def _money(per_currency: dict) -> str:
    return ", ".join(money_text(cents, currency) for currency, cents in sorted(per_currency.items())) or "0"


def render(report: dict) -> str:
    """The report for a person."""
    check = report["reproduction"]
    lines = [f"backtest of {report['candidate']} against {report['policy_in_force']} (in force): "
             f"{report['records_in_period']:,} records replayed, {report['records_before_period']:,} folded before "
             f"the period, {report['replay_seconds']}s"]
    for change in report["candidate_changes"]:
        lines.append(f"  {change['threshold']:50} {json.dumps(change['before'])} -> {json.dumps(change['after'])}")
    lines.append(f"self-check: {check['reproduced']:,} of {check['recorded_decisions']:,} recorded decisions reproduced "
                 f"({check['reproduced_share']:.2%})")
    if check["differing_count"]:
        lines.append(f"DEFECT: the replay under the policy in force differs from the log in {check['differing_count']} "
                     f"decisions ({check['recorded_under_other_versions']} recorded under another policy version):")
        for item in check["differing"][:20]:
            lines.append(f"  {item['decision_id']} ({item['request_id']}): {item['problem']}")
    lines.append(f"decisions: {report['decisions']:,}; changed: {report['changed']:,}")
    for name, count in report["transitions"].items():
        lines.append(f"  {name:28} {count:,}")
    lines.append(f"granted: {_money(report['granted_cents_before'])} -> {_money(report['granted_cents_after'])}")
    for kind, sides in report["granted_cents_by_kind"].items():
        lines.append(f"  {kind:18} {_money(sides['before'])} -> {_money(sides['after'])}")
    lines.append("reason codes (final decisions):")
    for code, sides in report["reason_codes"].items():
        if sides["before"] != sides["after"]:
            lines.append(f"  {code:40} {sides['before']:,} -> {sides['after']:,}")
    for group, rows in report["most_affected"].items():
        if rows:
            lines.append(f"most affected {group}:")
            for row in rows:
                lines.append(f"  {row['key'][:40]:40} {row['changed']:>5} changed  "
                             f"{_money(row['granted_cents_before'])} -> {_money(row['granted_cents_after'])}")
    if "labels" in report:
        before, after = report["labels"]["before"], report["labels"]["after"]
        lines.append(f"honest granted without friction: {before['honest_frictionless_share']} -> "
                     f"{after['honest_frictionless_share']}; abusers' excess stopped: {before['excess_stopped_share']} -> "
                     f"{after['excess_stopped_share']}")
    return "\n".join(lines)


def cmd_policy_backtest(args) -> int:
    """Replay the recorded log of a period under the policy in force and under FILE; report what changes."""
    settings = load_settings()
    candidate = Policy.from_document(read_document(Path(args.file)))
    since_ms, until_ms = backtest.date_ms(args.since, "--since"), backtest.date_ms(args.until, "--until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise InvariantViolation(f"--until {args.until} is not after --since {args.since}")
    labels = read_labels(Path(args.labels)) if args.labels else None
    report = backtest_report(settings, candidate, since_ms, until_ms, labels, None if args.quiet else to_stderr)
    print(json.dumps(report, indent=2) if args.json else render(report))
    if report["reproduction"]["differing_count"]:
        print(f"backtest: DEFECT: {report['reproduction']['differing_count']} recorded decisions not reproduced "
              "under the policy in force (see `reproduction.differing`)", file=sys.stderr)
        return EXIT_NOT_REPRODUCED
    return 0


SHADOW_ACTIONS = ("report", "promote", "stop")


def cmd_policy_shadow(args) -> int:
    """Start FILE in shadow (`policy shadow FILE --author --reason`), or `report`, `promote` or `stop` the shadow."""
    import time

    from streams.runtime import shadow

    settings = load_settings()
    now_ms = int(time.time() * 1000)
    if args.target == "report":
        report = shadow.report(settings)
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        print(f"shadow {report['shadow_version']} ({report['state']}, started by {report['started_by']}): "
              f"{report['shadow_decisions']:,} shadow decisions; {report['changed']:,} differ from live")
        for name, count in report["transitions"].items():
            print(f"  live->shadow {name:28} {count:,}")
        print(f"granted live: {_money(report['granted_cents_before'])}; shadow: {_money(report['granted_cents_after'])}")
        for code, sides in report["reason_codes"].items():
            if sides["before"] != sides["after"]:
                print(f"  {code:40} {sides['before']:,} -> {sides['after']:,}")
        return 0
    if args.author is None or args.reason is None:
        raise InvariantViolation("--author and --reason are required to start, promote or stop a shadow")
    if args.target == "promote":
        done = shadow.promote(settings, args.author, args.reason, now_ms)
        print(f"promoted shadow {done['version']}: it is the live policy now; workers switch within seconds")
    elif args.target == "stop":
        done = shadow.stop(settings, args.author, args.reason, now_ms)
        print(f"stopped shadow {done['version']}; its decisions stay for `policy shadow report`")
    else:
        done = shadow.start(settings, Path(args.target), args.author, args.reason, now_ms)
        print(f"shadow {done['version']} running: every deciding worker decides every request sent from now on "
              "under it too, off the decision path (`policy shadow report`)")
    return 0


def register(policy_sub) -> None:
    """Add `policy backtest` to the policy subcommands."""
    parser = policy_sub.add_parser("backtest", help=cmd_policy_backtest.__doc__)
    parser.add_argument("file", help="a full or partial policy document (as `policy apply` takes it: "
                                     "thresholds it leaves out keep their defaults)")
    parser.add_argument("--since", help="first day of the period (YYYY-MM-DD, UTC), by event time")
    parser.add_argument("--until", help="first day after the period (YYYY-MM-DD, UTC)")
    parser.add_argument("--labels", help="labels file (`remedy-ledger simulate`) for honest friction and abuse stopped")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(run=cmd_policy_backtest)
    shadow = policy_sub.add_parser("shadow", help=cmd_policy_shadow.__doc__)
    shadow.add_argument("target", help="a policy document to start in shadow, or one of: " + ", ".join(SHADOW_ACTIONS))
    shadow.add_argument("--author", help="who (required to start, promote or stop)")
    shadow.add_argument("--reason", help="why, in a sentence (required to start, promote or stop)")
    shadow.add_argument("--json", action="store_true", help="report as JSON")
    shadow.set_defaults(run=cmd_policy_shadow)
