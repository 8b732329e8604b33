"""The backtest's replay speed without Kafka: a simulated workload encoded as upstream records and
replayed twice (policy in force and a stricter household theft limit), as `policy backtest` does.

Run from the source tree: .venv/bin/python bench/backtest_replay.py CUSTOMERS DAYS SEED [--single-process]
Prints JSON: events, seconds to encode, seconds for the replay (both runs), events/s per run,
peak RSS of this process and of each run's process (two forked processes unless
--single-process). Progress goes to stderr. Reading the log from Kafka comes on top (measured end
to end in bench/README.md, "Backtest"). The records are fed in record-time order, so each event's
time stands in for its send time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_size import peak_rss_bytes  # noqa: E402  (a sibling script, not a package)

import schemas  # noqa: E402
from streams.core import backtest  # noqa: E402
from streams.core import decision as core  # noqa: E402
from streams.core.policy import Policy  # noqa: E402
from streams.measure.simulate import WorkloadConfig, generate  # noqa: E402
from streams.runtime.batch import Incoming, key_partition  # noqa: E402
from streams.runtime.replay import PROGRESS_EVERY_S, PackedRecords, replay_period, to_stderr  # noqa: E402
from streams.runtime.topics import TopicNames  # noqa: E402

PARTITIONS = 4
# The candidate the bench replays against the defaults: a stricter household theft limit.
STRICTER = {"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1}}


def records(config: WorkloadConfig, names: TopicNames, progress=None) -> PackedRecords:
    """Every simulated event as the upstream record `publish` would have sent, packed in replay order."""
    found = PackedRecords(list(names.upstream()))
    started = said = time.monotonic()
    for events, _ in generate(config):
        for event in events:
            name = event["type"]
            datum = {key: value for key, value in event.items() if key != "type"}
            key = event["customer_id"].encode()
            found.append(Incoming(names.for_event(name), key_partition(key, PARTITIONS), len(found), key,
                                  schemas.encode(name, datum), core.event_time_ms(event)))
        if progress and time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            progress(f"encoded {len(found):,} events ({said - started:.0f}s)")
    found.sort()
    return found


def measure(customers: int, days: int, seed: int, parallel: bool | None = None, progress=None) -> dict:
    """Encode the workload, replay it twice; the figures as a JSON-ready dict."""
    names = TopicNames(prefix="bench", app_id="bench-worker")
    started = time.monotonic()
    log = records(WorkloadConfig(customers=customers, days=days, seed=seed), names, progress)
    encoded_s = time.monotonic() - started
    replayed = replay_period(log, Policy(), Policy.from_document(STRICTER), names, None, None, progress,
                             parallel=parallel)
    return {"customers": customers, "days": days, "events": len(log), "encode_seconds": round(encoded_s, 1),
            "records_mib": round(log.bytes_held() / 2**20, 1), "processes": replayed.processes,
            "replay_seconds_both_runs": replayed.seconds,
            "run_seconds": [replayed.before.seconds, replayed.after.seconds],
            "events_per_s_per_run": round(len(log) / max(replayed.before.seconds, replayed.after.seconds)),
            "decisions_before": replayed.before.decisions, "decisions_after": replayed.after.decisions,
            "transitions": backtest.compare(replayed.before.final_decisions, replayed.after.final_decisions)["transitions"],
            "peak_rss_bytes": peak_rss_bytes(),
            "run_peak_rss_bytes": [replayed.before.peak_rss_bytes, replayed.after.peak_rss_bytes]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("customers", type=int)
    parser.add_argument("days", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("--single-process", action="store_true", help="both runs in this process, one after the other")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args()
    print(json.dumps(measure(args.customers, args.days, args.seed, False if args.single_process else None,
                             None if args.quiet else to_stderr)))


if __name__ == "__main__":
    main()
