"""The backtest's replay speed without Kafka: a simulated workload encoded as upstream records and
replayed twice (policy in force and a stricter household theft limit), as `policy backtest` does.

Run from the source tree: .venv/bin/python bench/backtest_replay.py CUSTOMERS DAYS SEED
Prints JSON: events, seconds for the replay (both runs), events/s per run, peak RSS. Reading the
log from Kafka comes on top (measured end to end in bench/README.md, "Backtest").
The records are fed in record-time order, so each event's time stands in for its send time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_size import peak_rss_bytes  # noqa: E402  (a sibling script, not a package)

import schemas  # noqa: E402
from streams.core import decision as core  # noqa: E402
from streams.core.policy import Policy  # noqa: E402
from streams.measure.simulate import WorkloadConfig, generate  # noqa: E402
from streams.runtime.batch import Incoming, key_partition  # noqa: E402
from streams.runtime.replay import replay_period  # noqa: E402
from streams.runtime.topics import TopicNames  # noqa: E402

PARTITIONS = 4


def records(config: WorkloadConfig, names: TopicNames) -> list[Incoming]:
    """Every simulated event as the upstream record `publish` would have sent, in time order."""
    found = []
    for events, _ in generate(config):
        for event in events:
            name = event["type"]
            datum = {key: value for key, value in event.items() if key != "type"}
            key = event["customer_id"].encode()
            found.append(Incoming(names.for_event(name), key_partition(key, PARTITIONS), len(found), key,
                                  schemas.encode(name, datum), core.event_time_ms(event)))
    found.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return found


def main() -> None:
    customers, days, seed = (int(a) for a in sys.argv[1:4])
    names = TopicNames(prefix="bench", app_id="bench-worker")
    started = time.monotonic()
    log = records(WorkloadConfig(customers=customers, days=days, seed=seed), names)
    encoded_s = time.monotonic() - started
    stricter = Policy.from_document({"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1}})
    replayed = replay_period(log, Policy(), stricter, names, None, None)
    print(json.dumps({"customers": customers, "days": days, "events": len(log), "encode_seconds": round(encoded_s, 1),
                      "replay_seconds_both_runs": replayed.seconds,
                      "events_per_s_per_run": round(2 * len(log) / replayed.seconds),
                      "decisions_before": len(replayed.before), "decisions_after": len(replayed.after),
                      "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
