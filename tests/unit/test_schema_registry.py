"""Registry mode without a registry server: the Confluent framing, the id caches, the errors that
must be dead letters and the ones that must not. A fake registry counts what it is asked; the real
Apicurio is exercised in tests/integration/test_registry_mode.py."""

from __future__ import annotations

import json
import socket

import pytest

import schemas
from schemas import CONFLUENT_HEADER_SIZE, HEADER_SIZE, SchemaSet
from streams.errors import DecodeError, InvariantViolation, TransientError
from streams.runtime.batch import Incoming, fold_batch
from streams.runtime.schema_registry import HttpSchemaRegistry
from streams.runtime.settings import Settings, load_settings
from streams.runtime.topics import TopicNames

ITEM = {"sku": "sku-1", "quantity": 2, "unit_price_cents": 450}
REQUEST = {"event_id": "e-r1", "request_id": "r1", "customer_id": "c1", "order_id": None, "incident_id": None,
           "kind": "CREDIT", "amount_cents": 500, "currency": "USD", "requested_by": "customer",
           "requested_at": 1_795_251_100_000, "reason": "x"}


class FakeRegistry:
    """Ids handed out per (subject, schema), schemas served by id; every call counted."""

    url = "http://registry.invalid/apis/ccompat/v7"

    def __init__(self, first_id: int = 40) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.texts: dict[int, str] = {}
        self.next_id = first_id
        self.calls: list[tuple] = []
        self.unreachable = False

    def schema_id(self, subject: str, schema_text: str) -> int:
        self.calls.append(("schema_id", subject))
        if (subject, schema_text) not in self.ids:
            self.ids[(subject, schema_text)] = self.next_id
            self.texts[self.next_id] = schema_text
            self.next_id += 1
        return self.ids[(subject, schema_text)]

    def schema_by_id(self, schema_id: int) -> str | None:
        self.calls.append(("schema_by_id", schema_id))
        if self.unreachable:
            raise TransientError("the schema registry is unavailable")
        return self.texts.get(schema_id)


@pytest.fixture
def registry_set():
    schema_set = SchemaSet.load()
    registry = FakeRegistry()
    schema_set.use_registry(registry)
    return schema_set, registry


def test_registry_mode_writes_the_confluent_wire_format_with_the_subjects_id(registry_set):
    schema_set, registry = registry_set
    data = schema_set.encode("OrderItem", ITEM)
    schema_id = registry.ids[("remedy_ledger.v1.OrderItem", schema_set.current_record("OrderItem").schema_text())]
    assert data[:CONFLUENT_HEADER_SIZE] == b"\x00" + schema_id.to_bytes(4, "big")
    # The body is the single object's body: only the header differs.
    assert data[CONFLUENT_HEADER_SIZE:] == schema_set.encode_single_object("OrderItem", ITEM)[HEADER_SIZE:]
    assert schema_set.decode(data) == ("OrderItem", ITEM)


def test_the_subject_is_the_records_full_name_and_the_text_is_its_self_contained_schema():
    record = schemas.default_schema_set().current_record("RemedyRequested")
    assert record.subject == "remedy_ledger.v1.RemedyRequested"
    text = json.loads(record.schema_text())
    assert text["name"] == "remedy_ledger.v1.RemedyRequested"
    kinds = [f["type"] for f in text["fields"] if f["name"] == "kind"]
    assert kinds[0]["type"] == "enum"  # nested types are defined inline: no schema references


def test_the_registry_is_asked_once_per_record_and_once_per_id_not_per_message(registry_set):
    schema_set, registry = registry_set
    frames = [schema_set.encode("OrderItem", {**ITEM, "quantity": n}) for n in range(1, 51)]
    assert registry.calls == [("schema_id", "remedy_ledger.v1.OrderItem")]
    # A second process (a fresh reader) asks for the id once, then decodes from its cache.
    reader = SchemaSet.load()
    reader.use_registry(registry)
    assert [reader.decode(frame)[1]["quantity"] for frame in frames] == list(range(1, 51))
    assert registry.calls.count(("schema_by_id", registry.next_id - 1)) == 1


def test_readers_in_either_mode_read_both_framings_interleaved(registry_set):
    schema_set, registry = registry_set
    framed = schema_set.encode("OrderItem", ITEM)
    single = schema_set.encode_single_object("OrderItem", ITEM)
    reader = SchemaSet.load()
    reader.use_registry(registry)
    assert [reader.decode(data) for data in (single, framed, single, framed)] == [("OrderItem", ITEM)] * 4
    assert SchemaSet.load().decode(single) == ("OrderItem", ITEM)  # no registry: single objects still read


def test_without_a_registry_a_framed_record_is_a_decode_error_naming_the_setting(registry_set):
    schema_set, _ = registry_set
    with pytest.raises(DecodeError, match="Confluent wire format, schema id 40.*set REMEDY_SCHEMA_REGISTRY_URL"):
        SchemaSet.load().decode(schema_set.encode("OrderItem", ITEM))


def test_an_id_the_registry_does_not_know_is_a_decode_error_asked_once(registry_set):
    schema_set, registry = registry_set
    body = schema_set.encode("OrderItem", ITEM)[CONFLUENT_HEADER_SIZE:]
    forged = b"\x00" + (999).to_bytes(4, "big") + body
    for _ in range(3):
        with pytest.raises(DecodeError, match="schema id 999 of the registry http://registry.invalid.* does not exist"):
            schema_set.decode(forged)
    assert registry.calls.count(("schema_by_id", 999)) == 1


def test_a_registered_schema_that_is_no_known_revision_is_a_decode_error(registry_set):
    schema_set, registry = registry_set
    stranger = {"type": "record", "name": "remedy_ledger.v1.Stranger", "fields": [{"name": "x", "type": "long"}]}
    registry.texts[77] = json.dumps(stranger)
    registry.texts[78] = "not json"
    with pytest.raises(DecodeError, match=r"schema id 77 .*\(remedy_ledger.v1.Stranger\) has unknown schema "
                                          "fingerprint [0-9a-f]{16}: is not any known revision"):
        schema_set.decode(b"\x00\x00\x00\x00\x4d\x02")
    with pytest.raises(DecodeError, match="schema id 78 .* is no Avro schema this reader can parse"):
        schema_set.decode(b"\x00\x00\x00\x00\x4e\x02")


def test_an_unreachable_registry_is_a_transient_error_and_not_remembered(registry_set):
    schema_set, registry = registry_set
    framed = schema_set.encode("OrderItem", ITEM)
    reader = SchemaSet.load()
    reader.use_registry(registry)
    registry.unreachable = True
    with pytest.raises(TransientError):  # never a DecodeError: the record is fine, it must not be dead-lettered
        reader.decode(framed)
    registry.unreachable = False
    assert reader.decode(framed) == ("OrderItem", ITEM)


def test_a_truncated_framed_record_is_a_decode_error(registry_set):
    schema_set, _ = registry_set
    framed = schema_set.encode("OrderItem", ITEM)
    with pytest.raises(DecodeError, match="too short for the Confluent wire format: 3 bytes"):
        schema_set.decode(framed[:3])
    with pytest.raises(DecodeError, match="truncated or corrupt OrderItem body \\(registry schema id 40\\)"):
        schema_set.decode(framed[:-1])


def test_an_id_outside_the_wire_formats_range_is_refused():
    schema_set = SchemaSet.load()

    class Huge(FakeRegistry):
        def schema_id(self, subject: str, schema_text: str) -> int:
            return 2**31

    schema_set.use_registry(Huge())
    with pytest.raises(InvariantViolation, match="not a schema id of the Confluent wire format"):
        schema_set.encode("OrderItem", ITEM)


def test_the_worker_dead_letters_a_framed_record_when_it_has_no_registry():
    registry = FakeRegistry()
    writer = SchemaSet.load()
    writer.use_registry(registry)
    names = TopicNames(prefix="p", app_id="p-worker")
    framed = Incoming(names.requests, 0, 7, b"c1", writer.encode("RemedyRequested", REQUEST), 1_795_251_600_000)
    result = fold_batch([framed], lambda key: None, Settings().policy, names)  # the default set: no registry
    assert [(d["error_type"], d["source_offset"]) for d in result.dead_letters] == [("DecodeError", 7)]
    assert "has no schema registry; set REMEDY_SCHEMA_REGISTRY_URL" in result.dead_letters[0]["reason"]
    assert result.dead_letters[0]["original_value"] == framed.value


def test_the_setting_takes_an_http_url_and_refuses_anything_else():
    assert load_settings({}).schema_registry_url == ""
    url = "http://127.0.0.1:8081/apis/ccompat/v7"
    assert load_settings({"REMEDY_SCHEMA_REGISTRY_URL": url + "/"}).schema_registry_url == url
    for bad in ("127.0.0.1:8081", "ftp://host/x", "http://user:secret@host:8081/apis/ccompat/v7"):
        with pytest.raises(InvariantViolation, match="REMEDY_SCHEMA_REGISTRY_URL"):
            load_settings({"REMEDY_SCHEMA_REGISTRY_URL": bad})


def test_an_unreachable_registry_is_retried_a_bounded_number_of_times_then_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connections are refused
    pauses: list[float] = []
    registry = HttpSchemaRegistry(f"http://127.0.0.1:{port}/apis/ccompat/v7", attempts_max=3, sleep=pauses.append)
    with pytest.raises(TransientError, match="unavailable .*3 attempts"):
        registry.schema_by_id(1)
    assert len(pauses) == 2


def test_prepare_learns_the_ids_at_start_and_nothing_without_a_registry(registry_set):
    schema_set, registry = registry_set
    schema_set.prepare(("OrderItem", "RemedyRequested"))
    assert registry.calls == [("schema_id", "remedy_ledger.v1.OrderItem"),
                              ("schema_id", "remedy_ledger.v1.RemedyRequested")]
    schema_set.prepare()
    assert {subject for _, subject in registry.calls} == {f"remedy_ledger.v1.{n}" for n in schema_set.record_names()}
    calls = len(registry.calls)
    schema_set.encode("RemedyRequested", REQUEST)
    assert len(registry.calls) == calls  # encoding needs no request after prepare
    SchemaSet.load().prepare()  # no registry: no request, no error
