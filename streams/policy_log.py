"""The policy's life on Kafka: apply a new version, read the one in force, list the history.

Policies live on a compacted single-partition topic keyed by version; the newest message by
offset is in force. Every worker follows the topic (without a consumer group, so each sees every
version) and switches without a restart; each decision names the version it used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import schemas
from streams.errors import PolicyError
from streams.kafka_io import Publisher, read_topic, topic_names
from streams.policy import Policy
from streams.settings import Settings

# Longest a read of the policy topic waits to reach its end.
POLICY_READ_TIMEOUT_S = 30


@dataclass(frozen=True)
class AppliedPolicy:
    """One version on the policy topic with who applied it, when and why."""

    policy: Policy
    author: str
    reason: str
    applied_at_ms: int
    previous_version: str | None
    offset: int


def decode_applied(value: bytes, offset: int) -> AppliedPolicy:
    """A PolicyApplied message as an AppliedPolicy (raises DecodeError or PolicyError)."""
    record_name, datum = schemas.decode(value)
    if record_name != "PolicyApplied":
        raise PolicyError(f"offset {offset}: {record_name} does not belong on the policy topic")
    policy = Policy.from_document(json.loads(datum["document"]))
    if policy.version != datum["version"]:
        raise PolicyError(f"offset {offset}: version {datum['version']} does not match its document ({policy.version})")
    applied_at = datum["applied_at"]
    applied_ms = int(applied_at.timestamp() * 1000) if hasattr(applied_at, "timestamp") else applied_at
    return AppliedPolicy(policy, datum["author"], datum["reason"], applied_ms, datum["previous_version"], offset)


def history(settings: Settings) -> list[AppliedPolicy]:
    """Every policy version on the topic, oldest first."""
    records = read_topic(settings.kafka_bootstrap, topic_names(settings).policy, POLICY_READ_TIMEOUT_S,
                         "remedy-policy", missing_ok=True)
    return [decode_applied(record.value, record.offset) for record in records]


def in_force(settings: Settings) -> AppliedPolicy | None:
    """The newest policy on the topic, or None when none was ever applied."""
    versions = history(settings)
    return versions[-1] if versions else None


def apply(settings: Settings, path: Path, author: str, reason: str, now_ms: int) -> AppliedPolicy:
    """Validate a policy document completely, then publish it as the version in force."""
    if not author.strip() or not reason.strip():
        raise PolicyError("--author and --reason must not be empty: every policy change says who and why")
    try:
        document = json.loads(Path(path).read_text())
    except OSError as error:
        raise PolicyError(f"{path}: cannot read: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise PolicyError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    current = in_force(settings)
    policy = Policy.from_document(document)
    datum = {
        "version": policy.version,
        "document": json.dumps(policy.as_document(), sort_keys=True),
        "author": author,
        "reason": reason,
        "applied_at": now_ms,
        "previous_version": current.policy.version if current else settings.policy.version,
    }
    with Publisher(settings) as publisher:
        publisher.publish_raw(topic_names(settings).policy, policy.version.encode(), schemas.encode("PolicyApplied", datum))
    return AppliedPolicy(policy, author, reason, now_ms, datum["previous_version"], -1)
