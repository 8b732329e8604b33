"""The review queue's data on Kafka: the decisions in force and the case assignments.

Shell code for the CLI and the worker's HTTP routes alike; what is shown is computed by the pure
`streams.core.cases`.
"""

from __future__ import annotations

import hashlib

from streams.errors import InvariantViolation
from streams.runtime.kafka_io import topic_names
from streams.runtime.replay import decoded, recorded_decisions
from streams.runtime.settings import Settings

# Longest a read of the assignments topic may take to reach its end.
ASSIGNMENT_READ_TIMEOUT_S = 30
# A person's id in an assignment: enough for a name, bounded like a review's fields.
ASSIGNEE_CHARS_MAX = 200


def decisions(settings: Settings) -> list[dict]:
    """Every decision on the decision topic, timestamps in ms."""
    return recorded_decisions(settings)


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
