"""Registry mode against a real Apicurio Registry and the real broker.

The registry is started here by deploy/local/registry.sh on a free port (its own data dir) and
stopped at the end of the module. Producers and consumers that are not this project's (a Java
producer with Apicurio's serde, a Python consumer with Confluent's AvroDeserializer) meet the
worker through it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from kafka.partitioner.default import murmur2

import schemas
from streams.runtime.kafka_auth import librdkafka_options
from streams.runtime.kafka_io import Publisher
from streams.runtime.schema_registry import COMPATIBILITY, HttpSchemaRegistry
from streams.runtime.upstream import read_events
from tests.integration.conftest import REPO, Deployment, _free_port
from tests.support.reference import expected_decisions, write_workload

REGISTRY_SCRIPT = REPO / "deploy" / "local" / "registry.sh"
JAVA_EXAMPLE = REPO / "examples" / "java-producer"
# A cold fetch (Maven Central) plus a start; a warm start takes 2-19 s here.
REGISTRY_START_S_MAX = 300
REGISTRY_STOP_S_MAX = 60
# A cold build downloads the serde and Maven's plugins; a warm one takes about 10 s here.
MAVEN_BUILD_S_MAX = 300
# The producer sends three records and waits for each acknowledgement (60 s each at most).
JAVA_RUN_S_MAX = 240
# `python -m schemas register`: some 30 requests to a local registry.
REGISTER_S_MAX = 120
# Longest the Confluent consumer reads the decision topic.
CONFLUENT_READ_S_MAX = 60
CCOMPAT_PATH = "/apis/ccompat/v7"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """The Confluent-compatible URL of an Apicurio Registry that runs for this module."""
    env = {**os.environ, "REMEDY_DATA_DIR": str(tmp_path_factory.mktemp("registry")),
           "REMEDY_REGISTRY_PORT": str(_free_port())}
    started = subprocess.run([str(REGISTRY_SCRIPT), "start"], env=env, capture_output=True, text=True,
                             timeout=REGISTRY_START_S_MAX)
    try:
        assert started.returncode == 0, f"registry.sh start failed:\n{started.stdout}\n{started.stderr}"
        url = subprocess.run([str(REGISTRY_SCRIPT), "url"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip()
        yield url
    finally:
        subprocess.run([str(REGISTRY_SCRIPT), "stop"], env=env, capture_output=True, timeout=REGISTRY_STOP_S_MAX)


@pytest.fixture
def reader(registry):
    """This test process reads (and writes) in registry mode too, as the worker and CLI do."""
    schemas.use_registry(HttpSchemaRegistry(registry))
    yield
    schemas.use_registry(None)


@pytest.fixture
def deployment(tmp_path, registry, reader):
    """A deployment whose worker and commands run with REMEDY_SCHEMA_REGISTRY_URL set."""
    deployment = Deployment(tmp_path / "deployment", REMEDY_SCHEMA_REGISTRY_URL=registry)
    yield deployment
    deployment.stop_worker()


def framings(deployment: Deployment, topic: str) -> dict[str, int]:
    """How many records of a topic are single objects and how many registry-framed."""
    counts = {"single": 0, "registry": 0}
    for record in deployment.read_topic(topic):
        counts["single" if record.value[:2] == schemas.MAGIC else "registry"] += 1
        assert record.value[:1] in (schemas.MAGIC[:1], schemas.CONFLUENT_MAGIC)
    return counts


def decided(deployment: Deployment) -> dict[str, tuple[str, int]]:
    """request_id -> (outcome, granted cents) of every decision on the decision topic."""
    return {d["request_id"]: (d["outcome"], d["granted_cents"]) for d in deployment.decisions()}


def confluent_read(deployment: Deployment, registry: str, topic: str, count: int) -> list[dict]:
    """`count` records of a topic as Confluent's AvroDeserializer reads them (schemas by id from the registry)."""
    from confluent_kafka import Consumer, KafkaException
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer({**librdkafka_options(deployment.settings.kafka), "group.id": f"confluent-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    records: list[dict] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONFLUENT_READ_S_MAX
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            records.append(deserializer(message.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return records


def register(registry: str | None, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m schemas register ARGS` as a user runs it."""
    url = ["--registry-url", registry] if registry else []
    return subprocess.run([sys.executable, "-m", "schemas", "register", *url, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=REGISTER_S_MAX)


def test_registry_mode_end_to_end_publish_decide_project_audit_and_a_confluent_consumer(deployment, registry, tmp_path):
    workload = write_workload(tmp_path / "workload.jsonl", customers=15, seed=41)
    deployment.start_worker()
    deployment.cli("publish", str(workload))
    deployment.cli("wait", "--file", str(workload), "--timeout", "180")

    names = deployment.names
    for topic in (names.orders, names.requests, names.decisions):
        counts = framings(deployment, topic)
        assert counts["single"] == 0 and counts["registry"] > 0, (topic, counts)
    expected = expected_decisions(workload)
    assert decided(deployment) == expected

    audited = deployment.cli("audit", "--json", check=False)
    assert audited.returncode == 0, audited.stdout[-3000:] + audited.stderr[-2000:]
    assert json.loads(audited.stdout)["decided"] == len(expected)
    verified = deployment.cli("verify", "--json", "--wait", "60", check=False)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout[-3000:] + verified.stderr

    # Every subject the worker and the publisher wrote under is FULL_TRANSITIVE.
    client = HttpSchemaRegistry(registry)
    for name in ("OrderPlaced", "RemedyRequested", "RemedyDecided", "LimitCheck"):
        assert client.compatibility(f"remedy_ledger.v1.{name}") == COMPATIBILITY

    on_topic = len(deployment.read_topic(names.decisions))
    read = confluent_read(deployment, registry, names.decisions, on_topic)
    assert len(read) == on_topic
    assert {d["request_id"]: (d["outcome"], d["granted_cents"]) for d in read} == expected


def test_single_objects_and_registry_framed_records_interleaved_are_all_decided(deployment, tmp_path):
    workload = write_workload(tmp_path / "workload.jsonl", customers=15, seed=42)
    single_objects = schemas.SchemaSet.load()  # no registry: what a not yet migrated producer writes
    names = deployment.names
    with Publisher(deployment.settings) as publisher:
        for n, (record_name, datum) in enumerate(read_events(workload)):
            value = schemas.encode(record_name, datum) if n % 2 else single_objects.encode(record_name, datum)
            publisher.publish_raw(names.for_event(record_name), datum["customer_id"].encode(), value)
        # A record framed with an id the registry never gave: a dead letter, and the rest goes on.
        forged = schemas.CONFLUENT_MAGIC + (2**31 - 1).to_bytes(4, "big") + b"\x02x"
        publisher.publish_raw(names.requests, b"c-forged", forged)
    for topic in (names.orders, names.requests):
        counts = framings(deployment, topic)
        assert counts["single"] > 0 and counts["registry"] > 0, (topic, counts)

    deployment.start_worker()
    deployment.cli("wait", "--file", str(workload), "--timeout", "180")
    assert decided(deployment) == expected_decisions(workload)
    letters = [schemas.decode(record.value)[1] for record in deployment.read_topic(names.dead_letter)]
    assert [(letter["error_type"], letter["original_value"]) for letter in letters] == [("DecodeError", forged)]
    assert f"schema id {2**31 - 1} of the registry {deployment.settings.schema_registry_url} does not exist" \
        in letters[0]["reason"]


def test_the_java_example_publishes_an_order_incident_and_request_the_worker_decides(deployment, registry, tmp_path):
    project = tmp_path / "java-producer"
    shutil.copytree(JAVA_EXAMPLE, project, ignore=shutil.ignore_patterns("target"))
    started = time.monotonic()
    build = subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "package"], cwd=project, capture_output=True,
                           text=True, timeout=MAVEN_BUILD_S_MAX)
    assert build.returncode == 0, f"mvn package failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    print(f"java example built in {time.monotonic() - started:.1f}s")
    # The Java producer looks its schemas up and registers nothing: the released ones are pushed first.
    pushed = register(registry)
    assert pushed.returncode == 0, pushed.stderr

    settings = deployment.settings
    customer, run = "c-java-7", uuid.uuid4().hex[:8]
    produced = subprocess.run(
        ["java", "-jar", str(project / "target" / "remedy-java-producer.jar"),
         "--bootstrap", settings.kafka.bootstrap, "--registry-url", registry.removesuffix(CCOMPAT_PATH),
         "--topic-prefix", settings.topic_prefix, "--schemas-dir", str(REPO / "schemas"),
         "--customer-id", customer, "--run-id", run, "--amount-cents", "1500"],
        capture_output=True, text=True, timeout=JAVA_RUN_S_MAX)
    assert produced.returncode == 0, f"the Java producer failed:\n{produced.stdout}\n{produced.stderr}"

    names = deployment.names
    home = (murmur2(customer.encode()) & 0x7FFFFFFF) % settings.topic_partitions
    for topic, record_name in ((names.orders, "OrderPlaced"), (names.incidents, "IncidentReported"),
                               (names.requests, "RemedyRequested")):
        [record] = deployment.read_topic(topic)
        assert record.value[:1] == schemas.CONFLUENT_MAGIC and record.key == customer.encode()
        assert record.partition == home  # Kafka's default partitioner is murmur2, as the worker's
        assert schemas.decode(record.value)[0] == record_name

    deployment.start_worker()
    [decision] = deployment.wait_for("the Java request's decision", lambda: [
        d for d in deployment.decisions() if d["request_id"] == f"r-java-{run}"])
    assert (decision["customer_id"], decision["outcome"], decision["granted_cents"]) == (customer, "GRANTED", 1500)
    assert deployment.read_topic(names.dead_letter) == []


def test_schemas_register_passes_and_an_incompatible_change_is_refused_naming_it(registry, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}."
    first = register(None, "--subject-prefix", prefix, env={**os.environ, "REMEDY_SCHEMA_REGISTRY_URL": registry})
    assert first.returncode == 0, first.stderr
    schema_set = schemas.default_schema_set()
    revisions = sum(len(schema_set.history(name)) for name in schema_set.record_names())
    assert first.stdout.count("registered ") == revisions
    client = HttpSchemaRegistry(registry)
    for name in schema_set.record_names():
        subject = prefix + schema_set.current_record(name).subject
        assert client.compatibility(subject) == COMPATIBILITY
        assert len(client.versions(subject)) == len(schema_set.history(name))
    again = register(registry, "--subject-prefix", prefix)
    assert again.returncode == 0, again.stderr
    assert f"{revisions} schema revisions" in again.stdout and "0 newly registered" in again.stdout

    # A test-local copy of OrderPlaced with a field added without a default: old data has no
    # value for it, so FULL_TRANSITIVE must refuse it.
    changed = tmp_path / "avro" / "r1"
    changed.mkdir(parents=True)
    for name in ("OrderPlaced", "OrderItem"):
        shutil.copy(REPO / "schemas" / "avro" / "r1" / f"{name}.avsc", changed)
    definition = json.loads((changed / "OrderPlaced.avsc").read_text())
    definition["fields"].append({"name": "gift_message", "type": "string", "doc": "Added without a default."})
    (changed / "OrderPlaced.avsc").write_text(json.dumps(definition, indent=2))
    refused = register(registry, "--subject-prefix", prefix, "--schemas-root", str(tmp_path / "avro"))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"OrderPlaced r1 ({tmp_path / 'avro'})" in refused.stderr and "incompatible" in refused.stderr
    assert "gift_message" in refused.stderr
    # Nothing of the refused change was registered: the subject holds the released revisions only.
    assert len(client.versions(f"{prefix}remedy_ledger.v1.OrderPlaced")) == len(schema_set.history("OrderPlaced"))
