"""Integration fixtures: a real Kafka broker (started by `make test`) and real worker processes.

Every test gets its own topic prefix, data directory (so its own chDB) and web port, so tests
never see each other's events.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

import schemas
from streams.runtime.kafka_io import ensure_topics, read_topic, topic_names
from streams.runtime.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
# A cold worker (Faust start, table recovery, chDB open) is up in well under this on 2 cores.
WORKER_START_S_MAX = 90
# Longest any test waits for the pipeline to catch up before it fails with what it saw.
PIPELINE_WAIT_S_MAX = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployment:
    """One isolated Remedy Ledger deployment on the shared test broker."""

    def __init__(self, tmp_path: Path, worker_args: tuple[str, ...] = (), **overrides: str):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "REMEDY_KAFKA_BOOTSTRAP": os.environ.get("REMEDY_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            "REMEDY_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}",
            "REMEDY_DATA_DIR": str(tmp_path / "data"),
            "REMEDY_WEB_PORT": str(_free_port()),
            "REMEDY_PROJECT_BATCH_WAIT_MS": "200",
            **overrides,
        }
        self.settings = load_settings(self.env)
        self.names = topic_names(self.settings)
        self.log_path = tmp_path / "worker.log"
        self.process: subprocess.Popen | None = None
        self.worker_args = worker_args  # what `start_worker()` passes when called without arguments
        ensure_topics(self.settings)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `remedy-ledger ARGS` as a user would, in this deployment's environment."""
        result = subprocess.run(
            [sys.executable, "-m", "streams.commands.cli", *args], env=self.env, cwd=REPO, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"remedy-ledger {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def start_worker(self, *args: str) -> None:
        """Start `remedy-ledger worker ARGS` and wait until it answers /health."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.commands.cli", "worker", "--loglevel", "info", *(args or self.worker_args)],
            env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + WORKER_START_S_MAX
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.settings.worker_url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"worker did not answer in {WORKER_START_S_MAX}s:\n{self.log_tail()}")

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        """Stop the worker with SIGTERM (graceful) or SIGKILL (a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, lines: int = 60) -> str:
        """The end of the worker log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str) -> dict:
        """GET a JSON document from the running worker."""
        with urllib.request.urlopen(f"{self.settings.worker_url}{path}", timeout=30) as response:
            return json.loads(response.read())

    def read_topic(self, topic: str) -> list:
        """Every message currently on a topic (all partitions, from the beginning)."""
        return list(read_topic(self.settings.kafka, topic, 60, "remedy-test"))

    def decisions(self) -> list[dict]:
        """Every decision on the decision topic, decoded, in topic order per partition."""
        return [schemas.decode(m.value)[1] for m in self.read_topic(self.names.decisions)]

    def decisions_ms(self) -> list[dict]:
        """Every decision on the decision topic with its timestamps in ms, as the core makes them."""
        from streams.core.inbound import timestamps_to_ms
        from streams.runtime.upstream import avro_json_by_name

        return [timestamps_to_ms("RemedyDecided", d, avro_json_by_name()) for d in self.decisions()]

    def wait_for(self, what: str, condition, timeout_s: float = PIPELINE_WAIT_S_MAX):
        """Poll `condition()` until it returns a truthy value; fail with the worker log otherwise."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = condition()
            if last:
                return last
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker died while waiting for {what}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r}):\n{self.log_tail()}")

    def totals(self) -> dict:
        """Finance totals as the CLI prints them with --json."""
        return json.loads(self.cli("finance", "totals", "--json").stdout)


@pytest.fixture
def deployment(tmp_path):
    """An isolated deployment; its worker is stopped at the end of the test."""
    deployment = Deployment(tmp_path)
    yield deployment
    deployment.stop_worker()
