"""The deployment files (deploy/k8s, deploy/compose) checked as text.

Nothing here runs Docker or Kubernetes (neither is on the machines that run the tests), and
PyYAML is not a dependency: the manifests are read line by line with the standard library, which
works because they keep to plain block YAML (one key per line, JSON-style flow lists for args
and commands). A check that cannot find what it looks for fails rather than passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
SETTINGS = ROOT / "streams" / "runtime" / "settings.py"
WEB = ROOT / "streams" / "runtime" / "web.py"

# Kafka security settings (issue 13, item 1) that settings.py reads or is about to read; a
# manifest may use them even before they land there. Every other REMEDY_* name must be in it.
KAFKA_SECURITY_NAMES = {
    "REMEDY_KAFKA_SECURITY_PROTOCOL",
    "REMEDY_KAFKA_SASL_MECHANISM",
    "REMEDY_KAFKA_USERNAME",
    "REMEDY_KAFKA_PASSWORD",
    "REMEDY_KAFKA_CA_FILE",
    "REMEDY_KAFKA_CERT_FILE",
    "REMEDY_KAFKA_KEY_FILE",
}
# Settings that carry a credential: they may only come from a Secret (k8s) or a secret file (compose).
CREDENTIAL_SETTINGS = {"REMEDY_CLICKHOUSE_URL", "REMEDY_KAFKA_PASSWORD", "REMEDY_HTTP_TOKEN"}
# What a credential looks like in a value: a password, a ClickHouse DSN, a URL with user info.
CREDENTIAL_PATTERNS = (
    re.compile(r"password", re.IGNORECASE),
    re.compile(r"clickhouse://", re.IGNORECASE),
    re.compile(r"://[^\s/@\"']+@"),
)
ROLES = {"decide", "limits", "project"}


# Reading the files --------------------------------------------------------------------------


def _without_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` inside quotes or a word is kept)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _text(path: Path) -> str:
    """The file without comments and blank lines."""
    lines = (_without_comment(line) for line in path.read_text(encoding="utf-8").splitlines())
    return "\n".join(line for line in lines if line.strip())


def _k8s_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def _documents(kind: str) -> list[str]:
    """Every k8s document of this kind, comments stripped."""
    found = []
    for path in _k8s_files():
        for document in re.split(r"^---\s*$", _text(path), flags=re.MULTILINE):
            match = re.search(r"^kind:\s*(\S+)", document, re.MULTILINE)
            if match and match.group(1) == kind:
                found.append(document)
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _blocks(text: str, key: str, at: int | None = None) -> list[str]:
    """The value of every `key:` in the text (only those indented by `at` spaces, if given): the
    rest of its line and the lines indented under it."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = re.match(rf"^(\s*)(?:- )?{re.escape(key)}:(.*)$", line)
        if not match or (at is not None and len(match.group(1)) != at):
            continue
        indent = len(match.group(1))
        body = [match.group(2)]
        for following in lines[number + 1:]:
            if _indent(following) <= indent:
                break
            body.append(following)
        blocks.append("\n".join(body))
    return blocks


def _block(text: str, key: str, at: int | None = None) -> str:
    blocks = _blocks(text, key, at)
    assert len(blocks) == 1, f"expected one `{key}:`, found {len(blocks)}"
    return blocks[0]


def _items(block: str) -> list[str]:
    """The items of a block sequence (`- ...` at the block's outermost indentation)."""
    lines = [line for line in block.splitlines() if line.strip()]
    dashes = [_indent(line) for line in lines if line.lstrip().startswith("- ")]
    if not dashes:
        return []
    outer = min(dashes)
    items: list[list[str]] = []
    for line in lines:
        if _indent(line) == outer and line.lstrip().startswith("- "):
            items.append([line])
        elif items:
            items[-1].append(line)
    return ["\n".join(item) for item in items]


def _mapping(block: str) -> dict[str, str]:
    """`KEY: value` lines of a flat mapping, quotes removed."""
    pairs = re.findall(r"^\s+([A-Za-z0-9_.-]+):\s*(.*?)\s*$", block, re.MULTILINE)
    return {key: value.strip("\"'") for key, value in pairs}


def _configmap() -> dict[str, str]:
    documents = _documents("ConfigMap")
    assert len(documents) == 1, f"expected one ConfigMap, found {len(documents)}"
    return _mapping(_block(documents[0], "data"))


def _deployments() -> dict[str, str]:
    """Each Deployment's text by its name."""
    found = {}
    for document in _documents("Deployment"):
        name = re.search(r"^metadata:\n\s+name:\s*(\S+)", document, re.MULTILINE).group(1)
        found[name] = document
    return found


def _lists(text: str, key: str) -> list[list[str]]:
    """Every `key: [...]` flow list (JSON-compatible, as the manifests write args and commands)."""
    return [json.loads(value) for value in re.findall(rf"^\s*{key}:\s*(\[.*\])\s*$", text, re.MULTILINE)]


def _roles_of(lists: list[list[str]]) -> list[str]:
    roles = []
    for args in lists:
        if "worker" in args:
            assert args.count("--roles") == 1, f"{args}: a worker needs exactly one --roles"
            roles.append(args[args.index("--roles") + 1])
    return roles


def _generated_secrets() -> set[str]:
    generators = _block(_text(K8S / "kustomization.yaml"), "secretGenerator")
    return set(re.findall(r"^\s*- name:\s*(\S+)", generators, re.MULTILINE))


# Kubernetes ---------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    resources = _block(_text(K8S / "kustomization.yaml"), "resources")
    listed = re.findall(r"^\s*-\s*(\S+)", resources, re.MULTILINE)
    assert sorted(listed) == sorted(path.name for path in _k8s_files())


def test_configmap_replicates_topics_three_times_with_two_in_sync():
    data = _configmap()
    assert data["REMEDY_TOPIC_REPLICATION"] == "3"
    assert data["REMEDY_TOPIC_MIN_INSYNC_REPLICAS"] == "2"


def test_configmap_uses_sasl_ssl_with_scram_and_a_mounted_ca():
    data = _configmap()
    assert data["REMEDY_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["REMEDY_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    ca_dir = str(Path(data["REMEDY_KAFKA_CA_FILE"]).parent)
    for name, deployment in _deployments().items():
        assert re.search(rf"- name: kafka-ca\n\s+mountPath: {re.escape(ca_dir)}\n", deployment), name
        assert re.search(r"- name: kafka-ca\n\s+secret:\n\s+secretName: remedy-ledger-kafka-ca\n", deployment), name
    example = (K8S / "secrets" / "kafka.env.example").read_text()
    assert re.search(r"^REMEDY_KAFKA_USERNAME=worker$", example, re.MULTILINE)


def test_no_configmap_holds_a_credential():
    for document in _documents("ConfigMap"):
        data = _mapping(_block(document, "data"))
        assert not CREDENTIAL_SETTINGS & set(data), "a credential setting in a ConfigMap"
        for key, value in data.items():
            for pattern in CREDENTIAL_PATTERNS:
                assert not pattern.search(f"{key}: {value}"), f"ConfigMap {key} looks like a credential"


def test_credentials_come_from_generated_secrets():
    generated = _generated_secrets()
    assert {"remedy-ledger-clickhouse", "remedy-ledger-kafka", "remedy-ledger-kafka-ca",
            "remedy-ledger-http-tokens"} <= generated
    for name, deployment in _deployments().items():
        for setting in ("REMEDY_CLICKHOUSE_URL", "REMEDY_KAFKA_USERNAME", "REMEDY_KAFKA_PASSWORD"):
            assert re.search(rf"- name: {setting}\n\s+valueFrom:\n\s+secretKeyRef:\n", deployment), (name, setting)
            assert not re.search(rf"- name: {setting}\n\s+value:", deployment), (name, setting)
        referenced = re.findall(r"secretKeyRef:\n\s+name:\s*(\S+)", deployment)
        referenced += re.findall(r"secretName:\s*(\S+)", deployment)
        assert referenced and set(referenced) <= generated, name
        for config in re.findall(r"configMapRef:\n\s+name:\s*(\S+)", deployment):
            assert config == "remedy-ledger-worker", name


def test_two_deployments_run_distinct_roles():
    deployments = _deployments()
    assert len(deployments) == 2
    roles = {name: _roles_of(_lists(_block(text, "containers"), "args")) for name, text in deployments.items()}
    assert sorted(len(found) for found in roles.values()) == [1, 1], roles
    assert sorted(found[0] for found in roles.values()) == ["decide,limits", "project"]
    for name, text in deployments.items():
        replicas = int(re.search(r"^  replicas:\s*(\d+)", text, re.MULTILINE).group(1))
        assert 1 <= replicas <= int(_configmap()["REMEDY_TOPIC_PARTITIONS"]), name
    # Several projectors are only right with a ClickHouse server (embedded chDB allows one).
    example = (K8S / "secrets" / "clickhouse.env.example").read_text()
    assert re.search(r"^REMEDY_CLICKHOUSE_URL=https?://", example, re.MULTILINE)


def test_each_pod_creates_the_topics_first():
    for name, deployment in _deployments().items():
        assert ["remedy-ledger", "topics", "create"] in _lists(_block(deployment, "initContainers"), "args"), name


def test_probes_point_at_ready_and_health_which_need_no_token():
    for name, deployment in _deployments().items():
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
            assert re.findall(r"path:\s*(\S+)", _block(deployment, probe)) == [path], (name, probe)
    # The probes send no Authorization header: with tokens configured they work only while these
    # two routes stay public in the worker.
    web = WEB.read_text()
    assert re.search(r'"/ready":\s*"public"', web)
    assert re.search(r'"/health":\s*"public"', web)


def test_pods_are_locked_down_and_bounded():
    data_dir = _configmap()["REMEDY_DATA_DIR"]
    for name, deployment in _deployments().items():
        assert re.search(r"^\s+runAsNonRoot:\s*true$", deployment, re.MULTILINE), name
        containers = _items(_block(deployment, "containers")) + _items(_block(deployment, "initContainers"))
        assert len(containers) == 2, name
        for container in containers:
            assert re.search(r"readOnlyRootFilesystem:\s*true", container), name
            assert re.search(r"allowPrivilegeEscalation:\s*false", container), name
            assert re.search(r'drop:\s*\["ALL"\]', container), name
            for bound in ("requests", "limits"):
                assert set(_mapping(_block(container, bound))) >= {"cpu", "memory"}, (name, bound)
        # The data directory is writable because it is an emptyDir, not the root filesystem.
        volume = re.search(rf"- name:\s*(\S+)\n\s+mountPath:\s*{re.escape(data_dir)}\n", deployment).group(1)
        assert re.search(rf"- name:\s*{volume}\n\s+emptyDir:", deployment), name


def test_each_role_has_a_disruption_budget():
    budgets = _documents("PodDisruptionBudget")
    components = {re.search(r"matchLabels:(?:\n.*)*?component:\s*(\S+)", budget).group(1) for budget in budgets}
    assert components == {"decide-limits", "project"}
    for budget in budgets:
        assert re.search(r"^\s+(minAvailable|maxUnavailable):\s*1$", budget, re.MULTILINE)


def test_network_policy_denies_ingress_and_limits_the_workers():
    policies = _documents("NetworkPolicy")
    default_deny = [policy for policy in policies
                    if re.search(r"^  podSelector:\s*\{\}$", policy, re.MULTILINE) and not _blocks(policy, "ingress")]
    assert default_deny and "Ingress" in _block(default_deny[0], "policyTypes")
    workers = [policy for policy in policies
               if "app.kubernetes.io/name: remedy-ledger-worker" in _block(policy, "podSelector", at=2)]
    assert len(workers) == 1
    worker = workers[0]
    assert re.search(r'"Ingress",\s*"Egress"', _block(worker, "policyTypes"))
    ingress = _block(worker, "ingress")
    assert set(re.findall(r"port:\s*(\d+)", ingress)) == {"6066"}
    assert "kubernetes.io/metadata.name: monitoring" in ingress
    assert "remedy-ledger/worker-client" in ingress
    # Egress only to Kafka, ClickHouse and DNS: every port is one of theirs.
    assert set(re.findall(r"port:\s*(\d+)", _block(worker, "egress"))) == {"9093", "8123", "8443", "53"}
    assert "ipBlock" not in worker


# Compose ------------------------------------------------------------------------------------


def test_compose_environment_holds_no_credential():
    text = _text(COMPOSE)
    # Upper-case keys are environment variables (compose's own keys are lower case), wherever
    # they are written: in a service or in an x- anchor the services reference.
    entries = re.findall(r"^\s+([A-Z][A-Z0-9_]*):\s*(.*?)\s*$", text, re.MULTILINE)
    entries += re.findall(r"^\s+-\s+([A-Z][A-Z0-9_]*)=(.*?)\s*$", text, re.MULTILINE)
    assert any(key == "REMEDY_HTTP_TOKENS_FILE" for key, _ in entries), "no environment found"
    for key, value in entries:
        assert key not in CREDENTIAL_SETTINGS, f"{key} set in docker-compose.yml"
        assert not re.search(r"PASSWORD|SECRET|_TOKEN$", key), f"{key} set in docker-compose.yml"
        for pattern in CREDENTIAL_PATTERNS:
            assert not pattern.search(value), f"{key} looks like a credential"
    for pattern in CREDENTIAL_PATTERNS[1:]:
        assert not pattern.search(text), "a URL with credentials in docker-compose.yml"


def test_compose_reads_credentials_from_secret_files():
    text = _text(COMPOSE)
    secrets = _block(text, "secrets", at=0)
    files = dict(re.findall(r"^  ([a-z_]+):\n\s+file:\s*(\S+)$", secrets, re.MULTILINE))
    assert set(files) == {"clickhouse_url", "http_tokens", "clickhouse_password"}
    assert all(path.startswith("./secrets/") for path in files.values())
    # settings.py reads the URL from the environment only, so the workers export it from the file.
    assert 'REMEDY_CLICKHOUSE_URL="$$(cat /run/secrets/clickhouse_url)"' in text
    assert 'CLICKHOUSE_PASSWORD="$$(cat /run/secrets/clickhouse_password)"' in text
    assert "REMEDY_HTTP_TOKENS_FILE: /run/secrets/http_tokens" in text
    assert "image: clickhouse/clickhouse-server:" in text


def test_compose_runs_the_roles_as_separate_services():
    text = _text(COMPOSE)
    commands = _lists(text, "command")
    assert sorted(_roles_of(commands)) == ["decide,limits", "project"]
    assert ["remedy-ledger", "topics", "create"] in commands


def test_compose_publishes_on_loopback_only():
    published = [entry for block in _blocks(_text(COMPOSE), "ports")
                 for entry in re.findall(r"^\s*-\s*\"?([^\"\s]+)", block, re.MULTILINE)]
    assert published
    for entry in published:
        assert entry.startswith("127.0.0.1:"), entry


def test_secret_files_stay_out_of_git_and_images():
    for directory in (K8S / "secrets", COMPOSE_DIR / "secrets"):
        assert (directory / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore", "!*.example"]
    ignored = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"deploy/compose/secrets", "deploy/k8s/secrets"} <= set(ignored)


# Both ---------------------------------------------------------------------------------------


def test_every_setting_named_in_the_manifests_is_read_by_settings():
    settings = SETTINGS.read_text()
    files = [path for path in K8S.rglob("*") if path.is_file()] + [path for path in COMPOSE_DIR.rglob("*") if path.is_file()]
    names = {name for path in files for name in re.findall(r"\bREMEDY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())}
    assert {"REMEDY_CLICKHOUSE_URL", "REMEDY_TOPIC_REPLICATION", "REMEDY_KAFKA_PASSWORD"} <= names
    unknown = sorted(name for name in names if f'"{name}"' not in settings and name not in KAFKA_SECURITY_NAMES)
    assert not unknown, f"not read by streams/runtime/settings.py: {unknown}"
