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


def _json_default(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=_json_default))


class WebViews:
    """The routes a worker serves, over the worker's ClickHouse thread and its status."""

    def __init__(self, worker):
        self.worker = worker
        self.settings = worker.settings

    async def on_clickhouse(self, method: str, *args):
        """Run a Store method on the worker's ClickHouse thread."""
        return await self.worker.on_clickhouse(method, *args)

    # Web views --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Health, finance queries, the audit snapshot and the rebuild, over HTTP."""
        app = web.Application()
        app.add_routes([
            web.get("/health", self.health),
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
        """The worker's status: its roles, agents, partitions, state sizes and restores."""
        return _json(self.worker.status())

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
