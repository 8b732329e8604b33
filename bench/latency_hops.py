"""Decision latency hop by hop, on a running broker, without the bench's 100 ms count poller.

    REMEDY_KAFKA_BOOTSTRAP=127.0.0.1:19092 .venv/bin/python bench/latency_hops.py WORKLOAD.jsonl [RATE] [SECONDS]

Starts a worker on a fresh topic prefix (its own data directory and web port), publishes the
first RATE x SECONDS events of the workload at RATE events/s (ticks of 10 ms, kafka-python, as
bench/run.py's paced run does), stops the worker, then reads the topics back and prints the
latency of requests decided without a scope check ("plain") and with one ("saga"), and of each
saga hop: request -> limit check, check -> result, result -> decision. All from Kafka
CreateTime timestamps (this machine's clock). Prints JSON too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import schemas  # noqa: E402
from run import free_port  # noqa: E402  (a sibling script, not a package)
from streams.runtime.kafka_io import Publisher, ensure_topics, read_topic, topic_names  # noqa: E402
from streams.runtime.settings import load_settings  # noqa: E402
from streams.runtime.upstream import read_events  # noqa: E402

# A cold worker joins its three consumer groups within this; publishing starts after it.
WORKER_SETTLE_S = 3
# After the last event, time for the last decisions to be made.
DRAIN_S = 5
TICK_S = 0.01


def quantile(values: list[int], q: float) -> int | None:
    return sorted(values)[int(q * (len(values) - 1))] if values else None


def main() -> None:
    workload = Path(sys.argv[1])
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 3_800
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 15
    prefix = f"hops{uuid.uuid4().hex[:6]}"
    data = REPO / ".data" / "latency" / prefix
    env = {**os.environ, "REMEDY_TOPIC_PREFIX": prefix, "REMEDY_DATA_DIR": str(data), "REMEDY_WEB_PORT": str(free_port())}
    settings = load_settings(env)
    names = topic_names(settings)
    ensure_topics(settings)
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "worker.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "streams.commands.cli", "worker"], cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{settings.worker_url}/health", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise SystemExit(f"worker did not start; see {data / 'worker.log'}")
                    time.sleep(0.2)
            time.sleep(WORKER_SETTLE_S)
            events = []
            for event in read_events(workload):
                events.append(event)
                if len(events) >= rate * seconds:
                    break
            per_tick, started = max(1, int(rate * TICK_S)), time.monotonic()
            print(f"publishing {len(events):,} events at {rate:,.0f}/s", file=sys.stderr)
            with Publisher(settings) as publisher:
                for index in range(0, len(events), per_tick):
                    for record_name, datum in events[index:index + per_tick]:
                        publisher.publish(record_name, datum)
                    publisher.flush()
                    pause = started + (index + per_tick) / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
            time.sleep(DRAIN_S)
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    def read(topic):
        return [(m.timestamp, schemas.decode(m.value)[1]) for m in read_topic(settings.kafka_bootstrap, topic, 120, "hops")]

    requested = {d["request_id"]: ts for ts, d in read(names.requests)}
    checks, results = {}, {}
    for ts, d in read(names.limit_checks):
        checks.setdefault(d["request_id"], []).append(ts)
    for ts, d in read(names.limit_results):
        results.setdefault(d["request_id"], []).append(ts)
    figures = {name: [] for name in ("plain", "saga", "request_to_check", "check_to_result", "result_to_decision")}
    for ts, d in read(names.decisions):
        request_id = d["request_id"]
        if request_id not in requested:
            continue  # the engine's own (proactive) decisions
        if request_id in checks:
            figures["saga"].append(ts - requested[request_id])
            figures["request_to_check"].append(min(checks[request_id]) - requested[request_id])
            if request_id in results:
                figures["check_to_result"].append(min(results[request_id]) - min(checks[request_id]))
                figures["result_to_decision"].append(ts - max(results[request_id]))
        else:
            figures["plain"].append(ts - requested[request_id])
    summary = {name: {"n": len(v), "p50_ms": quantile(v, 0.5), "p90_ms": quantile(v, 0.9), "p99_ms": quantile(v, 0.99)}
               for name, v in figures.items()}
    for name, row in summary.items():
        print(f"{name:20} n={row['n']:6} p50={row['p50_ms']} ms p90={row['p90_ms']} ms p99={row['p99_ms']} ms")
    print(json.dumps({"rate_events_per_s": rate, "seconds": seconds, "cores": os.cpu_count(), "figures": summary}))


if __name__ == "__main__":
    main()
