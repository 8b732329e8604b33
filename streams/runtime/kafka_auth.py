"""A KafkaConnection as the options each Kafka client library takes (kafka-python, aiokafka, Faust, librdkafka).

Every client the project builds (agents, publish, CLI commands, audit, rebuild, bench) gets its
security options from here, so a cluster with SASL_SSL works everywhere or nowhere.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

from streams.runtime.settings import KafkaConnection


@lru_cache(maxsize=8)
def ssl_context(connection: KafkaConnection) -> ssl.SSLContext | None:
    """The TLS context for a connection (None without TLS): the CA file (or the system's CAs),
    the client certificate when one is set, and host name checking on."""
    if not connection.uses_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=connection.ca_file or None)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if connection.cert_file:
        context.load_cert_chain(connection.cert_file, connection.key_file)
    return context


def _common(connection: KafkaConnection) -> dict:
    options: dict = {"security_protocol": connection.security_protocol}
    context = ssl_context(connection)
    if context is not None:
        options["ssl_context"] = context
    if connection.uses_sasl:
        options.update(sasl_mechanism=connection.sasl_mechanism, sasl_plain_username=connection.username,
                       sasl_plain_password=connection.password)
    return options


def kafka_python_options(connection: KafkaConnection) -> dict:
    """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
    return {"bootstrap_servers": connection.bootstrap, **_common(connection)}


def aiokafka_options(connection: KafkaConnection) -> dict:
    """Keyword arguments for aiokafka's AIOKafkaConsumer and AIOKafkaProducer."""
    return {"bootstrap_servers": connection.bootstrap, **_common(connection)}


def faust_options(connection: KafkaConnection) -> dict:
    """Keyword arguments for faust.App: the broker URL and, when secured, broker_credentials."""
    import faust

    options: dict = {"broker": f"kafka://{connection.bootstrap}"}
    context = ssl_context(connection)
    if connection.uses_sasl:
        options["broker_credentials"] = faust.SASLCredentials(
            username=connection.username, password=connection.password, ssl_context=context,
            mechanism=connection.sasl_mechanism)
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options


def librdkafka_options(connection: KafkaConnection) -> dict:
    """The configuration dict of librdkafka clients (confluent-kafka in Python; the same keys in Go and C)."""
    options: dict = {"bootstrap.servers": connection.bootstrap,
                     "security.protocol": connection.security_protocol.lower()}
    if connection.uses_tls:
        options["ssl.endpoint.identification.algorithm"] = "https"
        if connection.ca_file:
            options["ssl.ca.location"] = connection.ca_file
        if connection.cert_file:
            options.update({"ssl.certificate.location": connection.cert_file, "ssl.key.location": connection.key_file})
    if connection.uses_sasl:
        options.update({"sasl.mechanism": connection.sasl_mechanism, "sasl.username": connection.username,
                        "sasl.password": connection.password})
    return options
