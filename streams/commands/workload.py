"""`remedy-ledger simulate ...` and `remedy-ledger report quality ...`: workload and decision quality."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator

from streams.errors import InvariantViolation

# Longest the quality report reads the decision topic before it gives up (a million decisions
# take well under a minute with kafka-python).
TOPIC_READ_TIMEOUT_S = 600


def cmd_simulate(args) -> int:
    """Write a reproducible workload (publish format) and its ground-truth labels (a separate file)."""
    from streams.measure.simulate import write_workload

    config = _workload_config(args)
    started = time.monotonic()
    progress = lambda customers, events: print(
        f"  {customers:,} customers, {events:,} events ({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True
    )
    summary = write_workload(config, Path(args.out), Path(args.labels), progress=progress)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({**summary.as_dict(), "seconds": round(elapsed, 2)}, indent=2))
    else:
        result = summary.as_dict()
        print(f"wrote {result['events_total']:,} events for {result['customers']:,} customers to {args.out} "
              f"in {elapsed:.1f}s")
        print("  " + ", ".join(f"{name} {count:,}" for name, count in result["events"].items()))
        print(f"  requests: {', '.join(f'{p} {n:,}' for p, n in result['requests_by_population'].items())}; "
              f"abusers {result['abusers']:,}, excess claims {result['excess_claims']:,} (labels in {args.labels})")
    return 0


def read_decisions(settings) -> Iterator[dict]:
    """Every decision currently on the decision topic, decoded, read to the end offsets seen at start."""
    import schemas
    from streams.runtime.kafka_io import read_topic, topic_names

    topic = topic_names(settings).decisions
    for record in read_topic(settings.kafka, topic, TOPIC_READ_TIMEOUT_S, "remedy-quality-report"):
        yield schemas.decode(record.value)[1]


def read_labels(path: Path) -> Iterator[dict]:
    """The labels `simulate` wrote, one JSON object per line."""
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield json.loads(text)
                except json.JSONDecodeError as error:
                    raise InvariantViolation(f"{path}:{number}: not valid JSON: {error.msg}") from None


def cmd_report_quality(args) -> int:
    """Decision quality against the simulator's labels: friction for the honest, excess claims stopped."""
    from streams.measure import quality

    if args.in_process:
        report = _in_process_report(args)
    else:
        from streams.runtime.settings import load_settings

        if not args.labels:
            raise InvariantViolation("report quality: --labels is required (or --in-process)")
        decisions = list(read_decisions(load_settings()))
        report = quality.evaluate(decisions, read_labels(Path(args.labels)))
        report["decisions_read"] = len(decisions)
    print(json.dumps(report, indent=2) if args.json else quality.render(report))
    return 0


def _workload_config(args):
    """The simulator configuration the arguments name, or InvariantViolation naming every problem."""
    from streams.measure.simulate import WorkloadConfig

    config = WorkloadConfig(customers=args.customers, days=args.days, seed=args.seed, abuse_rate=args.abuse_rate,
                            profile=args.profile)
    problems = config.problems()
    if problems:
        raise InvariantViolation("; ".join(problems))
    return config


def _in_process_report(args) -> dict:
    """The quality of a workload simulated and decided in process (no broker; ideal ordering)."""
    from streams.measure import in_process
    from streams.runtime.settings import load_settings

    # The policy this deployment would start with (REMEDY_POLICY_FILE and friends), as the worker.
    return in_process.report(_workload_config(args), load_settings().policy)


def register(sub) -> None:
    """Add the simulate and report subcommands to the root parser's subparsers."""
    from streams.measure.simulate import ABUSE_RATE_DEFAULT, PROFILES

    simulate = sub.add_parser("simulate", help=cmd_simulate.__doc__)
    simulate.add_argument("--customers", type=int, required=True)
    simulate.add_argument("--days", type=int, required=True)
    simulate.add_argument("--seed", type=int, required=True)
    simulate.add_argument("--abuse-rate", type=float, default=ABUSE_RATE_DEFAULT,
                          help=f"share of customers who abuse (default {ABUSE_RATE_DEFAULT})")
    simulate.add_argument("--profile", choices=PROFILES, default="default",
                          help="default (what the policy is tuned on) or adversarial (the holdout: abusers pace "
                               "under every cap, rotate addresses and accounts, start clean)")
    simulate.add_argument("--out", required=True, help="events file (publish format)")
    simulate.add_argument("--labels", required=True, help="ground-truth labels file (never published)")
    simulate.add_argument("--json", action="store_true", help="print the summary as JSON")
    simulate.set_defaults(run=cmd_simulate)

    report = sub.add_parser("report", help="reports over the decision topic")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    quality = report_sub.add_parser("quality", help=cmd_report_quality.__doc__)
    quality.add_argument("--labels", help="labels file written by `remedy-ledger simulate`")
    quality.add_argument("--in-process", action="store_true",
                         help="simulate --customers/--days/--seed/--profile and decide it in process (no broker)")
    quality.add_argument("--customers", type=int, default=7_500)
    quality.add_argument("--days", type=int, default=60)
    quality.add_argument("--seed", type=int, default=11)
    quality.add_argument("--abuse-rate", type=float, default=ABUSE_RATE_DEFAULT)
    quality.add_argument("--profile", choices=PROFILES, default="default")
    quality.add_argument("--json", action="store_true")
    quality.set_defaults(run=cmd_report_quality)
