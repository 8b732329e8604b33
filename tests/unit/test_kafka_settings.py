"""Kafka security settings: what REMEDY_KAFKA_* accept and refuse, and the client options they give."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from streams.errors import InvariantViolation
from streams.runtime.kafka_auth import aiokafka_options, faust_options, kafka_python_options
from streams.runtime.settings import KafkaConnection, load_settings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
                    "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem")],
                   check=True, capture_output=True)
    return directory / "ca.pem"


def test_plaintext_is_the_default_and_adds_no_credentials():
    settings = load_settings({"REMEDY_KAFKA_BOOTSTRAP": "k:1"})
    assert settings.kafka == KafkaConnection(bootstrap="k:1")
    options = kafka_python_options(settings.kafka)
    assert options == {"bootstrap_servers": "k:1", "security_protocol": "PLAINTEXT"}
    assert faust_options(settings.kafka) == {"broker": "kafka://k:1"}


def test_sasl_ssl_with_scram_gives_every_library_the_same_credentials(ca_file):
    settings = load_settings({"REMEDY_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "REMEDY_KAFKA_USERNAME": "worker",
                              "REMEDY_KAFKA_PASSWORD": "s3cret-pw", "REMEDY_KAFKA_CA_FILE": str(ca_file)})
    kafka = settings.kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    for options in (kafka_python_options(kafka), aiokafka_options(kafka)):
        assert options["sasl_plain_username"] == "worker" and options["sasl_plain_password"] == "s3cret-pw"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        context = options["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_options(kafka)["broker_credentials"]
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert "s3cret-pw" in settings.secrets()
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(kafka)
    assert str(kafka) == "127.0.0.1:9092 (SASL_SSL as worker)"


def test_the_password_can_come_from_a_file(tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\n")
    kafka = load_settings({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "REMEDY_KAFKA_USERNAME": "ops",
                           "REMEDY_KAFKA_PASSWORD_FILE": str(password_file)}).kafka
    assert kafka.password == "from-file"


def test_ssl_alone_uses_tls_without_sasl(ca_file):
    kafka = load_settings({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SSL", "REMEDY_KAFKA_CA_FILE": str(ca_file)}).kafka
    options = aiokafka_options(kafka)
    assert "sasl_mechanism" not in options and options["security_protocol"] == "SSL"
    assert faust_options(kafka)["broker_credentials"].protocol.value == "SSL"


@pytest.mark.parametrize("env, named", [
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "REMEDY_KAFKA_SECURITY_PROTOCOL"),
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "REMEDY_KAFKA_USERNAME": "u"}, "REMEDY_KAFKA_PASSWORD"),
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "REMEDY_KAFKA_PASSWORD": "p"}, "REMEDY_KAFKA_USERNAME"),
    ({"REMEDY_KAFKA_SASL_MECHANISM": "GSSAPI"}, "REMEDY_KAFKA_SASL_MECHANISM"),
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "REMEDY_KAFKA_SASL_MECHANISM": "PLAIN",
      "REMEDY_KAFKA_USERNAME": "u", "REMEDY_KAFKA_PASSWORD": "p"}, "clear text"),
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SSL", "REMEDY_KAFKA_CERT_FILE": "/etc/hostname"}, "REMEDY_KAFKA_KEY_FILE"),
    ({"REMEDY_KAFKA_SECURITY_PROTOCOL": "SSL", "REMEDY_KAFKA_CA_FILE": "/no/such/ca.pem"}, "no such file"),
    ({"REMEDY_KAFKA_CA_FILE": "/etc/hostname"}, "does not use TLS"),
    ({"REMEDY_KAFKA_PASSWORD": "a", "REMEDY_KAFKA_PASSWORD_FILE": "/etc/hostname"}, "both set"),
    ({"REMEDY_KAFKA_PASSWORD_FILE": "/no/such/pw"}, "REMEDY_KAFKA_PASSWORD_FILE"),
])
def test_a_bad_kafka_setting_is_refused_naming_it(env, named):
    with pytest.raises(InvariantViolation, match=named):
        load_settings(env)


@pytest.mark.parametrize("replication, min_insync, expected", [(1, "", 1), (2, "", 2), (3, "", 2), (3, "3", 3), (3, "1", 1)])
def test_min_insync_replicas_follows_replication(replication, min_insync, expected):
    settings = load_settings({"REMEDY_TOPIC_REPLICATION": str(replication), "REMEDY_TOPIC_MIN_INSYNC_REPLICAS": min_insync})
    assert settings.min_insync_replicas == expected


@pytest.mark.parametrize("min_insync", ["-1", "4"])
def test_min_insync_replicas_outside_zero_to_replication_is_refused(min_insync):
    with pytest.raises(InvariantViolation, match="topic_min_insync_replicas"):
        load_settings({"REMEDY_TOPIC_REPLICATION": "3", "REMEDY_TOPIC_MIN_INSYNC_REPLICAS": min_insync})
