"""Ceiling: a Faust agent that reads the input topics in batches, like `decide`, and does nothing.

Run by bench/run.py: python bench/noop_app.py BOOTSTRAP PREFIX EXPECTED RESULT_FILE DATA_DIR
It writes {"first": t, "last": t, "count": n} (wall-clock seconds) once it has seen EXPECTED
events; bench/run.py then stops it.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import faust

# The same batch bounds as the decide agent's defaults, so the comparison is like for like.
BATCH_MAX = 500
BATCH_WAIT_S = 0.02


def main() -> None:
    bootstrap, prefix, expected, result_path, data_dir = sys.argv[1:6]
    expected = int(expected)
    app = faust.App(
        f"{prefix}-noop-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://", datadir=data_dir,
        consumer_auto_offset_reset="earliest", topic_allow_declare=False, topic_disable_leader=True,
        topic_partitions=4, web_enabled=False, processing_guarantee="at_least_once",
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
                    json.dump({"first": first, "last": time.time(), "count": count}, handle)
                return  # bench/run.py stops the process once the result file exists

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
