"""The Faust restart race is closed: a worker restarted after SIGKILL processes every record, even
when the window the race needs is forced open (../shared/FIELD_NOTES.md, "The restart race").

Each scenario runs tests/integration/race_probe.py (a minimal Faust worker with one agent and one
table) twice on the real broker, with its own topic and consumer group:

1. Records are already on the topic. The first life processes some of them, Faust commits, and the
   process SIGKILLs itself: the group has committed offsets and the table's changelog has records.
2. The second life starts while more records are produced. It recovers the table from the
   changelog, with the fetcher running, and then completes recovery. Its seek at that point is
   stretched by 1.2 s before and after (`race_probe.inject_seek_window`): unfixed Faust has already
   resumed the stream partitions there, so records are fetched in the window, and it then clears
   the agent channels. The probe counts the records each clear wipes out of the channels.

The fixed scenarios (streams/runtime/faust_fix.py applied) must process every record on the topic,
each (partition, offset) read back from the broker, with nothing wiped. The unfixed scenario, the
pinned faust-streaming 0.15.3 as released, under the same injection, must lose records: that shows
the injection opens the window and that this test fails without the fix.

The four scenarios run at once (much of each is waiting for the killed member's session to expire):
about 25 s on 2 cores, about 40 s with another run of this test at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

BOOTSTRAP = os.environ.get("REMEDY_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
PROBE = REPO / "tests" / "integration" / "race_probe.py"
PARTITIONS = 4
# Records on the topic before the first life; the first life processes KILL_AFTER of them.
RECORDS_BEFORE = 1200
KILL_AFTER = 200
# Records produced while the second life starts and recovers, spread over PRODUCE_DURING_S.
RECORDS_DURING = 200
PRODUCE_DURING_S = 8.0
# Seconds slept before and after the recovery seek (more than the fetcher's 1 s idle sleep).
SEEK_DELAY_S = 1.2
# Longest a life may take; a probe that stops making progress ends itself sooner (IDLE_S).
LIFE_TIMEOUT_S = 60
IDLE_S = 6
FIXED_RUNS = 3


@dataclass
class Scenario:
    mode: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def app_id(self) -> str:
        return f"race-{self.run}"

    @property
    def topic(self) -> str:
        return f"race-{self.run}-in"

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-counts-changelog"  # Faust's name for table "counts" of this app


@dataclass
class Outcome:
    scenario: Scenario
    first_life: list[dict]
    first_rc: int
    result: dict
    seen: set[tuple[int, int]]
    on_topic: set[tuple[int, int]]
    stderr_tail: str

    def describe(self) -> str:
        return (f"{self.scenario.mode} run {self.scenario.run}: first life {self.first_life} (rc {self.first_rc}); "
                f"second life {self.result}\n--- probe stderr ---\n{self.stderr_tail}")


def _produce(producer: KafkaProducer, topic: str, first: int, count: int, spread_s: float = 0.0) -> None:
    """Records first..first+count-1, round robin over the partitions, optionally spread over time."""
    for i in range(first, first + count):
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % PARTITIONS)
        if spread_s:
            time.sleep(spread_s / count)
    producer.flush()


def _probe(scenario: Scenario, seen: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(PROBE), BOOTSTRAP, scenario.topic, str(RECORDS_BEFORE + RECORDS_DURING),
               scenario.mode, "--app-id", scenario.app_id, "--seen", str(seen), "--seek-delay", str(SEEK_DELAY_S),
               "--timeout", str(LIFE_TIMEOUT_S), "--idle-timeout", str(IDLE_S), *extra]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _communicate(process: subprocess.Popen) -> tuple[list[dict], int, str]:
    """The probe's JSON lines, its exit status and the end of its stderr."""
    try:
        out, err = process.communicate(timeout=LIFE_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        process.kill()  # only the probe this test started
        out, err = process.communicate()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines, process.returncode, err[-3000:]


def _records_on_topic(topic: str) -> set[tuple[int, int]]:
    """Every (partition, offset) the broker holds for the topic."""
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
        return {(tp.partition, offset) for tp in tps for offset in range(ends[tp])}
    finally:
        consumer.close()


def run_scenario(scenario: Scenario, tmp: Path) -> Outcome:
    """Produce, run the first life until its SIGKILL, then the second life while producing more."""
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    try:
        _produce(producer, scenario.topic, 0, RECORDS_BEFORE)
        seen_path = tmp / f"{scenario.run}.seen"
        first_life, first_rc, first_err = _communicate(_probe(scenario, seen_path, "--kill-after", str(KILL_AFTER)))
        second = _probe(scenario, seen_path)
        during = threading.Thread(target=_produce, args=(producer, scenario.topic, RECORDS_BEFORE, RECORDS_DURING,
                                                         PRODUCE_DURING_S))
        during.start()
        second_life, _, second_err = _communicate(second)
        during.join()
    finally:
        producer.close()
    finals = [line for line in second_life if line.get("final")]
    seen = {tuple(map(int, line.split())) for line in seen_path.read_text().splitlines()} if seen_path.exists() else set()
    return Outcome(scenario, first_life, first_rc, finals[-1] if finals else {"final": None, "lines": second_life},
                   seen, _records_on_topic(scenario.topic), f"{first_err[-1000:]}\n--- second life ---\n{second_err}")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Runs FIXED_RUNS fixed scenarios and one unfixed scenario at once; yields their outcomes."""
    scenarios = [Scenario("fixed") for _ in range(FIXED_RUNS)] + [Scenario("unfixed")]
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="race-test")
    topics = [name for s in scenarios for name in (s.topic, s.changelog)]
    admin.create_topics([NewTopic(s.topic, PARTITIONS, 1) for s in scenarios]
                        + [NewTopic(s.changelog, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})
                           for s in scenarios])
    tmp = tmp_path_factory.mktemp("race")
    try:
        with ThreadPoolExecutor(max_workers=len(scenarios)) as pool:
            results = list(pool.map(lambda s: run_scenario(s, tmp), scenarios))
        for r in results:  # shown with -s or on failure
            keys = ("processed", "expected", "wiped", "reason", "elapsed_s", "committed", "gaps")
            print(f"race {r.scenario.mode} {r.scenario.run}: " + json.dumps({k: r.result.get(k) for k in keys}))
        yield {mode: [r for r in results if r.scenario.mode == mode] for mode in ("fixed", "unfixed")}
    finally:
        try:
            admin.delete_topics(topics)
        except Exception:  # noqa: BLE001 - cleanup of uniquely named topics is best effort
            pass
        admin.close()


def _first_life_committed(outcome: Outcome) -> None:
    """The first life was killed with offsets committed, so the second life is a real restart."""
    killed = [line for line in outcome.first_life if line.get("event") == "sigkill"]
    assert killed and outcome.first_rc == -signal.SIGKILL, outcome.describe()
    assert sum(killed[0]["committed"].values()) > 0, outcome.describe()


def test_fixed_faust_processes_every_record_fetched_in_the_restart_window(outcomes):
    assert len(outcomes["fixed"]) == FIXED_RUNS
    for outcome in outcomes["fixed"]:
        _first_life_committed(outcome)
        result = outcome.result
        assert result.get("fix_applied") is True, outcome.describe()
        # The window was injected where the fixed Faust completes recovery, on the path with a table.
        assert result.get("delayed_seeks") == ["_on_recovery_completed"], outcome.describe()
        assert len(outcome.on_topic) == RECORDS_BEFORE + RECORDS_DURING, outcome.describe()
        # Every record the broker holds was processed (by one life or the other); none was wiped.
        assert outcome.on_topic - outcome.seen == set(), outcome.describe()
        assert (result["processed"], result["reason"]) == (len(outcome.on_topic), "all processed"), outcome.describe()
        assert result["wiped"] == 0, outcome.describe()


def test_unfixed_faust_loses_records_fetched_in_the_same_window(outcomes):
    """The control: without faust_fix the same injection loses records, so the test above can fail.

    Seen in every unfixed run with these settings where loss was checked (34 of 34, on 2 cores,
    some with two test runs at once). Mostly the clear after the seek wiped records out of the
    agent's channel ("wiped" > 0) and the commit stalls below them: the field notes' lag that never
    recovers. In one run nothing was wiped, yet Faust committed the end offsets with 251 of 1,400
    records processed: silent loss; in others Faust recorded offsets it never delivered as gaps
    ("gaps"), which commits pass over. So this asserts the loss, not its flavour.
    """
    (outcome,) = outcomes["unfixed"]
    _first_life_committed(outcome)
    result = outcome.result
    assert result.get("fix_applied") is False, outcome.describe()
    assert result.get("delayed_seeks") == ["on_recovery_completed"], outcome.describe()
    assert len(outcome.on_topic) == RECORDS_BEFORE + RECORDS_DURING, outcome.describe()
    assert outcome.on_topic - outcome.seen, outcome.describe()
    assert result["processed"] < len(outcome.on_topic), outcome.describe()
