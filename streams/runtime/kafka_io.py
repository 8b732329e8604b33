"""Kafka adapters on kafka-python: topic creation and the idempotent publisher for upstream systems."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

import schemas
from streams.errors import AccessRefused, InvariantViolation, TransientError
from streams.runtime.kafka_auth import aiokafka_options, kafka_python_options
from streams.runtime.settings import KafkaConnection, Settings
from streams.runtime.topics import TopicNames

# Admin connection attempts while the broker is still starting: 30 x 1 s covers a cold start.
ADMIN_CONNECT_ATTEMPTS_MAX = 30
# Metadata polls after creating topics (x 0.5 s): new topics show their partitions within seconds.
TOPIC_METADATA_ATTEMPTS_MAX = 40
# Producer retries per message: idempotence makes retries safe; the bound turns an outage into an error.
PRODUCER_RETRIES_MAX = 10
# Longest a publish waits for all acknowledgements at the end before it reports failure.
PUBLISH_FLUSH_TIMEOUT_S = 120
# Producer batching: a few ms of linger lets the producer batch without hurting latency.
PRODUCER_LINGER_MS = 5
# The worker's producer sends only whole record batches (RecordBatcher.flush), so lingering only
# delays them: aiokafka holds even a finished batch for linger_ms (measured here: each changelog
# and outbox write took 6 ms with 5 ms of linger, 1 ms without).
RECORD_BATCH_LINGER_MS = 0


def topic_names(settings: Settings) -> TopicNames:
    """The topic names for these settings."""
    return TopicNames(prefix=settings.topic_prefix, app_id=settings.app_id)


def _admin(settings: Settings) -> KafkaAdminClient:
    last_error: Exception | None = None
    for _ in range(ADMIN_CONNECT_ATTEMPTS_MAX):
        try:
            return KafkaAdminClient(**kafka_python_options(settings.kafka), client_id="remedy-admin")
        except KafkaError as error:
            last_error = error
            time.sleep(1)
    raise unreachable(settings.kafka, last_error)


def ensure_topics(settings: Settings) -> list[str]:
    """Create every project topic that does not exist yet, with explicit configs; returns created names."""
    names = topic_names(settings)
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        wanted = names.all_with_configs(settings.topic_partitions, settings.min_insync_replicas)
        missing = [
            NewTopic(name=name, num_partitions=parts, replication_factor=settings.topic_replication, topic_configs=configs)
            for name, parts, configs in wanted
            if name not in existing
        ]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic], validate_only=False)
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # Another process created it first; the configs are the same.
        _check_partitions(admin, [(name, parts) for name, parts, _ in wanted])
        return created
    finally:
        admin.close()


def _check_partitions(admin: KafkaAdminClient, wanted: list[tuple[str, int]]) -> None:
    # A topic created a moment ago can still show no partitions in metadata; wait for it (bounded).
    for _ in range(TOPIC_METADATA_ATTEMPTS_MAX):
        described = {
            t.get("name", t.get("topic")): len(t["partitions"]) for t in admin.describe_topics([n for n, _ in wanted])
        }
        wrong = [f"{name} has {described.get(name)} partitions, expected {parts}" for name, parts in wanted if described.get(name) != parts]
        if not wrong:
            return
        if any(described.get(name) for name, parts in wanted if described.get(name) != parts):
            break  # A topic really has another partition count: waiting will not help.
        time.sleep(0.5)
    raise InvariantViolation("topics are not co-partitioned: " + "; ".join(wrong))


class Publisher:
    """Publishes validated upstream events to their topics, keyed by customer_id, idempotently."""

    def __init__(self, settings: Settings):
        self.names = topic_names(settings)
        self._errors: list[str] = []
        try:
            self._producer = KafkaProducer(
                **kafka_python_options(settings.kafka),
                acks="all",
                enable_idempotence=True,
                retries=PRODUCER_RETRIES_MAX,
                max_in_flight_requests_per_connection=5,
                linger_ms=PRODUCER_LINGER_MS,
                batch_size=256 * 1024,
                compression_type=None,
                client_id="remedy-publisher",
            )
        except KafkaError as error:
            raise unreachable(settings.kafka, error) from None

    def publish(self, record_name: str, datum: dict) -> None:
        """Encode one event with the current schema and send it to its topic (asynchronously)."""
        value = schemas.encode(record_name, datum)
        future = self._producer.send(
            self.names.for_event(record_name), key=datum["customer_id"].encode(), value=value
        )
        future.add_errback(lambda error: self._errors.append(f"{record_name} {datum.get('event_id')}: {error!r}"))

    def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (the policy topic's records; tests plant poison messages so)."""
        future = self._producer.send(topic, key=key, value=value)
        future.add_errback(lambda error: self._errors.append(f"a record for {topic}: {error!r}"))

    def flush(self) -> None:
        """Wait until every sent event is acknowledged by all in-sync replicas, or raise."""
        self._producer.flush(timeout=PUBLISH_FLUSH_TIMEOUT_S)
        if self._errors:
            problem = f"{len(self._errors)} events were not acknowledged, first: {self._errors[0]}"
            if any("AuthorizationFailed" in error for error in self._errors):
                raise AccessRefused(f"Kafka refused the write (no ACL allows it for this user): {problem}")
            raise TransientError(problem)

    def close(self) -> None:
        """Flush and close the producer."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=10)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# A spool frame: topic index (1 byte), key length (2 bytes), value length (4 bytes), then the bytes.
_FRAME = struct.Struct(">BHI")
# Record batches sent to the broker at most: bounds memory and keeps acks flowing.
SEND_BATCHES_IN_FLIGHT_MAX = 32
# Bytes per record batch (under the broker's default message.max.bytes of 1 MiB).
SEND_BATCH_BYTES_MAX = 512 * 1024


def write_frame(out, topic_index: int, key: bytes, value: bytes) -> None:
    """Append one encoded event to a spool."""
    out.write(_FRAME.pack(topic_index, len(key), len(value)))
    out.write(key)
    out.write(value)


def read_frames(spool) -> Iterator[tuple[int, bytes, bytes]]:
    """(topic index, key, value) for every frame of a spool, in order."""
    header_size = _FRAME.size
    while True:
        header = spool.read(header_size)
        if not header:
            return
        if len(header) != header_size:
            raise InvariantViolation("publish spool: truncated frame")
        topic_index, key_length, value_length = _FRAME.unpack(header)
        yield topic_index, spool.read(key_length), spool.read(value_length)


def send_frames(settings: Settings, topics: list[str], frames: Iterable[tuple[int, bytes, bytes]],
                progress=None, progress_every: int = 50_000) -> int:
    """Send keyed records in record batches (aiokafka, idempotent, acks=all); returns how many.

    Record timestamps are the time of sending, made strictly increasing in file order (a record
    sent in the same millisecond as the one before it gets the next millisecond): the worker
    orders a partition's topics by record timestamp, so the same file is decided in file order
    however fast it is sent (docs/decisions.md). Without this, two events sent in one millisecond
    to different topics were ordered by topic, and a replay could differ from the first run.

    Records keep their order per partition; the partition is murmur2(key), as every Kafka
    client's default partitioner computes it, so a customer's events land where the worker and
    other publishers expect them. Raises TransientError if the broker did not acknowledge all.
    """
    return asyncio.run(_send_frames(settings, topics, frames, progress, progress_every))


def idempotent_aio_producer(kafka: KafkaConnection, client_id: str, **extra):
    """An aiokafka producer with the safety options set explicitly: idempotent, acks from every
    in-sync replica, record batches up to SEND_BATCH_BYTES_MAX (the worker's and bulk publish's)."""
    from aiokafka import AIOKafkaProducer

    options = {"acks": "all", "enable_idempotence": True, "linger_ms": PRODUCER_LINGER_MS,
               "max_batch_size": SEND_BATCH_BYTES_MAX, **extra}
    if options["acks"] != "all" or not options["enable_idempotence"]:
        raise InvariantViolation("every producer of the project is idempotent with acks=all")
    return AIOKafkaProducer(**aiokafka_options(kafka), client_id=client_id, **options)


class RecordBatcher:
    """Groups records into one record batch per (topic, partition) and sends each as one request.

    Far cheaper per record than `producer.send` (measured here: ~7 us against ~30 us). A keyed
    record without an explicit partition goes to murmur2(key) mod partitions, as every Kafka
    client's default partitioner puts it; keyless records take the partitions in turn. Order is
    kept per partition.
    """

    def __init__(self, producer, in_flight_max: int = SEND_BATCHES_IN_FLIGHT_MAX):
        self.producer = producer
        self.in_flight_max = in_flight_max
        self._batches: dict[tuple[str, int], object] = {}
        self._in_flight: list = []
        self._partitions: dict[str, int] = {}
        self._keyless = 0

    async def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
                  timestamp_ms: int | None = None) -> None:
        """Queue one record (sent when its batch fills or at `flush`); no timestamp: the time of sending."""
        from aiokafka.partitioner import murmur2

        if partition is None:
            count = self._partitions.get(topic)
            if count is None:
                count = self._partitions[topic] = len(await self.producer.partitions_for(topic))
            if key is None:  # spread keyless records (dead letters of keyless messages) in turn
                self._keyless = (self._keyless + 1) % count
                partition = self._keyless
            else:
                partition = (murmur2(key) & 0x7FFFFFFF) % count
        slot = (topic, partition)
        batch = self._batches.get(slot)
        if batch is None:
            batch = self._batches[slot] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:
            await self._ship(slot)
            batch = self._batches[slot] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:
                raise InvariantViolation(f"a record of {len(value)} bytes does not fit in a record batch")

    async def _ship(self, slot: tuple[str, int]) -> None:
        topic, partition = slot
        self._in_flight.append(await self.producer.send_batch(self._batches.pop(slot), topic, partition=partition))
        if len(self._in_flight) >= self.in_flight_max:
            await self._wait()

    async def _wait(self) -> None:
        pending, self._in_flight = self._in_flight, []
        await asyncio.gather(*pending)

    async def flush(self) -> None:
        """Send every open batch and wait until the broker acknowledged everything queued."""
        for slot in list(self._batches):
            await self._ship(slot)
        await self._wait()


async def _send_frames(settings: Settings, topics: list[str], frames, progress, progress_every: int) -> int:
    from aiokafka.errors import KafkaError as AIOKafkaError

    producer = idempotent_aio_producer(settings.kafka, "remedy-publisher",
                                       request_timeout_ms=PUBLISH_FLUSH_TIMEOUT_S * 1000)
    try:
        await producer.start()
    except AIOKafkaError as error:
        raise unreachable(settings.kafka, error) from None
    sent = 0
    try:
        await producer.client.force_metadata_update()
        missing = [topic for topic in topics if not producer.client.cluster.partitions_for_topic(topic)]
        if missing:
            raise InvariantViolation(f"topic {', '.join(missing)} does not exist on {settings.kafka}; "
                                     "run `remedy-ledger topics create` (or start a worker) first")
        batcher = RecordBatcher(producer)
        last_ms = 0
        for topic_index, key, value in frames:
            last_ms = max(int(time.time() * 1000), last_ms + 1)
            await batcher.add(topics[topic_index], key, value, timestamp_ms=last_ms)
            sent += 1
            if progress and sent % progress_every == 0:
                progress(sent)
        await batcher.flush()
    except AIOKafkaError as error:
        raise TransientError(f"the broker did not acknowledge every event ({sent} sent): {error}") from None
    finally:
        await producer.stop()
    return sent


def publish_events(settings: Settings, events: Iterable[tuple[str, dict]]) -> int:
    """Publish (record name, datum) pairs and wait for acknowledgement; returns how many."""
    count = 0
    with Publisher(settings) as publisher:
        for record_name, datum in events:
            publisher.publish(record_name, datum)
            count += 1
    return count


def worker_groups(settings: Settings) -> list[tuple[str, list[str]]]:
    """(consumer group, topics) of the worker: one Faust consumer group for decide, limits and project."""
    names = topic_names(settings)
    return [(settings.app_id, [*names.inputs(), names.limit_checks, names.decisions])]


def worker_lag(settings: Settings) -> int:
    """Messages the worker has not yet processed and committed, over every topic it consumes."""
    return groups_lag(settings.kafka, worker_groups(settings))


def groups_lag(kafka: KafkaConnection, groups: list[tuple[str, list[str]]], client_id: str = "remedy-lag") -> int:
    """Messages not yet processed and committed over every (consumer group, topics): end offset minus committed."""
    lag = 0
    for group, topics in groups:
        consumer = KafkaConsumer(**kafka_python_options(kafka), group_id=group, enable_auto_commit=False,
                                 client_id=client_id)
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
            ends = consumer.end_offsets(partitions)
            lag += sum(max(0, ends[tp] - (consumer.committed(tp) or 0)) for tp in partitions)
        finally:
            consumer.close()
    return lag


# Kafka's error code for a topic this principal may not describe (TOPIC_AUTHORIZATION_FAILED).
TOPIC_AUTHORIZATION_FAILED = 29


def _read_refused(kafka: KafkaConnection, topic: str) -> bool:
    """True when the topic is hidden by ACLs rather than absent: a metadata request for all topics
    leaves both out alike, a DescribeTopics answer tells them apart."""
    if kafka.security_protocol == "PLAINTEXT":
        return False  # without authentication no ACL can name this client
    admin = KafkaAdminClient(**kafka_python_options(kafka), client_id="remedy-describe")
    try:
        described = admin.describe_topics([topic])
    except KafkaError as error:
        return "Authorization" in type(error).__name__
    finally:
        admin.close()
    return any(entry.get("error_code") == TOPIC_AUTHORIZATION_FAILED for entry in described)


def unreachable(kafka: KafkaConnection, error: Exception) -> TransientError:
    """The error for a Kafka that did not answer; with SASL it may also have refused the password
    (kafka-python reports both as a failed bootstrap)."""
    if kafka.uses_sasl:
        return TransientError(f"Kafka at {kafka} did not answer, or did not accept user {kafka.username!r} and "
                              f"its password (REMEDY_KAFKA_USERNAME, REMEDY_KAFKA_PASSWORD): {error}")
    return TransientError(f"Kafka at {kafka} did not answer: {error}")


# Poll wait per round while reading a topic to its end.
READ_POLL_MS = 500


def read_topic(kafka: KafkaConnection, topic: str, timeout_s: float, client_id: str, missing_ok: bool = False,
               only_partitions: set[int] | None = None) -> Iterator:
    """Every record on a topic (all partitions, or `only_partitions`) up to its end offsets now,
    without a consumer group.

    Bounded: raises TransientError past `timeout_s`. A topic that does not exist raises
    InvariantViolation, or yields nothing with `missing_ok`.
    """
    try:
        consumer = KafkaConsumer(**kafka_python_options(kafka), enable_auto_commit=False, group_id=None,
                                 client_id=client_id)
    except KafkaError as error:
        raise unreachable(kafka, error) from None
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if only_partitions is not None and partitions:
            partitions = [tp for tp in partitions if tp.partition in only_partitions]
            if not partitions:
                return
        if not partitions and _read_refused(kafka, topic):
            raise AccessRefused(f"Kafka at {kafka} refused to let this client read {topic} (no ACL allows it; "
                                "see deploy/local/kafka.sh for what each role may do)")
        if not partitions:
            if missing_ok:
                return
            raise InvariantViolation(f"topic {topic} does not exist (is REMEDY_TOPIC_PREFIX right?)")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TransientError(f"could not read {topic} to its end in {timeout_s}s")
            for tp, batch in consumer.poll(timeout_ms=READ_POLL_MS).items():
                yield from (record for record in batch if record.offset < end[tp])
    finally:
        consumer.close()
