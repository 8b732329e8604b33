"""Typed settings: the only place that reads environment variables (the composition root's input)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from streams.errors import InvariantViolation, PolicyError
from streams.core.policy import Policy


# Kafka's security.protocol values this project supports, and the SASL mechanisms (SCRAM-SHA-512
# for production clusters; PLAIN for clusters that authenticate elsewhere, always over TLS).
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "PLAIN")
# A synchronous request holds an HTTP connection while it waits: past 30 s a caller should poll.
SYNC_WAIT_MS_MAX = 30_000


@dataclass(frozen=True)
class KafkaConnection:
    """Where Kafka is and how to authenticate to it: one value every client of the project is built
    from (streams/runtime/kafka_auth.py turns it into kafka-python, aiokafka and Faust options)."""

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)  # never printed
    ca_file: str = ""  # PEM CA bundle that signed the brokers' certificates; empty: the system's CAs
    cert_file: str = ""  # PEM client certificate, for brokers that require TLS client authentication
    key_file: str = ""  # its PEM private key

    @property
    def uses_sasl(self) -> bool:
        """True when the client authenticates with a SASL username and password."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """True when the connection is encrypted with TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def __str__(self) -> str:
        """How messages name this Kafka: its address and, when authenticated, as whom (no secret)."""
        who = f" as {self.username}" if self.uses_sasl else ""
        return f"{self.bootstrap} ({self.security_protocol}{who})" if self.security_protocol != "PLAINTEXT" else self.bootstrap


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its surroundings; see README "Configuration"."""

    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    data_dir: Path = Path(".data").resolve()
    clickhouse_url: str = field(default="", repr=False)  # may carry a password: never printed
    clickhouse_database: str = "remedy"
    topic_prefix: str = "remedy"
    topic_partitions: int = 4
    topic_replication: int = 1
    # Replicas that must acknowledge a write (acks=all); 0 means min(2, topic_replication), so a
    # replicated topic keeps accepting writes with one broker down and never acknowledges on one copy.
    topic_min_insync_replicas: int = 0
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # Events decided per batch: big enough to amortise state writes, small enough for latency.
    decide_batch_max: int = 2_000
    # Longest a partial decide batch waits for more events; bounds decision latency.
    decide_batch_wait_ms: int = 5
    # Decisions per ClickHouse insert: ClickHouse prefers few large inserts (10k-100k rows).
    project_batch_max: int = 20_000
    # Longest a partial projection batch waits; bounds how stale finance totals can be.
    project_batch_wait_ms: int = 500
    # Attempts for a ClickHouse insert before the worker crashes loudly (transient errors only).
    clickhouse_attempts_max: int = 5
    policy: Policy = field(default_factory=Policy)
    # HTTP: the tokens file the worker checks (`ROLE TOKEN` lines; streams/runtime/access.py), and
    # the token CLI commands send to the worker.
    http_tokens_file: str = ""
    http_token: str = field(default="", repr=False)
    # /ready answers 503 while the worker's consumer lag is above this many messages.
    ready_lag_max: int = 100_000
    # Registry mode (schemas/README.md): the Confluent-compatible API of a schema registry
    # (Apicurio: http://HOST:PORT/apis/ccompat/v7). Set: every record written carries a registry
    # schema id (Confluent wire format). Empty: Avro single objects. Readers accept both always.
    schema_registry_url: str = ""
    # How long POST /v1/remedy-requests waits for the decision before answering 202 (poll then).
    sync_wait_ms: int = 2_000
    # The secret key of erased customers' pseudonyms (docs/privacy.md): read from
    # REMEDY_PRIVACY_KEY_FILE, else from <data dir>/privacy.key (the worker creates it on first start).
    privacy_key_file: str = ""
    privacy_key: bytes = field(default=b"", repr=False)  # never printed

    def secrets(self) -> tuple[str, ...]:
        """Every secret value a log line or an error could carry (see streams/redaction.py)."""
        values = (self.clickhouse_url, self.http_token, self.kafka.password, self.privacy_key.decode("utf-8", "replace"))
        return tuple(value for value in values if value)

    @property
    def privacy_key_path(self) -> Path:
        """Where the privacy key is read from: REMEDY_PRIVACY_KEY_FILE, else <data dir>/privacy.key."""
        return Path(self.privacy_key_file) if self.privacy_key_file else self.data_dir / "privacy.key"

    @property
    def kafka_bootstrap(self) -> str:
        """The bootstrap servers (host:port list) of the Kafka cluster."""
        return self.kafka.bootstrap

    @property
    def min_insync_replicas(self) -> int:
        """min.insync.replicas for the project's topics (see topic_min_insync_replicas)."""
        return self.topic_min_insync_replicas or min(2, self.topic_replication)

    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse DSN: the configured URL, or embedded chDB under the data directory."""
        return self.clickhouse_url or f"chdb://{self.data_dir / 'clickhouse'}"

    @property
    def embedded_clickhouse(self) -> bool:
        """True when ClickHouse runs in process (chDB): one process owns the data path."""
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def app_id(self) -> str:
        """Application id: the Faust app id, which is the worker's consumer group and the prefix of the changelog topics."""
        return f"{self.topic_prefix}-worker"

    @property
    def worker_url(self) -> str:
        """Where the running worker answers HTTP (health and finance queries)."""
        return f"http://{self.web_host}:{self.web_port}"


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvariantViolation(f"environment variable {name}: expected an integer, got {raw!r}") from None


def _kafka_connection(env: dict, default_bootstrap: str) -> KafkaConnection:
    """The Kafka connection from REMEDY_KAFKA_*; every problem names its variable."""
    protocol = env.get("REMEDY_KAFKA_SECURITY_PROTOCOL", "").strip().upper() or "PLAINTEXT"
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise InvariantViolation(f"environment variable REMEDY_KAFKA_SECURITY_PROTOCOL: expected one of "
                                 f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, got {protocol!r}")
    mechanism = env.get("REMEDY_KAFKA_SASL_MECHANISM", "").strip().upper() or KAFKA_SASL_MECHANISMS[0]
    if mechanism not in KAFKA_SASL_MECHANISMS:
        raise InvariantViolation(f"environment variable REMEDY_KAFKA_SASL_MECHANISM: expected one of "
                                 f"{', '.join(KAFKA_SASL_MECHANISMS)}, got {mechanism!r}")
    password = env.get("REMEDY_KAFKA_PASSWORD", "")
    password_file = env.get("REMEDY_KAFKA_PASSWORD_FILE", "")
    if password_file:
        if password:
            raise InvariantViolation("REMEDY_KAFKA_PASSWORD and REMEDY_KAFKA_PASSWORD_FILE are both set; set one")
        try:
            password = Path(password_file).read_text().strip()
        except OSError as error:
            raise InvariantViolation(f"REMEDY_KAFKA_PASSWORD_FILE {password_file}: {error.strerror}") from None
    connection = KafkaConnection(
        bootstrap=env.get("REMEDY_KAFKA_BOOTSTRAP", default_bootstrap), security_protocol=protocol,
        sasl_mechanism=mechanism, username=env.get("REMEDY_KAFKA_USERNAME", ""), password=password,
        ca_file=env.get("REMEDY_KAFKA_CA_FILE", ""), cert_file=env.get("REMEDY_KAFKA_CERT_FILE", ""),
        key_file=env.get("REMEDY_KAFKA_KEY_FILE", ""))
    if connection.uses_sasl and not (connection.username and connection.password):
        raise InvariantViolation(f"REMEDY_KAFKA_SECURITY_PROTOCOL={protocol} needs REMEDY_KAFKA_USERNAME and "
                                 "REMEDY_KAFKA_PASSWORD (or REMEDY_KAFKA_PASSWORD_FILE)")
    if connection.uses_sasl and mechanism == "PLAIN" and not connection.uses_tls:
        raise InvariantViolation("REMEDY_KAFKA_SASL_MECHANISM=PLAIN sends the password in clear text; "
                                 "use it only with REMEDY_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    if bool(connection.cert_file) != bool(connection.key_file):
        raise InvariantViolation("REMEDY_KAFKA_CERT_FILE and REMEDY_KAFKA_KEY_FILE go together; set both or neither")
    files = {"REMEDY_KAFKA_CA_FILE": connection.ca_file, "REMEDY_KAFKA_CERT_FILE": connection.cert_file,
             "REMEDY_KAFKA_KEY_FILE": connection.key_file}
    for name, path in files.items():
        if path and not connection.uses_tls:
            raise InvariantViolation(f"{name} is set but REMEDY_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS")
        if path and not Path(path).is_file():
            raise InvariantViolation(f"{name} {path}: no such file")
    return connection


# A privacy key shorter than this is guessable (streams/core/privacy.py PRIVACY_KEY_BYTES_MIN).
PRIVACY_KEY_CHARS_MIN = 32


def _privacy_key(settings: Settings) -> bytes:
    """The privacy key's bytes (the file's text, stripped), or b"" when the default file does not exist yet."""
    path = settings.privacy_key_path
    try:
        key = path.read_text(encoding="utf-8").strip().encode("utf-8")
    except FileNotFoundError:
        if settings.privacy_key_file:
            raise InvariantViolation(f"REMEDY_PRIVACY_KEY_FILE {path}: no such file") from None
        return b""
    except (OSError, UnicodeDecodeError) as error:
        raise InvariantViolation(f"privacy key {path}: cannot read it: {error}") from None
    if len(key) < PRIVACY_KEY_CHARS_MIN:
        raise InvariantViolation(f"privacy key {path}: shorter than {PRIVACY_KEY_CHARS_MIN} characters")
    return key


def _registry_url(env: dict) -> str:
    """REMEDY_SCHEMA_REGISTRY_URL: an http(s) URL without credentials, or empty (registry mode off)."""
    url = env.get("REMEDY_SCHEMA_REGISTRY_URL", "").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvariantViolation(f"environment variable REMEDY_SCHEMA_REGISTRY_URL: expected an http:// or https:// "
                                 f"URL like http://127.0.0.1:8081/apis/ccompat/v7, got {url!r}")
    if parts.username or parts.password:
        raise InvariantViolation("environment variable REMEDY_SCHEMA_REGISTRY_URL: credentials in the URL are not "
                                 "supported (the URL is printed in messages)")
    return url.rstrip("/")


def load_settings(env: dict | None = None) -> Settings:
    """Build Settings from the environment (REMEDY_* variables); validates the policy."""
    env = dict(os.environ if env is None else env)
    defaults = Settings()
    base = Policy()
    policy_file = env.get("REMEDY_POLICY_FILE")
    if policy_file:
        try:
            base = Policy.from_document(json.loads(Path(policy_file).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise PolicyError(f"REMEDY_POLICY_FILE {policy_file}: {error}") from None
    overrides = {
        "currency": env.get("REMEDY_POLICY_CURRENCY", base.currency),
        "remedy_cents_max_per_customer_30d": _int(
            env, "REMEDY_CUSTOMER_CAP_30D_CENTS", base.remedy_cents_max_per_customer_30d
        ),
        "remedy_cents_max_per_request": _int(env, "REMEDY_REQUEST_CEILING_CENTS", base.remedy_cents_max_per_request),
    }
    policy = Policy.from_document(overrides, base=base)
    settings = Settings(
        kafka=_kafka_connection(env, defaults.kafka_bootstrap),
        data_dir=Path(env.get("REMEDY_DATA_DIR", ".data")).resolve(),
        clickhouse_url=env.get("REMEDY_CLICKHOUSE_URL", ""),
        clickhouse_database=env.get("REMEDY_CLICKHOUSE_DATABASE", defaults.clickhouse_database),
        topic_prefix=env.get("REMEDY_TOPIC_PREFIX", defaults.topic_prefix),
        topic_partitions=_int(env, "REMEDY_TOPIC_PARTITIONS", defaults.topic_partitions),
        topic_replication=_int(env, "REMEDY_TOPIC_REPLICATION", defaults.topic_replication),
        topic_min_insync_replicas=_int(env, "REMEDY_TOPIC_MIN_INSYNC_REPLICAS", defaults.topic_min_insync_replicas),
        web_host=env.get("REMEDY_WEB_HOST", defaults.web_host),
        web_port=_int(env, "REMEDY_WEB_PORT", defaults.web_port),
        decide_batch_max=_int(env, "REMEDY_DECIDE_BATCH_MAX", defaults.decide_batch_max),
        decide_batch_wait_ms=_int(env, "REMEDY_DECIDE_BATCH_WAIT_MS", defaults.decide_batch_wait_ms),
        project_batch_max=_int(env, "REMEDY_PROJECT_BATCH_MAX", defaults.project_batch_max),
        project_batch_wait_ms=_int(env, "REMEDY_PROJECT_BATCH_WAIT_MS", defaults.project_batch_wait_ms),
        policy=policy,
        http_tokens_file=env.get("REMEDY_HTTP_TOKENS_FILE", ""),
        http_token=env.get("REMEDY_HTTP_TOKEN", ""),
        ready_lag_max=_int(env, "REMEDY_READY_LAG_MAX", defaults.ready_lag_max),
        sync_wait_ms=_int(env, "REMEDY_SYNC_WAIT_MS", defaults.sync_wait_ms),
        schema_registry_url=_registry_url(env),
        privacy_key_file=env.get("REMEDY_PRIVACY_KEY_FILE", ""),
    )
    settings = replace(settings, privacy_key=_privacy_key(settings))
    for name in ("topic_partitions", "topic_replication", "decide_batch_max", "decide_batch_wait_ms", "project_batch_max",
                 "ready_lag_max"):
        if getattr(settings, name) <= 0:
            raise InvariantViolation(f"setting {name}: must be positive, got {getattr(settings, name)}")
    if not 0 <= settings.sync_wait_ms <= SYNC_WAIT_MS_MAX:
        raise InvariantViolation(f"setting sync_wait_ms (REMEDY_SYNC_WAIT_MS): between 0 and {SYNC_WAIT_MS_MAX}, "
                                 f"got {settings.sync_wait_ms}")
    if not 0 <= settings.topic_min_insync_replicas <= settings.topic_replication:
        raise InvariantViolation(f"setting topic_min_insync_replicas: must be between 0 (automatic) and the replication "
                                 f"factor {settings.topic_replication}, got {settings.topic_min_insync_replicas}")
    return settings
