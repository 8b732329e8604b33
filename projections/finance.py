"""Finance queries for people: fetch totals (from the running worker or straight from ClickHouse) and print them."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta

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


def associates(settings: Settings, since: str | None = None, until: str | None = None) -> list[dict]:
    """Current grants per associate (as requester and as decider) by kind, decided between two days."""
    since_day, until_day = parse_day(since, "--since"), parse_day(until, "--until")
    return _ask(settings, "/finance/associates", {"since": since, "until": until}, "associates", since_day, until_day)


def daily_granted(settings: Settings, since: str | None, until: str | None) -> list[dict]:
    """Granted count and cents per currency, per day and kind (every granted kind)."""
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


# The kinds the chart draws (every granted kind), with their colours and legend labels.
CHART_KINDS = {
    "CREDIT": ("#2f6db5", "credits"),
    "REFUND": ("#c0392b", "refunds"),
    "RESHIP": ("#e08a1e", "reshipments"),
    "SHIPPING_UPGRADE": ("#6c3483", "shipping upgrades"),
    "GIFT_WRAP": ("#1e8449", "gift wrap"),
}
# Above this many days, the number of grants is not written over the bars (they would overlap).
CHART_COUNTS_DAYS_MAX = 31
# The value axis reaches this times the highest day, so the legend never covers a bar.
CHART_HEADROOM = 1.25
# Up to this many days, every day has a tick on the date axis.
CHART_DAY_TICKS_DAYS_MAX = 14
# The figure's size in inches: fixed, so a year is as readable as a day (the date axis thins its labels).
CHART_SIZE_IN = (12, 4.5)


def chart_series(rows: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """What the chart draws: per currency, per kind, cents per day (a currency never shares an axis)."""
    series: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        for currency, cents in row["granted_cents"].items():
            by_day = series.setdefault(currency, {kind: {} for kind in CHART_KINDS}).setdefault(row["kind"], {})
            by_day[row["day"]] = by_day.get(row["day"], 0) + int(cents)
    return dict(sorted(series.items()))


def chart_data(rows: list[dict], since: str | None = None, until: str | None = None) -> dict:
    """Everything the chart shows, as data: the day range of its date axis (the asked period, else
    the first to the last day granted), its labels, and per currency a panel of cents per kind and day."""
    days = sorted({r["day"] for r in rows})
    first, last = since or (days[0] if days else None), until or (days[-1] if days else None)
    series = chart_series(rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["day"]] = counts.get(row["day"], 0) + row["granted_count"]
    span = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1 if first else 0
    return {
        "title": "Remedies granted per day (current decisions; each currency on its own axis)",
        "x_label": "day granted (UTC)",
        "first_day": first,
        "last_day": last,
        "days": span,
        "kinds": {kind: label for kind, (_, label) in CHART_KINDS.items()},
        "panels": [{"currency": currency, "y_label": f"amount granted ({currency})",
                    "cents": {kind: dict(sorted(by_day.items())) for kind, by_day in by_kind.items() if by_day}}
                   for currency, by_kind in series.items()],
        # Grants per day over every currency, written over the bars of a short single-currency chart.
        "counts": counts if len(series) == 1 and span <= CHART_COUNTS_DAYS_MAX else {},
    }


def chart(rows: list[dict], out_path: str, since: str | None = None, until: str | None = None) -> dict:
    """A PNG of every granted kind per day on a real date axis, one panel per currency, amounts as
    stacked bars; returns the chart's data (chart_data), which is exactly what was drawn."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    data = chart_data(rows, since, until)
    panels = data["panels"] or [{"currency": None, "y_label": "amount granted", "cents": {}}]
    width, height = CHART_SIZE_IN
    figure, panel_axes = plt.subplots(len(panels), 1, figsize=(width, 1 + height * len(panels)), dpi=110,
                                      squeeze=False, sharex=True)
    for axes, panel in zip(panel_axes[:, 0], panels):
        currency = panel["currency"]
        per_unit = 10 ** MINOR_UNIT_DIGITS.get(currency or "", 2)  # bars in whole units of the currency
        stacked: dict[str, float] = {}
        for kind, (colour, label) in CHART_KINDS.items():
            by_day = panel["cents"].get(kind)
            if not by_day:
                continue
            xs = [date.fromisoformat(day) for day in by_day]
            heights = [cents / per_unit for cents in by_day.values()]
            axes.bar(xs, heights, 0.8, bottom=[stacked.get(day, 0.0) for day in by_day], label=label, color=colour,
                     align="center")
            for day, value in zip(by_day, heights):
                stacked[day] = stacked.get(day, 0.0) + value
        for day, count in data["counts"].items():
            axes.annotate(str(count), (date.fromisoformat(day), stacked.get(day, 0.0)), ha="center", va="bottom",
                          fontsize=8, xytext=(0, 2), textcoords="offset points")
        if currency is not None:
            axes.yaxis.set_major_formatter(
                FuncFormatter(lambda value, _, currency=currency, per_unit=per_unit:
                              money_text(round(value * per_unit), currency)))
        axes.set_ylabel(panel["y_label"])
        axes.grid(axis="y", alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        if panel["cents"]:
            # Headroom above the highest day for the legend and the counts.
            axes.set_ylim(0, max(stacked.values()) * CHART_HEADROOM)
            axes.legend(frameon=False, ncol=len(panel["cents"]), loc="upper left")
    bottom = panel_axes[-1, 0]
    if data["first_day"]:
        # Half a day of margin each side (bars are centred on their day): one day is a readable bar.
        half_day = timedelta(hours=12)
        bottom.set_xlim(datetime.fromisoformat(data["first_day"]) - half_day,
                        datetime.fromisoformat(data["last_day"]) + half_day)
    # A tick per day for short periods (never hours); for longer ones, 5 to 12 ticks the locator picks.
    short = data["days"] <= CHART_DAY_TICKS_DAYS_MAX
    locator = mdates.DayLocator() if short else mdates.AutoDateLocator(minticks=5, maxticks=12)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d") if short else mdates.ConciseDateFormatter(locator))
    bottom.set_xlabel(data["x_label"])
    note = "; number of grants above each day" if data["counts"] else ""
    panel_axes[0, 0].set_title(data["title"] + note)
    if not data["panels"]:
        panel_axes[0, 0].text(0.5, 0.5, "no remedies granted in this period", ha="center",
                              transform=panel_axes[0, 0].transAxes)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)
    return data
