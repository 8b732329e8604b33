"""The README run against the secure local broker: SASL_SSL, SCRAM-SHA-512 users per role, ACLs.

`deploy/local/kafka.sh start --secure` starts a second broker for this module (its own data dir
and ports) and stops it at the end. Each command runs with its role's credentials only: the
worker as `worker`, publish as `upstream`, wait and audit as `ops`, finance over HTTP with the
finance token. Then what must be refused is refused: an anonymous client, a wrong password, the
upstream role writing the policy topic, finance reading anything on Kafka.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Deployment

SAMPLE = REPO / "samples" / "sample-day.jsonl"
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"
# The secure broker's ports: away from the plain test broker (19092) and `make run` (9092).
SECURE_PORT = int(os.environ.get("REMEDY_SECURE_KAFKA_PORT", "19392"))
# A cold secure start (certificates, format, ACLs) took about 16 s here; a loaded CI machine gets room.
SCRIPT_TIMEOUT_S = 240


def _script_env(data_dir: Path, prefix: str | None = None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMEDY_KAFKA")}
    env.update(REMEDY_DATA_DIR=str(data_dir), REMEDY_KAFKA_PORT=str(SECURE_PORT),
               REMEDY_KAFKA_CONTROLLER_PORT=str(SECURE_PORT + 1))
    if prefix:
        env["REMEDY_TOPIC_PREFIX"] = prefix
    return env


def _kafka_sh(data_dir: Path, *args: str, prefix: str | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    env = _script_env(data_dir, prefix)
    if user:
        env["REMEDY_KAFKA_TOOL_USER"] = user
    return subprocess.run([str(KAFKA_SH), *args], env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)


def _role_env(secure_dir: Path, role: str) -> dict:
    """The REMEDY_KAFKA_* settings kafka.sh wrote for a role (ROLE.env)."""
    env = {}
    for line in (secure_dir / f"{role}.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("secure-broker")
    started = _kafka_sh(data_dir, "start", "--secure")
    assert started.returncode == 0, f"kafka.sh start --secure failed:\n{started.stdout}\n{started.stderr}"
    try:
        yield data_dir
    finally:
        _kafka_sh(data_dir, "stop")


@pytest.fixture(scope="module")
def secure_run(secure_broker, tmp_path_factory):
    """The README's `make run` on the secure broker, one role per command."""
    secure_dir = secure_broker / "kafka" / "secure"
    prefix = f"remedysec{uuid.uuid4().hex[:8]}"
    granted = _kafka_sh(secure_broker, "grant", prefix, prefix=prefix)
    assert granted.returncode == 0, granted.stderr
    tmp = tmp_path_factory.mktemp("secure-run")
    tokens = tmp / "http-tokens"
    tokens.write_text(f"finance fin-{uuid.uuid4().hex}\nops ops-{uuid.uuid4().hex}\n")
    tokens.chmod(0o600)
    roles = {role: _role_env(secure_dir, role) for role in ("worker", "upstream", "fraud", "finance", "ops")}
    # `topics create` runs inside Deployment as the worker role (ensure_topics).
    deployment = Deployment(tmp, REMEDY_TOPIC_PREFIX=prefix, REMEDY_HTTP_TOKENS_FILE=str(tokens), **roles["worker"])
    deployment.start_worker()
    try:
        yield deployment, roles, tokens, secure_dir
    finally:
        deployment.stop_worker()


def _as(deployment: Deployment, role_env: dict, *args: str, http_token: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in deployment.env.items() if not key.startswith("REMEDY_KAFKA")}
    env.update(role_env)
    if http_token:
        env["REMEDY_HTTP_TOKEN"] = http_token
    return subprocess.run([sys.executable, "-m", "streams.commands.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _token(tokens: Path, role: str) -> str:
    return next(line.split()[1] for line in tokens.read_text().splitlines() if line.split()[0] == role)


def test_the_readme_run_works_with_each_role_s_credentials(secure_run):
    deployment, roles, tokens, _ = secure_run
    published = _as(deployment, roles["upstream"], "publish", str(SAMPLE))
    assert published.returncode == 0, published.stderr
    assert "published 602 events" in published.stdout
    waited = _as(deployment, roles["ops"], "wait", "--file", str(SAMPLE), "--timeout", "240",
                 http_token=_token(tokens, "ops"))
    assert waited.returncode == 0, waited.stdout + waited.stderr
    totals = _as(deployment, {}, "finance", "totals", "--by", "kind", "--json", http_token=_token(tokens, "finance"))
    assert totals.returncode == 0, totals.stderr
    assert json.loads(totals.stdout)["by_outcome"]["GRANTED"] > 0, totals.stdout
    audit = _as(deployment, roles["ops"], "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "cap breaches                0" in audit.stdout


def test_kafka_s_own_tools_run_as_ops(secure_run, secure_broker):
    deployment, *_ = secure_run
    described = _kafka_sh(secure_broker, "consumer-groups", "--describe", "--group", deployment.settings.app_id,
                          user="ops")
    assert described.returncode == 0, described.stderr
    assert deployment.names.orders in described.stdout
    acls = _kafka_sh(secure_broker, "acls", "--list", "--principal", "User:upstream")
    assert acls.returncode == 0, acls.stderr
    assert "operation=WRITE" in acls.stdout and deployment.names.policy not in acls.stdout


def test_an_anonymous_client_is_refused(secure_run):
    deployment, roles, *_ = secure_run
    anonymous = {"REMEDY_KAFKA_BOOTSTRAP": roles["upstream"]["REMEDY_KAFKA_BOOTSTRAP"]}
    result = _as(deployment, anonymous, "policy", "show")
    assert result.returncode != 0
    assert "did not answer" in result.stderr


def test_a_wrong_password_is_refused_and_never_printed(secure_run):
    deployment, roles, *_ = secure_run
    wrong = {**roles["upstream"], "REMEDY_KAFKA_PASSWORD_FILE": "", "REMEDY_KAFKA_PASSWORD": f"wrong-{uuid.uuid4().hex}"}
    result = _as(deployment, wrong, "publish", str(SAMPLE))
    assert result.returncode != 0
    assert "did not accept user 'upstream'" in result.stderr
    assert wrong["REMEDY_KAFKA_PASSWORD"] not in result.stdout + result.stderr


def test_upstream_may_not_write_the_policy_topic(secure_run, tmp_path):
    deployment, roles, *_ = secure_run
    document = tmp_path / "policy.json"
    document.write_text('{"remedy_cents_max_per_request": 19999}')
    result = _as(deployment, roles["upstream"], "policy", "apply", str(document), "--author", "mallory",
                 "--reason", "raise my own ceiling")
    assert result.returncode != 0
    assert "refused" in result.stderr
    # The fraud role may; the policy in force is then the new one.
    applied = _as(deployment, roles["fraud"], "policy", "apply", str(document), "--author", "fraud-team",
                  "--reason", "ceiling review")
    assert applied.returncode == 0, applied.stderr
    shown = _as(deployment, roles["ops"], "policy", "history")
    assert "fraud-team" in shown.stdout and "mallory" not in shown.stdout


def test_finance_reads_nothing_on_kafka(secure_run):
    deployment, roles, *_ = secure_run
    result = _as(deployment, roles["finance"], "review", "list")
    assert result.returncode != 0
    assert "refused to let this client read" in result.stderr


def test_no_password_appears_in_the_worker_log(secure_run, secure_broker):
    deployment, *_ = secure_run
    secure_dir = secure_broker / "kafka" / "secure"
    log = deployment.log_path.read_text(errors="replace")
    assert "SASL_SSL as worker" in log
    for password_file in secure_dir.glob("*.password"):
        assert password_file.read_text().strip() not in log
