"""The ClickHouse adapter: migrations, idempotent batch inserts and finance queries.

The same code runs on embedded chDB (`chdb:///path`) and on a server (`http(s)://...`):
everything goes through clickhouse-connect's client API; nothing here is chDB-specific.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.exceptions import OperationalError

from projections.rows import LEDGER_COLUMNS, OUTCOMES, REMEDY_KINDS
from streams.errors import InvariantViolation, TransientError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Pause between insert attempts; doubles each time (0.5, 1, 2, 4 s) to ride out a restart.
RETRY_PAUSE_S = 0.5
GROUPINGS = ("day", "kind", "reason")
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_day(text: str | None, what: str) -> date | None:
    """A YYYY-MM-DD date from the command line, or InvariantViolation naming the option."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvariantViolation(f"{what}: expected a date like 2026-11-22, got {text!r}") from None


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [part.strip() for part in body.split(";") if part.strip()]


class Store:
    """The projections in one ClickHouse database."""

    def __init__(self, dsn: str, database: str, attempts_max: int = 5):
        if not DATABASE_NAME.match(database):
            raise InvariantViolation(f"REMEDY_CLICKHOUSE_DATABASE: not a valid name: {database!r}")
        self.database = database
        self.attempts_max = attempts_max
        try:
            self.client = clickhouse_connect.get_client(dsn=dsn)
        except OperationalError as error:
            raise TransientError(f"ClickHouse at {dsn} did not answer: {error}") from None

    def close(self) -> None:
        """Release the client (and, for chDB, the data path)."""
        self.client.close()

    # Migrations -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply every migration not applied yet, in order; returns the names applied now."""
        db = self.database
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {row[0] for row in self.client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
        applied = []
        for version, name, path in self.migrations():
            if version in done:
                continue
            for statement in _statements(path.read_text()):
                self.client.command(statement.replace("{db}", db))
            self.client.insert(f"{db}.schema_migrations", [[version, name]], column_names=["version", "name"])
            applied.append(path.name)
        return applied

    @staticmethod
    def migrations() -> list[tuple[int, str, Path]]:
        """(version, name, path) of every migration file, in version order."""
        found = []
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            match = MIGRATION_NAME.match(path.name)
            if not match:
                raise InvariantViolation(f"{path}: migration names look like 0001_decision_ledger.sql")
            found.append((int(match.group(1)), match.group(2), path))
        return found

    def migration_status(self) -> list[dict]:
        """Every known migration with whether (and when) it was applied."""
        db = self.database
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        exists = self.client.command(f"EXISTS TABLE {db}.schema_migrations")
        applied = {}
        if int(exists) == 1:
            rows = self.client.query(f"SELECT version, toString(applied_at) FROM {db}.schema_migrations FINAL")
            applied = dict(rows.result_rows)
        return [
            {"version": version, "name": name, "applied_at": applied.get(version)}
            for version, name, _ in self.migrations()
        ]

    # Writes ---------------------------------------------------------------------------------

    def write_batch(self, batch) -> None:
        """Write one projector batch (a projections.projector.ProjectionBatch)."""
        self.insert_decisions(batch.ledger_rows, batch.token)

    def insert_decisions(self, rows: list[list], token: str) -> None:
        """Insert a batch of ledger rows; a retry with the same token is a no-op on the server."""
        # Synchronous inserts, set explicitly: chDB defaults to async_insert=1, which buffers rows
        # in memory and would let a SIGKILL lose rows the projector believed were written.
        settings = {"insert_deduplication_token": token, "insert_deduplicate": 1, "async_insert": 0}
        pause = RETRY_PAUSE_S
        for attempt in range(1, self.attempts_max + 1):
            try:
                self.client.insert(
                    f"{self.database}.decision_ledger", rows, column_names=list(LEDGER_COLUMNS), settings=settings
                )
                return
            except OperationalError as error:
                if attempt == self.attempts_max:
                    raise TransientError(f"ClickHouse insert failed {attempt} times: {error}") from None
                time.sleep(pause)
                pause *= 2

    # Reads ----------------------------------------------------------------------------------

    def _where(self, since: date | None, until: date | None) -> str:
        clauses = ["1"]
        if since is not None:
            clauses.append(f"decided_at >= toDateTime64('{since.isoformat()} 00:00:00', 3, 'UTC')")
        if until is not None:
            after = (until + timedelta(days=1)).isoformat()
            clauses.append(f"decided_at < toDateTime64('{after} 00:00:00', 3, 'UTC')")
        return " AND ".join(clauses)

    def decision_count(self) -> int:
        """Distinct decisions in the ledger."""
        return int(self.client.command(f"SELECT uniqExact(decision_id) FROM {self.database}.decision_ledger"))

    def totals(self, since: date | None = None, until: date | None = None, by: str | None = None) -> dict:
        """Finance totals between two dates (inclusive, UTC): by kind, by outcome, and optional rows."""
        if by is not None and by not in GROUPINGS:
            raise InvariantViolation(f"--by: expected one of {', '.join(GROUPINGS)}, got {by!r}")
        db, where = self.database, self._where(since, until)
        rows = self.client.query(
            f"SELECT kind, outcome, count(), sum(granted_cents) FROM {db}.decision_ledger FINAL "
            f"WHERE {where} GROUP BY kind, outcome"
        ).result_rows
        by_kind = {kind: {"count": 0, "cents": 0} for kind in REMEDY_KINDS}
        by_outcome = {outcome: 0 for outcome in OUTCOMES}
        for kind, outcome, count, cents in rows:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
            if outcome == "GRANTED":
                by_kind.setdefault(kind, {"count": 0, "cents": 0})
                by_kind[kind]["count"] += int(count)
                by_kind[kind]["cents"] += int(cents)
        result = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "by_kind": by_kind,
            "by_outcome": by_outcome,
            "granted": {
                "count": sum(v["count"] for v in by_kind.values()),
                "cents": sum(v["cents"] for v in by_kind.values()),
            },
            "decisions": sum(by_outcome.values()),
        }
        if by is not None:
            result["by"] = by
            result["rows"] = self._grouped(by, where)
        return result

    def _grouped(self, by: str, where: str) -> list[dict]:
        db = self.database
        if by == "day":
            sql = (
                f"SELECT toString(toDate(decided_at)) AS day, kind, countIf(outcome = 'GRANTED'), "
                f"sumIf(granted_cents, outcome = 'GRANTED'), count() FROM {db}.decision_ledger FINAL "
                f"WHERE {where} GROUP BY day, kind ORDER BY day, kind"
            )
            keys = ("day", "kind")
        elif by == "kind":
            sql = (
                f"SELECT kind, countIf(outcome = 'GRANTED'), sumIf(granted_cents, outcome = 'GRANTED'), count() "
                f"FROM {db}.decision_ledger FINAL WHERE {where} GROUP BY kind ORDER BY kind"
            )
            keys = ("kind",)
        else:
            sql = (
                f"SELECT arrayJoin(reason_codes) AS reason, countIf(outcome = 'GRANTED'), "
                f"sumIf(granted_cents, outcome = 'GRANTED'), count() FROM {db}.decision_ledger FINAL "
                f"WHERE {where} GROUP BY reason ORDER BY reason"
            )
            keys = ("reason",)
        out = []
        for row in self.client.query(sql).result_rows:
            record = dict(zip(keys, row))
            granted_count, granted_cents, decisions = row[len(keys) :]
            record.update(granted_count=int(granted_count), granted_cents=int(granted_cents), decisions=int(decisions))
            out.append(record)
        return out
