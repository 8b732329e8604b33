"""Where `remedy-ledger publish` spends its time: each stage timed alone on the same file.

Run by bench/run.py (cwd = the source tree measured): python bench/publish_breakdown.py EVENTS.jsonl BOOTSTRAP
Stages: validate (parse + check every line), parse again (read_events), Avro encode, and a bare
kafka-python producer sending the pre-encoded bytes with the publisher's settings. Prints JSON.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer

import schemas
from streams.kafka_io import PRODUCER_LINGER_MS, PRODUCER_RETRIES_MAX, ensure_topics, topic_names
from streams.settings import Settings
from streams.upstream import read_events, validate_file


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def main() -> None:
    path, bootstrap = Path(sys.argv[1]), sys.argv[2]
    count, validate_s = timed(lambda: validate_file(path))
    parsed, parse_s = timed(lambda: list(read_events(path)))
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"benchraw{uuid.uuid4().hex[:6]}")
    ensure_topics(settings)
    names = topic_names(settings)
    encoded, encode_s = timed(
        lambda: [(names.for_event(name), d["customer_id"].encode(), schemas.encode(name, d)) for name, d in parsed]
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             retries=PRODUCER_RETRIES_MAX, max_in_flight_requests_per_connection=5,
                             linger_ms=PRODUCER_LINGER_MS, batch_size=256 * 1024)
    for topic in names.inputs():
        producer.partitions_for(topic)  # metadata first, outside the clock

    def send_all():
        for topic, key, value in encoded:
            producer.send(topic, key=key, value=value)
        producer.flush()

    _, send_s = timed(send_all)
    producer.close()
    stage = lambda seconds: {"seconds": round(seconds, 2), "events_per_s": round(count / seconds)}
    print(json.dumps({
        "events": count, "validate": stage(validate_s), "parse_again": stage(parse_s), "avro_encode": stage(encode_s),
        "kafka_python_send_pre_encoded": stage(send_s),
        "sum_of_stages_events_per_s": round(count / (validate_s + parse_s + encode_s + send_s)),
    }))


if __name__ == "__main__":
    main()
