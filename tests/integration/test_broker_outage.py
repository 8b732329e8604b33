"""Broker outages mid-run: the worker resumes, and no request is lost, doubled or misjudged.

The shared test broker serves other tests at the same time, so this test starts a broker of its
own (deploy/local/kafka.sh on free ports with its own data directory) and stops it at the end,
even on failure. Both runs below use that broker, each with its own topic prefix:

1. Reference: a simulated file (~8.6k events) is published, then one worker decides it without
   interruption.
2. Outage: the customers of the first two thirds of the same file (part A) are published, the
   worker starts, and mid-way through part A the broker JVM is SIGKILLed, stays down for
   KILL_DOWN_S, and is started again on the same data directory (an unclean restart: it recovers
   its logs). Once the worker makes progress again, the rest of the customers (part B) are
   published while it runs, and at once the broker is frozen with SIGSTOP for FREEZE_S and then
   continued (SIGCONT): its connections stay open but nothing answers, so requests time out rather
   than being refused.

The file is split by customer, so each customer's events keep their order on the log. The worker
runs with small batches (REMEDY_DECIDE_BATCH_MAX=10), so both outages land while it has work:
the group's lag is measured and printed just before each one and must not be zero.

A worker that exits during an outage (the design retries transient errors with a bound and then
crashes loudly, exit 70) is restarted as a supervisor would, once the broker answers again; the
restarts are counted and printed. A worker that stays up but stops consuming after the broker is
back (its group's lag does not change for STALL_S) fails the test with its log: that is a hang.

Afterwards, on the outage run:
(a) no request is escalated ORDER_NOT_FOUND, INCIDENT_NOT_FOUND or CUSTOMER_UNKNOWN that the
    reference did not escalate so;
(b) every request of the file has exactly one final (standing) decision, no decision id carries
    two contents, and the proactive remedies decided are those of the reference;
(c) final decisions equal the reference's, except where the outcome depends on timing by design
    (household and associate room is first come, first served across partitions; a request
    decided while an earlier claim of its customer waited for its household or associate answer;
    and the customers or households of such requests): those are printed, not failed;
(d) `remedy-ledger audit --json` exits 0 and `remedy-ledger verify` passes.

About 2.5 minutes on 2 cores (a broker restart after SIGKILL takes 6-20 s while it recovers its logs).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streams.measure.quality import final_decisions
from streams.runtime.kafka_io import worker_lag
from tests.support.decision_log import (
    check_log,
    decided_during_a_check,
    essence,
    fcfs,
    mark_log,
    requests_of,
)
from tests.integration.conftest import PIPELINE_WAIT_S_MAX, REPO, Deployment, _free_port

pytestmark = pytest.mark.integration

KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"
# The outages the issue names.
KILL_DOWN_S = 15
FREEZE_S = 40
# The workload: ~8.6k events, ~530 requests, ~570 proactive remedies (the simulator dates it in the past,
# as publish requires).
CUSTOMERS, DAYS, SEED, ABUSE_RATE = 2400, 20, 20261130, 0.05
# Customers up to this index are part A (published before the worker starts), the rest part B.
PART_A_CUSTOMERS_MAX = 1600
# Small batches, in both runs: the file takes ~15 s to decide instead of ~4 s, so outages land mid-stream.
WORKER_ENV = {"REMEDY_DECIDE_BATCH_MAX": "10", "REMEDY_PROJECT_BATCH_MAX": "20"}
# The broker is SIGKILLed once the decide agent has handled this many events (of ~6k in part A).
KILL_AFTER_EVENTS = 1200
# After the broker is back, the worker has resumed once its decide agent handled this many more events.
RESUME_EVENTS = 300
# No change in the group's lag for this long, with work left and the broker up, is a hang.
STALL_S = 90.0
# The worker may be restarted this many times in all before the test gives up on it.
RESTARTS_MAX = 6
# Reason codes that say an upstream event was not there in time.
NOT_FOUND_CODES = {"ORDER_NOT_FOUND", "INCIDENT_NOT_FOUND", "CUSTOMER_UNKNOWN"}
# Log lines that explain a hang or a crash.
TROUBLE_SIGNS = ("CRITICAL", "Traceback", "crashed", "batch of", "wait_empty", "member_id was not recognized",
                 "worker stopped", "exiting")


def say(text: str) -> None:
    print(f"[outage] {text}", flush=True)


# The private broker ---------------------------------------------------------------------------------


class PrivateBroker:
    """A single-node broker of this test's own, run by deploy/local/kafka.sh (its JVM's pid is in
    <data>/kafka/kafka.pid; kafka.sh start on the same data directory restarts it)."""

    def __init__(self, root: Path):
        self.port = _free_port()
        self.controller_port = _free_port()
        while self.controller_port == self.port:
            self.controller_port = _free_port()
        self.root = root
        self.env = {**os.environ, "REMEDY_DATA_DIR": str(root), "REMEDY_KAFKA_PORT": str(self.port),
                    "REMEDY_KAFKA_CONTROLLER_PORT": str(self.controller_port)}
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid_file = root / "kafka" / "kafka.pid"
        self.properties = root / "kafka" / "server.properties"
        self.frozen_pid: int | None = None

    def script(self, command: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(KAFKA_SH), command], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout_s)

    def start(self) -> float:
        """kafka.sh start; returns how long until the broker answered."""
        started = time.monotonic()
        result = self.script("start")
        assert result.returncode == 0, f"kafka.sh start failed:\n{result.stdout}\n{result.stderr}"
        return time.monotonic() - started

    def pid(self) -> int:
        """The broker JVM's pid, checked against its command line (never signal a recycled pid)."""
        pid = int(self.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        assert f"kafka.Kafka {self.properties}" in cmdline, f"pid {pid} is not this test's broker: {cmdline[:200]}"
        return pid

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid), f"broker pid {pid} survived SIGKILL"

    def freeze(self) -> None:
        self.frozen_pid = self.pid()
        os.kill(self.frozen_pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.frozen_pid is not None:
            os.kill(self.frozen_pid, signal.SIGCONT)
            self.frozen_pid = None

    def stop(self) -> None:
        try:
            self.thaw()  # a frozen broker would only die by kafka.sh's SIGKILL after 30 s
        except ProcessLookupError:
            pass
        result = self.script("stop", timeout_s=90)
        say(f"private broker stopped: {result.stdout.strip().splitlines()[-1:]} {result.stderr.strip()[-300:]}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "kafka" / "logs" / "server.log"
        if not path.exists():
            return "(no broker log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def private_broker(tmp_path):
    broker = PrivateBroker(tmp_path / "broker")
    say(f"starting a private broker on {broker.bootstrap} (data {broker.root})")
    took = broker.start()
    say(f"private broker up in {took:.1f}s (pid {broker.pid()})")
    yield broker
    broker.stop()


# Workload ---------------------------------------------------------------------------------------------


def customer_index(line: str) -> int:
    customer = json.loads(line)["customer_id"]  # cust-0001234
    return int(customer.rsplit("-", 1)[1])


def workload(directory: Path) -> tuple[Path, Path, Path]:
    """The simulated file, and its part A and part B (split by customer, each in file order)."""
    directory.mkdir(parents=True, exist_ok=True)
    events = directory / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "streams.commands.cli", "simulate",
         "--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", str(SEED), "--abuse-rate", str(ABUSE_RATE),
         "--out", str(events), "--labels", str(directory / "labels.jsonl")],
        cwd=REPO, check=True, capture_output=True)
    part_a, part_b = directory / "part-a.jsonl", directory / "part-b.jsonl"
    with open(events) as source, open(part_a, "w") as a, open(part_b, "w") as b:
        for line in source:
            (a if customer_index(line) <= PART_A_CUSTOMERS_MAX else b).write(line)
    return events, part_a, part_b


# Supervising the worker ----------------------------------------------------------------------------


@dataclass
class Supervisor:
    """Restarts the worker when it exited (once the broker answers), watches for a hang."""

    deployment: Deployment
    restarts: list[str] = field(default_factory=list)
    lag: int | None = None
    lag_changed: float = field(default_factory=time.monotonic)

    def health(self) -> dict | None:
        try:
            return self.deployment.get("/health")["agents"]
        except (OSError, ValueError, KeyError):
            return None

    def alive(self) -> bool:
        return self.deployment.process is not None and self.deployment.process.poll() is None

    def exited(self) -> int | None:
        process = self.deployment.process
        return None if process is None or process.poll() is None else process.returncode

    def ensure_running(self, phase: str) -> None:
        """Restart the worker if it exited (the broker must answer now)."""
        while not self.alive():
            code = self.exited()
            self.restarts.append(f"{phase}: exit {code}")
            say(f"worker exited with {code} ({phase}); restarting it like a supervisor "
                f"(restart {len(self.restarts)}):\n{trouble(self.deployment.log_path)}")
            assert len(self.restarts) <= RESTARTS_MAX, (
                f"the worker needed more than {RESTARTS_MAX} restarts:\n{self.deployment.log_tail()}")
            self.deployment.process = None
            mark_log(self.deployment.log_path, f"supervisor restart {len(self.restarts)} ({phase})", "outage test")
            try:
                self.deployment.start_worker()
            except AssertionError as error:
                say(f"restart failed: {str(error)[:500]}")
                time.sleep(2)

    def poll_lag(self, what: str) -> int:
        """The group's lag; fails the test when it has not changed for STALL_S with work left."""
        self.ensure_running(what)
        lag = worker_lag(self.deployment.settings)
        now = time.monotonic()
        if lag != self.lag:
            self.lag, self.lag_changed = lag, now
        elif lag and now - self.lag_changed > STALL_S:
            raise AssertionError(
                f"HANG: the worker (pid {self.deployment.process.pid}) made no progress for {now - self.lag_changed:.0f}s "
                f"with {lag} messages left and the broker up ({what}); /health: {self.health()}\n"
                f"{trouble(self.deployment.log_path)}\n--- worker log tail:\n{self.deployment.log_tail(25)}")
        return lag

    def reset_stall_clock(self) -> None:
        self.lag, self.lag_changed = None, time.monotonic()


def trouble(path: Path, lines_max: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    found = [line[:400] for line in path.read_text(errors="replace").splitlines()
             if any(sign in line for sign in TROUBLE_SIGNS)]
    return f"--- {len(found)} trouble lines in {path}, the last {min(len(found), lines_max)}:\n" + "\n".join(
        found[-lines_max:])


def log_figures(path: Path) -> str:
    """What the worker log says about the outages: rebalances, held events let go, outbox re-sends."""
    text = path.read_text(errors="replace") if path.exists() else ""
    assigned = len(re.findall(r"partitions assigned:", text))
    let_go = sum(int(n) for n in re.findall(r"(\d+) held events let go for a rebalance", text))
    resent = sum(int(n) for n in re.findall(r"re-sending (\d+) messages", text))
    resent += sum(int(n) for n in re.findall(r"(\d+) outbox messages to re-send", text))
    return (f"{assigned} partition assignments (1 at start), {let_go} held events let go for rebalances, "
            f"{resent} outbox messages re-sent on restores")


def sleep_watching(supervisor: Supervisor, seconds: float, label: str) -> list[str]:
    """Sleep through an outage, noting whether the worker stays up (it is not restarted meanwhile)."""
    notes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not supervisor.alive() and not any(label in n for n in notes):
            notes.append(f"{label}: worker exited with {supervisor.exited()} after "
                         f"{seconds - (deadline - time.monotonic()):.0f}s")
            say(notes[-1])
        time.sleep(0.5)
    return notes


def wait_decided(deployment: Deployment, events: Path, supervisor: Supervisor) -> None:
    """`remedy-ledger wait --file` in slices, restarting a dead worker and failing on a hang."""
    deadline = time.monotonic() + PIPELINE_WAIT_S_MAX
    idle_since = None
    while True:
        result = deployment.cli("wait", "--file", str(events), "--timeout", "5", check=False)
        if result.returncode == 0:
            return
        lag = supervisor.poll_lag("waiting for every request to be decided and projected")
        if lag == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 30:
                say(f"nothing left to process, but `wait` says: {result.stderr.strip().splitlines()[-3:]}")
                return
        else:
            idle_since = None
        if time.monotonic() > deadline:
            raise AssertionError(f"remedy-ledger wait gave up after {PIPELINE_WAIT_S_MAX}s:\n{result.stderr[-2000:]}\n"
                                 f"{trouble(deployment.log_path)}")


# Checks ---------------------------------------------------------------------------------------------


def not_found(decisions: list[dict]) -> dict[str, set[str]]:
    """Request id -> the not-found reason codes any of its decisions carried."""
    found: dict[str, set[str]] = {}
    for decision in decisions:
        codes = set(decision["reason_codes"]) & NOT_FOUND_CODES
        if codes:
            found.setdefault(decision["request_id"], set()).update(codes)
    return found


def compare(reference: list[dict], decisions: list[dict]) -> tuple[list[str], list[str]]:
    """(c): (differences explained by first-come-first-served timing, unexplained differences)."""
    ref_finals, finals = final_decisions(reference), final_decisions(decisions)
    differing = sorted(r for r in set(ref_finals) | set(finals) if essence(ref_finals.get(r)) != essence(finals.get(r)))
    contended = {r for r in differing if fcfs(ref_finals.get(r)) or fcfs(finals.get(r))}
    during = (decided_during_a_check(reference) | decided_during_a_check(decisions)) & set(differing)

    def parties(request_id: str) -> set[str]:
        sides = [d for d in (ref_finals.get(request_id), finals.get(request_id)) if d is not None]
        return {f"customer:{d['customer_id']}" for d in sides} | {
            f"household:{d['household_id']}" for d in sides if d.get("household_id")}

    timed = contended | during
    involved = set().union(*(parties(r) for r in timed)) if timed else set()
    cascaded = {r for r in differing if r not in timed and parties(r) & involved}
    other = [r for r in differing if r not in timed | cascaded]
    line = lambda r, why: f"    {r}: reference {essence(ref_finals.get(r))} vs {essence(finals.get(r))}  ({why})"  # noqa: E731
    explained = ([line(r, "household/associate first come, first served") for r in sorted(contended)]
                 + [line(r, "decided while an earlier claim of the customer was at its household/associate check")
                    for r in sorted(during - contended)]
                 + [line(r, "same customer or household as one of the above") for r in sorted(cascaded)])
    return explained, [line(r, "unexplained") for r in other]


def audit_and_verify(deployment: Deployment, label: str) -> str:
    """(d): the audit and verify pass; returns a line for the report."""
    audited = deployment.cli("audit", "--json", check=False)
    try:
        result = json.loads(audited.stdout)
    except json.JSONDecodeError:
        result = {}
    assert audited.returncode == 0, (f"{label}: remedy-ledger audit failed (exit {audited.returncode}):\n"
                                     f"{json.dumps(result.get('findings', result), default=str)[:4000]}\n"
                                     f"{'' if result else audited.stdout[-2000:]}{audited.stderr[-2000:]}")
    verified = deployment.cli("verify", "--json", "--wait", "60", check=False)
    try:
        report = json.loads(verified.stdout)
    except json.JSONDecodeError:
        report = {}
    assert verified.returncode == 0 and report.get("ok"), (
        f"{label}: verify failed (exit {verified.returncode}):\n"
        f"{json.dumps(report.get('differences', report), default=str)[:3000]}\n{verified.stdout[-1000:]}"
        f"{verified.stderr[-2000:]}")
    counts = ", ".join(f"{k} {result[k]}" for k in ("requests", "decided", "missing", "proactive_expected",
                                                    "proactive_decided", "conflicting_ids", "cap_breaches",
                                                    "reservations_leaked") if k in result)
    return f"audit ok ({counts}); verify ok"


# The test -------------------------------------------------------------------------------------------


def test_the_worker_resumes_after_a_broker_kill_and_a_broker_freeze_without_losing_or_misjudging_requests(
        private_broker, tmp_path):
    started = time.monotonic()
    events, part_a, part_b = workload(tmp_path / "workload")
    requests = requests_of(events)
    lines = sum(1 for _ in events.open())
    say(f"workload: {lines} events, {len(requests)} requests; part A {sum(1 for _ in part_a.open())} events "
        f"(customers 1-{PART_A_CUSTOMERS_MAX}), part B {sum(1 for _ in part_b.open())} events")

    # 1. The reference: the whole file published first, decided without interruption.
    reference = Deployment(tmp_path / "reference", REMEDY_KAFKA_BOOTSTRAP=private_broker.bootstrap, **WORKER_ENV)
    try:
        reference.cli("publish", str(events))
        reference.start_worker()
        wait_decided(reference, events, Supervisor(reference))
        reference_decisions = reference.decisions()
        assert reference.process.poll() is None, f"the reference worker exited:\n{reference.log_tail()}"
    finally:
        reference.stop_worker()
    reference_counts = check_log(requests, reference_decisions, "reference")
    reference_s = time.monotonic() - started
    say(f"reference: {reference_counts['decisions']} decisions, {len(final_decisions(reference_decisions))} final, "
        f"{len(not_found(reference_decisions))} with a not-found reason; {reference_s:.0f}s")

    # 2. The outage run.
    deployment = Deployment(tmp_path / "outage", REMEDY_KAFKA_BOOTSTRAP=private_broker.bootstrap, **WORKER_ENV)
    supervisor = Supervisor(deployment)
    timeline: list[str] = []
    try:
        deployment.cli("publish", str(part_a))
        deployment.start_worker()
        run_started = time.monotonic()

        def at() -> str:
            return f"+{time.monotonic() - run_started:5.1f}s"

        # 2a. SIGKILL the broker mid-way through part A.
        deadline = time.monotonic() + PIPELINE_WAIT_S_MAX
        while True:
            agents = supervisor.health() or {}
            handled = agents.get("decide", {}).get("events", 0)
            if handled >= KILL_AFTER_EVENTS:
                break
            supervisor.poll_lag("waiting for the decide agent to get going")
            assert time.monotonic() < deadline, f"the decide agent never reached {KILL_AFTER_EVENTS} events"
            time.sleep(0.2)
        lag = worker_lag(deployment.settings)
        pid_at_kill = deployment.process.pid
        mark_log(deployment.log_path, "broker SIGKILL", "outage test")
        private_broker.kill()
        timeline.append(f"{at()} broker SIGKILLed (decide had handled {handled} events; group lag {lag})")
        say(timeline[-1])
        assert lag > 0, "the broker was killed after the worker had finished part A: the test proved nothing"
        notes = sleep_watching(supervisor, KILL_DOWN_S, "broker down")
        took = private_broker.start()
        mark_log(deployment.log_path, "broker restarted", "outage test")
        timeline.append(f"{at()} broker started again after {KILL_DOWN_S}s down (answered {took:.1f}s after "
                        f"kafka.sh start); worker {'up' if supervisor.alive() else 'exited ' + str(supervisor.exited())}")
        say(timeline[-1])
        timeline += notes

        # The worker resumes: it decides RESUME_EVENTS more events and the group's lag falls below
        # what it was when the broker died (commits of what was done before do not count).
        supervisor.reset_stall_clock()
        deadline = time.monotonic() + PIPELINE_WAIT_S_MAX
        while True:
            now_lag = supervisor.poll_lag("resuming after the broker SIGKILL")
            since = handled if deployment.process.pid == pid_at_kill else 0
            resumed = (supervisor.health() or {}).get("decide", {}).get("events", 0) - since
            if now_lag < lag and resumed >= RESUME_EVENTS:
                break
            assert time.monotonic() < deadline, f"no progress after the broker restart:\n{deployment.log_tail()}"
            time.sleep(0.5)
        timeline.append(f"{at()} worker resumed (decided {resumed} more events; group lag {now_lag}, was {lag})")
        say(timeline[-1])

        # 2b. Publish part B while the worker runs, then freeze the broker at once.
        deployment.cli("publish", str(part_b))
        lag = worker_lag(deployment.settings)
        mark_log(deployment.log_path, "broker SIGSTOP", "outage test")
        private_broker.freeze()
        timeline.append(f"{at()} part B published; broker frozen (SIGSTOP) with group lag {lag}")
        say(timeline[-1])
        assert lag > 0, "the broker was frozen after the worker had finished: the test proved nothing"
        notes = sleep_watching(supervisor, FREEZE_S, "broker frozen")
        private_broker.thaw()
        mark_log(deployment.log_path, "broker SIGCONT", "outage test")
        timeline.append(f"{at()} broker continued (SIGCONT) after {FREEZE_S}s; worker "
                        f"{'up' if supervisor.alive() else 'exited ' + str(supervisor.exited())}")
        say(timeline[-1])
        timeline += notes

        supervisor.reset_stall_clock()
        wait_decided(deployment, events, supervisor)
        timeline.append(f"{at()} every request decided and projected")
        say(timeline[-1])
        supervisor.ensure_running("after the last decision")
        decisions = deployment.decisions()

        # (a) No new not-found escalations.
        ref_not_found, run_not_found = not_found(reference_decisions), not_found(decisions)
        new = {r: sorted(codes) for r, codes in run_not_found.items() if not codes <= ref_not_found.get(r, set())}
        assert not new, (f"{len(new)} requests escalated as not found that the uninterrupted run did not: "
                         f"{list(new.items())[:20]}\n{trouble(deployment.log_path)}")
        # (b) One final decision per request; the same proactive remedies.
        counts = check_log(requests, decisions, "outage run")
        assert counts["proactive"] == reference_counts["proactive"], (
            f"proactive remedies differ: only in the reference {sorted(reference_counts['proactive'] - counts['proactive'])[:20]}, "
            f"only here {sorted(counts['proactive'] - reference_counts['proactive'])[:20]}")
        # (c) The same final decisions but for first come, first served timing.
        explained, unexplained = compare(reference_decisions, decisions)
        assert not unexplained, (f"{len(unexplained)} final decisions differ from the uninterrupted run for no "
                                 "timing reason:\n" + "\n".join(unexplained[:40]))
        # (d) The audit and verify.
        checks = audit_and_verify(deployment, "outage run")
    finally:
        deployment.stop_worker()

    say("timeline:\n  " + "\n  ".join(timeline))
    say(f"outage run: {counts['decisions']} decisions on the topic, {counts['distinct']} distinct, "
        f"{counts['identical_duplicates']} identical duplicates, 0 conflicting; every one of {len(requests)} requests "
        f"has one final decision; {len(counts['proactive'])} proactive remedies as in the reference; "
        f"not-found escalations: {len(run_not_found)} (reference {len(ref_not_found)}); {checks}")
    say(f"worker restarts needed: {len(supervisor.restarts)} {supervisor.restarts}; worker log: "
        f"{log_figures(deployment.log_path)}")
    say(f"{len(explained)} final decisions differ from the reference by first come, first served timing, none otherwise")
    for line in explained:
        print(line, flush=True)
    say(f"total {time.monotonic() - started:.0f}s (reference {reference_s:.0f}s)")
