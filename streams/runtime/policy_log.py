"""The policy's life on Kafka: apply a new version, read the one in force, list the history, roll back.

Policies live on a compacted single-partition topic keyed by version; the newest *valid* message
by offset is in force. Every worker follows the topic (without a consumer group, so each sees every
version) and switches without a restart; each decision names the version it used. A message that
is not a valid policy (garbage bytes, another record, a document that breaks a bound) is listed as
rejected, with its offset and reason, and never replaces the version in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import schemas
from streams.errors import PolicyError, RemedyLedgerError
from streams.runtime.kafka_io import Publisher, read_topic, topic_names
from streams.core.policy import Policy
from streams.runtime.settings import Settings

# Longest a read of the policy topic waits to reach its end.
POLICY_READ_TIMEOUT_S = 30
# A policy document larger than this is not a policy (the default one is about 2 KB).
POLICY_DOCUMENT_BYTES_MAX = 1 << 20


@dataclass(frozen=True)
class AppliedPolicy:
    """One version on the policy topic with who applied it, when and why."""

    policy: Policy
    author: str
    reason: str
    applied_at_ms: int
    previous_version: str | None
    offset: int


@dataclass(frozen=True)
class RejectedPolicy:
    """A message on the policy topic that is not a valid policy: where it is and why it was refused."""

    offset: int
    reason: str


def _document(text: str, where: str) -> dict:
    """A policy document parsed from JSON text; repeated keys, bad JSON and deep nesting are PolicyErrors."""

    def unique(pairs):
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated = [key for key, _ in pairs if key in seen or seen.add(key)]
            raise PolicyError(f"{where}: key {repeated[0]!r} appears more than once in one object")
        return obj

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        raise PolicyError(f"{where}:{error.lineno}: not valid JSON: {error.msg}") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise PolicyError(f"{where}: not valid JSON: {error}") from None
    except RecursionError:
        raise PolicyError(f"{where}: not valid JSON: nested too deeply") from None


def decode_applied(value: bytes | None, offset: int) -> AppliedPolicy:
    """A PolicyApplied message as an AppliedPolicy; anything else raises DecodeError or PolicyError."""
    if value is None:
        raise PolicyError(f"offset {offset}: empty message (a tombstone), not a policy")
    record_name, datum = schemas.decode(value)
    if record_name != "PolicyApplied":
        raise PolicyError(f"offset {offset}: {record_name} does not belong on the policy topic")
    try:
        policy = Policy.from_document(_document(datum["document"], f"offset {offset}: document"))
    except PolicyError as error:
        raise PolicyError(f"offset {offset}: {error}") from None
    if policy.version != datum["version"]:
        raise PolicyError(f"offset {offset}: version {datum['version']} does not match its document ({policy.version})")
    applied_at = datum["applied_at"]
    applied_ms = int(applied_at.timestamp() * 1000) if hasattr(applied_at, "timestamp") else applied_at
    return AppliedPolicy(policy, datum["author"], datum["reason"], applied_ms, datum["previous_version"], offset)


def entries(settings: Settings) -> list[AppliedPolicy | RejectedPolicy]:
    """Every message on the policy topic, oldest first: a valid version, or a rejected message with its reason."""
    records = read_topic(settings.kafka, topic_names(settings).policy, POLICY_READ_TIMEOUT_S,
                         "remedy-policy", missing_ok=True)
    found: list[AppliedPolicy | RejectedPolicy] = []
    for record in records:
        try:
            found.append(decode_applied(record.value, record.offset))
        except RemedyLedgerError as error:  # DecodeError or PolicyError: listed, never in force
            reason = str(error).replace(":\n  ", ": ").replace("\n  ", "; ").removeprefix(f"offset {record.offset}: ")
            found.append(RejectedPolicy(record.offset, reason))
    return found


def history(settings: Settings) -> list[AppliedPolicy]:
    """Every valid policy version on the topic, oldest first (rejected messages left out)."""
    return [entry for entry in entries(settings) if isinstance(entry, AppliedPolicy)]


def in_force(settings: Settings) -> AppliedPolicy | None:
    """The newest valid policy on the topic, or None when none was ever applied."""
    versions = history(settings)
    return versions[-1] if versions else None


def read_document(path: Path) -> dict:
    """A policy document from a JSON file; unreadable, oversized or malformed files raise PolicyError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise PolicyError(f"{path}: cannot read: {error.strerror}") from None
    if len(raw) > POLICY_DOCUMENT_BYTES_MAX:
        raise PolicyError(f"{path}: {len(raw)} bytes; a policy document is at most {POLICY_DOCUMENT_BYTES_MAX}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return _document(text, str(path))


@dataclass(frozen=True)
class PolicyChange:
    """A validated policy next to the one in force (what `policy apply --dry-run` shows)."""

    policy: Policy
    current: Policy
    current_source: str

    def differences(self) -> list[tuple[str, object, object]]:
        """(threshold, value in force, new value) for every threshold the change moves."""
        return [(name, old, new) for name, new, old in self.policy.differences(self.current)]


def _current(settings: Settings) -> tuple[Policy, str]:
    applied = in_force(settings)
    if applied is None:
        return settings.policy, "the configured default"
    return applied.policy, f"applied at offset {applied.offset} by {applied.author}"


def _publish(settings: Settings, policy: Policy, author: str, reason: str, now_ms: int, previous: Policy) -> AppliedPolicy:
    datum = {
        "version": policy.version,
        "document": json.dumps(policy.as_document(), sort_keys=True),
        "author": author,
        "reason": reason,
        "applied_at": now_ms,
        "previous_version": previous.version,
    }
    with Publisher(settings) as publisher:
        publisher.publish_raw(topic_names(settings).policy, policy.version.encode(), schemas.encode("PolicyApplied", datum))
    return AppliedPolicy(policy, author, reason, now_ms, previous.version, -1)


def _who_and_why(author: str, reason: str) -> None:
    if not author.strip() or not reason.strip():
        raise PolicyError("--author and --reason must not be empty: every policy change says who and why")
    for name, text in (("--author", author), ("--reason", reason)):
        if not text.isprintable():
            raise PolicyError(f"{name}: must be printable text on one line")


def preview(settings: Settings, path: Path) -> PolicyChange:
    """Validate a policy document completely and compare it with the version in force; publishes nothing."""
    policy = Policy.from_document(read_document(path))
    current, source = _current(settings)
    return PolicyChange(policy, current, source)


def apply(settings: Settings, path: Path, author: str, reason: str, now_ms: int) -> AppliedPolicy:
    """Validate a policy document completely, then publish it as the version in force."""
    _who_and_why(author, reason)
    change = preview(settings, path)
    return _publish(settings, change.policy, author, reason, now_ms, change.current)


def version_changes(settings: Settings) -> list[tuple[AppliedPolicy, list[tuple[str, object, object]]]]:
    """Every valid version, oldest first, with (threshold, value before, value after) against the
    version it replaced (the one before it on the topic, or the configured default for the first)."""
    changes = []
    before = settings.policy
    for applied in history(settings):
        changes.append((applied, [(name, old, new) for name, new, old in applied.policy.differences(before)]))
        before = applied.policy
    return changes


def history_rows(settings: Settings) -> list[dict]:
    """Every message on the policy topic as JSON-ready rows, oldest first: a version with who, when, why
    and the thresholds it changed against the version before it, or a rejected message with why."""
    changes = {applied.offset: moved for applied, moved in version_changes(settings)}
    rows = []
    for entry in entries(settings):
        if isinstance(entry, RejectedPolicy):
            rows.append({"offset": entry.offset, "rejected": entry.reason})
            continue
        rows.append({"offset": entry.offset, "version": entry.policy.version, "author": entry.author,
                     "reason": entry.reason, "applied_at_ms": entry.applied_at_ms,
                     "previous_version": entry.previous_version,
                     "changes": [{"threshold": name, "before": old, "after": new}
                                 for name, old, new in changes.get(entry.offset, [])]})
    return rows


def policy_of_version(settings: Settings, version: str) -> Policy:
    """The policy of a version on the topic (or the configured default's); PolicyError naming it if unknown."""
    for applied in reversed(history(settings)):
        if applied.policy.version == version:
            return applied.policy
    if settings.policy.version == version:
        return settings.policy
    raise PolicyError(f"{version}: no such valid version on the policy topic (see `remedy-ledger policy history`)")


def apply_policy(settings: Settings, policy: Policy, author: str, reason: str, now_ms: int) -> AppliedPolicy:
    """Publish an already validated policy as the version in force (a promoted shadow)."""
    _who_and_why(author, reason)
    current, _ = _current(settings)
    return _publish(settings, policy, author, reason, now_ms, current)


def rollback(settings: Settings, version: str, author: str, reason: str, now_ms: int) -> AppliedPolicy:
    """Publish an earlier version's document (from the topic, or the configured default's) again as the newest."""
    # The new message's reason says which version it rolls back to; previous_version names the
    # version it replaces.
    _who_and_why(author, reason)
    earlier = [applied.policy for applied in history(settings) if applied.policy.version == version]
    if not earlier and settings.policy.version == version:
        earlier = [settings.policy]
    if not earlier:
        raise PolicyError(f"{version}: no such valid version on the policy topic (see `remedy-ledger policy history`)")
    current, source = _current(settings)
    if current.version == version:
        raise PolicyError(f"{version} is already in force ({source}); nothing to roll back")
    return _publish(settings, earlier[-1], author, f"rollback to {version}: {reason}", now_ms, current)
