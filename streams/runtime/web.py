"""The worker's HTTP views: health, finance queries, the audit snapshot and the projection rebuild.

Kept apart from the worker: the views read what the worker exposes (`on_clickhouse`, its agents,
the policy in force, the rebuild progress) and never touch Kafka themselves.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import time

from aiohttp import web

from projections.store import parse_day
from streams.core.cases import CaseFilter, case_detail, queue, review_problem, SORTS
from streams.errors import InvariantViolation
from streams.runtime.access import Tokens, bearer, cross_origin
from streams.runtime.openapi import document as openapi_document
from streams.runtime.sync_api import BODY_BYTES_MAX, ApiProblem


def _json_default(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def _json_body(request, bytes_max: int) -> dict:
    """A request's JSON object body; InvariantViolation says what is wrong with it."""
    raw = await request.content.read(bytes_max + 1)
    if len(raw) > bytes_max:
        raise InvariantViolation(f"body: larger than {bytes_max} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvariantViolation(f"body: not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvariantViolation("body: expected a JSON object")
    return body


def _review_fields(body: dict) -> dict:
    """request_id, verdict (APPROVE or DENY) and note of a review body, checked."""
    request_id, verdict, note = body.get("request_id"), body.get("verdict"), body.get("note")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > REVIEW_TEXT_CHARS_MAX:
        raise InvariantViolation("field 'request_id': a non-empty string is required")
    if verdict not in ("APPROVE", "DENY"):
        raise InvariantViolation(f"field 'verdict': APPROVE or DENY, got {verdict!r}")
    if note is not None and (not isinstance(note, str) or len(note) > REVIEW_TEXT_CHARS_MAX):
        raise InvariantViolation(f"field 'note': a string of at most {REVIEW_TEXT_CHARS_MAX} characters")
    return {"request_id": request_id, "verdict": verdict, "note": note}


def _now_ms() -> int:
    # The shell's clock: a case's age is how long it has waited now, never part of a decision.
    return int(time.time() * 1000)


# Query parameters of the case queue and the CaseFilter field each fills.
CASE_QUERY_TEXT = {"kind": "kind", "reason": "reason", "customer": "customer_id", "household": "household_id",
                   "associate": "associate", "assigned_to": "assigned_to"}
CASE_QUERY_HOURS = {"older_than_hours": "older_than_hours", "newer_than_hours": "newer_than_hours"}


def case_query(query) -> tuple[CaseFilter, str]:
    """The filter and sort of a case-queue query; InvariantViolation names a bad parameter."""
    unknown = sorted(set(query) - set(CASE_QUERY_TEXT) - set(CASE_QUERY_HOURS) - {"sort"})
    if unknown:
        raise InvariantViolation(f"query parameter {unknown[0]!r}: unknown; use "
                                 f"{', '.join(sorted([*CASE_QUERY_TEXT, *CASE_QUERY_HOURS, 'sort']))}")
    values = {field: query[name] for name, field in CASE_QUERY_TEXT.items() if query.get(name)}
    for name, field in CASE_QUERY_HOURS.items():
        if query.get(name):
            if not query[name].isdigit():
                raise InvariantViolation(f"query parameter '{name}': whole hours, got {query[name]!r}")
            values[field] = int(query[name])
    sort = query.get("sort", "age")
    if sort not in SORTS:
        raise InvariantViolation(f"query parameter 'sort': one of {', '.join(SORTS)}, got {sort!r}")
    return CaseFilter(**values), sort


def _json(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=_json_default))


# The roles that may call each route (streams/runtime/access.py). "public": liveness and
# readiness probes, which answer a status and nothing about customers or money.
ROUTE_ROLES = {
    "/health": "public",
    "/ready": "public",
    "/openapi.json": "public",
    "/metrics": ("ops",),
    "/finance/totals": ("finance", "ops"),
    "/finance/decision-count": ("finance", "ops"),
    "/finance/customer": ("finance",),
    "/finance/associates": ("finance", "fraud"),
    "/finance/daily": ("finance", "ops"),
    "/finance/export": ("finance",),
    "/finance/close-period": ("finance",),
    "/projections/audit": ("finance", "ops"),
    "/projections/rebuild": ("ops",),
    "/privacy/erase": ("ops",),
    "/privacy/erased": ("ops",),
    "/v1/reviews": ("reviewer", "fraud"),
    "/v1/review-cases": ("reviewer", "fraud"),
    "/v1/review-cases/{request_id}": ("reviewer", "fraud"),
    "/v1/review-assignments": ("reviewer", "fraud"),
    "/v1/policy": ("reviewer", "fraud"),
    "/v1/rankings": ("reviewer", "fraud"),
    "/v1/backtests": ("fraud",),
    "/v1/shadow": ("reviewer", "fraud"),
    # The fraud team's page: HTML and script only; every figure on it comes from the routes above,
    # fetched with the token the person enters (kept in the tab's sessionStorage).
    "/fraud": "public",
    "/v1/remedy-requests": ("upstream",),
    "/v1/remedy-requests/{request_id}": ("upstream",),
    "/v1/incidents": ("upstream",),
}
# A review's note and ids: enough for a sentence, bounded so a request body stays small.
REVIEW_TEXT_CHARS_MAX = 500


class WebViews:
    """The routes a worker serves, over the worker's ClickHouse thread and its status."""

    def __init__(self, worker, tokens: Tokens | None = None):
        self.worker = worker
        self.settings = worker.settings
        self.tokens = tokens or Tokens()

    @web.middleware
    async def _access(self, request, handler):
        """401 without a known token, 403 for a token of another role; state changes refuse other sites."""
        resource = request.match_info.route.resource
        roles = ROUTE_ROLES.get(resource.canonical if resource is not None else request.path)
        if roles is None:
            return _json({"error": f"no route {request.path}"}, status=404)
        if request.method not in ("GET", "HEAD") and cross_origin(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.host):
            return _json({"error": "cross-origin request refused"}, status=403)
        request["role"] = None
        request["identity"] = None
        if not self.tokens.enabled:
            return await handler(request)  # loopback only (check_binding), as said at start
        token = bearer(request.headers.get("Authorization"))
        role = self.tokens.role_of(token) if token else None
        request["role"] = role
        request["identity"] = self.tokens.identity_of(token) if role else None
        if roles == "public":
            return await handler(request)
        if role is None:
            return _json({"error": "Authorization: Bearer TOKEN required (REMEDY_HTTP_TOKEN for the CLI)"}, status=401,
                         headers={"WWW-Authenticate": 'Bearer realm="remedy-ledger"'})
        if role not in roles:
            return _json({"error": f"the {role} role may not call {request.path}; it needs {' or '.join(roles)}"},
                         status=403)
        return await handler(request)

    async def on_clickhouse(self, method: str, *args):
        """Run a Store method on the worker's ClickHouse thread."""
        return await self.worker.on_clickhouse(method, *args)

    # Web views --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Health, finance queries, the audit snapshot and the rebuild, over HTTP."""
        app = web.Application(middlewares=[self._access])
        app.add_routes([
            web.get("/health", self.health),
            web.get("/ready", self.ready),
            web.get("/openapi.json", self.openapi),
            web.get("/metrics", self.metrics),
            web.get("/finance/totals", self.finance_totals),
            web.get("/finance/decision-count", self.decision_count),
            web.get("/finance/customer", self.finance_customer),
            web.get("/finance/associates", self.finance_associates),
            web.get("/finance/daily", self.finance_daily),
            web.get("/finance/export", self.finance_export),
            web.post("/finance/close-period", self.finance_close_period),
            web.get("/projections/audit", self.projections_audit),
            web.get("/projections/rebuild", self.rebuild_status),
            web.post("/projections/rebuild", self.rebuild_start),
            web.post("/privacy/erase", self.privacy_erase),
            web.get("/privacy/erased", self.privacy_erased),
            web.post("/v1/reviews", self.review),
            web.get("/v1/review-cases", self.review_cases),
            web.get("/v1/review-cases/{request_id}", self.review_case),
            web.post("/v1/review-assignments", self.review_assign),
            web.get("/v1/policy", self.policy),
            web.get("/v1/rankings", self.rankings),
            web.post("/v1/backtests", self.backtest),
            web.get("/v1/shadow", self.shadow_report),
            web.get("/fraud", self.fraud_page),
            web.post("/v1/remedy-requests", self.remedy_request),
            web.get("/v1/remedy-requests/{request_id}", self.remedy_request_status),
            web.post("/v1/incidents", self.incident),
        ])
        return app

    async def openapi(self, request):
        """The OpenAPI document of these routes (streams/runtime/openapi.py)."""
        return _json(openapi_document(ROUTE_ROLES))

    async def remedy_request(self, request):
        """The associate's console: a RemedyRequested in the publish format; 200 with the decision
        when it comes within the wait, else 202 with the URL to poll; 409 for a conflicting repeat."""
        return await self._sync("remedy_request", await request.content.read(BODY_BYTES_MAX + 1))

    async def remedy_request_status(self, request):
        """200 with the decision of a request, or 202 while there is none here yet."""
        return await self._sync("poll", request.match_info["request_id"])

    async def incident(self, request):
        """An IncidentReported in the publish format; 202 once it is on the incidents topic."""
        return await self._sync("incident", await request.content.read(BODY_BYTES_MAX + 1))

    async def _sync(self, method: str, argument):
        if self.worker.sync_api is None:
            return _json({"error": "the synchronous API is not running on this worker yet"}, status=503)
        try:
            status, body, hops_ms = await getattr(self.worker.sync_api, method)(argument)
        except ApiProblem as problem:
            return _json({"error": str(problem)}, status=problem.status)
        headers = {"Location": body["poll"]} if status == 202 and "poll" in body else {}
        if hops_ms:  # where the time went, for consoles and the bench (W3C Server-Timing)
            headers["Server-Timing"] = ", ".join(f"{hop};dur={ms:.1f}" for hop, ms in hops_ms.items())
        return _json(body, status=status, headers=headers or None)

    async def review(self, request):
        """Approve or deny an escalated request as the person the token names (four eyes: never
        one's own request); 202 once the RemedyReviewed event is on the requests topic, and the
        decide agent records the superseding decision."""
        try:
            body = await _json_body(request, BODY_BYTES_MAX)
            reviewer = self._reviewer(request, body)
            review = _review_fields(body)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        if "project" not in self.worker.roles:
            return _json({"error": "this worker does not project decisions; send reviews to one that does"}, status=503)
        current = await self.on_clickhouse("current_decision", review["request_id"])
        problem = review_problem(current, review["request_id"], reviewer, review["verdict"], review["note"])
        if problem is not None:
            return _json({"error": problem[1]}, status=problem[0])
        datum = await self.worker.publish_review({**review, "customer_id": current["customer_id"],
                                                  "reviewed_by": reviewer})
        return _json({"request_id": review["request_id"], "verdict": review["verdict"], "reviewed_by": reviewer,
                      "event_id": datum["event_id"]}, status=202)

    async def _cases(self):
        """The decisions and assignments as the worker reads them from Kafka now."""
        return await self.worker.workbench.review_data()

    async def policy(self, request):
        """The policy in force and every version's changes."""
        return _json(await self.worker.workbench.policy())

    async def rankings(self, request):
        """Households and associates ranked by claims and cents over [since, until)."""
        from streams.core.backtest import date_ms

        try:
            since_ms = date_ms(request.query.get("since"), "since")
            until_ms = date_ms(request.query.get("until"), "until")
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(await self.worker.workbench.rankings(since_ms, until_ms))

    async def backtest(self, request):
        """Backtest a policy document (`policy`, full or partial) over [`since`, `until`) on the recorded log."""
        from streams.errors import PolicyError
        from streams.runtime.workbench import BacktestBusy

        try:
            body = await _json_body(request, BODY_BYTES_MAX)
            document = body.get("policy", {})
            if not isinstance(document, dict):
                raise InvariantViolation("field 'policy': a policy document (a JSON object) is required")
            report = await self.worker.workbench.backtest(document, body.get("since"), body.get("until"))
        except (InvariantViolation, PolicyError) as error:
            return _json({"error": str(error)}, status=400)
        except BacktestBusy as error:
            return _json({"error": str(error)}, status=409)
        return _json(report)

    async def shadow_report(self, request):
        """The shadow policy against live (the backtest's measures), with the rows in ClickHouse's shadow table."""
        try:
            report = await self.worker.workbench.shadow_report()
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=404)
        if "project" in self.worker.roles:
            report["clickhouse_shadow_decisions"] = await self.on_clickhouse("shadow_decision_count")
        return _json(report)

    async def fraud_page(self, request):
        """The fraud team's page (streams/runtime/fraud_page.py)."""
        from streams.runtime.fraud_page import CONTENT_SECURITY_POLICY, PAGE

        return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                     "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    async def review_cases(self, request):
        """The escalated requests waiting for a person, filtered and sorted as the query says."""
        try:
            wanted, sort = case_query(request.query)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        decisions, assigned = await self._cases()
        rows = queue(decisions, assigned, wanted, sort, _now_ms())
        return _json({"cases": rows, "count": len(rows)})

    async def review_case(self, request):
        """One case: the decision, its inputs in words, and the recent history around it."""
        decisions, assigned = await self._cases()
        detail = case_detail(request.match_info["request_id"], decisions, assigned, _now_ms())
        if detail is None:
            return _json({"error": f"{request.match_info['request_id']}: no decision for this request (yet)"},
                         status=404)
        return _json(detail)

    async def review_assign(self, request):
        """Assign a case to a person; the assigner is the token's identity (or `by` on loopback)."""
        from streams.runtime.cases import assignment, event_id_of

        try:
            body = await _json_body(request, BODY_BYTES_MAX)
            assigner = self._reviewer(request, body)
            datum = assignment(body.get("request_id"), body.get("assigned_to"), assigner, _now_ms())
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        await self.worker.publish_assignment(datum)
        return _json({**datum, "event_id": event_id_of(datum)}, status=202)

    def _reviewer(self, request, body: dict) -> str:
        """The reviewer: the token's identity; without tokens (loopback only) the body's `by`."""
        claimed = body.get("by")
        if request["identity"] is not None:
            if claimed not in (None, "", request["identity"]):
                raise InvariantViolation(f"field 'by': reviewers are identified by their token (this one is "
                                         f"{request['identity']}); leave 'by' out")
            return request["identity"]
        if not isinstance(claimed, str) or not claimed.strip():
            raise InvariantViolation("field 'by': the reviewer's id is required when the worker has no tokens")
        return claimed.strip()

    async def health(self, request):
        """Liveness, with the worker's status (roles, agents, partitions, state) for ops or on loopback."""
        if self.tokens.enabled and request["role"] != "ops":
            return _json({"status": "ok"})
        return _json(self.worker.status())

    async def ready(self, request):
        """Readiness: 200 when Kafka and ClickHouse answer, partitions are assigned, state is restored
        and the lag is under its bound; 503 with the reasons otherwise."""
        problems = await self.worker.readiness_problems()
        return _json({"ready": not problems, "problems": problems}, status=503 if problems else 200)

    async def metrics(self, request):
        """Prometheus text format."""
        return web.Response(text=self.worker.metrics_text(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    @staticmethod
    def _day_range(query) -> tuple:
        """The since/until dates of a finance query (InvariantViolation names a bad one)."""
        return parse_day(query.get("since"), "since"), parse_day(query.get("until"), "until")

    async def finance_totals(self, request):
        query = request.query
        try:
            since, until = self._day_range(query)
            result = await self.on_clickhouse("totals", since, until, query.get("by"), query.get("dates", "posting"))
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(result)

    async def finance_close_period(self, request):
        query = request.query
        for name in ("period", "by"):
            if not query.get(name):
                return _json({"error": f"{name}: required (close-period YYYY-MM --by NAME)"}, status=400)
        try:
            event = await self.worker.close_period(query["period"], query["by"])
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(event)

    async def decision_count(self, request):
        return _json({"decisions": await self.on_clickhouse("decision_count")})

    async def finance_customer(self, request):
        customer_id = request.query.get("id")
        if not customer_id:
            return _json({"error": "id: the customer id is required"}, status=400)
        return _json(await self.on_clickhouse("customer", customer_id))

    async def finance_associates(self, request):
        try:
            since, until = self._day_range(request.query)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(await self.on_clickhouse("associates", since, until))

    async def finance_daily(self, request):
        try:
            since, until = self._day_range(request.query)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(await self.on_clickhouse("daily_granted", since, until))

    async def finance_export(self, request):
        query = request.query
        try:
            since, until = self._day_range(query)
            data = await self.on_clickhouse("export", query.get("format", "csv"), since, until)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return web.Response(body=data, content_type="application/octet-stream")

    async def projections_audit(self, request):
        return _json(await self.on_clickhouse("audit_snapshot"))

    # The rebuild runs inside the worker because embedded chDB lets only one process open the data
    # path; its chunks interleave with projection batches and queries on the ClickHouse thread.
    async def rebuild_status(self, request):
        return _json(self.worker.rebuild_progress)

    async def rebuild_start(self, request):
        from projections.rebuild import progress_state, rebuild_in_worker

        if self.worker.rebuild_progress["state"] == "running":
            return _json(self.worker.rebuild_progress, status=409)
        self.worker.rebuild_progress.update(progress_state(), state="running")
        asyncio.ensure_future(rebuild_in_worker(self.settings, self.on_clickhouse, self.worker.rebuild_progress))
        return _json(self.worker.rebuild_progress, status=202)

    # Erasure (docs/privacy.md): the customer id travels in the JSON body, never in the URL.
    async def privacy_erase(self, request):
        from streams.core.privacy import erasure_request_problems
        from streams.runtime.privacy import ErasureBusy

        try:
            body = await _json_body(request, BODY_BYTES_MAX)
        except InvariantViolation as error:
            return _json({"error": f'{error} (expected {{"customer_id": ..., "reason": ...}})'}, status=400)
        problems = erasure_request_problems(body.get("customer_id"), body.get("reason"))
        if problems:
            return _json({"error": "; ".join(problems)}, status=400)
        try:
            result = await self.worker.erase_customer(body.get("customer_id"), body.get("reason"))
        except ErasureBusy as error:
            return _json({"error": str(error)}, status=409)
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(result)

    async def privacy_erased(self, request):
        return _json(await self.on_clickhouse("erased_customers"))
