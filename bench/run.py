"""Remedy Ledger benchmarks: one command, a table and JSON, every figure with cores and load.

    .venv/bin/python bench/run.py [--customers 20000] [--days 30] [--source worktree|HEAD|DIR]
                                  [--backtest-customers 20000] [--state-customers 1000000] [--skip STEPS]

The worker is measured against three ceilings: a bare aiokafka consumer, a Faust no-op agent
(bench/noop_app.py) and the hand-written aiokafka loops running the same core end to end
(bench/loops_worker.py, the worker before issue 8). The worker since issue 8 is one Faust app per
process, one consumer group `<prefix>-worker` for its decide, limits and project agents (the
loops had three groups, `<app id>-decide`, `-limits`, `-project`); a second worker runs
`remedy-ledger worker --roles decide,limits` (embedded chDB: one process projects).

Starts its own broker on 127.0.0.1:29092 (data in .data/bench, never the test broker), runs every
measurement on fresh topic prefixes, stops the broker at the end, and writes
bench/results/<utc time>.json and bench/results/latest.json. See bench/README.md for what each
figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ports import free_port  # a sibling script (bench/ports.py), not a package

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BENCH_DATA = REPO / ".data" / "bench"
RESULTS = REPO / "bench" / "results"
BOOTSTRAP = "127.0.0.1:29092"
BROKER_ENV = {"REMEDY_DATA_DIR": str(BENCH_DATA), "REMEDY_KAFKA_PORT": "29092", "REMEDY_KAFKA_CONTROLLER_PORT": "29093"}
# Targets (2 cores, broker included): issue 8 for the Faust agents (throughput against the Faust
# no-op ceiling, 2 workers, latency), issue 5 for the rest (its latency target was 50 ms).
TARGETS = {
    "agents_x_faust_noop": (">=", 0.5),
    "end_to_end_2_workers_events_per_s": (">=", 10_000),
    "decision_latency_p99_ms": ("<=", 100),
    "freshness_p99_ms": ("<=", 2_000),
    "publish_events_per_s": (">=", 30_000),
    "state_1m_customers_rss_bytes": ("<=", 2 * 1024**3),
    # Issue 11: a backtest runs on 1M customers' history "in minutes, not hours" (both runs, 2 cores).
    "backtest_1m_customers_replay_s": ("<=", 15 * 60),
}
# Bounds on every wait, so a broken worker fails the bench instead of hanging it.
WORKER_START_S_MAX = 120
PIPELINE_S_MAX = 900
CEILING_S_MAX = 300
# How often the decision count is polled: the freshness figure is only as fine as this.
COUNT_POLL_S = 0.1
# Length of the paced (half of peak) run that measures latency and freshness.
PACED_RUN_S = 25
# Length of the hop-by-hop latency run (latency_hops.py, no count poller) at the same rate.
HOPS_RUN_S = 20
# The synchronous API run: a console's requests, one at a time, during a paced background load.
SYNC_RUN_S = 20
SYNC_REQUESTS_PER_S = 20
# Workers taking part: the first runs every role, the others decide and limits only.
SECOND_WORKER_ROLES = "decide,limits"


def load() -> dict:
    """Cores and load averages right now, attached to every figure."""
    one, five, fifteen = os.getloadavg()
    return {"cores": os.cpu_count(), "load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2)}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stop_process_group(process: subprocess.Popen, wait_s: float) -> None:
    """SIGTERM a process group started with start_new_session, then SIGKILL it after `wait_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


# -- the source tree measured ---------------------------------------------------------------------


def source_tree(spec: str) -> Path:
    """The tree whose code is measured: the working tree, a commit exported with git archive, or a dir."""
    if spec == "worktree":
        return REPO
    if Path(spec).is_dir():
        return Path(spec).resolve()
    sha = subprocess.run(["git", "rev-parse", spec], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    target = BENCH_DATA / f"src-{sha[:12]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


class Deployment:
    """One topic prefix on the bench broker, with the environment its processes run in."""

    def __init__(self, source: Path, name: str, **extra: str):
        self.source = source
        self.prefix = f"bench{name}{uuid.uuid4().hex[:6]}"
        self.data = BENCH_DATA / "runs" / self.prefix
        self.env = {
            **os.environ, "PYTHONPATH": str(source), "REMEDY_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "REMEDY_TOPIC_PREFIX": self.prefix, "REMEDY_DATA_DIR": str(self.data), **extra,
        }
        self.workers: list[RunningWorker] = []
        self.kind = "faust"

    def cli(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "streams.commands.cli", *args], cwd=self.source, env=self.env, check=True,
                              capture_output=True, text=True, **kwargs)

    def settings(self):
        from streams.runtime.settings import load_settings

        return load_settings(self.env)

    def start_worker(self, index: int = 0, kind: str = "faust", roles: str | None = None) -> None:
        """Start a worker and wait for its /health (and, if it projects, for ClickHouse to open).

        kind "faust": `remedy-ledger worker [--roles ROLES]`; kind "loops": bench/loops_worker.py.
        Each worker has its own web port and data directory (its own chDB when it projects).
        """
        port = free_port()
        data = self.data / f"worker{index}"
        data.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "REMEDY_WEB_PORT": str(port), "REMEDY_DATA_DIR": str(data)}
        log_file = open(data / "worker.log", "ab")
        if kind == "loops":
            command = [PYTHON, str(REPO / "bench" / "loops_worker.py"), "--loglevel", "warning"]
        else:
            command = [PYTHON, "-m", "streams.commands.cli", "worker", "--loglevel", "warning",
                       *(["--roles", roles] if roles else [])]
        self.kind = kind
        process = subprocess.Popen(command, cwd=self.source, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WORKER_START_S_MAX
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}; see {data / 'worker.log'}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not answer in {WORKER_START_S_MAX}s; see {data / 'worker.log'}")
                time.sleep(0.3)
        projects = kind == "loops" or roles is None or "project" in roles.split(",")
        self.workers.append(RunningWorker(process, url, data, projects))
        if projects:
            self.decision_count()  # answers once embedded ClickHouse is open

    def groups(self) -> list[tuple[str, list[str]]]:
        """(consumer group, topics) of this deployment's workers: one Faust group, or the loops' three."""
        if self.kind == "loops":
            from loops_worker import loop_groups  # bench/loops_worker.py

            return loop_groups(self.settings())
        from streams.runtime.kafka_io import worker_groups

        return worker_groups(self.settings())

    def wait_until_assigned(self) -> float:
        """Until every group has all workers as members, is Stable and has every partition assigned.

        The clock of a measurement starts after this, so it measures processing, not group joins.
        Returns the seconds waited.
        """
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        started = time.monotonic()
        members = len(self.workers)
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="remedy-bench")
        try:
            groups = self.groups()
            partitions = self.settings().topic_partitions
            while True:
                try:
                    described = admin.describe_groups([group for group, _ in groups])
                except KafkaError as error:  # the coordinator can be unavailable right after a broker start
                    log(f"  waiting for the group coordinator: {error.__class__.__name__}")
                    time.sleep(0.5)
                    continue
                ready = True
                for group, topics in groups:
                    info = described.get(group) or {}
                    assigned = {(a["topic"], p) for m in info.get("members", [])
                                for a in (m.get("member_assignment") or {}).get("assigned_partitions", [])
                                for p in a["partitions"]}
                    wanted = {(t, p) for t in topics for p in range(partitions)}
                    if (info.get("group_state") != "Stable" or len(info.get("members", [])) != members
                            or not wanted <= assigned):
                        ready = False
                if ready:
                    return round(time.monotonic() - started, 1)
                for worker in self.workers:
                    if worker.process.poll() is not None:
                        raise RuntimeError(f"worker died; see {worker.data / 'worker.log'}")
                if time.monotonic() - started > WORKER_START_S_MAX:
                    raise RuntimeError(f"the workers' groups were not assigned in {WORKER_START_S_MAX}s: {described}")
                time.sleep(0.3)
        finally:
            admin.close()

    def decision_count(self) -> int:
        """Decisions projected, summed over the workers that project (with embedded chDB: one)."""
        total = 0
        for worker in self.workers:
            if worker.projects:
                with urllib.request.urlopen(f"{worker.url}/finance/decision-count", timeout=30) as response:
                    total += json.loads(response.read())["decisions"]
        return total

    def peak_rss_bytes(self) -> list[int]:
        peaks = []
        for worker in self.workers:
            process = worker.process
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) * 1024)
        return peaks

    def lag(self) -> int | None:
        """Messages the workers' groups have not processed and committed (None if this tree cannot tell)."""
        try:
            groups = self.groups()
        except ImportError:
            return None
        return groups_lag(self.settings().kafka, groups)

    def wait_for_decisions(self, expected: int, samples: list | None = None) -> float:
        """Until at least `expected` decisions are projected and (where the tree can tell) nothing is unprocessed.

        The engine also makes decisions of its own (proactive remedies, supersessions), so the count
        alone can pass `expected` early; zero lag over every consumed topic closes that gap. Offsets
        are committed about once a second, so this can add up to a second to the measured time.
        """
        deadline = time.monotonic() + PIPELINE_S_MAX
        while True:
            count = self.decision_count()
            now = time.time()
            if samples is not None:
                samples.append((now, count))
            if count >= expected and self.lag() in (0, None):
                return now
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker died; see {worker.data / 'worker.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {expected} decisions after {PIPELINE_S_MAX}s")
            time.sleep(COUNT_POLL_S)

    def stop(self) -> None:
        for worker in self.workers:
            stop_process_group(worker.process, 60)
        self.workers = []


@dataclass
class RunningWorker:
    process: subprocess.Popen
    url: str
    data: Path
    projects: bool  # serves /finance (with embedded chDB only one worker may)


def groups_lag(kafka, groups: list[tuple[str, list[str]]]) -> int:
    """Messages not yet processed and committed over every (group, topics): end offset minus committed."""
    from streams.runtime.kafka_io import groups_lag as lag_of

    return lag_of(kafka, groups, client_id="remedy-bench-lag")


def read_topic(topic: str) -> list:
    """Every message on a topic (all partitions), read to the current end."""
    from streams.runtime.kafka_io import read_topic as read_to_end

    from streams.runtime.settings import KafkaConnection

    return list(read_to_end(KafkaConnection(bootstrap=BOOTSTRAP), topic, PIPELINE_S_MAX, "remedy-bench"))


def decode_all(messages: list) -> list[tuple[int, dict]]:
    import schemas

    return [(m.timestamp, schemas.decode(m.value)[1]) for m in messages]


def granted_summary(decisions: list[dict]) -> dict:
    """What finance would see: final decisions' counts by outcome and granted cents."""
    from streams.measure.quality import final_decisions

    finals = final_decisions(decisions).values()
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for d in finals:
        outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
        for reason in d["reason_codes"]:
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"decisions": len(finals), "granted_cents": sum(d["granted_cents"] for d in finals),
            "outcomes": dict(sorted(outcomes.items())), "reasons": dict(sorted(reasons.items())),
            "customers_over_30d_cap": cap_violations(finals)}


def cap_violations(finals) -> int:
    """Customers whose grants in some rolling 30 days exceed the default cap (must be 0)."""
    from streams.core.policy import Policy

    policy = Policy()
    grants: dict[str, list[tuple[int, int]]] = {}
    for d in finals:
        if d["outcome"] == "GRANTED":
            at = d["decided_at"]
            at_ms = int(at.timestamp() * 1000) if isinstance(at, datetime) else int(at)
            grants.setdefault(d["customer_id"], []).append((at_ms, d["granted_cents"]))
    over = 0
    for items in grants.values():
        items.sort()
        total, start = 0, 0
        for at_ms, cents in items:
            total += cents
            while items[start][0] <= at_ms - policy.customer_window_ms:
                total -= items[start][1]
                start += 1
            if total > policy.remedy_cents_max_per_customer_30d:
                over += 1
                break
    return over


# -- measurements ---------------------------------------------------------------------------------


def measure_publish(source: Path, workload: Path, events: int) -> tuple[Deployment, dict]:
    d = Deployment(source, "pub")
    d.cli("topics", "create")
    started = time.monotonic()
    output = d.cli("publish", str(workload)).stdout
    elapsed = time.monotonic() - started
    log(output.strip())
    return d, {"events": events, "seconds": round(elapsed, 2), "events_per_s": round(events / elapsed), **load()}


def measure_bare_consumer(prefix: str, events: int) -> dict:
    """Ceiling 1: aiokafka (the client under Faust) reading the input topics with no processing."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> dict:
        from aiokafka import TopicPartition

        # Manual assignment: no group join, so the clock measures fetching, not coordination.
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        # The project's topics all have the configured partition count (they are co-partitioned).
        partitions = [
            TopicPartition(f"{prefix}.{name}.v1", p)
            for name in ("orders", "incidents", "remedy-requests")
            for p in range(int(os.environ.get("REMEDY_TOPIC_PARTITIONS", "4")))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        count, first = 0, None
        deadline = time.monotonic() + CEILING_S_MAX
        try:
            while count < events and time.monotonic() < deadline:
                if first is None:
                    first = time.time()
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                for batch in batches.values():
                    count += len(batch)
        finally:
            await consumer.stop()
        elapsed = time.time() - first
        return {"events": count, "seconds": round(elapsed, 2), "events_per_s": round(count / elapsed), **load()}

    return asyncio.run(run())


def measure_faust_noop(source: Path, prefix: str, events: int) -> dict:
    """Ceiling 2: a Faust agent with the decide agent's batching that does nothing."""
    result = BENCH_DATA / "runs" / f"{prefix}-noop.json"
    data = BENCH_DATA / "runs" / f"{prefix}-noop"
    data.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([PYTHON, str(REPO / "bench" / "noop_app.py"), BOOTSTRAP, prefix, str(events), str(result),
                                str(data)], cwd=source, env={**os.environ, "PYTHONPATH": str(source)},
                               stdout=subprocess.DEVNULL, stderr=open(data / "noop.log", "ab"), start_new_session=True)
    deadline = time.monotonic() + CEILING_S_MAX
    try:
        while not result.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Faust no-op agent failed; see {data / 'noop.log'}")
            time.sleep(0.2)
        time.sleep(0.2)
        figures = json.loads(result.read_text())
    finally:
        stop_process_group(process, 30)
    elapsed = figures["last"] - figures["first"]
    return {"events": figures["count"], "seconds": round(elapsed, 2), "events_per_s": round(figures["count"] / elapsed),
            "batch_max": figures.get("batch_max"), "batch_wait_ms": figures.get("batch_wait_ms"), **load()}


def measure_end_to_end(source: Path, workload: Path, events: int, requests: int, workers: int,
                       kind: str = "faust") -> tuple[Deployment, dict]:
    """Publish the workload into running workers; time until every decision is counted in ClickHouse.

    kind "faust": the Faust-agent worker; the first runs every role, the others SECOND_WORKER_ROLES.
    kind "loops": the hand-written loops (bench/loops_worker.py), one worker.
    """
    d = Deployment(source, f"e2e{kind}{workers}w")
    d.cli("topics", "create")
    for index in range(workers):
        d.start_worker(index, kind, roles=None if index == 0 else SECOND_WORKER_ROLES)
    assigned_s = d.wait_until_assigned()  # every group Stable with every partition assigned
    started = time.time()
    publish = subprocess.Popen([PYTHON, "-m", "streams.commands.cli", "publish", str(workload)], cwd=source, env=d.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = d.wait_for_decisions(requests)
    publish.wait(timeout=60)
    load_at_end = load()
    rss = d.peak_rss_bytes()
    d.stop()
    elapsed = done - started
    return d, {"worker": kind, "workers": workers, "events": events, "decisions": requests, "seconds": round(elapsed, 2),
               "events_per_s": round(events / elapsed), "worker_peak_rss_bytes": rss, "groups_assigned_after_s": assigned_s,
               **load_at_end}


def measure_paced(source: Path, workload: Path, rate: float) -> dict:
    """Publish at a fixed rate; decision latency from Kafka timestamps, freshness from count polls."""
    from streams.runtime.kafka_io import Publisher
    from streams.runtime.upstream import read_events

    d = Deployment(source, "paced")
    d.cli("topics", "create")
    d.start_worker()
    d.wait_until_assigned()
    wanted = int(rate * PACED_RUN_S)
    events = []
    for record_name, datum in read_events(workload):
        events.append((record_name, datum))
        if len(events) >= wanted:
            break
    requests = sum(1 for name, _ in events if name == "RemedyRequested")
    samples: list[tuple[float, int]] = []
    stop_polling = threading.Event()

    def poll() -> None:
        while not stop_polling.is_set():
            samples.append((time.time(), d.decision_count()))
            time.sleep(COUNT_POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    settings = d.settings()
    tick_s = 0.01
    per_tick = max(1, int(rate * tick_s))
    started = time.monotonic()
    with Publisher(settings) as publisher:
        for index in range(0, len(events), per_tick):
            for record_name, datum in events[index:index + per_tick]:
                publisher.publish(record_name, datum)
            publisher._producer.flush()  # send each tick's events now, as a steady upstream would
            lag = started + (index + per_tick) / rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
    achieved = len(events) / (time.monotonic() - started)
    d.wait_for_decisions(requests)
    time.sleep(0.5)
    stop_polling.set()
    poller.join()
    load_at_end = load()
    d.stop()
    from latency_hops import read_hops  # bench/latency_hops.py
    from streams.runtime.kafka_io import topic_names

    hops = read_hops(settings.kafka, topic_names(settings))
    names_requests = f"{d.prefix}.remedy-requests.v1"
    requested_at = {datum["request_id"]: ts for ts, datum in decode_all(read_topic(names_requests))}
    emitted, seen_ids = [], set()
    for ts, datum in decode_all(read_topic(f"{d.prefix}.remedy-decisions.v1")):
        if datum["decision_id"] not in seen_ids:  # a redelivered decision is visible once
            seen_ids.add(datum["decision_id"])
            emitted.append((ts, datum))
    latencies = [ts - requested_at[datum["request_id"]] for ts, datum in emitted if datum["request_id"] in requested_at]
    # Freshness: the k-th decision emitted counts as visible once the projected count reaches k.
    emitted_ms = sorted(ts for ts, _ in emitted)
    freshness, sample_index = [], 0
    for k, ts in enumerate(emitted_ms, start=1):
        while sample_index < len(samples) and samples[sample_index][1] < k:
            sample_index += 1
        if sample_index < len(samples):
            freshness.append(samples[sample_index][0] * 1000 - ts)
    return {
        "target_rate_events_per_s": round(rate), "achieved_rate_events_per_s": round(achieved), "events": len(events),
        "decisions": len(emitted),
        "decision_latency_p50_ms": percentile(latencies, 0.50), "decision_latency_p99_ms": percentile(latencies, 0.99),
        "decision_latency_max_ms": max(latencies) if latencies else None,
        "freshness_p50_ms": round(percentile(freshness, 0.50) or 0), "freshness_p99_ms": round(percentile(freshness, 0.99) or 0),
        "count_poll_ms": int(COUNT_POLL_S * 1000), "hops": hops, **load_at_end,
    }


def measure_sync(source: Path, workload: Path, rate: float) -> dict:
    """The synchronous API (POST /v1/remedy-requests) at SYNC_REQUESTS_PER_S, one request at a time
    as a console sends them, while the workload is published at `rate` in the background.

    The requests take turns between three paths, to show what the scope checks cost: a CREDIT an
    associate asks for on an order (customer, household and associate checks: the limits agent
    twice), the same asked by the system (customer and household), and a system CREDIT without an
    order (the customer's check alone, no Kafka hop besides the request and the decision). Client
    latency is measured here; the server's hops come from its Server-Timing header.
    """
    from streams.runtime.kafka_io import Publisher
    from streams.runtime.upstream import read_events

    d = Deployment(source, "sync")
    d.cli("topics", "create")
    d.start_worker()
    d.wait_until_assigned()
    url = d.workers[0].url
    settings = d.settings()
    now_ms = int(time.time() * 1000)
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")  # noqa: E731
    customers = int(SYNC_REQUESTS_PER_S * SYNC_RUN_S) + 10
    with Publisher(settings) as publisher:
        for i in range(customers):
            publisher.publish("OrderPlaced", {
                "event_id": f"sync-o{i}", "order_id": f"sync-o{i}", "customer_id": f"sync-c{i}",
                "placed_at": now_ms - 86_400_000, "total_cents": 5_000, "currency": "USD",
                "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": 5_000}],
                "shipping_address_id": f"sync-a{i}", "digital": False})
    background = []
    for record_name, datum in read_events(workload):
        background.append((record_name, datum))
        if len(background) >= rate * SYNC_RUN_S:
            break
    paths = ("household+associate", "household", "customer only")
    totals_ms, hops_ms, statuses = {path: [] for path in paths}, {}, {}
    stop = threading.Event()

    def console() -> None:
        index = 0
        while not stop.is_set() and index < customers:
            path = paths[index % len(paths)]
            body = json.dumps({
                "event_id": f"sync-e{index}", "request_id": f"sync-r{index}", "customer_id": f"sync-c{index}",
                "order_id": None if path == "customer only" else f"sync-o{index}", "incident_id": None,
                "kind": "CREDIT", "amount_cents": 500, "currency": "USD",
                "requested_by": f"assoc-sync-{index % 20}" if path == "household+associate" else "system",
                "requested_at": iso(int(time.time() * 1000)), "reason": "bench"}).encode()
            request = urllib.request.Request(f"{url}/v1/remedy-requests", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, timing = response.status, response.headers.get("Server-Timing", "")
                    response.read()
            except urllib.error.HTTPError as error:
                status, timing = error.code, ""
            totals_ms[path].append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            for part in filter(None, timing.split(", ")):
                hop, _, duration = part.partition(";dur=")
                hops_ms.setdefault(hop, []).append(float(duration))
            index += 1
            time.sleep(max(0.0, 1 / SYNC_REQUESTS_PER_S - (time.perf_counter() - started)))

    thread = threading.Thread(target=console, daemon=True)
    started = time.monotonic()
    thread.start()
    tick_s = 0.01
    per_tick = max(1, int(rate * tick_s))
    with Publisher(settings) as publisher:
        for index in range(0, len(background), per_tick):
            for record_name, datum in background[index:index + per_tick]:
                publisher.publish(record_name, datum)
            publisher._producer.flush()
            lag = started + (index + per_tick) / rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
    achieved = len(background) / (time.monotonic() - started)
    stop.set()
    thread.join(timeout=60)
    load_at_end = load()
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        held = sequencer_hold_by_level(response.read().decode())
    d.stop()
    figure = lambda values: {"n": len(values), "p50_ms": round(percentile(values, 0.50) or 0, 1),  # noqa: E731
                             "p99_ms": round(percentile(values, 0.99) or 0, 1)}
    return {"background_rate_events_per_s": round(achieved), "requests_per_s": SYNC_REQUESTS_PER_S,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "client_total": figure([ms for values in totals_ms.values() for ms in values]),
            "client_by_path": {path: figure(values) for path, values in totals_ms.items()},
            "server_hops": {hop: figure(values) for hop, values in hops_ms.items()},
            "sequencer_hold_by_level": held, **load_at_end}


def sequencer_hold_by_level(metrics_text: str) -> dict:
    """From a worker's /metrics: per scope level, how many checks the sequencer held, the mean
    hold, and the histogram bucket bounds holding the median and the 99th percentile (all checks
    of the run, background included)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, list] = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "remedy_scope_check_hold_seconds":
            continue
        for sample in family.samples:
            level = sample.labels.get("level")
            if sample.name.endswith("_bucket"):
                buckets.setdefault(level, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                sums[level] = sample.value
    out = {}
    for level, cumulative in buckets.items():
        cumulative.sort()
        count = cumulative[-1][1]
        if not count:
            continue
        bound = lambda share: next(le for le, n in cumulative if n >= share * count) * 1000  # noqa: E731
        out[level] = {"n": int(count), "mean_ms": round(sums.get(level, 0) / count * 1000, 1),
                      "p50_at_most_ms": bound(0.50), "p99_at_most_ms": bound(0.99)}
    return out


def measure_hops(source: Path, workload: Path, rate: float) -> dict:
    """bench/latency_hops.py at `rate`: a fresh Faust worker, no count poller, latency hop by hop."""
    data_root = BENCH_DATA / "runs" / "hops"
    completed = subprocess.run(
        [PYTHON, str(REPO / "bench" / "latency_hops.py"), str(workload), str(round(rate)), str(HOPS_RUN_S),
         "--data-root", str(data_root)], cwd=source, check=True, text=True, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(source), "REMEDY_BENCH_SOURCE": str(source),
             "REMEDY_KAFKA_BOOTSTRAP": BOOTSTRAP})
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _area(filename: str, function: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if filename == "~":
        if "epoll" in function:
            return "idle (epoll wait)"
        if "socket" in function:
            return "socket I/O"
        if "json" in function or "encoder" in function or "scanner" in function:
            return "json (state serialisation)"
        if "zlib" in function:
            return "zlib (held state)"
        return "builtins"
    for marker, area in (("/faust/", "faust"), ("/mode/", "faust"), ("/aiokafka/", "aiokafka"), ("/kafka/", "kafka-python"),
                         ("/asyncio/", "asyncio"), ("/json/", "json (state serialisation)"), ("fastavro", "avro codec"),
                         ("/schemas/", "avro codec"), ("/streams/core/", "decision core"),
                         ("/streams/runtime/agents.py", "agent shell"), ("/streams/runtime/align.py", "event-time aligner"),
                         ("/streams/runtime/state.py", "state + changelog"), ("/streams/runtime/kafka_io.py", "record batcher"),
                         ("/streams/", "streams shell"), ("/projections/", "projections"), ("chdb", "clickhouse"),
                         ("clickhouse_connect", "clickhouse"), ("/aiohttp/", "aiohttp (web)")):
        if marker in filename:
            return area
    return "other"


def profile_worker(source: Path, prefix: str, expected: int, out: Path, seconds_max: float = 60) -> dict:
    """cProfile the real worker draining the publish step's backlog; self time by area and top functions."""
    import pstats

    data = BENCH_DATA / "runs" / f"{prefix}-profiled"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(source), "REMEDY_KAFKA_BOOTSTRAP": BOOTSTRAP, "REMEDY_TOPIC_PREFIX": prefix,
           "REMEDY_DATA_DIR": str(data), "REMEDY_WEB_PORT": str(port)}
    # The worker leaves with os._exit: bench/profiled_worker.py writes the profile before it does.
    process = subprocess.Popen([PYTHON, str(REPO / "bench" / "profiled_worker.py"), str(out), "--loglevel", "warning"],
                               cwd=source, env=env, stdout=open(data / "worker.log", "ab"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    d = Deployment(source, "prof")
    d.workers = [RunningWorker(process, f"http://127.0.0.1:{port}", data, True)]
    deadline = time.monotonic() + WORKER_START_S_MAX
    while True:
        try:
            started = time.time()
            d.decision_count()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"profiled worker did not start; see {data / 'worker.log'}")
            time.sleep(0.3)
    # Profiling slows the worker several times over: stop after seconds_max whatever it reached.
    while time.time() - started < seconds_max and d.decision_count() < expected:
        time.sleep(1)
    done, decided = time.time(), d.decision_count()
    load_at_end = load()
    d.stop()
    if not out.exists():
        raise RuntimeError(f"the profiled worker wrote no profile; see {data / 'worker.log'}")
    stats = pstats.Stats(str(out))
    total = stats.total_tt
    areas: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():
        area = _area(filename, function)
        areas[area] = areas.get(area, 0.0) + tottime
    calls = {fn: nc for (f, _, fn), (_, nc, _, _, _) in stats.stats.items() if f.endswith("streams/runtime/batch.py")}
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:20]
    top = [f"{tt / total:6.1%} self {ct:7.2f}s cum  {Path(f).name}:{line}({fn})" for (f, line, fn), (_, _, tt, ct, _) in rows]
    # Our own code by cumulative time: where a batch's time goes inside the agents.
    ours = [kv for kv in stats.stats.items() if "/streams/" in kv[0][0] or "/projections/" in kv[0][0]]
    ours.sort(key=lambda kv: -kv[1][3])
    top_ours = [f"{ct / total:6.1%} cum {ct:7.2f}s ({nc} calls)  {Path(f).parent.name}/{Path(f).name}:{line}({fn})"
                for (f, line, fn), (_, nc, _, ct, _) in ours[:20]]
    return {"decisions": decided, "seconds": round(done - started, 1),
            "input_events_decoded": calls.get("decode_input", 0), "decide_batches": calls.get("fold_batch", 0),
            "input_events_per_s_profiled": round(calls.get("decode_input", 0) / (done - started)),
            "profiled_main_thread_s": round(total, 2),
            "self_time_share_by_area": {k: round(v / total, 3) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])},
            "top_self_time": top, "top_cumulative_project_code": top_ours, **load_at_end}


def run_script(source: Path, script: str, *args: str) -> dict:
    completed = subprocess.run([PYTHON, str(REPO / "bench" / script), *args], cwd=source, check=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(source)}, stdout=subprocess.PIPE)
    return {**json.loads(completed.stdout), **load()}


def run_backtest(source: Path, customers: int, days: int, seed: int) -> dict:
    """bench/backtest_replay.py under /usr/bin/time when it is there (its peak RSS is the largest
    process's; the script reports each process's own)."""
    command = [PYTHON, str(REPO / "bench" / "backtest_replay.py"), str(customers), str(days), str(seed), "--quiet"]
    timed = Path("/usr/bin/time").exists()
    if timed:
        command = ["/usr/bin/time", "-f", "%e s %M KB", *command]
    started = time.monotonic()
    completed = subprocess.run(command, cwd=source, check=True, text=True, env={**os.environ, "PYTHONPATH": str(source)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = {**json.loads(completed.stdout), "wall_seconds": round(time.monotonic() - started, 1), **load()}
    if timed and completed.stderr.strip():
        found["usr_bin_time"] = completed.stderr.strip().splitlines()[-1]
    return found


# -- the run --------------------------------------------------------------------------------------


def broker(action: str) -> None:
    subprocess.run([str(REPO / "deploy" / "local" / "kafka.sh"), action], env={**os.environ, **BROKER_ENV}, check=True,
                   stdout=sys.stderr)


def ratio(value: float | None, ceiling: dict) -> float | None:
    return round(value / ceiling["events_per_s"], 3) if value and ceiling.get("events_per_s") else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000, help="simulated customers (20k x 30 days ~ 100k events)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--state-customers", type=int, default=1_000_000,
                        help="customers for the state-size figure (0 skips it; 1M takes 5-7 minutes on 2 cores)")
    parser.add_argument("--state-days", type=int, default=30)
    parser.add_argument("--backtest-customers", type=int, default=20_000,
                        help="customers for the backtest replay figure (0 skips it; 1,000,000 x 30 days takes 8 to 11 "
                             "minutes and up to 10 GB on 2 cores: bench/README.md, \"Backtest\")")
    parser.add_argument("--backtest-days", type=int, default=30)
    parser.add_argument("--source", default="worktree", help="worktree (default), a commit such as HEAD, or a directory")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: ceilings,loops,scaling,paced,sync,hops,profile,state,quality,backtest")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    source = source_tree(args.source)
    # In-process helpers (publisher, codec, quality) come from the measured tree too.
    sys.path.insert(0, str(source))
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": str(source),
                     "machine": load(), "workload": {"customers": args.customers, "days": args.days, "seed": args.seed}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    results["commit"] = commit + ("" if args.source != "worktree" else " + working tree")

    workload, labels = BENCH_DATA / "workload.jsonl", BENCH_DATA / "labels.jsonl"
    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    log(f"simulating {args.customers:,} customers x {args.days} days")
    subprocess.run([PYTHON, "-m", "streams.commands.cli", "simulate", "--customers", str(args.customers), "--days", str(args.days),
                    "--seed", str(args.seed), "--out", str(workload), "--labels", str(labels)],
                   cwd=source, env={**os.environ, "PYTHONPATH": str(source)}, check=True, stdout=sys.stderr)
    lines = workload.read_text().splitlines()
    events = len(lines)
    requests = sum(1 for line in lines if line.startswith('{"type":"RemedyRequested"'))
    del lines
    results["workload"].update(events=events, requests=requests)

    broker("start")
    try:
        log("publish throughput (remedy-ledger publish, validation included)")
        published, results["publish"] = measure_publish(source, workload, events)
        log(f"  {results['publish']}")
        if "profile" not in skip:
            log("publish breakdown: each stage alone")
            results["publish_breakdown"] = run_script(source, "publish_breakdown.py", str(workload), BOOTSTRAP)
            log(f"  {results['publish_breakdown']}")
        if "ceilings" not in skip:
            log("ceiling: bare aiokafka consumer")
            results["ceiling_bare_consumer"] = measure_bare_consumer(published.prefix, events)
            log(f"  {results['ceiling_bare_consumer']}")
            log("ceiling: Faust no-op agent")
            results["ceiling_faust_noop"] = measure_faust_noop(source, published.prefix, events)
            log(f"  {results['ceiling_faust_noop']}")
        if "loops" not in skip:
            if (source / "streams" / "runtime" / "batch.py").exists():
                log("ceiling: the hand-written loops (bench/loops_worker.py), end to end, 1 worker")
                loops, results["ceiling_loops"] = measure_end_to_end(source, workload, events, requests, 1, kind="loops")
                loops_decisions = [d for _, d in decode_all(read_topic(f"{loops.prefix}.remedy-decisions.v1"))]
                results["ceiling_loops"]["granted"] = granted_summary(loops_decisions)
                log(f"  {results['ceiling_loops']}")
            else:  # bench/loops_worker.py runs the core through streams.runtime (the layout since issue 8)
                log(f"ceiling: loops skipped, {source} has no streams/runtime")

        log("end to end, Faust agents, 1 worker")
        one, results["end_to_end_1_worker"] = measure_end_to_end(source, workload, events, requests, 1)
        log(f"  {results['end_to_end_1_worker']}")
        one_decisions = [d for _, d in decode_all(read_topic(f"{one.prefix}.remedy-decisions.v1"))]
        results["end_to_end_1_worker"]["granted"] = granted_summary(one_decisions)
        if "granted" in results.get("ceiling_loops", {}):
            results["ceiling_loops"]["granted_identical_to_agents"] = (
                results["ceiling_loops"]["granted"] == results["end_to_end_1_worker"]["granted"])
        if "quality" not in skip:
            report = subprocess.run([PYTHON, "-m", "streams.commands.cli", "report", "quality", "--labels", str(labels), "--json"],
                                    cwd=source, env=one.env, check=True, capture_output=True, text=True)
            quality = json.loads(report.stdout)
            results["quality"] = {
                "honest_frictionless_share": quality["honest"]["frictionless_share"],
                "honest_wrongly_denied_cents": quality["honest"]["wrongly_denied_cents"],
                "honest_escalated_cents": quality["honest"]["escalated_cents"],
                "excess_stopped_share": quality["excess"]["stopped_share"],
                "excess_prevented_cents": quality["excess"]["prevented_cents"],
                "excess_leaked_cents": quality["excess"]["leaked_cents"],
                "by_scheme": {k: v["stopped_share"] for k, v in quality["by_scheme"].items()},
            }
        if "scaling" not in skip:
            log(f"end to end, Faust agents, 2 workers (the second --roles {SECOND_WORKER_ROLES})")
            two, results["end_to_end_2_workers"] = measure_end_to_end(source, workload, events, requests, 2)
            two_decisions = [d for _, d in decode_all(read_topic(f"{two.prefix}.remedy-decisions.v1"))]
            results["end_to_end_2_workers"]["granted"] = granted_summary(two_decisions)
            results["end_to_end_2_workers"]["granted_identical_to_1_worker"] = (
                results["end_to_end_2_workers"]["granted"] == results["end_to_end_1_worker"]["granted"]
            )
            log(f"  {results['end_to_end_2_workers']}")
        if "paced" not in skip:
            rate = results["end_to_end_1_worker"]["events_per_s"] / 2
            log(f"latency and freshness at half of peak ({rate:.0f} events/s for {PACED_RUN_S}s)")
            results["paced_half_peak"] = measure_paced(source, workload, rate)
            log(f"  {results['paced_half_peak']}")
        if "sync" not in skip:
            rate = results["end_to_end_1_worker"]["events_per_s"] / 2
            log(f"synchronous API: {SYNC_REQUESTS_PER_S} requests/s for {SYNC_RUN_S}s over {rate:.0f} events/s")
            results["sync_half_peak"] = measure_sync(source, workload, rate)
            log(f"  {results['sync_half_peak']}")
        if "hops" not in skip:
            rate = results["end_to_end_1_worker"]["events_per_s"] / 2
            log(f"latency hop by hop (latency_hops.py, no count poller) at {rate:.0f} events/s for {HOPS_RUN_S}s")
            results["hops_half_peak"] = measure_hops(source, workload, rate)
            log(f"  {results['hops_half_peak']}")
        if "profile" not in skip:
            log("profile of the Faust-agent worker (cProfile, main thread) draining the publish step's backlog")
            results["profile_worker"] = profile_worker(source, published.prefix, requests, RESULTS / "worker.prof")
            log(f"  {results['profile_worker']['self_time_share_by_area']}")
    finally:
        broker("stop")

    if "profile" not in skip:
        log("profile of the decide path in process (cProfile)")
        results["profile_decide"] = run_script(source, "profile_decide.py", str(workload), "50000",
                                               str(RESULTS / "decide.prof"))
    if "quality" not in skip:
        log("quality with ideal ordering (the same workload folded in process)")
        ideal = run_script(source, "quality_in_process.py", str(args.customers), str(args.days), str(args.seed))
        results["quality_in_process"] = {
            "honest_frictionless_share": ideal["report"]["honest"]["frictionless_share"],
            "excess_stopped_share": ideal["report"]["excess"]["stopped_share"],
            "excess_leaked_cents": ideal["report"]["excess"]["leaked_cents"],
            "by_scheme": {k: v["stopped_share"] for k, v in ideal["report"]["by_scheme"].items()},
            "reasons": ideal["reasons"],
        }
    if "state" not in skip and args.state_customers:
        log(f"state size with {args.state_customers:,} customers (in-process fold)")
        results["state"] = run_script(source, "state_size.py", str(args.state_customers), str(args.state_days), str(args.seed))
    if "backtest" not in skip and args.backtest_customers:
        log(f"backtest replay, {args.backtest_customers:,} customers x {args.backtest_days} days (no Kafka; "
            "bench/backtest_replay.py)")
        results["backtest"] = run_backtest(source, args.backtest_customers, args.backtest_days, args.seed)
        log(f"  {results['backtest']}")

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["machine_at_end"] = load()
    table = render(results)  # also records each target's verdict under results["targets"]
    text = json.dumps(results, indent=2)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / "latest.txt").write_text(table + "\n")
    print(table)
    print(text)
    shutil.rmtree(BENCH_DATA / "runs", ignore_errors=True)
    return 0


def same(a: dict | None, b: dict | None) -> str:
    """"yes" when two granted summaries match, else what differs (final decisions, granted cents)."""
    if not a or not b:
        return "n/a"
    if a == b:
        return "yes"
    return f"NO {a['decisions']}/{b['decisions']} dec, {a['granted_cents']}/{b['granted_cents']} c"


def render(r: dict) -> str:
    """The summary table: figure, value, target, ratios to the three ceilings, cores and load."""
    bare, noop, loops = r.get("ceiling_bare_consumer", {}), r.get("ceiling_faust_noop", {}), r.get("ceiling_loops", {})
    rows = []
    checks = r.setdefault("targets", {})

    def row(name: str, value, unit: str, where: dict, target_key: str | None = None, rate: bool = False):
        target = ""
        if target_key in TARGETS:
            op, limit = TARGETS[target_key]
            ok = value is not None and (value >= limit if op == ">=" else value <= limit)
            target = f"{op} {limit:,} {'ok' if ok else 'MISSED'}"
            checks.setdefault(target_key, []).append({"figure": name.strip(), "value": value, "met": ok})
        ratios = (f"{ratio(value, bare) or '':>8} {ratio(value, noop) or '':>8} {ratio(value, loops) or '':>8}" if rate
                  else f"{'':>8} {'':>8} {'':>8}")
        if isinstance(value, float) and abs(value) < 10:
            shown = f"{value:.2f}"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = f"{value:,.0f}"
        else:
            shown = str(value)
        rows.append(f"{name:46} {shown:>14} {unit:8} {target:22} {ratios} "
                    f"{where.get('cores', '')}c {where.get('load_1m', '')}/{where.get('load_5m', '')}")

    header = (f"{'figure':46} {'value':>14} {'unit':8} {'target':22} {'x bare':>8} {'x faust':>8} {'x loops':>8} "
              "cores load1/5")
    w = r["workload"]
    lines = [f"workload: {w['events']:,} events ({w['requests']:,} requests), {w['customers']:,} customers x {w['days']} days; "
             f"source {r['commit']}", header, "-" * len(header)]
    row("ceiling: bare aiokafka consumer", bare.get("events_per_s"), "ev/s", bare, rate=True)
    batching = f" ({noop['batch_max']}/{noop['batch_wait_ms']} ms)" if noop.get("batch_max") else ""
    row(f"ceiling: Faust no-op agent{batching}", noop.get("events_per_s"), "ev/s", noop, rate=True)
    if loops:
        row("ceiling: hand-written loops, end to end", loops.get("events_per_s"), "ev/s", loops, rate=True)
    p = r.get("publish", {})
    row("publish (remedy-ledger publish)", p.get("events_per_s"), "ev/s", p, "publish_events_per_s", rate=True)
    breakdown = r.get("publish_breakdown")
    if breakdown:
        for stage, label in (("validate_only", "validate only"), ("validate_encode_spool", "validate+encode to spool"),
                             ("send_spool_record_batches", "send spool (record batches)")):
            if stage in breakdown:  # older trees measured other stages
                row(f"  publish stage alone: {label}", breakdown[stage]["events_per_s"], "ev/s", breakdown, rate=True)
    e1 = r.get("end_to_end_1_worker", {})
    row("Faust agents end to end, 1 worker", e1.get("events_per_s"), "ev/s", e1, rate=True)
    if noop.get("events_per_s") and e1.get("events_per_s"):
        row("  1 worker / Faust no-op", ratio(e1["events_per_s"], noop), "x", e1, "agents_x_faust_noop")
    e2 = r.get("end_to_end_2_workers")
    if e2:
        row("Faust agents end to end, 2 workers", e2.get("events_per_s"), "ev/s", e2, "end_to_end_2_workers_events_per_s",
            rate=True)
        if noop.get("events_per_s"):
            row("  2 workers / Faust no-op", ratio(e2["events_per_s"], noop), "x", e2, "agents_x_faust_noop")
        row("  final decisions same as 1 worker", same(e2.get("granted"), e1.get("granted")), "", e2)
        row("  customers over the 30-day cap (1w/2w)",
            f"{e1['granted']['customers_over_30d_cap']}/{e2['granted']['customers_over_30d_cap']}", "", e2)
    if "granted" in loops and "granted" in e1:
        row("  loops' final decisions same as agents' (1w)", same(loops["granted"], e1["granted"]), "", loops)
    if e1.get("worker_peak_rss_bytes"):
        row(f"worker peak RSS ({w['customers']:,} customers)", e1["worker_peak_rss_bytes"][0] / 2**20, "MiB", e1)
    paced = r.get("paced_half_peak")
    if paced:
        row("paced run rate (half of 1-worker peak)", paced["achieved_rate_events_per_s"], "ev/s", paced, rate=True)
        row("decision latency p50", paced["decision_latency_p50_ms"], "ms", paced)
        row("decision latency p99", paced["decision_latency_p99_ms"], "ms", paced, "decision_latency_p99_ms")
        for name, figure in (paced.get("hops") or {}).items():
            if figure["n"]:
                row(f"  {name.replace('_', ' ')} p50/p99 (n={figure['n']:,})", f"{figure['p50_ms']}/{figure['p99_ms']}",
                    "ms", paced)
        row("projection freshness p99", paced["freshness_p99_ms"], "ms", paced, "freshness_p99_ms")
    sync = r.get("sync_half_peak")
    if sync:
        row("sync API background rate", sync["background_rate_events_per_s"], "ev/s", sync, rate=True)
        row(f"sync API decision p50/p99 (n={sync['client_total']['n']}, client)",
            f"{sync['client_total']['p50_ms']}/{sync['client_total']['p99_ms']}", "ms", sync)
        for name, figure in sync.get("client_by_path", {}).items():
            row(f"  {name} (n={figure['n']}) p50/p99", f"{figure['p50_ms']}/{figure['p99_ms']}", "ms", sync)
        for name, figure in sync["server_hops"].items():
            row(f"  server {name} p50/p99", f"{figure['p50_ms']}/{figure['p99_ms']}", "ms", sync)
        for level, figure in (sync.get("sequencer_hold_by_level") or {}).items():
            row(f"  sequencer hold, {level} (n={figure['n']:,}) mean / p50 <= / p99 <=",
                f"{figure['mean_ms']}/{figure['p50_at_most_ms']:g}/{figure['p99_at_most_ms']:g}", "ms", sync)
    hops = r.get("hops_half_peak")
    if hops:
        row("latency_hops.py run rate (no poller)", hops["achieved_rate_events_per_s"], "ev/s", hops, rate=True)
        for name, figure in hops["figures"].items():
            if figure["n"]:
                row(f"  {name.replace('_', ' ')} p50/p99 (n={figure['n']:,})", f"{figure['p50_ms']}/{figure['p99_ms']}",
                    "ms", hops)
    worker_profile = r.get("profile_worker")
    if worker_profile:
        row("worker draining a backlog (cProfile on)", worker_profile["input_events_per_s_profiled"], "ev/s", worker_profile,
            rate=True)
        row("  mean events per decide batch", worker_profile["input_events_decoded"] / max(1, worker_profile["decide_batches"]),
            "events", worker_profile)
        for area, share in list(worker_profile["self_time_share_by_area"].items())[:8]:
            row(f"  worker main thread: {area}", share * 100, "%", worker_profile)
    prof = r.get("profile_decide")
    if prof:
        row("decide path in process (cProfile on)", prof["events_per_s_profiled"], "ev/s", prof, rate=True)
    state = r.get("state")
    if state:
        row(f"state: serialised, {state['customers']:,} customers", state["state_bytes"] / 2**20, "MiB", state)
        row("state: fold process peak RSS", state["peak_rss_bytes"] / 2**20, "MiB", state)
        if state["customers"] >= 1_000_000:
            row("  RSS with 1M customers (target)", state["peak_rss_bytes"], "bytes", state, "state_1m_customers_rss_bytes")
    bt = r.get("backtest")
    if bt:
        row(f"backtest replay {bt['customers']:,} x {bt['days']}d, 2 runs",
            bt["replay_seconds_both_runs"], "s", bt)
        row(f"  per run ({bt['processes']} processes)", bt["events_per_s_per_run"], "ev/s", bt)
        if bt["customers"] >= 1_000_000:
            row("  1M customers' month (target)", bt["replay_seconds_both_runs"], "s", bt,
                "backtest_1m_customers_replay_s")
        row("  peak RSS, largest run process", max(bt["run_peak_rss_bytes"]) / 2**20, "MiB", bt)
        row("  peak RSS, sum of processes (shared in each)",
            (bt["peak_rss_bytes"] + sum(bt["run_peak_rss_bytes"])) / 2**20, "MiB", bt)
    lines_q = []
    for key, where in (("quality", "Kafka run, 1 worker"), ("quality_in_process", "in process, ideal ordering")):
        q = r.get(key)
        if q:
            lines_q.append(f"quality ({where}): honest granted without friction {q['honest_frictionless_share']}, "
                           f"abusers' excess claims stopped {q['excess_stopped_share']} {q['by_scheme']}")
    return "\n".join(lines + rows + lines_q)


if __name__ == "__main__":
    sys.exit(main())
