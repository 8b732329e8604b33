"""Ceiling: a Faust agent that reads the input topics in batches, like `decide`, and does nothing.

Run by bench/run.py: python bench/noop_app.py BOOTSTRAP PREFIX EXPECTED RESULT_FILE DATA_DIR
It writes {"first": t, "last": t, "count": n, ...} (wall-clock seconds) once it has seen EXPECTED
events; bench/run.py then stops it.

Like for like with the worker's decide agent (streams/runtime/app.py) where the measured tree has
it: the same Faust App options (commit interval, stream buffer, fetch size), the restart-race
corrections applied, and the decide agent's default batch bounds (REMEDY_DECIDE_BATCH_MAX and
_WAIT_MS defaults). Batches come from Faust's own `take_events` (which acks each batch); the
worker's `take_batches` acks event by event after the effects are durable, which is part of the
worker's cost, not of this ceiling. A tree without streams/runtime/app.py gets the first
ceiling's bounds (500 events, 20 ms) and Faust's defaults.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import faust

try:  # the measured tree's worker settings
    from streams.runtime import app as worker_app
    from streams.runtime import faust_fix
    from streams.runtime.settings import Settings

    BATCH_MAX = Settings().decide_batch_max
    BATCH_WAIT_S = Settings().decide_batch_wait_ms / 1000
    APP_OPTIONS = {
        "broker_commit_interval": worker_app.COMMIT_INTERVAL_S,
        "stream_buffer_maxsize": worker_app.STREAM_BUFFER_MAX,
        "consumer_max_fetch_size": worker_app.PARTITION_FETCH_BYTES_MAX,
    }
except ImportError:
    faust_fix = None
    BATCH_MAX, BATCH_WAIT_S, APP_OPTIONS = 500, 0.02, {}


def main() -> None:
    bootstrap, prefix, expected, result_path, data_dir = sys.argv[1:6]
    expected = int(expected)
    if faust_fix is not None:
        faust_fix.apply()
    app = faust.App(
        f"{prefix}-noop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://", datadir=data_dir,
        consumer_auto_offset_reset="earliest", topic_allow_declare=False, topic_disable_leader=True,
        topic_partitions=4, web_enabled=False, processing_guarantee="at_least_once", **APP_OPTIONS,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    names = [f"{prefix}.orders.v1", f"{prefix}.incidents.v1", f"{prefix}.remedy-requests.v1"]
    inputs = app.topic(*names, **raw)

    @app.agent(inputs, concurrency=1)
    async def noop(stream):
        count, first = 0, None
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WAIT_S):
            if first is None:
                first = time.time()
            count += len(events)
            if count >= expected:
                with open(result_path, "w") as handle:
                    json.dump({"first": first, "last": time.time(), "count": count, "batch_max": BATCH_MAX,
                               "batch_wait_ms": round(BATCH_WAIT_S * 1000)}, handle)
                return  # bench/run.py stops the process once the result file exists

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
