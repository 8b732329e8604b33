"""Typed settings: the only place that reads environment variables (the composition root's input)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import InvariantViolation, PolicyError
from streams.core.policy import Policy


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know about its surroundings; see README "Configuration"."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    data_dir: Path = Path(".data").resolve()
    clickhouse_url: str = field(default="", repr=False)  # may carry a password: never printed
    clickhouse_database: str = "remedy"
    topic_prefix: str = "remedy"
    topic_partitions: int = 4
    topic_replication: int = 1
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

    def secrets(self) -> tuple[str, ...]:
        """Every secret value a log line or an error could carry (see streams/redaction.py)."""
        return tuple(value for value in (self.clickhouse_url, self.http_token) if value)

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
        kafka_bootstrap=env.get("REMEDY_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap),
        data_dir=Path(env.get("REMEDY_DATA_DIR", ".data")).resolve(),
        clickhouse_url=env.get("REMEDY_CLICKHOUSE_URL", ""),
        clickhouse_database=env.get("REMEDY_CLICKHOUSE_DATABASE", defaults.clickhouse_database),
        topic_prefix=env.get("REMEDY_TOPIC_PREFIX", defaults.topic_prefix),
        topic_partitions=_int(env, "REMEDY_TOPIC_PARTITIONS", defaults.topic_partitions),
        topic_replication=_int(env, "REMEDY_TOPIC_REPLICATION", defaults.topic_replication),
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
    )
    for name in ("topic_partitions", "topic_replication", "decide_batch_max", "decide_batch_wait_ms", "project_batch_max",
                 "ready_lag_max"):
        if getattr(settings, name) <= 0:
            raise InvariantViolation(f"setting {name}: must be positive, got {getattr(settings, name)}")
    return settings
