"""Decision latency hop by hop, on a running broker, without the bench's 100 ms count poller.

    REMEDY_KAFKA_BOOTSTRAP=127.0.0.1:29092 .venv/bin/python bench/latency_hops.py WORKLOAD.jsonl [RATE] [SECONDS]
        [--worker faust|loops]

Starts a worker on a fresh topic prefix (its own data directory and web port): the Faust-agent
worker (`remedy-ledger worker`, default) or the hand-written loops (bench/loops_worker.py). Waits
until its /health shows every agent ("agents"; the loops worker shows "loops") holding every
partition, so no event waits for a group join; then publishes the first RATE x SECONDS events of
the workload at RATE events/s (ticks of 10 ms, kafka-python, as bench/run.py's paced run does),
stops the worker, reads the topics back and prints the latency of every request ("all"), of
requests decided without a scope check ("plain") and with one ("saga"), and of each saga hop:
request -> limit check, check -> result, result -> decision. All from Kafka CreateTime
timestamps (this machine's clock). The last line of output is JSON.

bench/run.py runs it at half of the 1-worker peak (step "hops") and applies `hop_figures` to its
own paced run too. Use the bench's broker (29092) or a `make run` broker, never the test broker's
topics while tests run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tree whose code runs (bench/run.py --source sets it); the working tree by default.
SOURCE = Path(os.environ.get("REMEDY_BENCH_SOURCE") or REPO)
sys.path.insert(0, str(SOURCE))

import schemas  # noqa: E402
from ports import free_port  # noqa: E402  (a sibling script, not a package)
from streams.runtime.kafka_io import Publisher, ensure_topics, read_topic, topic_names  # noqa: E402
from streams.runtime.settings import load_settings  # noqa: E402
from streams.runtime.upstream import read_events  # noqa: E402

# Longest a cold worker may take to answer /health and hold every partition.
WORKER_READY_S_MAX = 120
# After the last event, time for the last decisions to be made.
DRAIN_S = 5
TICK_S = 0.01
HOPS = ("all", "plain", "saga", "request_to_check", "check_to_result", "result_to_decision")


def quantile(values: list[int], q: float) -> int | None:
    return sorted(values)[int(q * (len(values) - 1))] if values else None


def holds_every_partition(health: dict, partitions: int) -> bool:
    """True once every agent (Faust worker: "agents"; loops worker: "loops") holds all `partitions`."""
    agents = health.get("agents") or health.get("loops") or {}
    wanted = list(range(partitions))
    return bool(agents) and all(sorted(agent.get("partitions") or []) == wanted for agent in agents.values())


def hop_figures(requests: list, checks: list, results: list, decisions: list) -> dict:
    """Latency figures from (Kafka timestamp ms, datum) pairs of the four topics.

    A request counts once, at its first decision (a redelivered decision keeps its id); the
    engine's own (proactive) decisions have no request and are left out.
    """
    requested = {d["request_id"]: ts for ts, d in requests}
    checked, answered = {}, {}
    for ts, d in checks:
        checked.setdefault(d["request_id"], []).append(ts)
    for ts, d in results:
        answered.setdefault(d["request_id"], []).append(ts)
    figures = {name: [] for name in HOPS}
    seen = set()
    for ts, d in sorted(decisions, key=lambda pair: pair[0]):
        request_id = d["request_id"]
        if request_id not in requested or d["decision_id"] in seen:
            continue
        seen.add(d["decision_id"])
        latency = ts - requested[request_id]
        figures["all"].append(latency)
        if request_id in checked:
            figures["saga"].append(latency)
            figures["request_to_check"].append(min(checked[request_id]) - requested[request_id])
            if request_id in answered:
                figures["check_to_result"].append(min(answered[request_id]) - min(checked[request_id]))
                figures["result_to_decision"].append(ts - max(answered[request_id]))
        else:
            figures["plain"].append(latency)
    return {name: {"n": len(v), "p50_ms": quantile(v, 0.5), "p90_ms": quantile(v, 0.9), "p99_ms": quantile(v, 0.99)}
            for name, v in figures.items()}


def read_hops(kafka, names) -> dict:
    """hop_figures over a deployment's topics, read back to their ends."""

    def read(topic):
        return [(m.timestamp, schemas.decode(m.value)[1]) for m in read_topic(kafka, topic, 120, "hops")]

    return hop_figures(read(names.requests), read(names.limit_checks), read(names.limit_results), read(names.decisions))


def worker_command(kind: str) -> list[str]:
    if kind == "loops":
        return [sys.executable, str(REPO / "bench" / "loops_worker.py"), "--loglevel", "warning"]
    return [sys.executable, "-m", "streams.commands.cli", "worker", "--loglevel", "warning"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", type=Path)
    parser.add_argument("rate", type=float, nargs="?", default=3_800, help="events/s (default 3,800)")
    parser.add_argument("seconds", type=float, nargs="?", default=15, help="how long to publish (default 15)")
    parser.add_argument("--worker", choices=("faust", "loops"), default="faust")
    parser.add_argument("--data-root", type=Path, default=REPO / ".data" / "latency",
                        help="the worker's data directory goes under this (default .data/latency)")
    args = parser.parse_args()
    rate, seconds = args.rate, args.seconds
    prefix = f"hops{uuid.uuid4().hex[:6]}"
    data = args.data_root / prefix
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "REMEDY_TOPIC_PREFIX": prefix, "REMEDY_DATA_DIR": str(data),
           "REMEDY_WEB_PORT": str(free_port())}
    settings = load_settings(env)
    names = topic_names(settings)
    ensure_topics(settings)
    data.mkdir(parents=True, exist_ok=True)
    started_at = time.monotonic()
    with open(data / "worker.log", "w") as log:
        worker = subprocess.Popen(worker_command(args.worker), cwd=SOURCE, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + WORKER_READY_S_MAX
            while True:
                try:
                    with urllib.request.urlopen(f"{settings.worker_url}/health", timeout=2) as response:
                        if holds_every_partition(json.loads(response.read()), settings.topic_partitions):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"worker did not hold every partition in {WORKER_READY_S_MAX}s; "
                                     f"see {data / 'worker.log'}")
                time.sleep(0.2)
            ready_s = time.monotonic() - started_at
            events = []
            for event in read_events(args.workload):
                events.append(event)
                if len(events) >= rate * seconds:
                    break
            per_tick, started = max(1, int(rate * TICK_S)), time.monotonic()
            print(f"{args.worker} worker ready in {ready_s:.1f}s; publishing {len(events):,} events at {rate:,.0f}/s",
                  file=sys.stderr)
            with Publisher(settings) as publisher:
                for index in range(0, len(events), per_tick):
                    for record_name, datum in events[index:index + per_tick]:
                        publisher.publish(record_name, datum)
                    publisher.flush()
                    pause = started + (index + per_tick) / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
            achieved = len(events) / (time.monotonic() - started)
            time.sleep(DRAIN_S)
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    summary = read_hops(settings.kafka, names)
    for name, row in summary.items():
        print(f"{name:20} n={row['n']:6} p50={row['p50_ms']} ms p90={row['p90_ms']} ms p99={row['p99_ms']} ms")
    one, five, _ = os.getloadavg()
    print(json.dumps({"worker": args.worker, "rate_events_per_s": rate, "achieved_rate_events_per_s": round(achieved),
                      "seconds": seconds, "events": len(events), "worker_ready_s": round(ready_s, 1),
                      "cores": os.cpu_count(), "load_1m": round(one, 2), "load_5m": round(five, 2), "figures": summary}))


if __name__ == "__main__":
    main()
