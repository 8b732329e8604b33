"""One batch of input messages through the decision core: decode, check, fold, collect outputs.

Shell code (it decodes Avro), but free of Kafka so tests can drive it directly. The
decide and limits agents hand it raw messages and a state loader, and get back the states to save, the decisions
to emit and the dead letters to route, in input order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import schemas
from streams.core import decision as core
from streams.core import scopes
from streams.core.privacy import is_pseudonym, pseudonym
from streams.core.remedy_detail import effects_of
from streams.core.saga import scope_key_of  # noqa: F401  (the shells import it from here)
from streams.errors import DecodeError, InvariantViolation
from streams.core.inbound import (
    FUTURE_MS_MAX_DEFAULT,
    TIMESTAMP_FLOOR_MS_DEFAULT,
    decoded_event_problems,
    record_time_problems,
    timestamps_to_ms,
)
from streams.core.policy import Policy
from streams.runtime.topics import EVENT_TOPIC_ROLE, TopicNames
from streams.runtime.upstream import avro_json_by_name


@dataclass(frozen=True)
class Incoming:
    """One consumed message, exactly as it came off the topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass
class BatchResult:
    """What a batch produced: changed states by customer, decisions and dead letters in order."""

    states: dict[str, dict] = field(default_factory=dict)
    decisions: list[core.Decision] = field(default_factory=list)
    checks: list[core.Check] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    # Records that arrived on another partition than their key's (a producer without murmur2):
    # forwarded to the right one instead of being decided out of their customer's order.
    misrouted: list[Incoming] = field(default_factory=list)
    # What each key's events emitted, in order: ("decision", RemedyDecided) each followed by its
    # ("instruction", RemedyInstruction) and ("notification", CustomerNotification), or ("check", LimitCheck).
    emitted_by_key: dict[str, list[tuple[str, dict]]] = field(default_factory=dict)


def dead_letter(message: Incoming, error_type: str, reason: str) -> dict:
    """A DeadLetter datum carrying the original bytes and where they came from."""
    return {
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "source_timestamp_ms": message.timestamp_ms,
        "key": message.key,
        "original_value": message.value if message.value is not None else b"",
        "error_type": error_type,
        "reason": reason,
    }


def decode_input(message: Incoming, names: TopicNames) -> tuple[str, dict]:
    """Decode and check one input message; raises DecodeError or returns (record name, core event)."""
    if message.value is None:
        raise DecodeError("empty message (null value)")
    record_name, datum = schemas.decode(message.value)
    role = EVENT_TOPIC_ROLE.get(record_name)
    if role is None or getattr(names, role) != message.topic:
        raise _Invalid(f"{record_name} does not belong on topic {message.topic}")
    problems = decoded_event_problems(record_name, datum)
    if record_name == "LimitCheck" and datum["action"] != "RESULT":
        problems.append(f"field 'action': {datum['action']} does not belong on {message.topic}")
    if problems:
        raise _Invalid(f"{record_name}: " + "; ".join(problems))
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    if key != datum["customer_id"]:
        raise _Invalid(
            f"{record_name}: message key {key!r} does not match customer_id {datum['customer_id']!r}; "
            "events must be keyed by customer_id so one partition owns each customer"
        )
    event = timestamps_to_ms(record_name, datum, avro_json_by_name())
    # A record dated far after it was produced, or before the floor, would move the customer's
    # clock and lock them out (a year-9999 request): dead-lettered, whoever produced it.
    problems = record_time_problems(record_name, event, message.timestamp_ms, FUTURE_MS_MAX_DEFAULT,
                                    TIMESTAMP_FLOOR_MS_DEFAULT)
    if problems:
        raise _Invalid(f"{record_name}: " + "; ".join(problems))
    event["type"] = record_name
    return record_name, event


class _Invalid(Exception):
    """A decoded message that breaks a precondition (routed to the dead-letter topic)."""


class _Misrouted(Exception):
    """A message on another partition than murmur2 of its key puts it (forwarded, not decided)."""


def key_partition(key: bytes, partitions: int) -> int:
    """The partition murmur2(key) gives, as Java's, kafka-python's and aiokafka's default partitioners do."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _emit(result: BatchResult, key: str, state: dict, decisions: list, checks: list) -> None:
    result.states[key] = state
    result.decisions.extend(d for d in decisions if not core.is_recovery(d))
    result.checks.extend(checks)
    if decisions or checks:
        emitted = result.emitted_by_key.setdefault(key, [])
        for decision in decisions:
            if core.is_recovery(decision):
                # A RecoverySuggested event travels with the decisions, in order, in the same outbox.
                emitted.append(("recovery", decision))
                continue
            # A decision's instruction and notification ride in the same outbox, right after it:
            # sent exactly when the decision is, byte for byte again on a re-send.
            emitted.append(("decision", decision))
            emitted.extend(effects_of(decision))
        emitted.extend(("check", check) for check in checks)


def _fold(
    messages: list[Incoming],
    decode: Callable[[Incoming], tuple[str, dict]],
    load_state: Callable[[str], dict | None],
    empty: Callable[[], dict],
    step: Callable[[dict, dict], tuple[dict, list, list]],
    after: Callable[[Incoming, str, dict, BatchResult], None] | None = None,
) -> BatchResult:
    """Decode each message, apply `step` to its key's state (loaded once per batch), collect outputs.

    Undecodable messages and messages that break a precondition become dead letters; the batch
    goes on. `after` runs after each applied message (the decide fold advances partition clocks).
    """
    result = BatchResult()
    for message in messages:
        try:
            key, event = decode(message)
            state = result.states.get(key)
            if state is None:
                state = load_state(key) or empty()
            state, decisions, checks = step(state, event)
        except DecodeError as error:
            result.dead_letters.append(dead_letter(message, "DecodeError", str(error)))
            continue
        except (_Invalid, InvariantViolation) as error:
            result.dead_letters.append(dead_letter(message, "InvariantViolation", str(error)))
            continue
        except _Misrouted:
            result.misrouted.append(message)
            continue
        except _Progress:
            continue
        _emit(result, key, state, decisions, checks)
        if after is not None:
            after(message, key, event, result)
    return result


# The changelog key of a partition's clock (a NUL byte cannot start a customer id: ids are printable).
PARTITION_CLOCK_KEY = b"\x00partition-clock"


@dataclass
class PartitionClocks:
    """Per partition: the newest upstream event time seen, and when each parked customer's wait ends.

    Kept with the customer states (the clock in the changelog under PARTITION_CLOCK_KEY, the
    deadlines rebuilt from the states on restore), so a wait ends at the same point of the log
    whatever the batches, crashes or restarts.
    """

    clock_ms: dict[int, int] = field(default_factory=dict)
    # partition -> customer -> when its first parked request was made (its wait runs from there)
    parked_since_ms: dict[int, dict[str, int]] = field(default_factory=dict)
    advanced: set[int] = field(default_factory=set)  # partitions whose clock moved in this batch
    # partition -> customer -> the order key of its next check, while one of its checks is in flight
    blocked: dict[int, dict[str, tuple]] = field(default_factory=dict)
    # partition -> the newest record timestamp (ms) of its upstream events: where the partition
    # stands in the log's own order (checks carry it; docs/decisions.md "Order across partitions")
    position_ms: dict[int, int] = field(default_factory=dict)

    def note(self, partition: int, key: str, state: core.State) -> None:
        """Remember (or forget) this customer's first parked request and its check in flight."""
        parked = self.parked_since_ms.setdefault(partition, {})
        since = core.parked_since_ms(state)
        if since is None:
            parked.pop(key, None)
        else:
            parked[key] = since
        blocked = self.blocked.setdefault(partition, {})
        order = core.blocked_order_key(key, state)
        if order is None:
            blocked.pop(key, None)
        else:
            blocked[key] = order

    def parked(self) -> int:
        """Customers with parked requests, over the owned partitions."""
        return sum(len(parked) for parked in self.parked_since_ms.values())

    def drop(self, partitions) -> None:
        """Forget partitions no longer owned."""
        for partition in partitions:
            self.clock_ms.pop(partition, None)
            self.parked_since_ms.pop(partition, None)
            self.blocked.pop(partition, None)
            self.position_ms.pop(partition, None)


def clock_to_bytes(clock_ms: int | None, position_ms: int | None = None) -> bytes:
    """The changelog value of a partition's clocks (event time, and record-time position)."""
    return json.dumps({"partition_clock_ms": clock_ms, "position_ms": position_ms}).encode()


def clock_from_bytes(data: bytes) -> tuple[int | None, int | None]:
    """The inverse of clock_to_bytes: (event-time clock, position); a value written before
    positions were kept has none."""
    value = json.loads(data)
    clock = value.get("partition_clock_ms")
    position = value.get("position_ms")
    return (int(clock) if clock is not None else None, int(position) if position is not None else None)


def fold_batch(
    messages: list[Incoming],
    load_state: Callable[[str], core.State | None],
    policy: Policy,
    names: TopicNames,
    clocks: PartitionClocks | None = None,
    partitions: int | None = None,
    privacy_key: bytes | None = None,
) -> BatchResult:
    """Run every message of a batch through the customer scope, loading each customer's state once.

    With `partitions`, a record on another partition than murmur2 of its key is set aside in
    `misrouted` (the shell forwards it). With `clocks`, every upstream event advances its partition's clock, and customers whose
    parked requests waited past it are told at once (in the log's order, so decisions do not
    depend on where a batch ends). With `privacy_key`, a CustomerErased whose pseudonym was made
    with another key is dead-lettered (this worker could not find that customer's state again).
    """
    clocks = clocks if clocks is not None else PartitionClocks()
    clocks.advanced = set()

    def decode(message: Incoming) -> tuple[str, dict]:
        record_name, event = decode_input(message, names)
        if partitions is not None and key_partition(message.key, partitions) != message.partition:
            raise _Misrouted()
        if (record_name == "CustomerErased" and privacy_key is not None
                and event["pseudonym"] != pseudonym(privacy_key, event["customer_id"])):
            raise _Invalid("CustomerErased: field 'pseudonym' was not made with this worker's privacy key "
                           "(REMEDY_PRIVACY_KEY_FILE differs between processes); the customer was not erased here")
        event_time = core.event_time_ms(event)
        if event_time is not None:
            # Where the event stands in its partition's log: the newest record timestamp so far
            # (the order the aligner releases in; `publish` makes them strictly increasing in file
            # order). Checks it makes carry it (their order at the household and associate scopes).
            stamp = message.timestamp_ms if message.timestamp_ms is not None else event_time
            event[core.POSITION_FIELD] = max(clocks.position_ms.get(message.partition, stamp), stamp)
        return event["customer_id"], event

    def step(state: core.State, event: dict) -> tuple:
        return core.handle(state, event, policy)

    def after(message: Incoming, key: str, event: dict, result: BatchResult) -> None:
        partition = message.partition
        clocks.note(partition, key, result.states[key])
        event_time = core.event_time_ms(event)
        position = event.get(core.POSITION_FIELD)
        if position is not None and position > clocks.position_ms.get(partition, position - 1):
            clocks.position_ms[partition] = position
            clocks.advanced.add(partition)
        if event_time is None or event_time <= clocks.clock_ms.get(partition, event_time - 1):
            return
        clocks.clock_ms[partition] = event_time
        clocks.advanced.add(partition)
        parked = clocks.parked_since_ms.get(partition, {})
        wait_ms = policy.order_wait_ms_max
        tick = {**core.partition_clock(event_time), core.POSITION_FIELD: clocks.position_ms.get(partition, event_time)}
        for waiting in sorted(k for k, since in parked.items() if event_time - since > wait_ms):
            state = result.states.get(waiting) or load_state(waiting) or core.empty_state()
            state, decisions, checks = core.handle(state, tick, policy)
            _emit(result, waiting, state, decisions, checks)
            clocks.note(partition, waiting, state)

    return _fold(messages, decode, load_state, core.empty_state, step, after)


def fold_scope_batch(
    messages: list[Incoming],
    load_state: Callable[[str], dict | None],
    policy: Policy,
    names: TopicNames,
    waiting: dict[int, dict[str, tuple]] | None = None,
) -> BatchResult:
    """Run a batch of limit-check messages through the household/associate scopes (in the order
    the sequencer released them). With `waiting`, keeps per partition the order key of the first
    check waiting at each scope key (the limits watermark is computed from it)."""

    def after(message: Incoming, key: str, event: dict, result: BatchResult) -> None:
        if waiting is None:
            return
        first = scopes.waiting_order_key(result.states[key])
        if first is None:
            waiting.get(message.partition, {}).pop(key, None)
        else:
            waiting.setdefault(message.partition, {})[key] = first

    def decode(message: Incoming) -> tuple[str, dict]:
        if message.value is None:
            raise DecodeError("empty message (null value)")
        record_name, datum = schemas.decode(message.value)
        if record_name == "LimitCheck" and datum["action"] == "PROGRESS":
            raise _Progress()  # a watermark: the shell's sequencer used it (streams/runtime/sequence.py)
        if record_name != "LimitCheck" or datum["action"] not in ("RESERVE", "RELEASE", "SETTLE", "FORGET"):
            raise _Invalid(f"{record_name} {datum.get('action', '')} does not belong on {message.topic}")
        if datum["action"] == "FORGET" and not is_pseudonym(datum.get("pseudonym") or ""):
            raise _Invalid("LimitCheck FORGET: field 'pseudonym' must be an erased customer's pseudonym")
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        if key != scope_key_of(datum):
            raise _Invalid(f"LimitCheck: message key {key!r} does not match {scope_key_of(datum)!r}")
        return key, timestamps_to_ms(record_name, datum, avro_json_by_name())

    def step(state: dict, check: dict) -> tuple[dict, list, list]:
        state, out = scopes.handle_check(state, check, policy)
        return state, [], out

    return _fold(messages, decode, load_state, scopes.empty_scope_state, step, after)


class _Progress(Exception):
    """A PROGRESS watermark on the limit-checks topic: nothing to fold."""


def state_to_bytes(state: core.State) -> bytes:
    """Serialise a customer state for the table (compact JSON; values are ints, strings, lists)."""
    return json.dumps(state, separators=(",", ":")).encode()


def state_from_bytes(data: bytes | None) -> core.State | None:
    """The inverse of state_to_bytes."""
    return json.loads(data) if data else None
