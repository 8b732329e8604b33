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
LOCAL_REGISTRY = ROOT / "deploy" / "local" / "registry.sh"
SCHEMAS_MAIN = ROOT / "schemas" / "__main__.py"
DEPLOY_README = ROOT / "deploy" / "README.md"

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
WORKER_LABEL = "remedy-ledger-worker"
REGISTRY_LABEL = "remedy-ledger-schema-registry"
# The registry image: Apicurio's official image with SQL (PostgreSQL) storage, at the version of
# deploy/local/registry.sh. Not the in-memory one: it hands out new ids after a restart.
REGISTRY_IMAGE = "apicurio/apicurio-registry-sql"
REGISTER_COMMAND = ["python", "-m", "schemas", "register"]


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


def _name(document: str) -> str:
    return re.search(r"^metadata:\n\s+name:\s*(\S+)", document, re.MULTILINE).group(1)


def _name_label(document: str) -> str:
    """The document's own app.kubernetes.io/name label (metadata.labels, not the pod template's)."""
    labels = _block(_block(document, "metadata", at=0), "labels")
    return re.search(r"^\s+app\.kubernetes\.io/name:\s*(\S+)$", labels, re.MULTILINE).group(1)


def _deployments() -> dict[str, str]:
    """Each Deployment's text by its name."""
    return {_name(document): document for document in _documents("Deployment")}


def _worker_deployments() -> dict[str, str]:
    found = {name: text for name, text in _deployments().items() if _name_label(text) == WORKER_LABEL}
    assert found, "no worker Deployment"
    return found


def _registry_deployment() -> str:
    found = [text for text in _deployments().values() if _name_label(text) == REGISTRY_LABEL]
    assert len(found) == 1, f"expected one schema registry Deployment, found {len(found)}"
    return found[0]


def _decide_deployment() -> str:
    found = [text for text in _worker_deployments().values()
             if any("decide" in roles.split(",") for roles in _roles_of(_lists(_block(text, "containers"), "args")))]
    assert len(found) == 1, f"expected one Deployment with the decide role, found {len(found)}"
    return found[0]


def _registry_policy() -> str:
    found = [policy for policy in _documents("NetworkPolicy")
             if f"app.kubernetes.io/name: {REGISTRY_LABEL}" in _block(policy, "podSelector", at=2)]
    assert len(found) == 1, f"expected one NetworkPolicy for the registry, found {len(found)}"
    return found[0]


def _local_registry_version() -> str:
    """The Apicurio version deploy/local/registry.sh runs (what the integration tests ran against)."""
    return re.search(r'APICURIO_VERSION:-([^}"]+)\}', LOCAL_REGISTRY.read_text()).group(1)


def _env_value(container: str, name: str) -> str:
    """The literal `value:` of an env entry of one container."""
    match = re.search(rf"- name: {name}\n\s+value:\s*\"?([^\"\s]+)\"?$", container, re.MULTILINE)
    assert match, f"no value for {name}"
    return match.group(1)


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
    for name, deployment in _worker_deployments().items():
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
            "remedy-ledger-http-tokens", "remedy-ledger-privacy-key", "remedy-ledger-schema-registry-db"} <= generated
    workers = _worker_deployments()
    for name, deployment in _deployments().items():
        settings = ("REMEDY_CLICKHOUSE_URL", "REMEDY_KAFKA_USERNAME", "REMEDY_KAFKA_PASSWORD") if name in workers else (
            "REGISTRY_DATASOURCE_USERNAME", "REGISTRY_DATASOURCE_PASSWORD")
        for setting in settings:
            assert re.search(rf"- name: {setting}\n\s+valueFrom:\n\s+secretKeyRef:\n", deployment), (name, setting)
            assert not re.search(rf"- name: {setting}\n\s+value:", deployment), (name, setting)
        referenced = re.findall(r"secretKeyRef:\n\s+name:\s*(\S+)", deployment)
        referenced += re.findall(r"secretName:\s*(\S+)", deployment)
        assert referenced and set(referenced) <= generated, name
        for config in re.findall(r"configMapRef:\n\s+name:\s*(\S+)", deployment):
            assert config == "remedy-ledger-worker", name


def test_two_deployments_run_distinct_roles():
    deployments = _worker_deployments()
    assert len(deployments) == 2
    # Every other Deployment is the schema registry, and there is one.
    assert set(_deployments()) == set(deployments) | {_name(_registry_deployment())}
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
    for name, deployment in _worker_deployments().items():
        assert ["remedy-ledger", "topics", "create"] in _lists(_block(deployment, "initContainers"), "args"), name


def test_probes_point_at_ready_and_health_which_need_no_token():
    for name, deployment in _worker_deployments().items():
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
            assert re.findall(r"path:\s*(\S+)", _block(deployment, probe)) == [path], (name, probe)
    # The probes send no Authorization header: with tokens configured they work only while these
    # two routes stay public in the worker.
    web = WEB.read_text()
    assert re.search(r'"/ready":\s*"public"', web)
    assert re.search(r'"/health":\s*"public"', web)


def test_pods_are_locked_down_and_bounded():
    data_dir = _configmap()["REMEDY_DATA_DIR"]
    workers = _worker_deployments()
    # The workers have a topics initContainer (the decide+limits pods a schemas one too); the registry none.
    expected = {name: 3 if "decide" in name else 2 for name in workers} | {_name(_registry_deployment()): 1}
    for name, deployment in _deployments().items():
        assert re.search(r"^\s+runAsNonRoot:\s*true$", deployment, re.MULTILINE), name
        assert re.search(r"^\s+automountServiceAccountToken:\s*false$", deployment, re.MULTILINE), name
        containers = _items(_block(deployment, "containers"))
        if name in workers:
            containers += _items(_block(deployment, "initContainers"))
        else:
            assert not _blocks(deployment, "initContainers"), name
        # Every container of the pod is among those checked below.
        assert len(containers) == expected[name] == len(re.findall(r"^\s+image:", deployment, re.MULTILINE)), name
        for container in containers:
            assert re.search(r"readOnlyRootFilesystem:\s*true", container), name
            assert re.search(r"allowPrivilegeEscalation:\s*false", container), name
            assert re.search(r'drop:\s*\["ALL"\]', container), name
            for bound in ("requests", "limits"):
                assert set(_mapping(_block(container, bound))) >= {"cpu", "memory"}, (name, bound)
        # /tmp is an emptyDir in every container (the root filesystem is read-only).
        assert all(re.search(r"mountPath:\s*/tmp\n", container + "\n") for container in containers), name
        if name not in workers:
            continue
        # The data directory is writable because it is an emptyDir, not the root filesystem.
        volume = re.search(rf"- name:\s*(\S+)\n\s+mountPath:\s*{re.escape(data_dir)}\n", deployment).group(1)
        assert re.search(rf"- name:\s*{volume}\n\s+emptyDir:", deployment), name


def test_each_role_has_a_disruption_budget():
    budgets = _documents("PodDisruptionBudget")
    components = {re.search(r"matchLabels:(?:\n.*)*?component:\s*(\S+)", budget).group(1) for budget in budgets}
    assert components == {"decide-limits", "project", "schema-registry"}
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
    # Egress only to Kafka, ClickHouse, the schema registry and DNS: every port is one of theirs.
    assert set(re.findall(r"port:\s*(\d+)", _block(worker, "egress"))) == {"9093", "8123", "8443", "8080", "53"}
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
        if key.endswith("_FILE") and value.startswith("/run/secrets/"):
            continue  # names a compose secret file (POSTGRES_PASSWORD_FILE); the credential stays in it
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
    assert set(files) == {"clickhouse_url", "http_tokens", "clickhouse_password", "privacy_key", "registry_db_password"}
    assert all(path.startswith("./secrets/") for path in files.values())
    # settings.py reads the URL from the environment only, so the workers export it from the file.
    assert 'REMEDY_CLICKHOUSE_URL="$$(cat /run/secrets/clickhouse_url)"' in text
    assert 'CLICKHOUSE_PASSWORD="$$(cat /run/secrets/clickhouse_password)"' in text
    assert "REMEDY_HTTP_TOKENS_FILE: /run/secrets/http_tokens" in text
    assert "image: clickhouse/clickhouse-server:" in text
    # The registry's database password: PostgreSQL reads the file itself, the registry through a wrapper.
    assert "POSTGRES_PASSWORD_FILE: /run/secrets/registry_db_password" in text
    assert 'REGISTRY_DATASOURCE_PASSWORD="$$(cat /run/secrets/registry_db_password)"' in text


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


# Schema registry (issue 14, item 1) -----------------------------------------------------------


def _compose_services() -> dict[str, str]:
    """Each compose service's block by its name."""
    services = _block(_text(COMPOSE), "services", at=0)
    names = re.findall(r"^  ([a-z][a-z0-9_-]*):", services, re.MULTILINE)
    return {name: _block(services, name, at=2) for name in names}


def _compose_value(value: str) -> str:
    """A compose value with a `*alias` of a top-level `x-...: &alias scalar` resolved."""
    if not value.startswith("*"):
        return value
    match = re.search(rf"^x-[a-z0-9-]+:\s*&{re.escape(value[1:])}\s+(\S+)$", _text(COMPOSE), re.MULTILINE)
    assert match, f"no scalar anchor {value}"
    return match.group(1)


def _compose_worker_environment() -> dict[str, str]:
    """The environment of the x-worker anchor every worker service merges."""
    environment = _block(_block(_text(COMPOSE), "x-worker", at=0), "environment", at=2)
    assert "<<: *remedy-env" in environment, "the workers' environment must extend the shared one"
    return {key: _compose_value(value) for key, value in _mapping(environment).items()}


def _compose_worker_services() -> dict[str, str]:
    found = {name: block for name, block in _compose_services().items() if _roles_of(_lists(block, "command"))}
    assert sorted(_roles_of(_lists("\n".join(found.values()), "command"))) == ["decide,limits", "project"]
    return found


def test_k8s_schema_registry_is_apicurio_with_postgres_storage():
    registry = _registry_deployment()
    container = _block(registry, "containers")
    images = re.findall(r"^\s+image:\s*(\S+)$", container, re.MULTILINE)
    assert images == [f"{REGISTRY_IMAGE}:{_local_registry_version()}"]
    # PostgreSQL, a URL without credentials; user and password from a generated Secret whose example has both.
    url = _env_value(container, "REGISTRY_DATASOURCE_URL")
    assert url.startswith("jdbc:postgresql://") and "@" not in url and "password" not in url.lower(), url
    secrets = set(re.findall(r"secretKeyRef:\n\s+name:\s*(\S+)", container))
    assert secrets == {"remedy-ledger-schema-registry-db"} and secrets <= _generated_secrets()
    generator = _block(_text(K8S / "kustomization.yaml"), "secretGenerator")
    env_file = re.search(r"- name: remedy-ledger-schema-registry-db\n\s+envs:\n\s+- (\S+)", generator).group(1)
    example = (K8S / f"{env_file}.example").read_text()
    for key in ("REGISTRY_DATASOURCE_USERNAME", "REGISTRY_DATASOURCE_PASSWORD"):
        assert re.search(rf"^{key}=\S+$", example, re.MULTILINE), key
    # Readiness is the registry's own (Quarkus), on the port the Service and the workers use.
    assert re.findall(r"path:\s*(\S+)", _block(registry, "readinessProbe")) == ["/health/ready"]
    assert re.findall(r"path:\s*(\S+)", _block(registry, "livenessProbe")) == ["/health/live"]
    assert re.findall(r"containerPort:\s*(\d+)", registry) == ["8080"]
    services = [service for service in _documents("Service") if _name_label(service) == REGISTRY_LABEL]
    assert len(services) == 1
    assert f"app.kubernetes.io/name: {REGISTRY_LABEL}" in _block(services[0], "selector")
    assert re.findall(r"^\s+port:\s*(\d+)$", services[0], re.MULTILINE) == ["8080"]


def test_k8s_workers_get_the_registry_ccompat_url():
    service = next(service for service in _documents("Service") if _name_label(service) == REGISTRY_LABEL)
    namespace = re.search(r"^\s+namespace:\s*(\S+)$", service, re.MULTILINE).group(1)
    port = re.search(r"^\s+port:\s*(\d+)$", service, re.MULTILINE).group(1)
    expected = f"http://{_name(service)}.{namespace}.svc:{port}/apis/ccompat/v7"
    assert _configmap()["REMEDY_SCHEMA_REGISTRY_URL"] == expected
    for name, deployment in _worker_deployments().items():
        configs = re.findall(r"configMapRef:\n\s+name:\s*(\S+)", _block(deployment, "containers"))
        assert configs == ["remedy-ledger-worker"], name
    # Optional: the comment beside the setting says how to run without it.
    configmap = (K8S / "configmap.yaml").read_text()
    assert re.search(r"Optional: without this entry the workers keep the Avro single-object\s+# encoding", configmap)


def test_k8s_decide_pods_register_the_schemas_before_the_worker_starts():
    init = _items(_block(_decide_deployment(), "initContainers"))
    registering = [container for container in init if REGISTER_COMMAND in _lists(container, "args")]
    assert len(registering) == 1, "no initContainer runs python -m schemas register"
    container = registering[0]
    # The registry URL from the ConfigMap, and nothing else: no credential, no privacy key.
    assert re.search(r"- name: REMEDY_SCHEMA_REGISTRY_URL\n\s+valueFrom:\n\s+configMapKeyRef:\n"
                     r"\s+name: remedy-ledger-worker\n\s+key: REMEDY_SCHEMA_REGISTRY_URL\n", container)
    assert "secretKeyRef" not in container and "envFrom" not in container
    # The command the initContainer runs exists: `python -m schemas register` (schemas/__main__.py).
    assert re.search(r'argv\[:1\] == \["register"\]', SCHEMAS_MAIN.read_text())


def test_k8s_network_policy_lets_only_the_workers_reach_the_registry():
    registry_port = re.search(r"containerPort:\s*(\d+)", _registry_deployment()).group(1)
    policy = _registry_policy()
    assert re.search(r'"Ingress",\s*"Egress"', _block(policy, "policyTypes"))
    ingress = _block(policy, "ingress")
    assert re.findall(r"app.kubernetes.io/name:\s*(\S+)", ingress) == [WORKER_LABEL]
    assert "namespaceSelector" not in ingress and "ipBlock" not in policy
    assert set(re.findall(r"port:\s*(\d+)", ingress)) == {registry_port}
    # Out to its PostgreSQL and DNS only.
    assert set(re.findall(r"port:\s*(\d+)", _block(policy, "egress"))) == {"5432", "53"}
    # The workers may reach the registry's port, on its pods in this namespace only.
    worker = next(policy for policy in _documents("NetworkPolicy")
                  if f"app.kubernetes.io/name: {WORKER_LABEL}" in _block(policy, "podSelector", at=2))
    rules = [rule for rule in _items(_block(worker, "egress")) if f"app.kubernetes.io/name: {REGISTRY_LABEL}" in rule]
    assert len(rules) == 1 and "namespaceSelector" not in rules[0]
    assert set(re.findall(r"port:\s*(\d+)", rules[0])) == {registry_port}


def test_compose_runs_the_registry_with_postgres_storage():
    services = _compose_services()
    registry, database = services["registry"], services["registry-db"]
    images = re.findall(r"^\s+image:\s*(\S+)$", registry, re.MULTILINE)
    assert images == [f"{REGISTRY_IMAGE}:{_local_registry_version()}"]
    environment = _mapping(_block(registry, "environment", at=4))
    assert environment["REGISTRY_DATASOURCE_URL"].startswith("jdbc:postgresql://registry-db:")
    assert re.search(r"registry-db:\n\s+condition: service_healthy", _block(registry, "depends_on", at=4))
    assert re.findall(r"^\s+image:\s*postgres:(\d+)", database, re.MULTILINE), "the registry needs PostgreSQL"
    # Readiness is the registry's /health/ready; the workers use the container port of the registry.
    assert "/health/ready" in _block(registry, "healthcheck", at=4)
    published = re.findall(r'"127\.0\.0\.1:\d+:(\d+)"', _block(registry, "ports", at=4))
    assert published == ["8080"]
    assert _compose_worker_environment()["REMEDY_SCHEMA_REGISTRY_URL"] == "http://registry:8080/apis/ccompat/v7"
    # Optional, and the file says so beside the setting.
    assert re.search(r"Registry mode is optional: without this line the workers keep the Avro single-object",
                     COMPOSE.read_text())
    # Hardened like the worker containers.
    assert re.search(r"^\s+read_only:\s*true$", registry, re.MULTILINE)
    assert 'cap_drop: ["ALL"]' in registry


def test_compose_registers_the_schemas_before_the_workers_start():
    services = _compose_services()
    registering = [name for name, block in services.items() if REGISTER_COMMAND in _lists(block, "command")]
    assert len(registering) == 1, "no service runs python -m schemas register"
    name = registering[0]
    block = services[name]
    assert re.search(r"registry:\n\s+condition: service_healthy", _block(block, "depends_on", at=4))
    environment = {key: _compose_value(value) for key, value in _mapping(_block(block, "environment", at=4)).items()}
    assert environment == {"REMEDY_SCHEMA_REGISTRY_URL": _compose_worker_environment()["REMEDY_SCHEMA_REGISTRY_URL"]}
    assert 'restart: "no"' in block
    depends = _block(_block(_text(COMPOSE), "x-worker", at=0), "depends_on", at=2)
    assert re.search(rf"^    {re.escape(name)}:\n\s+condition: service_completed_successfully$", depends, re.MULTILINE)
    for worker, text in _compose_worker_services().items():
        assert "<<: *worker" in text and not _blocks(text, "depends_on", at=4), worker


# Privacy key (docs/privacy.md) -------------------------------------------------------------


def test_k8s_workers_share_one_privacy_key_from_one_secret():
    generator = _block(_text(K8S / "kustomization.yaml"), "secretGenerator")
    key_name, key_file = re.search(r"- name: remedy-ledger-privacy-key\n\s+files:\n\s+- (\S+)=(\S+)",
                                   generator).groups()
    assert (K8S / f"{key_file}.example").is_file()
    # Not in the ConfigMap: the topics initContainers read it and do not mount the key.
    assert "REMEDY_PRIVACY_KEY_FILE" not in _configmap()
    data_dir = _configmap()["REMEDY_DATA_DIR"]
    paths = set()
    for name, deployment in _worker_deployments().items():
        container = _block(deployment, "containers")
        path = _env_value(container, "REMEDY_PRIVACY_KEY_FILE")
        directory, file_name = path.rsplit("/", 1)
        assert file_name == key_name and not path.startswith(data_dir), name
        mount = re.search(rf"- name:\s*(\S+)\n\s+mountPath:\s*{re.escape(directory)}\n\s+readOnly:\s*true\n", container)
        assert mount, f"{name}: {directory} is not mounted read-only"
        volume = rf"- name:\s*{mount.group(1)}\n\s+secret:\n\s+secretName:\s*remedy-ledger-privacy-key\n"
        assert re.search(volume, deployment), name
        paths.add(path)
    assert len(paths) == 1, paths


def test_compose_workers_share_one_privacy_key_file():
    text = _text(COMPOSE)
    files = dict(re.findall(r"^  ([a-z_]+):\n\s+file:\s*(\S+)$", _block(text, "secrets", at=0), re.MULTILINE))
    assert files["privacy_key"] == "./secrets/privacy-key"
    assert (COMPOSE_DIR / "secrets" / "privacy-key.example").is_file()
    assert _compose_worker_environment()["REMEDY_PRIVACY_KEY_FILE"] == "/run/secrets/privacy_key"
    worker_secrets = _block(_block(text, "x-worker", at=0), "secrets", at=2)
    assert "privacy_key" in re.findall(r"^\s+-\s*(\S+)$", worker_secrets, re.MULTILINE)
    # Every worker takes the anchor's environment and secrets as they are (no override of its own).
    for worker, block in _compose_worker_services().items():
        assert "<<: *worker" in block, worker
        assert not _blocks(block, "environment", at=4) and not _blocks(block, "secrets", at=4), worker
    assert re.findall(r"REMEDY_PRIVACY_KEY_FILE:\s*(\S+)", text) == ["/run/secrets/privacy_key"]


def test_privacy_key_examples_are_refused_and_the_readme_says_how_to_make_one():
    settings = SETTINGS.read_text()
    minimum = int(re.search(r"^PRIVACY_KEY_CHARS_MIN = (\d+)$", settings, re.MULTILINE).group(1))
    # The whole file, stripped, is the key (no comments possible), so an example copied as it is
    # must be refused by the settings: one placeholder line shorter than the minimum.
    reader = re.search(r"^def _privacy_key\(.*?(?=^def )", settings, re.MULTILINE | re.DOTALL).group(0)
    assert 'read_text(encoding="utf-8").strip()' in reader
    for path in (K8S / "secrets" / "privacy.key.example", COMPOSE_DIR / "secrets" / "privacy-key.example"):
        content = path.read_text(encoding="utf-8").strip()
        assert "\n" not in content and content.startswith("CHANGE-ME") and len(content) < minimum, path
    # The generation command in deploy/README.md (64 hex characters, above the minimum), one per layout.
    readme = DEPLOY_README.read_text()
    assert 2 * 32 >= minimum
    assert "openssl rand -hex 32 > secrets/privacy-key" in readme
    assert "openssl rand -hex 32 > privacy.key" in readme
