"""`remedy-ledger policy backtest FILE`: what a policy document would have decided on the recorded log."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from streams.core import backtest
from streams.core.money import money_text
from streams.core.policy import Policy
from streams.errors import InvariantViolation
from streams.measure import quality
from streams.runtime.kafka_io import topic_names
from streams.runtime.policy_log import in_force, read_document
from streams.runtime.replay import recorded_decisions, replay_period, to_stderr, upstream_records
from streams.runtime.settings import Settings, load_settings

# Exit status when the replay under the policy in force does not reproduce every recorded decision.
EXIT_NOT_REPRODUCED = 3


def date_ms(text: str | None, flag: str) -> int | None:
    """A --since/--until value (YYYY-MM-DD, or an ISO time with its zone) as ms; InvariantViolation naming the flag."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvariantViolation(f"{flag} {text!r}: not a date (YYYY-MM-DD) or an ISO time such as "
                                 "2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


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


def run_backtest(settings: Settings, candidate: Policy, since_ms: int | None, until_ms: int | None,
                 labels: list[dict] | None = None, progress=None) -> dict:
    """The backtest report (JSON-ready): the replay's self-check against the log, then the change."""
    applied = in_force(settings)
    current = applied.policy if applied else settings.policy
    records = upstream_records(settings, progress)
    replayed = replay_period(records, current, candidate, topic_names(settings), since_ms, until_ms, progress)
    recorded = [d for d in recorded_decisions(settings) if backtest.in_period(d, since_ms, until_ms)]
    before = [d for d in replayed.before if backtest.in_period(d, since_ms, until_ms)]
    after = [d for d in replayed.after if backtest.in_period(d, since_ms, until_ms)]
    check = backtest.reproduction(recorded, before, current.version)
    report = {
        "policy_in_force": current.version, "candidate": candidate.version,
        "candidate_changes": [{"threshold": name, "before": old, "after": new}
                              for name, new, old in candidate.differences(current)],
        "since": since_ms, "until": until_ms,
        "records_before_period": replayed.records_before_period, "records_in_period": replayed.records_in_period,
        "dead_letters_in_replay": replayed.dead_letters, "replay_seconds": replayed.seconds,
        "reproduced_share": check["reproduced_share"], "reproduction": check,
        **backtest.compare(before, after),
    }
    if labels is not None:
        report["labels"] = backtest.quality_delta(quality.evaluate(before, labels), quality.evaluate(after, labels))
    return report


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
    since_ms, until_ms = date_ms(args.since, "--since"), date_ms(args.until, "--until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise InvariantViolation(f"--until {args.until} is not after --since {args.since}")
    labels = read_labels(Path(args.labels)) if args.labels else None
    report = run_backtest(settings, candidate, since_ms, until_ms, labels, None if args.quiet else to_stderr)
    print(json.dumps(report, indent=2) if args.json else render(report))
    if report["reproduction"]["differing_count"]:
        print(f"backtest: DEFECT: {report['reproduction']['differing_count']} recorded decisions not reproduced "
              "under the policy in force (see `reproduction.differing`)", file=sys.stderr)
        return EXIT_NOT_REPRODUCED
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
