"""What the fraud team's routes and page read from Kafka, off the worker's event loop.

Every read goes through kafka-python (which blocks), so each runs in a thread; a backtest runs
one at a time (it reads the whole log and replays it twice).
"""

from __future__ import annotations

import asyncio

from streams.core import backtest
from streams.core.cases import rankings
from streams.core.policy import Policy
from streams.runtime import cases, policy_log
from streams.runtime.replay import backtest_report
from streams.runtime.settings import Settings


class BacktestBusy(Exception):
    """A backtest is already running on this worker."""


class Workbench:
    """The fraud team's reads for one worker's settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._backtest = asyncio.Lock()
        # The decision topic read whole once, then only what was added since, on each call.
        self.decision_index = cases.DecisionIndex(settings)

    async def review_data(self) -> tuple[list[dict], dict[str, dict]]:
        """Every decision and the newest assignment of every case."""
        return await asyncio.gather(asyncio.to_thread(self.decision_index.decisions),
                                    asyncio.to_thread(cases.assignments, self.settings))

    async def policy(self) -> dict:
        """The policy in force (its document, version, who applied it) and the history with each version's changes."""
        def read() -> dict:
            applied = policy_log.in_force(self.settings)
            policy = applied.policy if applied else self.settings.policy
            return {"version": policy.version, "document": policy.as_document(),
                    "applied_by": applied.author if applied else None, "reason": applied.reason if applied else None,
                    "configured_default": self.settings.policy.version,
                    "history": policy_log.history_rows(self.settings)}
        return await asyncio.to_thread(read)

    async def rankings(self, since_ms: int | None, until_ms: int | None) -> dict:
        """Households and associates ranked by claims and cents over the period."""
        return rankings(await asyncio.to_thread(self.decision_index.decisions), since_ms, until_ms)

    async def shadow_report(self) -> dict:
        """The running (or last) shadow policy against the live decisions of the same requests."""
        from streams.runtime import shadow

        return await asyncio.to_thread(shadow.report, self.settings)

    async def backtest(self, document: dict, since: str | None, until: str | None) -> dict:
        """The backtest report of a policy document (full or partial) over [since, until)."""
        candidate = Policy.from_document(document)
        since_ms, until_ms = backtest.date_ms(since, "since"), backtest.date_ms(until, "until")
        if self._backtest.locked():
            raise BacktestBusy("a backtest is already running on this worker; try again when it has finished")
        async with self._backtest:
            # In one process: a worker has threads (and embedded chDB), so it never forks.
            return await asyncio.to_thread(backtest_report, self.settings, candidate, since_ms, until_ms,
                                           parallel=False)
