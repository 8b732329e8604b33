"""The balanced ledger (pure): a decision, and the decision it supersedes, as double-entry postings.

Every posting moves integer cents on a named account: a positive amount is a debit, a negative
amount a credit. The postings of one decision always sum to zero. A GRANTED decision posts its
grant (an expense or cost debited against what the company now owes); DENIED and ESCALATED post
nothing. A decision that supersedes an earlier one first reverses the earlier decision's grant
with compensating postings (nothing is ever updated or deleted), then posts its own grant.

No I/O here: no clock, environment, Kafka or ClickHouse; replaying the log gives the same postings.
"""

from __future__ import annotations

from dataclasses import dataclass

# (debit account, credit account) of a granted remedy of each kind.
GRANT_ACCOUNTS: dict[str, tuple[str, str]] = {
    "CREDIT": ("remedy_expense:credit", "customer_credit_balance"),
    "REFUND": ("remedy_expense:refund", "refunds_payable"),
    "RESHIP": ("reshipment_cost", "fulfilment_payable"),
    "SHIPPING_UPGRADE": ("remedy_expense:shipping_upgrade", "fulfilment_payable"),
    "GIFT_WRAP": ("remedy_expense:gift_wrap", "fulfilment_payable"),
}
# A kind this code does not know yet (an old reader meeting a new enum symbol reads UNKNOWN):
# still balanced, and visible on its own accounts so finance notices.
UNKNOWN_KIND_ACCOUNTS = ("remedy_expense:unclassified", "remedies_payable:unclassified")
ACCOUNTS = tuple(sorted({a for pair in GRANT_ACCOUNTS.values() for a in pair} | set(UNKNOWN_KIND_ACCOUNTS)))
ROLE_GRANT = "grant"
ROLE_REVERSAL = "reversal"


@dataclass(frozen=True)
class Posting:
    """One line of a decision's postings: cents on an account (debit > 0, credit < 0)."""

    decision_id: str
    line: int
    account: str
    amount_cents: int
    currency: str
    role: str
    # The decision whose grant this line posts: the decision itself, or the superseded one.
    source_decision_id: str


def _grant_lines(decision: dict, sign: int, role: str) -> list[tuple[str, int, str, str, str]]:
    if decision["outcome"] != "GRANTED" or decision["granted_cents"] == 0:
        return []
    cents = int(decision["granted_cents"])
    debit, credit = GRANT_ACCOUNTS.get(decision["kind"], UNKNOWN_KIND_ACCOUNTS)
    return [
        (debit, sign * cents, decision["currency"], role, decision["decision_id"]),
        (credit, -sign * cents, decision["currency"], role, decision["decision_id"]),
    ]


def postings_for(decision: dict, superseded: dict | None = None) -> list[Posting]:
    """The postings of a decision: the reversal of the superseded decision's grant, then its own grant."""
    if decision.get("supersedes_decision_id") and superseded is not None:
        if superseded["decision_id"] != decision["supersedes_decision_id"]:
            raise ValueError(
                f"{decision['decision_id']} supersedes {decision['supersedes_decision_id']}, "
                f"not {superseded['decision_id']}"
            )
    lines = []
    if superseded is not None:
        lines += _grant_lines(superseded, -1, ROLE_REVERSAL)
    lines += _grant_lines(decision, 1, ROLE_GRANT)
    return [
        Posting(decision["decision_id"], number, account, cents, currency, role, source)
        for number, (account, cents, currency, role, source) in enumerate(lines)
    ]


def balance_by_currency(postings: list[Posting]) -> dict[str, int]:
    """The sum of the postings per currency: all zeros when the postings balance."""
    sums: dict[str, int] = {}
    for posting in postings:
        sums[posting.currency] = sums.get(posting.currency, 0) + posting.amount_cents
    return sums
