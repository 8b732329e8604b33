"""HTTP roles and secrets: the tokens file, the route guard, redaction, the log guard and /metrics (no broker)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from streams.errors import InvariantViolation
from streams.redaction import LogGuard, redacted_url, scrubbed
from streams.runtime import access
from streams.runtime.metrics import WorkerMetrics, gauge
from streams.runtime.settings import Settings
from streams.runtime.web import ROUTE_ROLES, WebViews

TOKENS = {"finance": "f" * 24, "fraud": "r" * 24, "reviewer": "v" * 24, "ops": "o" * 24, "upstream": "u" * 24}


def tokens_file(tmp_path, text=None):
    path = tmp_path / "tokens"
    path.write_text(text if text is not None else "# role token\n" + "".join(f"{r} {t}\n" for r, t in TOKENS.items()))
    return path


def test_a_tokens_file_maps_each_token_to_its_role_and_never_shows_a_token(tmp_path):
    tokens = access.load_tokens(tokens_file(tmp_path))
    assert tokens.enabled and {role: tokens.role_of(t) for role, t in TOKENS.items()} == {r: r for r in TOKENS}
    assert tokens.role_of("x" * 24) is None
    assert all(t not in repr(tokens) for t in TOKENS.values())


@pytest.mark.parametrize("text, problem", [
    ("admin " + "a" * 20 + "\n", "tokens:1: field 'role': unknown role 'admin'"),
    ("ops short\n", "tokens:1: field 'token': shorter than 16 characters"),
    ("ops " + "a" * 15 + "\n", "shorter than 16"),
    ("ops " + "a" * 16 + "\nfinance " + "a" * 16 + "\n", "tokens:2: field 'token': the same token as line 1"),
    ("ops " + "a" * 16 + " name extra\n", "tokens:1: expected `ROLE TOKEN` or `ROLE TOKEN NAME`, found 4 fields"),
    ("reviewer " + "a" * 16 + " " + "n" * 65 + "\n", "tokens:1: field 'name': printable, at most 64"),
    ("# nothing\n\n", "no `ROLE TOKEN` line"),
])
def test_a_bad_tokens_file_names_the_line_and_field_but_not_the_token(tmp_path, text, problem):
    with pytest.raises(InvariantViolation, match=problem) as caught:
        access.load_tokens(tokens_file(tmp_path, text))
    assert "a" * 16 not in str(caught.value)


def test_a_token_is_known_by_its_name_or_by_a_fingerprint_never_by_itself(tmp_path):
    named, unnamed = "n" * 20, "m" * 20
    tokens = access.load_tokens(tokens_file(tmp_path, f"reviewer {named} assoc-17\nreviewer {unnamed}\n"))
    assert tokens.identity_of(named) == "assoc-17" and tokens.role_of(named) == "reviewer"
    fingerprint = tokens.identity_of(unnamed)
    assert fingerprint.startswith("reviewer-") and len(fingerprint) == len("reviewer-") + 8 and unnamed not in fingerprint
    assert tokens.identity_of("x" * 20) is None
    assert named not in repr(tokens) and "assoc-17" not in repr(tokens)


def test_exactly_16_characters_is_a_token():
    assert access.TOKEN_CHARS_MIN == 16


@pytest.mark.parametrize("host, allowed", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("127.1.2.3", True), ("0.0.0.0", False), ("10.0.0.5", False),
                                           ("worker.example", False)])
def test_without_tokens_only_loopback_is_served(host, allowed):
    if allowed:
        access.check_binding(host, access.Tokens())
    else:
        with pytest.raises(InvariantViolation, match="REMEDY_HTTP_TOKENS_FILE"):
            access.check_binding(host, access.Tokens())
    access.check_binding(host, access.Tokens({"ops": ("o" * 20,)}))  # with tokens anything may be bound


@pytest.mark.parametrize("origin, site, host, refused", [
    (None, None, "127.0.0.1:6066", False),
    ("http://127.0.0.1:6066", "same-origin", "127.0.0.1:6066", False),
    ("http://evil.example", None, "127.0.0.1:6066", True),
    ("null", None, "127.0.0.1:6066", True),
    (None, "cross-site", "127.0.0.1:6066", True),
])
def test_cross_origin_requests_are_recognised(origin, site, host, refused):
    assert access.cross_origin(origin, site, host) is refused


class FakeWorker:
    """What the views read from a worker, without Kafka or ClickHouse."""

    def __init__(self):
        self.settings = Settings()
        self.rebuild_progress = {"state": "idle"}
        self.started = 0
        self.sync_api = None  # no Kafka here: the synchronous routes answer 503 past the guard

    def status(self):
        return {"status": "ok", "agents": {"decide": {"partitions": [0]}}}

    async def readiness_problems(self):
        return []

    def metrics_text(self):
        return WorkerMetrics().render([])

    async def on_clickhouse(self, method, *args):
        return b"" if method == "export" else {"rows": [], "method": method}

    @property
    def workbench(self):
        return FakeWorkbench()


class FakeWorkbench:
    """The fraud team's reads, empty."""

    async def review_data(self):
        return [], {}

    async def policy(self):
        return {"version": "p1", "history": []}

    async def rankings(self, since_ms, until_ms):
        return {"households": [], "associates": []}

    async def backtest(self, document, since, until):
        return {"transitions": {}}

    async def shadow_report(self):
        raise InvariantViolation("no shadow policy was ever started")


# Routes that only take POST (the guard runs first either way).
POST_ONLY = {"/v1/reviews", "/privacy/erase", "/v1/remedy-requests", "/v1/incidents", "/finance/close-period",
             "/v1/review-assignments", "/v1/backtests"}


async def _calls(tmp_path, tokens_enabled: bool):
    tokens = access.load_tokens(tokens_file(tmp_path)) if tokens_enabled else access.Tokens()
    worker = FakeWorker()
    client = TestClient(TestServer(WebViews(worker, tokens).app()))
    await client.start_server()
    try:
        results = {}
        for path, roles in ROUTE_ROLES.items():
            for who in (None, *TOKENS):
                headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
                if path in POST_ONLY:
                    response = await client.post(path, headers=headers, json={})  # 400 or 503 past the guard
                else:
                    response = await client.get(path.replace("{request_id}", "r-1"), headers=headers)
                results[(path, who)] = response.status
        form = await client.post("/projections/rebuild", headers={"Origin": "http://evil.example",
                                                                  "Authorization": f"Bearer {TOKENS['ops']}"})
        results["cross-origin"] = form.status
        detail = await client.get("/health")
        results["health"] = await detail.json()
        return results
    finally:
        await client.close()


def test_every_route_refuses_no_token_and_the_wrong_role_and_answers_the_right_one(tmp_path, monkeypatch):
    import projections.rebuild

    monkeypatch.setattr(projections.rebuild, "rebuild_in_worker", lambda *a: asyncio.sleep(0))
    results = asyncio.run(_calls(tmp_path, True))
    for path, roles in ROUTE_ROLES.items():
        if roles == "public":
            assert results[(path, None)] == 200, path
            continue
        assert results[(path, None)] == 401, path
        for who in TOKENS:
            expected = 403 if who not in roles else None
            if expected:
                assert results[(path, who)] == 403, (path, who)
            else:
                # 400: a parameter or body field is required; 503: the synchronous API is not running (no Kafka
                # here); 404: the fake knows no case r-1 and no shadow policy
                allowed = (200, 400, 503, 404) if "{request_id}" in path or path == "/v1/shadow" else (200, 400, 503)
                assert results[(path, who)] in allowed, (path, who)
    assert results["cross-origin"] == 403
    assert results["health"] == {"status": "ok"}  # no detail without the ops role


def test_without_tokens_every_route_answers_on_loopback_but_a_cross_origin_post_is_refused(tmp_path):
    results = asyncio.run(_calls(tmp_path, False))
    assert results[("/finance/totals", None)] == 200 and results[("/metrics", None)] == 200
    assert results["cross-origin"] == 403
    assert results["health"]["agents"]  # the detail on loopback


@pytest.mark.parametrize("url, shown", [
    ("http://admin:S3cretPass@ch.example:8123/db", "http://admin:***@ch.example:8123/db"),
    ("https://ch.example:8443/?password=S3cretPass&x=1", "https://ch.example:8443/?password=***&x=1"),
    ("chdb:///data/clickhouse", "chdb:///data/clickhouse"),
])
def test_urls_are_shown_without_their_password(url, shown):
    assert redacted_url(url) == shown
    assert "S3cretPass" not in scrubbed(f"ClickHouse at {url} did not answer: connect to {url} failed", url)


def test_the_log_guard_masks_secrets_and_holds_back_identical_warnings(caplog):
    guard = LogGuard(("http://admin:S3cretPass@ch:8123", "t" * 20), window_s=60)
    logger = logging.getLogger("remedy.test.guard")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(guard)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.error("ClickHouse at %s failed", "http://admin:S3cretPass@ch:8123")
        for _ in range(500):
            logger.error("broker %s unreachable", "127.0.0.1:9092")
        logger.info("token %s", "t" * 20)
    finally:
        logger.removeHandler(handler)
    assert not any("S3cretPass" in r or "t" * 20 in r for r in records)
    assert sum("unreachable" in r for r in records) == 1 and len(records) == 3
    guard.seen[("remedy.test.guard", logging.ERROR, "broker 127.0.0.1:9092 unreachable")][0] -= 61
    logger.addHandler(handler)
    try:
        logger.error("broker %s unreachable", "127.0.0.1:9092")
    finally:
        logger.removeHandler(handler)
    assert records[-1].endswith("(499 identical lines held back in the last 60s)")


def test_metrics_parse_with_the_prometheus_parser():
    metrics = WorkerMetrics()
    metrics.decisions.inc("GRANTED", "CREDIT")
    metrics.decisions.inc("GRANTED", "CREDIT")
    metrics.granted_cents.inc("CREDIT", "USD", by=1_500)
    metrics.dead_letters.inc('DecodeError "quoted"\nline')
    metrics.batch_seconds.observe(0.004, "decide")
    metrics.decision_latency.observe(0.2)
    text = metrics.render(gauge("remedy_consumer_lag", "lag", ("topic", "partition"), {("t", "0"): 3}))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"remedy_decisions", "remedy_granted_cents", "remedy_dead_letters", "remedy_batch_seconds",
            "remedy_decision_latency_seconds", "remedy_consumer_lag"} <= set(families)
    (granted,) = [s for s in families["remedy_decisions"].samples if s.name == "remedy_decisions_total"]
    assert granted.labels == {"outcome": "GRANTED", "kind": "CREDIT"} and granted.value == 2
    buckets = [s for s in families["remedy_batch_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.value for s in buckets if s.labels["le"] in ("0.0025", "0.005", "+Inf")] == [0, 1, 1]


def test_the_grafana_dashboard_uses_only_metrics_the_worker_exposes():
    import json
    import re

    from tests.integration.conftest import REPO

    dashboard = json.loads((REPO / "deploy" / "grafana" / "remedy-ledger-worker.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b(remedy_[a-z_]+)", target["expr"])}
    metrics = WorkerMetrics()
    metrics.decisions.inc("GRANTED", "CREDIT")
    metrics.batch_seconds.observe(0.1, "decide")
    exposed = set()
    extra = []
    for name in ("remedy_consumer_lag", "remedy_state_keys", "remedy_state_restore_seconds", "remedy_held_events"):
        extra += gauge(name, "x", (), {(): 1})
    from streams.runtime.sequence import Sequencer

    sequencer = Sequencer(1)
    sequencer.hold_seconds.observe(0.02, "household")
    extra += sequencer.hold_seconds.render() + sequencer.events.render()
    for family in text_string_to_metric_families(metrics.render(extra)):
        exposed |= {sample.name for sample in family.samples} | {family.name}
    exposed |= {"remedy_granted_cents_total", "remedy_dead_letters_total", "remedy_decision_latency_seconds_bucket"}
    assert used and used <= exposed, used - exposed
    # and every gauge named above is one the worker renders
    import inspect

    from streams.runtime import app

    source = inspect.getsource(app.Worker.metrics_text)
    assert all(f'"{name}"' in source for name in ("remedy_consumer_lag", "remedy_state_keys",
                                                  "remedy_state_restore_seconds", "remedy_held_events"))
