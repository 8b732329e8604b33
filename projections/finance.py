"""Finance queries for people: fetch totals (from the running worker or straight from ClickHouse) and print them."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from projections.rows import OUTCOMES
from projections.store import Store, parse_day
from streams.errors import InvariantViolation, TransientError
from streams.settings import Settings

# How long the CLI waits for the worker to answer a finance query.
WORKER_QUERY_TIMEOUT_S = 30


def _from_worker(settings: Settings, path: str, params: dict) -> dict | None:
    """Ask the running worker; None when no worker listens (the caller opens the store itself)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{settings.worker_url}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=WORKER_QUERY_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        raise InvariantViolation(body.get("error", f"worker answered HTTP {error.code}")) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _direct(settings: Settings) -> Store:
    try:
        store = Store(settings.clickhouse_dsn, settings.clickhouse_database, settings.clickhouse_attempts_max)
    except Exception as error:  # chDB raises a bare RuntimeError when another process owns the path.
        if settings.embedded_clickhouse:
            raise TransientError(
                f"cannot open embedded ClickHouse at {settings.clickhouse_dsn}: {error}; another process "
                f"owns it but no worker answers at {settings.worker_url}"
            ) from None
        raise
    store.migrate()
    return store


def totals(settings: Settings, since: str | None, until: str | None, by: str | None) -> dict:
    """Finance totals: from the worker when one runs (it owns embedded ClickHouse), else directly."""
    since_day, until_day = parse_day(since, "--since"), parse_day(until, "--until")
    if settings.embedded_clickhouse:
        answer = _from_worker(settings, "/finance/totals", {"since": since, "until": until, "by": by})
        if answer is not None:
            return answer
    store = _direct(settings)
    try:
        return store.totals(since_day, until_day, by)
    finally:
        store.close()


def decision_count(settings: Settings) -> int:
    """Distinct decisions projected so far."""
    if settings.embedded_clickhouse:
        answer = _from_worker(settings, "/finance/decision-count", {})
        if answer is not None:
            return int(answer["decisions"])
    store = _direct(settings)
    try:
        return store.decision_count()
    finally:
        store.close()


def dollars(cents: int) -> str:
    """Cents shown as a dollar amount for people (JSON output stays in integer cents)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}${whole:,}.{part:02d}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_totals(result: dict) -> str:
    """A human-readable view of a totals result."""
    span = f"{result.get('since') or 'beginning'} .. {result.get('until') or 'now'}"
    parts = [f"Remedy totals, {span} (UTC days)", ""]
    kind_rows = [[kind, str(v["count"]), dollars(v["cents"])] for kind, v in result["by_kind"].items()]
    kind_rows.append(["TOTAL granted", str(result["granted"]["count"]), dollars(result["granted"]["cents"])])
    parts += [_table(["granted kind", "count", "amount"], kind_rows), ""]
    outcome_rows = [[o, str(result["by_outcome"].get(o, 0))] for o in OUTCOMES]
    parts += [_table(["outcome", "decisions"], outcome_rows)]
    if result.get("rows") is not None:
        by = result["by"]
        keys = ["day", "kind"] if by == "day" else [by]
        rows = [
            [*(str(r[k]) for k in keys), str(r["decisions"]), str(r["granted_count"]), dollars(r["granted_cents"])]
            for r in result["rows"]
        ]
        parts += ["", _table([*keys, "decisions", "granted", "granted amount"], rows)]
    return "\n".join(parts)
