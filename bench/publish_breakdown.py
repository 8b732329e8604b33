"""Where `remedy-ledger publish` spends its time: each stage timed alone on the same file.

Run by bench/run.py (cwd = the source tree measured): python bench/publish_breakdown.py EVENTS.jsonl BOOTSTRAP
Stages: parse and check every line (validate only); parse, check and Avro-encode into the spools
(what publish does before sending, one process per core for a large file); and sending the spool in record batches (aiokafka, acks=all,
idempotent). Prints JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.core.inbound import PUBLISHABLE_TYPES
from streams.runtime.kafka_io import ensure_topics, send_frames, topic_names
from streams.runtime.settings import KafkaConnection, Settings
from streams.runtime.upstream import _parts_for, _scan, read_spools, validate_file


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main() -> None:
    path, bootstrap = Path(sys.argv[1]), sys.argv[2]
    count, validate_s = timed(lambda: validate_file(path))
    settings = Settings(kafka=KafkaConnection(bootstrap=bootstrap), topic_prefix=f"benchraw{uuid.uuid4().hex[:6]}")
    ensure_topics(settings)
    names = topic_names(settings)
    topics = list(names.inputs())
    topic_of = {name: topics.index(names.for_event(name)) for name in PUBLISHABLE_TYPES}
    with tempfile.TemporaryDirectory() as spool_dir:
        (_, spools), spool_s = timed(lambda: _scan(path, spool_dir, topic_of, _parts_for(path), None))

        sent, send_s = timed(lambda: send_frames(settings, topics, read_spools(spools)))
    assert sent == count
    stage = lambda seconds: {"seconds": round(seconds, 2), "events_per_s": round(count / seconds)}
    print(json.dumps({
        "events": count, "validate_only": stage(validate_s), "validate_encode_spool": stage(spool_s),
        "send_spool_record_batches": stage(send_s), "sum_of_publish_stages_events_per_s": round(count / (spool_s + send_s)),
    }))


if __name__ == "__main__":
    main()
