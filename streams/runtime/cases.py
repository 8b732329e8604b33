"""The review queue's data on Kafka: the decisions in force and the case assignments.

Shell code for the CLI and the worker's HTTP routes alike; what is shown is computed by the pure
`streams.core.cases`.
"""

from __future__ import annotations

import hashlib
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

import schemas
from streams.core.inbound import timestamps_to_ms
from streams.errors import InvariantViolation, TransientError
from streams.runtime.kafka_auth import kafka_python_options
from streams.runtime.kafka_io import topic_names, unreachable
from streams.runtime.replay import LOG_READ_TIMEOUT_S, decoded, recorded_decisions
from streams.runtime.settings import Settings
from streams.runtime.upstream import avro_json_by_name

# Longest a read of the assignments topic may take to reach its end.
ASSIGNMENT_READ_TIMEOUT_S = 30
# A person's id in an assignment: enough for a name, bounded like a review's fields.
ASSIGNEE_CHARS_MAX = 200
# Longest one poll of the decision topic blocks while the index catches up.
INDEX_POLL_MS = 200


def decisions(settings: Settings) -> list[dict]:
    """Every decision on the decision topic, timestamps in ms."""
    return recorded_decisions(settings)


class DecisionIndex:
    """The decision topic as the worker's review queue, cases and rankings read it: read whole once,
    then on each call only what was added since (to the end offsets of that moment).

    The decisions come in the same order per partition as a whole read gives (a request's
    decisions are on its customer's partition, in topic order), so every view computed from them
    is the same as from `decisions(settings)`. Calls from several threads take turns.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = topic_names(settings).decisions
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._found: list[dict] = []

    def decisions(self) -> list[dict]:
        """Every decision on the topic up to its end now, timestamps in ms."""
        with self._lock:
            self._catch_up()
            return list(self._found)

    def _catch_up(self) -> None:
        if self._consumer is None:
            try:
                consumer = KafkaConsumer(**kafka_python_options(self.settings.kafka), enable_auto_commit=False,
                                         group_id=None, client_id="remedy-review-index")
            except KafkaError as error:
                raise unreachable(self.settings.kafka, error) from None
            partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or [])]
            if not partitions:
                consumer.close()
                raise InvariantViolation(f"topic {self.topic} does not exist (is REMEDY_TOPIC_PREFIX right?)")
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            self._consumer, self._partitions = consumer, partitions
        consumer, shapes = self._consumer, avro_json_by_name()
        end = consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + LOG_READ_TIMEOUT_S
        while any(consumer.position(tp) < end[tp] for tp in self._partitions):
            if time.monotonic() > deadline:
                raise TransientError(f"could not read {self.topic} to its end in {LOG_READ_TIMEOUT_S}s")
            for _, batch in consumer.poll(timeout_ms=INDEX_POLL_MS).items():
                for record in batch:
                    if record.value is not None:
                        name, datum = schemas.decode(record.value)
                        self._found.append(timestamps_to_ms(name, datum, shapes))

    def close(self) -> None:
        """Close the consumer (the index reads the topic whole again on its next call)."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
            self._consumer, self._partitions, self._found = None, [], []


def assignments(settings: Settings) -> dict[str, dict]:
    """The newest assignment of every case, by request id (an empty dict before any)."""
    found = decoded(settings, topic_names(settings).review_assignments, ASSIGNMENT_READ_TIMEOUT_S, "remedy-review",
                    "ReviewAssigned", missing_ok=True)
    return {datum["request_id"]: datum for datum in found}


def assignment(request_id: object, assigned_to: object, assigned_by: str, now_ms: int) -> dict:
    """A ReviewAssigned datum, with its fields checked (InvariantViolation names the bad one)."""
    for name, value in (("request_id", request_id), ("assigned_to", assigned_to)):
        if not isinstance(value, str) or not value.strip() or len(value) > ASSIGNEE_CHARS_MAX or not value.isprintable():
            raise InvariantViolation(f"field '{name}': a non-empty printable string of at most {ASSIGNEE_CHARS_MAX} "
                                     "characters is required")
    return {"request_id": request_id, "assigned_to": assigned_to.strip(), "assigned_by": assigned_by,
            "assigned_at": now_ms}


def assignment_key(datum: dict) -> bytes:
    """The message key of an assignment: its request id (the topic is compacted by it)."""
    return datum["request_id"].encode()


def event_id_of(datum: dict) -> str:
    """A stable id for an assignment (for logs and answers)."""
    identity = f"{datum['request_id']}/{datum['assigned_to']}/{datum['assigned_by']}/{datum['assigned_at']}"
    return "asg-" + hashlib.sha256(identity.encode()).hexdigest()[:24]
