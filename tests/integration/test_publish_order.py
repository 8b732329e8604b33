"""`publish` stamps records with strictly increasing send times in file order: the worker orders a
partition's topics by record timestamp, so the same file is decided in the same order however fast
it is sent (a tie between topics was once broken by topic, not by the file)."""

from __future__ import annotations

import schemas
from streams.runtime.upstream import read_events
from tests.integration.conftest import REPO, Deployment

SAMPLE = REPO / "samples" / "sample-day.jsonl"


def test_record_timestamps_follow_the_file_order_strictly(tmp_path):
    deployment = Deployment(tmp_path)
    deployment.cli("publish", str(SAMPLE))
    stamped = {}
    for topic in (deployment.names.orders, deployment.names.incidents, deployment.names.requests):
        for record in deployment.read_topic(topic):
            _, datum = schemas.decode(record.value)
            stamped[datum["event_id"]] = record.timestamp
    order = [datum["event_id"] for _, datum in read_events(SAMPLE)]
    assert len(stamped) == len(order)
    stamps = [stamped[event_id] for event_id in order]
    assert all(later > earlier for earlier, later in zip(stamps, stamps[1:]))
