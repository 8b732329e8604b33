"""Finance queries for people: fetch totals (from the running worker or straight from ClickHouse) and print them."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from projections.rows import OUTCOMES
from projections.store import Store, parse_day
from streams.core.money import MINOR_UNIT_DIGITS, money_lines, money_text
from streams.redaction import redacted_url
from streams.errors import InvariantViolation, TransientError
from streams.runtime.settings import Settings

# How long the CLI waits for the worker to answer a finance query.
WORKER_QUERY_TIMEOUT_S = 30


def _authorized(settings: Settings, url: str, method: str = "GET") -> urllib.request.Request:
    """A request to the worker carrying REMEDY_HTTP_TOKEN (when set) as a bearer token."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if settings.http_token:
        request.add_header("Authorization", f"Bearer {settings.http_token}")
    return request


def _from_worker(settings: Settings, path: str, params: dict) -> dict | None:
    """Ask the running worker; None when no worker listens (the caller opens the store itself)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{settings.worker_url}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(_authorized(settings, url), timeout=WORKER_QUERY_TIMEOUT_S) as response:
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
                f"cannot open embedded ClickHouse at {redacted_url(settings.clickhouse_dsn)}: {error}; another process "
                f"owns it but no worker answers at {settings.worker_url}"
            ) from None
        raise
    store.migrate()
    return store


def totals(settings: Settings, since: str | None, until: str | None, by: str | None,
           dates: str = "posting") -> dict:
    """Finance totals: from the worker when one runs (it owns embedded ClickHouse), else directly;
    days are posting dates, or event dates with dates="event"."""
    since_day, until_day = parse_day(since, "--since"), parse_day(until, "--until")
    if settings.embedded_clickhouse:
        answer = _from_worker(settings, "/finance/totals", {"since": since, "until": until, "by": by, "dates": dates})
        if answer is not None:
            return answer
    store = _direct(settings)
    try:
        return store.totals(since_day, until_day, by, dates)
    finally:
        store.close()


def close_period(settings: Settings, period: str, closed_by: str) -> dict:
    """Close a month: through the worker when one answers (it projects, so no batch is half written
    when the offsets are taken), else directly, then the PeriodClosed goes on the finance-periods topic."""
    answer = _worker_request(settings, "/finance/close-period", {"period": period, "by": closed_by}, "POST")
    if answer is not None:
        return json.loads(answer)
    import time

    import schemas
    from streams.runtime.kafka_io import Publisher, topic_names

    store = _direct(settings)
    try:
        event = store.close_period(period, closed_by, int(time.time() * 1000))  # the shell's clock, shown only
    finally:
        store.close()
    with Publisher(settings) as publisher:
        publisher.publish_raw(topic_names(settings).periods, period.encode(), schemas.encode("PeriodClosed", event))
    return event


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


def _money_rows(cells: list[str], cents_by_currency: dict[str, int]) -> list[list[str]]:
    """Table rows of one figure: its cells and the first currency's amount, then one line per further
    currency with the other cells blank; "-" when nothing was summed."""
    amounts = money_lines(cents_by_currency) or ["-"]
    return [[*cells, amounts[0]]] + [["" for _ in cells] + [amount] for amount in amounts[1:]]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_totals(result: dict) -> str:
    """A human-readable view of a totals result."""
    span = f"{result.get('since') or 'beginning'} .. {result.get('until') or 'now'}"
    basis = "event dates" if result.get("dates") == "event" else "posting dates"
    late = f"; {result['late_postings']} with LATE_POSTING" if result.get("late_postings") else ""
    parts = [f"Remedy totals, {span} (UTC days, by {basis}{late})", ""]
    kind_rows = [row for kind, v in result["by_kind"].items() for row in _money_rows([kind, str(v["count"])], v["cents"])]
    kind_rows += _money_rows(["TOTAL granted", str(result["granted"]["count"])], result["granted"]["cents"])
    parts += [_table(["granted kind", "count", "amount"], kind_rows), ""]
    outcome_rows = [[o, str(result["by_outcome"].get(o, 0))] for o in OUTCOMES]
    parts += [_table(["outcome", "decisions"], outcome_rows)]
    if result.get("rows") is not None:
        by = result["by"]
        keys = ["day", "kind"] if by == "day" else [by]
        rows = [
            row for r in result["rows"]
            for row in _money_rows([*(str(r[k]) for k in keys), str(r["decisions"]), str(r["granted_count"])],
                                   r["granted_cents"])
        ]
        parts += ["", _table([*keys, "decisions", "granted", "granted amount"], rows)]
    return "\n".join(parts)


def _worker_request(settings: Settings, path: str, params: dict, method: str = "GET") -> bytes | None:
    """Raw answer of the running worker; None when no worker listens."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{settings.worker_url}{path}" + (f"?{query}" if query else "")
    request = _authorized(settings, url, method)
    try:
        with urllib.request.urlopen(request, timeout=WORKER_QUERY_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        raise InvariantViolation(body.get("error", f"worker answered HTTP {error.code}")) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _ask(settings: Settings, path: str, params: dict, method: str, *args, raw: bool = False):
    """Ask the worker when it owns embedded ClickHouse, else call Store.method(*args) directly."""
    if settings.embedded_clickhouse:
        answer = _worker_request(settings, path, params)
        if answer is not None:
            return answer if raw else json.loads(answer)
    store = _direct(settings)
    try:
        return getattr(store, method)(*args)
    finally:
        store.close()


def customer(settings: Settings, customer_id: str) -> dict:
    """One customer's decisions, outstanding credit and account totals."""
    return _ask(settings, "/finance/customer", {"id": customer_id}, "customer", customer_id)


def associates(settings: Settings) -> list[dict]:
    """Current grants per associate (as requester and as decider) by kind."""
    return _ask(settings, "/finance/associates", {}, "associates")


def daily_granted(settings: Settings, since: str | None, until: str | None) -> list[dict]:
    """Granted credits and reshipments per day (count and cents)."""
    since_day, until_day = parse_day(since, "--since"), parse_day(until, "--until")
    return _ask(settings, "/finance/daily", {"since": since, "until": until}, "daily_granted", since_day, until_day)


def export(settings: Settings, fmt: str, since: str | None, until: str | None) -> bytes:
    """The decision ledger as CSV or Parquet bytes."""
    since_day, until_day = parse_day(since, "--since"), parse_day(until, "--until")
    return _ask(settings, "/finance/export", {"format": fmt, "since": since, "until": until}, "export",
                fmt, since_day, until_day, raw=True)


def audit_snapshot(settings: Settings) -> dict:
    """How far the projector got and every audit figure (for verify)."""
    return _ask(settings, "/projections/audit", {}, "audit_snapshot")


def render_customer(result: dict) -> str:
    """A customer's page for people."""
    credit = ", ".join(money_lines(result["credit_balance_cents"])) or "none"
    parts = [f"Customer {result['customer_id']}: outstanding credit {credit}", ""]
    rows = [[d["decided_at"][:19], d["decision_id"][:16], d["kind"], d["outcome"],
             money_text(d["granted_cents"], d["currency"]),
             ",".join(d["reason_codes"]), detail_text(d), f"{d.get('posting_date') or ''} {d.get('posting_mark') or ''}".strip(),
             "" if d["current"] else "superseded"]
            for d in result["decisions"]]
    parts.append(_table(["decided at (UTC)", "decision", "kind", "outcome", "granted", "reasons", "what, where",
                         "posted", ""], rows) if rows else "no decisions")
    if result["accounts"]:
        parts += ["", _table(["account", "balance (debit +)"],
                             [row for account, cents in result["accounts"].items()
                              for row in _money_rows([account], cents)])]
    return "\n".join(parts)


def detail_text(decision: dict) -> str:
    """What a decision covers, for people: "scarf x1, book x2 -> addr-9 EXPRESS, gift-wrapped"
    ("whole order" when it names no items; the destination only for goods that ship)."""
    items = decision.get("items")
    what = "whole order" if items is None else ", ".join(f"{i['sku']} x{i['quantity']}" for i in items)
    if not decision.get("shipping_address_id"):
        return what if items is not None else ""
    where = f"{what} -> {decision['shipping_address_id']} {decision.get('shipping_speed') or 'STANDARD'}"
    return where + (", gift-wrapped" if decision.get("gift_message") is not None else "")


def render_associates(rows: list[dict]) -> str:
    """Associate grant totals for people."""
    if not rows:
        return "no grants requested or decided by associates"
    return _table(["role", "associate", "kind", "grants", "amount"],
                  [row for r in rows
                   for row in _money_rows([r["role"], r["associate_id"], r["kind"], str(r["granted_count"])],
                                          r["granted_cents"])])


# The kinds the chart draws, with their colours and legend labels.
CHART_KINDS = {"CREDIT": ("#2f6db5", "credits granted"), "RESHIP": ("#e08a1e", "reshipments granted")}


def chart_series(rows: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """What the chart draws: per currency, per kind, cents per day (a currency never shares an axis)."""
    series: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        for currency, cents in row["granted_cents"].items():
            by_day = series.setdefault(currency, {kind: {} for kind in CHART_KINDS}).setdefault(row["kind"], {})
            by_day[row["day"]] = by_day.get(row["day"], 0) + int(cents)
    return dict(sorted(series.items()))


def chart(rows: list[dict], out_path: str) -> None:
    """A PNG of granted credits and reshipments per day, one panel per currency: amounts as bars; with
    one currency, the number of grants is written above each bar."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    days = sorted({r["day"] for r in rows})
    series = chart_series(rows)
    # A (day, kind) count covers every currency, so it is written on the bars only when there is one.
    counts = {(r["day"], r["kind"]): r["granted_count"] for r in rows} if len(series) == 1 else {}
    panels = max(1, len(series))
    figure, panel_axes = plt.subplots(panels, 1, figsize=(max(8, 0.6 * len(days) + 4), 1 + 4 * panels), dpi=120,
                                      squeeze=False)
    width = 0.4
    for axes, (currency, by_kind) in zip(panel_axes[:, 0], series.items()):
        per_unit = 10 ** MINOR_UNIT_DIGITS.get(currency, 2)  # bars in whole units of the currency
        for index, (kind, (colour, label)) in enumerate(CHART_KINDS.items()):
            xs = [i + (index - 0.5) * width for i in range(len(days))]
            cents = [by_kind.get(kind, {}).get(day, 0) for day in days]
            bars = axes.bar(xs, [c / per_unit for c in cents], width, label=label, color=colour)
            for bar, day in zip(bars, days):
                if counts.get((day, kind)):
                    axes.annotate(f"{counts[(day, kind)]}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                  ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        axes.set_xticks(range(len(days)), days, rotation=45 if len(days) > 7 else 0,
                        ha="right" if len(days) > 7 else "center")
        axes.yaxis.set_major_formatter(
            FuncFormatter(lambda value, _, currency=currency, per_unit=per_unit:
                          money_text(round(value * per_unit), currency)))
        axes.set_ylabel(f"amount granted ({currency})")
        axes.grid(axis="y", alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        axes.legend(frameon=False)
    first = panel_axes[0, 0]
    note = "; number of grants above each bar" if counts else ""
    first.set_title(f"Remedies granted per day (current decisions, each currency on its own axis{note})")
    if not days:
        first.text(0.5, 0.5, "no credits or reshipments granted in this period", ha="center", transform=first.transAxes)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
