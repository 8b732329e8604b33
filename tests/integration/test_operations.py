"""Running it in production: HTTP roles on a real worker, /metrics against the ledger, /ready,
and secrets never printed (real broker, real embedded ClickHouse)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import REPO, Deployment, _free_port


def current(decisions: list[dict]) -> dict[str, dict]:
    """The decision in force per request (the newest that nothing supersedes)."""
    superseded = {d["supersedes_decision_id"] for d in decisions if d["supersedes_decision_id"]}
    return {d["request_id"]: d for d in decisions if d["decision_id"] not in superseded}

SAMPLE = REPO / "samples" / "sample-day.jsonl"
TOKENS = {"finance": "fin-" + "a" * 28, "fraud": "fra-" + "b" * 28, "reviewer": "rev-" + "c" * 28,
          "ops": "ops-" + "d" * 28, "upstream": "ups-" + "e" * 28}
PASSWORD = "S3cretPassw0rd-xyz"
# Reviewer tokens with the name of the person they belong to (`ROLE TOKEN NAME`): the sample's
# associates (who may not approve what they asked for) and a lead who asked for nothing.
NAMED = {"assoc-ana": "rev-ana-" + "f" * 24, "assoc-ben": "rev-ben-" + "h" * 24, "assoc-lead": "rev-lead-" + "g" * 23}


def call(deployment: Deployment, path: str, role: str | None = None, method: str = "GET",
         headers: dict | None = None, body: dict | None = None, token: str | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(f"{deployment.settings.worker_url}{path}", method=method, data=data,
                                     headers=headers or {})
    if role or token:
        request.add_header("Authorization", f"Bearer {token or TOKENS[role]}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_roles_metrics_and_readiness_on_a_running_worker(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("".join(f"{role} {token}\n" for role, token in TOKENS.items())
                      + "".join(f"reviewer {token} {name}\n" for name, token in NAMED.items()))
    deployment = Deployment(tmp_path, REMEDY_HTTP_TOKENS_FILE=str(tokens))
    try:
        deployment.start_worker()
        deployment.cli("publish", str(SAMPLE))
        deployment.env["REMEDY_HTTP_TOKEN"] = TOKENS["finance"]  # `wait` asks the worker too
        deployment.cli("wait", "--file", str(SAMPLE), "--timeout", "240")
        del deployment.env["REMEDY_HTTP_TOKEN"]

        assert call(deployment, "/finance/totals")[0] == 401
        assert call(deployment, "/finance/totals", "fraud")[0] == 403
        assert call(deployment, "/finance/totals", "finance")[0] == 200
        assert call(deployment, "/metrics", "finance")[0] == 403
        assert json.loads(call(deployment, "/health")[1]) == {"status": "ok"}  # no detail without ops
        assert "agents" in json.loads(call(deployment, "/health", "ops")[1])
        origin = {"Origin": "http://evil.example"}
        assert call(deployment, "/projections/rebuild", "ops", "POST", origin)[0] == 403
        assert call(deployment, "/projections/rebuild", "finance", "POST")[0] == 403

        # The CLI sends REMEDY_HTTP_TOKEN; without it the worker's refusal is the error.
        refused = deployment.cli("finance", "totals", check=False)
        assert refused.returncode == 1 and "Bearer" in refused.stderr and TOKENS["finance"] not in refused.stderr
        deployment.env["REMEDY_HTTP_TOKEN"] = TOKENS["finance"]
        assert deployment.cli("finance", "totals", "--json").returncode == 0

        deadline = time.monotonic() + 60
        while call(deployment, "/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(1)
        status, body = call(deployment, "/ready")
        assert status == 200, body

        ledger = json.loads(call(deployment, "/finance/decision-count", "finance")[1])["decisions"]
        status, text = call(deployment, "/metrics", "ops")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text.decode())}
        decided = sum(s.value for s in families["remedy_decisions"].samples if s.name == "remedy_decisions_total")
        assert decided == ledger > 0
        granted = sum(s.value for s in families["remedy_granted_cents"].samples if s.name.endswith("_total"))
        assert granted > 0  # every granting decision's cents, superseded ones included (the ledger keeps the last)
        assert any(s.labels.get("agent") == "decide" for s in families["remedy_batch_seconds"].samples)
        assert families["remedy_decision_latency_seconds"].samples
        # The sample's household and associate checks: how long the sequencer held each, by level.
        held = {s.labels["level"]: s.value for s in families["remedy_scope_check_hold_seconds"].samples
                if s.name.endswith("_count")}
        assert held.get("household", 0) > 0 and held.get("associate", 0) > 0, held
        # Reviews: the token says who reviews; the asker never approves; other roles may not review.
        escalated = next(d for d in current(deployment.decisions()).values()
                         if d["outcome"] == "ESCALATED" and d["requested_by"] in NAMED)
        review = {"request_id": escalated["request_id"], "verdict": "APPROVE", "note": "loyal customer"}
        assert call(deployment, "/v1/reviews", method="POST", body=review)[0] == 401
        assert call(deployment, "/v1/reviews", "finance", "POST", body=review)[0] == 403
        status, answer = call(deployment, "/v1/reviews", method="POST", body=review,
                              token=NAMED[escalated["requested_by"]])
        assert status == 403 and b"SELF_APPROVAL" in answer
        status, answer = call(deployment, "/v1/reviews", method="POST", body={**review, "by": "assoc-ana"},
                              token=NAMED["assoc-lead"])
        assert status == 400 and b"identified by their token" in answer
        assert call(deployment, "/v1/reviews", "reviewer", "POST", body={**review, "verdict": "MAYBE"})[0] == 400
        assert call(deployment, "/v1/reviews", "reviewer", "POST", body={**review, "request_id": "nope"})[0] == 404
        deployment.env["REMEDY_HTTP_TOKEN"] = NAMED["assoc-lead"]
        approved = deployment.cli("review", "approve", escalated["request_id"], "--note", "loyal customer")
        assert "as assoc-lead" in approved.stdout
        with_by = deployment.cli("review", "deny", escalated["request_id"], "--by", "assoc-lead", check=False)
        assert with_by.returncode == 1 and "identified by their token" in with_by.stderr
        deployment.env["REMEDY_HTTP_TOKEN"] = TOKENS["finance"]
        deployment.wait_for("the review's decision", lambda: any(
            d["request_id"] == escalated["request_id"] and d["decided_by"] == "assoc-lead" and d["outcome"] == "GRANTED"
            for d in deployment.decisions()))
        status, answer = call(deployment, "/v1/reviews", method="POST", body=review, token=NAMED["assoc-lead"])
        deadline = time.monotonic() + 60
        while status != 409 and time.monotonic() < deadline:  # once projected, the request waits no more
            time.sleep(1)
            status, answer = call(deployment, "/v1/reviews", method="POST", body=review, token=NAMED["assoc-lead"])
        assert status == 409 and b"not waiting for review" in answer

        log = deployment.log_path.read_text()
        assert "bearer tokens required" in log and not any(token in log for token in TOKENS.values())
        assert not any(token in log for token in NAMED.values())
    finally:
        deployment.stop_worker()


def test_a_worker_bound_beyond_loopback_without_tokens_refuses_to_start(tmp_path):
    deployment = Deployment(tmp_path, REMEDY_WEB_HOST="0.0.0.0")
    result = subprocess.run([sys.executable, "-m", "streams.commands.cli", "worker"], env=deployment.env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "REMEDY_WEB_HOST 0.0.0.0 is not a loopback address" in result.stderr and "Traceback" not in result.stderr


def test_a_clickhouse_password_is_never_printed(tmp_path):
    url = f"http://admin:{PASSWORD}@127.0.0.1:{_free_port()}/"
    deployment = Deployment(tmp_path, REMEDY_CLICKHOUSE_URL=url, REMEDY_HTTP_TOKEN=TOKENS["ops"])
    worker = subprocess.run([sys.executable, "-m", "streams.commands.cli", "worker"], env=deployment.env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    totals = deployment.cli("finance", "totals", check=False)
    for result in (worker, totals):
        output = result.stdout + result.stderr
        assert result.returncode != 0 and "ClickHouse" in output, output[-2000:]
        assert PASSWORD not in output and TOKENS["ops"] not in output, output[-2000:]
        assert "admin:***@" in output or "***" in output, output[-2000:]


def test_ready_is_503_within_10_s_of_a_frozen_broker_and_200_once_it_is_back(tmp_path):
    from tests.integration.test_broker_outage import PrivateBroker

    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    deployment = Deployment(tmp_path / "worker", REMEDY_KAFKA_BOOTSTRAP=broker.bootstrap)
    try:
        deployment.start_worker()

        def ready_within(status: int, seconds: float) -> float:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                if call(deployment, "/ready")[0] == status:
                    return time.monotonic() - started
                time.sleep(0.25)
            raise AssertionError(f"/ready did not answer {status} within {seconds} s: {call(deployment, '/ready')}\n"
                                 f"{deployment.log_tail()}")

        ready_within(200, 90)
        broker.freeze()  # SIGSTOP: the broker holds every connection and answers nothing
        try:
            took = ready_within(503, 10)
            # Kafka does not answer; a rebalance or a restore the frozen broker holds up may be named too.
            problems = json.loads(call(deployment, "/ready")[1])["problems"]
            assert problems and all(isinstance(problem, str) for problem in problems), problems
        finally:
            broker.thaw()
        ready_within(200, 90)
        print(f"/ready answered 503 {took:.1f} s after the broker froze ({problems}), 200 again after it thawed")
    finally:
        deployment.stop_worker()
        broker.stop()
