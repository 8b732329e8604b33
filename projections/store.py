"""The ClickHouse adapter: migrations, idempotent batch inserts and finance queries.

The same code runs on embedded chDB (`chdb:///path`) and on a server (`http(s)://...`):
everything goes through clickhouse-connect's client API; nothing here is chDB-specific.
"""

from __future__ import annotations

import hashlib
import json

import re
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.exceptions import OperationalError

from projections.figures import FIGURE_NAMES, NOT_ASSOCIATES
from projections.rows import DECISION_COLUMNS, OUTCOMES, POSTING_COLUMNS, REMEDY_KINDS
from streams.core.money import add_cents, merged_cents
from streams.core.inbound import id_problem
from streams.core.privacy import ERASED_ID_FIELDS
from projections.periods import LATE_POSTING, decision_offsets, period_problem
from streams.redaction import scrubbed
from streams.errors import InvariantViolation, TransientError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Pause between insert attempts; doubles each time (0.5, 1, 2, 4 s) to ride out a restart.
RETRY_PAUSE_S = 0.5
GROUPINGS = ("day", "kind", "reason")
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The live tables (migration 0002); a rebuild fills `<name>_rebuild` and exchanges the two.
DECISIONS_TABLE = "decisions_v2"
POSTINGS_TABLE = "postings_v2"
REBUILD_SUFFIX = "_rebuild"
EXPORT_FORMATS = {"csv": "CSVWithNames", "parquet": "Parquet"}
# CSV for spreadsheets: NULL as an empty field (ClickHouse writes \N by default), lists joined by ';'.
EXPORT_SETTINGS = {"csv": {"format_csv_null_representation": ""}, "parquet": {}}
CSV_LIST_SEPARATOR = ";"
# Erased customers' pseudonyms (migration 0003; docs/privacy.md).
ERASED_TABLE = "erased_customers"
# Requesters who are no associates, as an SQL tuple (the view associate_grant_totals, migration 0007, says the same).
NOT_ASSOCIATES_SQL = "(" + ", ".join(f"'{name}'" for name in NOT_ASSOCIATES) + ")"
# Closed months (migration 0006; projections/periods.py).
CLOSED_TABLE = "closed_periods"
# What `finance totals --dates` dates a decision by: its posting date (default) or its event date.
DATE_BASES = {"posting": "posting_date", "event": "toDate(decided_at)"}
# Columns of personal data an erasure empties (address ids and free text), where a table has them.
ERASED_NULL_COLUMNS = ("household_id", "note", "shipping_address_id", "gift_message")
# Rewrites of a customer's rows before an erasure gives up: a second pass catches a batch another
# projector wrote between the erasure's record and its first rewrite.
ERASE_PASSES_MAX = 3
# Settings of every insert, passed explicitly. Synchronous: chDB defaults to async_insert=1,
# which buffers rows in memory and would let a SIGKILL lose rows the projector believed written.
# insert_deduplicate with a deterministic token makes a retried batch a no-op (the tables set
# non_replicated_deduplication_window; a replicated server table deduplicates by itself).
INSERT_SETTINGS = {"insert_deduplicate": 1, "async_insert": 0}


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
            raise TransientError(scrubbed(f"ClickHouse at {dsn} did not answer: {error}", dsn)) from None

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

    def write_batch(self, batch, suffix: str = "") -> None:
        """Write one projector batch (a projections.projector.ProjectionBatch): postings, then decisions."""
        if not batch.ledger_rows:
            return
        superseded, own = batch.superseded_ids(), {d["decision_id"] for d, _, _ in batch.decisions}
        # One read of the ledger serves both: the superseded decisions' money fields (for reversal
        # postings) and this batch's decisions already posted (a redelivered batch keeps its dates).
        found = self._ledger_rows(superseded | own, suffix)
        known = {did: row[0] for did, row in found.items() if did in superseded}
        postings = batch.posting_rows(known)
        if postings:
            self._insert(POSTINGS_TABLE + suffix, postings, POSTING_COLUMNS, batch.token)
        earlier = {did: row[1] for did, row in found.items() if did in own}
        rows = batch.posted_rows(self.closes(), earlier)
        self._insert(DECISIONS_TABLE + suffix, rows, DECISION_COLUMNS, batch.token)

    def insert_decisions(self, rows: list[list], token: str) -> None:
        """Insert decisions_v2 rows (no postings); a retry with the same token is a no-op on the server."""
        self._insert(DECISIONS_TABLE, rows, DECISION_COLUMNS, token)

    def insert_shadow_decisions(self, decisions: list[dict]) -> None:
        """Insert a shadow policy's decisions into shadow_decisions (never the ledger); a repeat changes nothing."""
        from projections.rows import SHADOW_COLUMNS, shadow_row

        token = "shadow:" + ",".join(sorted(d["decision_id"] for d in decisions))
        self._insert("shadow_decisions", [shadow_row(d) for d in decisions], SHADOW_COLUMNS,
                     hashlib.sha256(token.encode()).hexdigest())

    def shadow_decision_count(self) -> int:
        """How many distinct shadow decisions the store holds."""
        return int(self.client.command(f"SELECT count() FROM {self.database}.shadow_decisions FINAL"))

    def _insert(self, table: str, rows: list[list], columns, token: str) -> None:
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}
        pause = RETRY_PAUSE_S
        for attempt in range(1, self.attempts_max + 1):
            try:
                self.client.insert(f"{self.database}.{table}", rows, column_names=list(columns), settings=settings)
                return
            except OperationalError as error:
                if attempt == self.attempts_max:
                    raise TransientError(f"ClickHouse insert failed {attempt} times: {error}") from None
                time.sleep(pause)
                pause *= 2

    def _ledger_rows(self, decision_ids: set[str], suffix: str = "") -> dict[str, tuple[dict, tuple]]:
        """Per decision id the ledger holds: its money fields (decision_id, kind, outcome,
        granted_cents, currency) and its posting (posted_at, posting_date, posting_mark)."""
        if not decision_ids:
            return {}
        result = self.client.query(
            f"SELECT decision_id, kind, outcome, granted_cents, currency, posted_at, posting_date, posting_mark "
            f"FROM {self.database}.{DECISIONS_TABLE}{suffix} FINAL WHERE decision_id IN {{ids:Array(String)}}",
            parameters={"ids": sorted(decision_ids)},
        )
        keys = ("decision_id", "kind", "outcome", "granted_cents", "currency")
        return {row[0]: (dict(zip(keys, row[:5])), tuple(row[5:8])) for row in result.result_rows}

    # Closed periods (projections/periods.py) ---------------------------------------------------

    def closes(self) -> dict[str, dict[int, int]]:
        """Every closed month with the decision-topic offsets its figures end at, per partition."""
        rows = self.client.query(f"SELECT period, decision_offsets FROM {self.database}.{CLOSED_TABLE} FINAL").result_rows
        return {period: {int(p): int(o) for p, o in offsets.items()} for period, offsets in rows}

    def closed_periods(self) -> list[dict]:
        """The closed months, oldest first: who closed each, when, and its offsets."""
        rows = self.client.query(
            f"SELECT period, closed_by, toUnixTimestamp64Milli(closed_at), decision_offsets "
            f"FROM {self.database}.{CLOSED_TABLE} FINAL ORDER BY period").result_rows
        return [{"period": p, "closed_by": by, "closed_at": int(at), "decision_offsets": dict(offsets)}
                for p, by, at, offsets in rows]

    def close_period(self, period: str, closed_by: str, closed_at_ms: int) -> dict:
        """Close a month at the projector's position now (a PeriodClosed datum, also recorded here).

        Run on the thread that projects (the worker's ClickHouse thread), so no batch is half
        written: every decision below the offsets is in the figures, every later one posts late."""
        problem = period_problem(period)
        if problem:
            raise InvariantViolation(f"field 'period': {problem}")
        if not isinstance(closed_by, str) or id_problem(closed_by):
            raise InvariantViolation(f"field 'closed_by': {id_problem(closed_by) if isinstance(closed_by, str) else 'required'}")
        if period in self.closes():
            raise InvariantViolation(f"field 'period': {period} is already closed; a closed month stays closed")
        event = {"event_id": f"period-closed:{period}", "period": period, "closed_by": closed_by,
                 "closed_at": closed_at_ms, "decision_offsets": decision_offsets(self.projected_positions())}
        self.record_close(event)
        return event

    def record_close(self, event: dict) -> None:
        """Record a PeriodClosed (idempotent: a month's first close stands)."""
        if event["period"] in self.closes():
            return
        at = event["closed_at"]
        closed_at = at if isinstance(at, datetime) else datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=at)
        self.client.insert(f"{self.database}.{CLOSED_TABLE}",
                           [[event["period"], event["closed_by"], closed_at, dict(event["decision_offsets"])]],
                           column_names=["period", "closed_by", "closed_at", "decision_offsets"])

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
        return int(self.client.command(f"SELECT uniqExact(decision_id) FROM {self.database}.{DECISIONS_TABLE}"))

    @staticmethod
    def _dated(since: date | None, until: date | None, day: str) -> str:
        """Between two days (inclusive) on a Date expression."""
        clauses = ["1"]
        if since is not None:
            clauses.append(f"{day} >= toDate('{since.isoformat()}')")
        if until is not None:
            clauses.append(f"{day} <= toDate('{until.isoformat()}')")
        return " AND ".join(clauses)

    def totals(self, since: date | None = None, until: date | None = None, by: str | None = None,
               dates: str = "posting") -> dict:
        """Finance totals between two dates (inclusive, UTC): by kind, by outcome, and optional rows.

        Every amount is per currency: `{"count": n, "cents": {"EUR": 1500, "USD": 4500}}` (`{}` when
        nothing was granted); counts are decisions, whatever their currency. Days are posting dates
        by default (a closed month's figures never change), event dates with `dates="event"`.
        """
        if by is not None and by not in GROUPINGS:
            raise InvariantViolation(f"--by: expected one of {', '.join(GROUPINGS)}, got {by!r}")
        if dates not in DATE_BASES:
            raise InvariantViolation(f"--dates: expected one of {', '.join(DATE_BASES)}, got {dates!r}")
        db, day = self.database, DATE_BASES[dates]
        where = self._dated(since, until, day)
        rows = self.client.query(
            f"SELECT kind, outcome, currency, count(), sum(granted_cents) FROM {db}.current_decisions "
            f"WHERE {where} GROUP BY kind, outcome, currency ORDER BY kind, outcome, currency"
        ).result_rows
        by_kind = {kind: {"count": 0, "cents": {}} for kind in REMEDY_KINDS}
        by_outcome = {outcome: 0 for outcome in OUTCOMES}
        for kind, outcome, currency, count, cents in rows:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
            if outcome == "GRANTED":
                by_kind.setdefault(kind, {"count": 0, "cents": {}})
                by_kind[kind]["count"] += int(count)
                add_cents(by_kind[kind]["cents"], currency, cents)
        late = self.client.query(
            f"SELECT count() FROM {db}.current_decisions WHERE {where} AND posting_mark = '{LATE_POSTING}'"
        ).result_rows[0][0]
        result = {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "dates": dates,
            "late_postings": int(late),
            "by_kind": by_kind,
            "by_outcome": by_outcome,
            "granted": {
                "count": sum(v["count"] for v in by_kind.values()),
                "cents": merged_cents(v["cents"] for v in by_kind.values()),
            },
            "decisions": sum(by_outcome.values()),
        }
        if by is not None:
            result["by"] = by
            result["rows"] = self._grouped(by, where, day)
        return result

    def _grouped(self, by: str, where: str, day: str) -> list[dict]:
        """Rows of `totals --by`: decisions, granted count and granted cents per currency of each group."""
        db = self.database
        granted = "countIf(outcome = 'GRANTED'), sumIf(granted_cents, outcome = 'GRANTED'), count()"
        if by == "day":
            sql = (
                f"SELECT toString({day}) AS day, kind, currency, {granted} FROM {db}.current_decisions "
                f"WHERE {where} GROUP BY day, kind, currency ORDER BY day, kind, currency"
            )
            keys = ("day", "kind")
        elif by == "kind":
            sql = (
                f"SELECT kind, currency, {granted} FROM {db}.current_decisions WHERE {where} "
                "GROUP BY kind, currency ORDER BY kind, currency"
            )
            keys = ("kind",)
        else:
            sql = (
                f"SELECT arrayJoin(reason_codes) AS reason, currency, {granted} FROM {db}.current_decisions "
                f"WHERE {where} GROUP BY reason, currency ORDER BY reason, currency"
            )
            keys = ("reason",)
        out: dict[tuple, dict] = {}
        for row in self.client.query(sql).result_rows:
            group = tuple(row[: len(keys)])
            currency, granted_count, granted_cents, decisions = row[len(keys) :]
            record = out.setdefault(group, {**dict(zip(keys, group)), "granted_count": 0, "granted_cents": {},
                                            "decisions": 0})
            record["granted_count"] += int(granted_count)
            record["decisions"] += int(decisions)
            if granted_count:  # a currency with only denials or escalations in the group has no granted amount
                add_cents(record["granted_cents"], currency, granted_cents)
        return list(out.values())

    # Audit figures (the SQL side of `remedy-ledger verify`) -------------------------------------

    def _current(self, suffix: str = "") -> str:
        # Decisions not superseded by another decision, as a WHERE condition on the FINAL ledger.
        return (
            f"decision_id NOT IN (SELECT assumeNotNull(supersedes_decision_id) FROM "
            f"{self.database}.{DECISIONS_TABLE}{suffix} FINAL WHERE supersedes_decision_id IS NOT NULL)"
        )

    def figures(self, suffix: str = "") -> dict:
        """Every audit figure of projections.figures, computed by ClickHouse from the tables."""
        decisions = f"{self.database}.{DECISIONS_TABLE}{suffix} FINAL"
        postings = f"{self.database}.{POSTINGS_TABLE}{suffix} FINAL"
        current = self._current(suffix)
        rows = lambda sql: self.client.query(sql).result_rows
        figures: dict = {name: {} for name in FIGURE_NAMES}
        total, current_count = rows(f"SELECT count(), countIf({current}) FROM {decisions}")[0]
        figures["decisions"] = {"all": int(total), "current": int(current_count)}
        for outcome, reason, count in rows(
            f"SELECT outcome, arrayJoin(reason_codes) AS reason, count() FROM {decisions} WHERE {current} "
            "GROUP BY outcome, reason"
        ):
            figures["outcome_reasons"][f"{outcome}|{reason}"] = int(count)
        for *key, count, cents in rows(
            f"SELECT toString(toDate(decided_at)), customer_id, kind, incident_kind, origin, policy_version, "
            f"currency, count(), sum(granted_cents) FROM {decisions} WHERE outcome = 'GRANTED' AND {current} "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7"
        ):
            figures["granted_totals"]["|".join(key)] = [int(count), int(cents)]
        for role, associate, currency, count, cents in rows(
            f"SELECT 'requested', requested_by, currency, count(), sum(granted_cents) FROM {decisions} "
            f"WHERE outcome = 'GRANTED' AND requested_by NOT IN {NOT_ASSOCIATES_SQL} AND {current} GROUP BY 2, 3 "
            f"UNION ALL SELECT 'decided', decided_by, currency, count(), sum(granted_cents) FROM {decisions} "
            f"WHERE outcome = 'GRANTED' AND decided_by != 'policy' AND {current} GROUP BY 2, 3"
        ):
            figures["associate_grants"][f"{role}|{associate}|{currency}"] = [int(count), int(cents)]
        for account, currency, cents in rows(
            f"SELECT account, currency, sum(amount_cents) FROM {postings} GROUP BY account, currency"
        ):
            figures["account_balances"][f"{account}|{currency}"] = int(cents)
        for customer_id, currency, cents in rows(
            f"SELECT customer_id, currency, -sum(amount_cents) FROM {postings} "
            "WHERE account = 'customer_credit_balance' GROUP BY customer_id, currency"
        ):
            figures["customer_credit_balances"][f"{customer_id}|{currency}"] = int(cents)
        for role, count in rows(f"SELECT role, count() FROM {postings} GROUP BY role"):
            figures["posting_lines"][role] = int(count)
        figures["unbalanced_decisions"] = {
            f"{decision_id} ({currency})": int(cents)
            for decision_id, currency, cents in rows(
                f"SELECT decision_id, currency, sum(amount_cents) AS s FROM {postings} "
                "GROUP BY decision_id, currency HAVING s != 0 ORDER BY decision_id LIMIT 1000"
            )
        }
        return figures

    def audit_snapshot(self) -> dict:
        """How far the projector got and every audit figure, for `remedy-ledger verify`."""
        return {"positions": self.projected_positions(), "figures": self.figures(),
                "erased": sorted(self.erased_pseudonyms())}

    def projected_positions(self) -> dict[int, int]:
        """The highest decision-topic offset projected per partition (how far the projector got)."""
        result = self.client.query(
            f"SELECT source_partition, max(source_offset) FROM {self.database}.{DECISIONS_TABLE} GROUP BY 1"
        )
        return {int(p): int(o) for p, o in result.result_rows}

    # Finance views ----------------------------------------------------------------------------

    def customer(self, customer_id: str) -> dict:
        """One customer's decisions (current and superseded), outstanding credit and account totals."""
        db = self.database
        columns = ("decision_id", "request_id", "kind", "outcome", "granted_cents", "currency", "reason_codes",
                   "decided_at", "origin", "decided_by", "supersedes_decision_id", "items", "shipping_address_id",
                   "shipping_speed", "gift_message", "posting_date", "posting_mark", "current")
        decisions = [
            dict(zip(columns, row))
            for row in self.client.query(
                f"SELECT decision_id, request_id, kind, outcome, granted_cents, currency, reason_codes, "
                f"toString(decided_at), origin, decided_by, supersedes_decision_id, items_json, shipping_address_id, "
                f"shipping_speed, gift_message, toString(posting_date), posting_mark, {self._current()} "
                f"FROM {db}.{DECISIONS_TABLE} FINAL WHERE customer_id = {{c:String}} ORDER BY decided_at, decision_id",
                parameters={"c": customer_id},
            ).result_rows
        ]
        for decision in decisions:
            decision["current"] = bool(decision["current"])
            decision["granted_cents"] = int(decision["granted_cents"])
            decision["reason_codes"] = list(decision["reason_codes"])
            decision["items"] = json.loads(decision["items"]) if decision["items"] is not None else None
        accounts: dict[str, dict[str, int]] = {}
        for account, currency, cents in self.client.query(
            f"SELECT account, currency, sum(amount_cents) FROM {db}.{POSTINGS_TABLE} FINAL "
            "WHERE customer_id = {c:String} GROUP BY account, currency ORDER BY account, currency",
            parameters={"c": customer_id},
        ).result_rows:
            add_cents(accounts.setdefault(account, {}), currency, cents)
        # Outstanding credit is what the customer_credit_balance account owes: its credit side, per currency.
        credit = {currency: -cents for currency, cents in accounts.get("customer_credit_balance", {}).items()}
        return {"customer_id": customer_id, "credit_balance_cents": credit, "accounts": accounts,
                "decisions": decisions}

    def current_decision(self, request_id: str) -> dict | None:
        """The decision in force for a request (nothing supersedes it), or None when none is projected;
        with the request's facts (timestamps in ms) so a repeated request can be compared with it."""
        columns = ("decision_id", "request_id", "customer_id", "order_id", "incident_id", "kind", "outcome",
                   "requested_cents", "granted_cents", "currency", "reason_codes", "policy_version", "requested_by",
                   "requested_at", "decided_by", "items")
        rows = self.client.query(
            f"SELECT decision_id, request_id, customer_id, order_id, incident_id, kind, outcome, requested_cents, "
            f"granted_cents, currency, reason_codes, policy_version, requested_by, "
            f"toUnixTimestamp64Milli(requested_at), decided_by, items_json "
            f"FROM {self.database}.{DECISIONS_TABLE} FINAL WHERE request_id = {{r:String}} AND {self._current()} "
            "ORDER BY decided_at DESC, decision_id DESC LIMIT 1",
            parameters={"r": request_id},
        ).result_rows
        if not rows:
            return None
        found = dict(zip(columns, rows[0]))
        return {**found, "requested_cents": int(found["requested_cents"]), "granted_cents": int(found["granted_cents"]),
                "requested_at": int(found["requested_at"]), "reason_codes": list(found["reason_codes"]),
                "items": json.loads(found["items"]) if found["items"] is not None else None}

    def associates(self, since: date | None = None, until: date | None = None) -> list[dict]:
        """Current grants per associate, as requester and as decider, by kind; cents per currency;
        decided between two UTC days (inclusive). Only associates: never "customer" or "system"
        as requester, never "policy" as decider (as the view associate_grant_totals, migration 0007)."""
        out: dict[tuple, dict] = {}
        db, where = self.database, self._where(since, until)
        granted = "kind, currency, count() AS n, sum(granted_cents) AS cents"
        for role, associate_id, kind, currency, count, cents in self.client.query(
            f"SELECT role, associate_id, kind, currency, n, cents FROM ("
            f"SELECT 'requested' AS role, requested_by AS associate_id, {granted} "
            f"FROM {db}.current_decisions WHERE outcome = 'GRANTED' AND requested_by NOT IN {NOT_ASSOCIATES_SQL} "
            f"AND {where} GROUP BY associate_id, kind, currency "
            f"UNION ALL SELECT 'decided' AS role, decided_by AS associate_id, {granted} "
            f"FROM {db}.current_decisions WHERE outcome = 'GRANTED' AND decided_by != 'policy' AND {where} "
            f"GROUP BY associate_id, kind, currency) ORDER BY role DESC, associate_id, kind, currency"
        ).result_rows:
            record = out.setdefault((role, associate_id, kind), {
                "role": role, "associate_id": associate_id, "kind": kind, "granted_count": 0, "granted_cents": {}})
            record["granted_count"] += int(count)
            add_cents(record["granted_cents"], currency, cents)
        return list(out.values())

    def daily_granted(self, since: date | None = None, until: date | None = None,
                      kinds: tuple[str, ...] = REMEDY_KINDS) -> list[dict]:
        """Granted count and cents per currency, per day and kind (current decisions), for the chart."""
        rows = self.client.query(
            f"SELECT toString(toDate(decided_at)) AS day, kind, currency, count(), sum(granted_cents) "
            f"FROM {self.database}.current_decisions WHERE outcome = 'GRANTED' AND kind IN {{kinds:Array(String)}} "
            f"AND {self._where(since, until)} GROUP BY day, kind, currency ORDER BY day, kind, currency",
            parameters={"kinds": list(kinds)},
        ).result_rows
        out: dict[tuple, dict] = {}
        for day, kind, currency, count, cents in rows:
            record = out.setdefault((day, kind), {"day": day, "kind": kind, "granted_count": 0, "granted_cents": {}})
            record["granted_count"] += int(count)
            add_cents(record["granted_cents"], currency, cents)
        return list(out.values())

    def export(self, fmt: str, since: date | None = None, until: date | None = None) -> bytes:
        """The decision ledger (every decision, with `is_current`) as CSV or Parquet bytes, made by ClickHouse.

        CSV opens cleanly in a spreadsheet: a header row, NULL as an empty field, reason codes as one
        `;`-joined field. Every amount sits next to its own `currency` column.
        """
        if fmt not in EXPORT_FORMATS:
            raise InvariantViolation(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
        shown = {"reason_codes": f"arrayStringConcat(reason_codes, '{CSV_LIST_SEPARATOR}') AS reason_codes"}
        columns = ", ".join((shown.get(c, c) if fmt == "csv" else c) for c in DECISION_COLUMNS if c != "inputs")
        return self.client.raw_query(
            f"SELECT {columns}, toJSONString(inputs) AS inputs_json, {self._current()} AS is_current "
            f"FROM {self.database}.{DECISIONS_TABLE} FINAL WHERE {self._where(since, until)} "
            "ORDER BY decided_at, decision_id",
            fmt=EXPORT_FORMATS[fmt],
            settings=EXPORT_SETTINGS[fmt],
        )

    # Erasure (docs/privacy.md) ----------------------------------------------------------------------

    def erased_pseudonyms(self) -> frozenset[str]:
        """The pseudonyms of every erased customer."""
        rows = self.client.query(f"SELECT pseudonym FROM {self.database}.{ERASED_TABLE} FINAL").result_rows
        return frozenset(row[0] for row in rows)

    def erased_customers(self) -> list[dict]:
        """Every erasure: pseudonym, when, and the operator's reason, oldest first."""
        rows = self.client.query(
            f"SELECT pseudonym, toString(erased_at), reason FROM {self.database}.{ERASED_TABLE} FINAL "
            "ORDER BY erased_at, pseudonym").result_rows
        return [{"pseudonym": p, "erased_at": at, "reason": reason} for p, at, reason in rows]

    def erase_customer(self, customer_id: str, customer_pseudonym: str, reason: str) -> dict:
        """Record the erasure, then rewrite the customer's rows in every projection table (live and
        rebuild tables) to the erased form (streams/core/privacy.py erased_decision); rows per table.

        Recorded first, so every batch written from then on is pseudonymized; the rewrite runs again
        while a batch written meanwhile (by another projector on a server) still holds the id.
        """
        db = self.database
        if customer_pseudonym not in self.erased_pseudonyms():  # a repeat keeps the first record
            self.client.insert(f"{db}.{ERASED_TABLE}", [[customer_pseudonym, _now(), reason]],
                               column_names=["pseudonym", "erased_at", "reason"], settings={"async_insert": 0})
        rewritten: dict[str, int] = {}
        for _ in range(ERASE_PASSES_MAX):
            left = {table: self._rows_of(table, customer_id) for table in self._erasable_tables()}
            left = {table: count for table, count in left.items() if count}
            if not left:
                return {"pseudonym": customer_pseudonym, "rows_rewritten": rewritten}
            for table, count in left.items():
                self._rewrite(table, customer_id, customer_pseudonym)
                rewritten[table] = rewritten.get(table, 0) + count
        raise TransientError(f"erasure: rows of the customer still in {', '.join(sorted(left))} after "
                             f"{ERASE_PASSES_MAX} rewrites; run privacy erase again")

    def _erasable_tables(self) -> list[str]:
        """The tables that hold customer ids: 0001's frozen ledger, the live tables, any rebuild tables and
        the shadow policy's decisions (0010)."""
        names = {row[0] for row in self.client.query(f"SHOW TABLES FROM {self.database}").result_rows}
        wanted = ["decision_ledger", DECISIONS_TABLE, POSTINGS_TABLE,
                  DECISIONS_TABLE + REBUILD_SUFFIX, POSTINGS_TABLE + REBUILD_SUFFIX, "shadow_decisions"]
        return [table for table in wanted if table in names]

    def _rows_of(self, table: str, customer_id: str) -> int:
        return int(self.client.query(f"SELECT count() FROM {self.database}.{table} WHERE customer_id = {{c:String}}",
                                     parameters={"c": customer_id}).result_rows[0][0])

    def _rewrite(self, table: str, customer_id: str, customer_pseudonym: str) -> None:
        """One synchronous mutation to the erased form (streams/core/privacy.py erased_decision): the
        pseudonym for the id, also inside request, order and incident ids; no address id or note."""
        columns = {row[0] for row in self.client.query(f"DESCRIBE TABLE {self.database}.{table}").result_rows}
        assignments = ["customer_id = {p:String}"]
        assignments += [f"{column} = replaceAll({column}, {{c:String}}, {{p:String}})"
                        for column in ERASED_ID_FIELDS if column in columns]
        assignments += [f"{column} = NULL" for column in ERASED_NULL_COLUMNS if column in columns]
        self.client.command(
            f"ALTER TABLE {self.database}.{table} UPDATE {', '.join(assignments)} WHERE customer_id = {{c:String}}",
            parameters={"p": customer_pseudonym, "c": customer_id}, settings={"mutations_sync": 2})

    # Rebuild: fresh tables, catch up, exchange ----------------------------------------------------

    def rebuild_begin(self) -> None:
        """Create empty rebuild tables shaped like the live ones (dropping a crashed rebuild's leftovers)."""
        db = self.database
        for table in (DECISIONS_TABLE, POSTINGS_TABLE):
            # Fresh tables get fresh deduplication logs; reusing a table would drop re-sent tokens.
            self.client.command(f"DROP TABLE IF EXISTS {db}.{table}{REBUILD_SUFFIX} SYNC")
            self.client.command(f"CREATE TABLE {db}.{table}{REBUILD_SUFFIX} AS {db}.{table}")

    def _copy_after(self, source: str, target: str, positions: dict[int, int], key: str, token: str) -> int:
        # Rows the rebuild did not read (offsets past `positions`) that `source` holds and `target` lacks.
        db = self.database
        bound = "-1"
        for partition, offset in sorted(positions.items()):
            bound = f"if(source_partition = {int(partition)}, {int(offset)}, {bound})"
        before = int(self.client.command(f"SELECT count() FROM {db}.{target}"))
        self.client.command(
            f"INSERT INTO {db}.{target} SELECT * FROM {db}.{source} WHERE source_offset > {bound} "
            f"AND ({key}) NOT IN (SELECT {key} FROM {db}.{target})",
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )
        return int(self.client.command(f"SELECT count() FROM {db}.{target}")) - before

    def rebuild_swap(self, positions: dict[int, int], rebuild_id: str, started_at) -> dict:
        """Catch the rebuild tables up with rows projected meanwhile, exchange them in, drop the old ones."""
        from projections.figures import differences

        db, new = self.database, REBUILD_SUFFIX
        keys = {DECISIONS_TABLE: "decision_id", POSTINGS_TABLE: "decision_id, line"}
        caught_up = sum(
            self._copy_after(table, table + new, positions, key, f"catch-up/{rebuild_id}/{table}")
            for table, key in keys.items()
        )
        changed = differences(self.figures(), self.figures(new))
        self.client.command(
            f"EXCHANGE TABLES {db}.{DECISIONS_TABLE} AND {db}.{DECISIONS_TABLE}{new}, "
            f"{db}.{POSTINGS_TABLE} AND {db}.{POSTINGS_TABLE}{new}"
        )
        # On a server the worker may have inserted into the old tables between the catch-up and
        # the exchange; copy any such rows over (none in embedded mode: one thread does it all).
        caught_up += sum(
            self._copy_after(table + new, table, positions, key, f"late/{rebuild_id}/{table}")
            for table, key in keys.items()
        )
        for table in keys:
            self.client.command(f"DROP TABLE IF EXISTS {db}.{table}{new} SYNC")
        counts = {t: int(self.client.command(f"SELECT count() FROM {db}.{t} FINAL")) for t in keys}
        self.client.insert(
            f"{db}.projection_rebuilds",
            [[rebuild_id, started_at, _now(), counts[DECISIONS_TABLE], counts[POSTINGS_TABLE], caught_up, len(changed)]],
            column_names=["rebuild_id", "started_at", "finished_at", "decisions", "postings", "caught_up_rows",
                          "changed_figures"],
            settings={"async_insert": 0},
        )
        return {"rebuild_id": rebuild_id, "decisions": counts[DECISIONS_TABLE], "postings": counts[POSTINGS_TABLE],
                "caught_up_rows": caught_up, "changed_figures": changed[:50], "changed_figures_count": len(changed)}

    def rebuild_history(self) -> list[dict]:
        """Every finished rebuild, newest first."""
        keys = ("rebuild_id", "started_at", "finished_at", "decisions", "postings", "caught_up_rows", "changed_figures")
        return [
            dict(zip(keys, [str(v) if i in (1, 2) else v for i, v in enumerate(row)]))
            for row in self.client.query(
                f"SELECT {', '.join(keys)} FROM {self.database}.projection_rebuilds ORDER BY started_at DESC"
            ).result_rows
        ]


def _now() -> datetime:
    # The wall clock only stamps rebuild bookkeeping; no projected figure depends on it.
    return datetime.now(timezone.utc)
