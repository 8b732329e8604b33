"""Money as people read it: each amount with its own currency, and finance views that never mix two."""

from __future__ import annotations

import pytest

from projections.finance import chart_series, render_associates, render_customer, render_totals
from streams.core.money import add_cents, merged_cents, money_lines, money_text


@pytest.mark.parametrize("cents, currency, text", [
    (1500, "USD", "$15.00"),
    (1500, "EUR", "€15.00"),
    (-399, "GBP", "-£3.99"),
    (123456789, "USD", "$1,234,567.89"),
    (1500, "CHF", "15.00 CHF"),
    (1500, "JPY", "1,500 JPY"),
    (1500, "KWD", "1.500 KWD"),
    (5, "EUR", "€0.05"),
    (0, "USD", "$0.00"),
])
def test_an_amount_is_written_in_its_own_currency(cents, currency, text):
    assert money_text(cents, currency) == text


def test_per_currency_sums_only_add_a_currency_to_itself():
    total = add_cents({}, "USD", 4500)
    add_cents(total, "EUR", 1500)
    add_cents(total, "USD", 1)
    assert total == {"USD": 4501, "EUR": 1500}
    assert merged_cents([{"USD": 1, "EUR": 2}, {"EUR": 3}, {}]) == {"EUR": 5, "USD": 1}
    assert money_lines({"USD": 4501, "EUR": 1500}) == ["€15.00", "$45.01"]
    assert money_lines({}) == []


def totals_with(by_kind: dict, rows: list[dict] | None = None) -> dict:
    """A `finance totals` result as Store.totals answers it."""
    result = {"since": "2026-11-22", "until": "2026-11-22", "by_kind": by_kind,
              "by_outcome": {"GRANTED": 4, "DENIED": 0, "ESCALATED": 0},
              "granted": {"count": sum(v["count"] for v in by_kind.values()),
                          "cents": merged_cents(v["cents"] for v in by_kind.values())},
              "decisions": 4}
    if rows is not None:
        result.update(by="day", rows=rows)
    return result


def test_totals_print_each_currency_on_its_own_line_with_its_symbol():
    text = render_totals(totals_with({
        "CREDIT": {"count": 3, "cents": {"EUR": 1500, "USD": 4500}},
        "REFUND": {"count": 1, "cents": {"USD": 399}},
        "RESHIP": {"count": 0, "cents": {}},
    }, rows=[{"day": "2026-11-22", "kind": "CREDIT", "decisions": 3, "granted_count": 3,
              "granted_cents": {"EUR": 1500, "USD": 4500}}]))
    lines = text.splitlines()
    credit = next(i for i, line in enumerate(lines) if line.startswith("CREDIT"))
    assert lines[credit].split()[-2:] == ["3", "€15.00"] and lines[credit + 1].split() == ["$45.00"]
    total = next(i for i, line in enumerate(lines) if line.startswith("TOTAL granted"))
    assert lines[total].split()[-2:] == ["4", "€15.00"] and lines[total + 1].split() == ["$48.99"]
    assert next(line for line in lines if line.startswith("RESHIP")).split() == ["RESHIP", "0", "-"]
    assert "$60.00" not in text and "$63.99" not in text and "$15.00" not in text  # no mixed sum, no € shown as $
    day = next(i for i, line in enumerate(lines) if line.startswith("2026-11-22"))
    assert lines[day].split()[-1] == "€15.00" and lines[day + 1].split() == ["$45.00"]


def test_a_customer_page_shows_credit_and_accounts_in_their_currencies():
    text = render_customer({
        "customer_id": "c-eu", "credit_balance_cents": {"EUR": 1500},
        "accounts": {"customer_credit_balance": {"EUR": -1500}, "remedy_expense:credit": {"EUR": 1500}},
        "decisions": [{"decided_at": "2026-11-22 10:00:00.000", "decision_id": "dec-1", "kind": "CREDIT",
                       "outcome": "GRANTED", "granted_cents": 1500, "currency": "EUR", "reason_codes": ["WITHIN_LIMITS"],
                       "current": True}],
    })
    assert "outstanding credit €15.00" in text
    assert any(line.split() == ["customer_credit_balance", "-€15.00"] for line in text.splitlines())
    assert "$" not in text


def test_associates_print_one_line_per_currency():
    text = render_associates([{"role": "requested", "associate_id": "assoc-1", "kind": "CREDIT", "granted_count": 2,
                               "granted_cents": {"EUR": 1500, "USD": 500}}])
    lines = text.splitlines()
    assert lines[2].split() == ["requested", "assoc-1", "CREDIT", "2", "€15.00"] and lines[3].split() == ["$5.00"]


def test_the_chart_draws_each_currency_on_its_own_axis():
    rows = [{"day": "2026-11-22", "kind": "CREDIT", "granted_count": 2, "granted_cents": {"EUR": 1500, "USD": 500}},
            {"day": "2026-11-23", "kind": "RESHIP", "granted_count": 1, "granted_cents": {"USD": 2000}}]
    empty = {"REFUND": {}, "SHIPPING_UPGRADE": {}, "GIFT_WRAP": {}}
    assert chart_series(rows) == {
        "EUR": {"CREDIT": {"2026-11-22": 1500}, "RESHIP": {}, **empty},
        "USD": {"CREDIT": {"2026-11-22": 500}, "RESHIP": {"2026-11-23": 2000}, **empty},
    }


def test_the_chart_file_is_written_for_two_currencies_and_for_none(tmp_path):
    from projections.finance import chart

    rows = [{"day": "2026-11-22", "kind": "CREDIT", "granted_count": 2, "granted_cents": {"EUR": 1500, "USD": 500}}]
    chart(rows, str(tmp_path / "two.png"))
    chart([], str(tmp_path / "none.png"))
    assert (tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "none.png").stat().st_size > 0


def test_the_chart_data_spans_the_asked_days_and_counts_grants_only_for_one_currency_and_a_month_at_most():
    from projections.finance import CHART_COUNTS_DAYS_MAX, chart_data

    rows = [{"day": "2026-11-02", "kind": "REFUND", "granted_count": 3, "granted_cents": {"USD": 900}},
            {"day": "2026-11-09", "kind": "CREDIT", "granted_count": 1, "granted_cents": {"USD": 100}}]
    data = chart_data(rows)
    assert (data["first_day"], data["last_day"], data["days"]) == ("2026-11-02", "2026-11-09", 8)  # the gap counts
    assert data["counts"] == {"2026-11-02": 3, "2026-11-09": 1}
    assert data["panels"] == [{"currency": "USD", "y_label": "amount granted (USD)",
                               "cents": {"CREDIT": {"2026-11-09": 100}, "REFUND": {"2026-11-02": 900}}}]
    month = chart_data(rows, "2026-11-01", "2026-12-01")
    assert month["days"] == CHART_COUNTS_DAYS_MAX and month["counts"]
    longer = chart_data(rows, "2026-11-01", "2026-12-02")
    assert longer["days"] == CHART_COUNTS_DAYS_MAX + 1 and longer["counts"] == {}
    two = chart_data(rows + [{"day": "2026-11-02", "kind": "CREDIT", "granted_count": 1, "granted_cents": {"EUR": 5}}])
    assert two["counts"] == {} and [p["currency"] for p in two["panels"]] == ["EUR", "USD"]
