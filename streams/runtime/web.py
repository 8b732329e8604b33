"""The worker's HTTP views: health, finance queries, the audit snapshot and the projection rebuild.

Kept apart from the worker: the views read what the worker exposes (`on_clickhouse`, its agents,
the policy in force, the rebuild progress) and never touch Kafka themselves.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json

from aiohttp import web

from projections.store import parse_day
from streams.errors import InvariantViolation
from streams.runtime.access import Tokens, bearer, cross_origin


def _json_default(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=_json_default))


# The roles that may call each route (streams/runtime/access.py). "public": liveness and
# readiness probes, which answer a status and nothing about customers or money.
ROUTE_ROLES = {
    "/health": "public",
    "/ready": "public",
    "/metrics": ("ops",),
    "/finance/totals": ("finance", "ops"),
    "/finance/decision-count": ("finance", "ops"),
    "/finance/customer": ("finance",),
    "/finance/associates": ("finance", "fraud"),
    "/finance/daily": ("finance", "ops"),
    "/finance/export": ("finance",),
    "/projections/audit": ("finance", "ops"),
    "/projections/rebuild": ("ops",),
}


class WebViews:
    """The routes a worker serves, over the worker's ClickHouse thread and its status."""

    def __init__(self, worker, tokens: Tokens | None = None):
        self.worker = worker
        self.settings = worker.settings
        self.tokens = tokens or Tokens()

    @web.middleware
    async def _access(self, request, handler):
        """401 without a known token, 403 for a token of another role; state changes refuse other sites."""
        roles = ROUTE_ROLES.get(request.path)
        if roles is None:
            return _json({"error": f"no route {request.path}"}, status=404)
        if request.method not in ("GET", "HEAD") and cross_origin(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.host):
            return _json({"error": "cross-origin request refused"}, status=403)
        request["role"] = None
        if not self.tokens.enabled:
            return await handler(request)  # loopback only (check_binding), as said at start
        token = bearer(request.headers.get("Authorization"))
        role = self.tokens.role_of(token) if token else None
        request["role"] = role
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
            web.get("/metrics", self.metrics),
            web.get("/finance/totals", self.finance_totals),
            web.get("/finance/decision-count", self.decision_count),
            web.get("/finance/customer", self.finance_customer),
            web.get("/finance/associates", self.finance_associates),
            web.get("/finance/daily", self.finance_daily),
            web.get("/finance/export", self.finance_export),
            web.get("/projections/audit", self.projections_audit),
            web.get("/projections/rebuild", self.rebuild_status),
            web.post("/projections/rebuild", self.rebuild_start),
        ])
        return app

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
            result = await self.on_clickhouse("totals", since, until, query.get("by"))
        except InvariantViolation as error:
            return _json({"error": str(error)}, status=400)
        return _json(result)

    async def decision_count(self, request):
        return _json({"decisions": await self.on_clickhouse("decision_count")})

    async def finance_customer(self, request):
        customer_id = request.query.get("id")
        if not customer_id:
            return _json({"error": "id: the customer id is required"}, status=400)
        return _json(await self.on_clickhouse("customer", customer_id))

    async def finance_associates(self, request):
        return _json(await self.on_clickhouse("associates"))

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
