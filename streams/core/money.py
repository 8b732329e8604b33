"""Money for people (pure): integer minor units ("cents") with their currency, and sums kept apart by currency.

The one place an amount becomes text. No function here ever adds two currencies together: a sum
of amounts is a mapping from currency to cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Symbols written before the amount; any other currency is written as "15.00 CHF".
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
# ISO 4217 minor units of the currencies that do not have two; every other currency has two.
MINOR_UNIT_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def money_text(cents: int, currency: str) -> str:
    """An amount in minor units as people read it: "$15.00", "€15.00", "-£3.99", "1,500 JPY", "15.00 CHF"."""
    digits = MINOR_UNIT_DIGITS.get(currency, 2)
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 10**digits)
    number = f"{whole:,}" + (f".{part:0{digits}d}" if digits else "")
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def money_lines(cents_by_currency: Mapping[str, int]) -> list[str]:
    """One text per currency of a per-currency sum, in currency order; empty when nothing was summed."""
    return [money_text(cents, currency) for currency, cents in sorted(cents_by_currency.items())]


def add_cents(cents_by_currency: dict[str, int], currency: str, cents: int) -> dict[str, int]:
    """Add an amount to a per-currency sum in place (and return it): only amounts of the same currency meet."""
    cents_by_currency[currency] = cents_by_currency.get(currency, 0) + int(cents)
    return cents_by_currency


def merged_cents(sums: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Several per-currency sums as one, each currency added only to itself, keys in currency order."""
    total: dict[str, int] = {}
    for cents_by_currency in sums:
        for currency, cents in cents_by_currency.items():
            add_cents(total, currency, cents)
    return dict(sorted(total.items()))
