"""A live worker's memory with many customers: drain a published backlog, sampling RSS.

    # a broker on REMEDY_KAFKA_BOOTSTRAP, the workload published under REMEDY_TOPIC_PREFIX
    REMEDY_KAFKA_BOOTSTRAP=127.0.0.1:19092 REMEDY_TOPIC_PREFIX=million1 REMEDY_DATA_DIR=.data/million/data \\
        REMEDY_WEB_PORT=6180 .venv/bin/python bench/worker_rss.py EVENTS_PUBLISHED

Starts `remedy-ledger worker` in this environment, prints every 10 s the events each loop has
handled, the customer states held, the worker's RSS and peak RSS (VmHWM), and stops the worker
once the decide loop has handled EVENTS_PUBLISHED events and nothing moved for one interval.
Prints JSON at the end. Run by hand (it takes minutes per million customers), not by run.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_EVERY_S = 10
WORKER_START_S_MAX = 120


def memory(pid: int) -> tuple[int, int]:
    """(RSS, peak RSS) of a process in bytes, from /proc (Linux)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


def main() -> None:
    target = int(sys.argv[1])
    port = os.environ["REMEDY_WEB_PORT"]
    data = Path(os.environ.get("REMEDY_DATA_DIR", ".data"))
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "worker-rss.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "streams.commands.cli", "worker"], cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT)

    def health() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as response:
            return json.loads(response.read())["loops"]

    deadline = time.monotonic() + WORKER_START_S_MAX
    while True:
        try:
            health()
            break
        except OSError:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"worker did not start; see {data / 'worker-rss.log'}")
            time.sleep(0.5)
    started, last = time.monotonic(), None
    try:
        while True:
            loops = health()
            rss, peak = memory(worker.pid)
            events = {name: loop["events"] for name, loop in loops.items()}
            print(f"{time.monotonic() - started:7.1f}s {events} states={loops['decide']['state_keys']:,} "
                  f"rss={rss / 2**20:,.0f} MiB peak={peak / 2**20:,.0f} MiB", flush=True)
            if events["decide"] >= target and events == last:
                break
            last = events
            time.sleep(SAMPLE_EVERY_S)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    print(json.dumps({"events": events, "customer_states": loops["decide"]["state_keys"],
                      "scope_states": loops["limits"]["state_keys"], "rss_bytes": rss, "peak_rss_bytes": peak,
                      "seconds": round(time.monotonic() - started), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
