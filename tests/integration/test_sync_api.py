"""The synchronous decision API on real workers: POST /v1/remedy-requests answers with the
decision, a retry with the same one, a conflicting retry with 409, a bad body with 400 naming the
field, and 202 then 200 on poll while the deciding worker is paused (SIGSTOP)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

from tests.integration.conftest import Deployment

TOKENS = {"upstream": "ups-" + "s" * 28, "finance": "fin-" + "t" * 28}
CUSTOMER = "c-sync-1"
ORDER_LINES = [
    {"type": "OrderPlaced", "event_id": "e-o1", "order_id": "o-sync-1", "customer_id": CUSTOMER,
     "placed_at": "2026-11-20T09:00:00Z", "total_cents": 8000, "currency": "USD",
     "items": [{"sku": "sku-1", "quantity": 1, "unit_price_cents": 8000}], "shipping_address_id": "addr-sync-1",
     "digital": False},
    {"type": "OrderDelivered", "event_id": "e-d1", "order_id": "o-sync-1", "customer_id": CUSTOMER,
     "delivered_at": "2026-11-21T15:00:00Z"},
]


def request_body(request_id: str, amount_cents: int = 1500, kind: str = "CREDIT", incident_id: str | None = None,
                 minute: int = 0) -> dict:
    return {"event_id": f"e-{request_id}", "request_id": request_id, "customer_id": CUSTOMER, "order_id": "o-sync-1",
            "incident_id": incident_id, "kind": kind, "amount_cents": amount_cents, "currency": "USD",
            "requested_by": "assoc-phone", "requested_at": f"2026-11-22T10:{minute:02d}:00Z", "reason": "on the phone"}


def call(deployment: Deployment, method: str, path: str, body=None, role: str | None = "upstream") -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"{deployment.settings.worker_url}{path}", method=method, data=data,
                                     headers={"Content-Type": "application/json"})
    if role:
        request.add_header("Authorization", f"Bearer {TOKENS[role]}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def test_decisions_over_http_retries_conflicts_bad_bodies_and_a_paused_worker(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("".join(f"{role} {token}\n" for role, token in TOKENS.items()))
    env = {"REMEDY_HTTP_TOKENS_FILE": str(tokens), "REMEDY_SYNC_WAIT_MS": "3000"}
    api = Deployment(tmp_path / "api", worker_args=("--roles", "project"), **env)
    decider = Deployment(tmp_path / "decider", worker_args=("--roles", "decide,limits"),
                         REMEDY_TOPIC_PREFIX=api.env["REMEDY_TOPIC_PREFIX"], **env)
    orders = tmp_path / "orders.jsonl"
    orders.write_text("".join(json.dumps(line) + "\n" for line in ORDER_LINES))
    try:
        api.start_worker()
        decider.start_worker()
        api.cli("publish", str(orders))
        for worker in (api, decider):  # partitions assigned and state restored: decisions come in milliseconds
            deadline = time.monotonic() + 90
            while call(worker, "GET", "/ready", role=None)[0] != 200:
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.5)

        # Under the caps: 200 with the decision, in words.
        status, decision, headers = call(api, "POST", "/v1/remedy-requests", request_body("r-sync-1"))
        assert status == 200, decision
        assert [part.split(";")[0] for part in headers["Server-Timing"].split(", ")] == ["parse", "lookup", "publish", "decision", "total"]
        assert decision["outcome"] == "GRANTED" and decision["granted_cents"] == 1500
        assert decision["granted"] == "15.00 USD"
        assert decision["reasons"] == [{"code": "WITHIN_LIMITS", "meaning": "within every limit: granted in full"}]
        assert decision["next"].startswith("the remedy goes ahead")
        # The same request again: the same decision, nothing published twice.
        again = call(api, "POST", "/v1/remedy-requests", request_body("r-sync-1"))
        assert again[0] == 200 and again[1]["decision_id"] == decision["decision_id"]
        # The same request id with another amount: refused.
        status, refused, _ = call(api, "POST", "/v1/remedy-requests", request_body("r-sync-1", amount_cents=1600))
        assert status == 409 and "amount_cents" in refused["error"]
        # Bad bodies name the field; other roles and no token are refused.
        status, bad, _ = call(api, "POST", "/v1/remedy-requests", request_body("r-bad", amount_cents=-5))
        assert status == 400 and "'amount_cents'" in bad["error"]
        status, bad, _ = call(api, "POST", "/v1/remedy-requests", {**request_body("r-bad"), "colour": "red"})
        assert status == 400 and "colour" in bad["error"]
        status, bad, _ = call(api, "POST", "/v1/remedy-requests", {"type": "OrderPlaced", **request_body("r-bad")})
        assert status == 400 and "type" in bad["error"]
        assert call(api, "POST", "/v1/remedy-requests", b"not json")[0] == 400
        assert call(api, "POST", "/v1/remedy-requests", request_body("r-x"), role=None)[0] == 401
        assert call(api, "POST", "/v1/remedy-requests", request_body("r-x"), role="finance")[0] == 403

        # Report and remedy in one call sequence: the incident, then a request naming it.
        incident = {"event_id": "e-i1", "incident_id": "i-sync-1", "customer_id": CUSTOMER, "order_id": "o-sync-1",
                    "kind": "DAMAGED", "source": "CUSTOMER", "reported_at": "2026-11-22T10:05:00Z",
                    "description": "box crushed"}
        status, accepted, _ = call(api, "POST", "/v1/incidents", incident)
        assert status == 202 and accepted["accepted"] and accepted["incident_id"] == "i-sync-1"
        status, refund, _ = call(api, "POST", "/v1/remedy-requests",
                                 request_body("r-sync-2", 2000, "REFUND", "i-sync-1", minute=6))
        assert status == 200 and refund["outcome"] == "GRANTED", refund

        # The deciding worker paused: 202 with where to poll, then 200 once it runs again.
        assert call(api, "GET", "/v1/remedy-requests/r-never-sent")[0] == 404
        os.killpg(decider.process.pid, signal.SIGSTOP)
        try:
            status, pending, headers = call(api, "POST", "/v1/remedy-requests", request_body("r-sync-3", 500, minute=7))
            assert status == 202 and pending["status"] == "PENDING", pending
            assert headers["Location"] == "/v1/remedy-requests/r-sync-3" == pending["poll"]
            assert call(api, "GET", pending["poll"])[0] == 202
        finally:
            os.killpg(decider.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 120
        status, polled, _ = call(api, "GET", "/v1/remedy-requests/r-sync-3")
        while status == 202 and time.monotonic() < deadline:
            time.sleep(0.5)
            status, polled, _ = call(api, "GET", "/v1/remedy-requests/r-sync-3")
        assert status == 200 and polled["outcome"] == "GRANTED" and polled["granted_cents"] == 500
        # Every request the API accepted has exactly one decision on the topic.
        decided = [d["request_id"] for d in api.decisions()]
        assert sorted(decided) == ["r-sync-1", "r-sync-2", "r-sync-3"]
    finally:
        decider.stop_worker()
        api.stop_worker()
