"""Keyed pseudonyms for erased customers (pure): what a customer id becomes after `privacy erase`.

Pure module: the secret key arrives as an argument (the shell reads it from REMEDY_PRIVACY_KEY_FILE).
A pseudonym is "erased:" and the first 32 hex digits (128 bits) of HMAC-SHA256(key, "customer:" + id):
the same customer always gets the same pseudonym under one key, nobody without the key can tell
which customer a pseudonym stands for or confirm a guess, and the key never leaves the worker.
docs/privacy.md describes what is erased where, and what is not.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from streams.core.inbound import id_problem, text_problem

PSEUDONYM_PREFIX = "erased:"
# 32 hex digits = 128 bits: collisions between customers are out of reach (2^64 customers for even odds).
PSEUDONYM_HEX_CHARS = 32
# A key shorter than this is guessable; the generated one has 64 hex characters (256 bits).
PRIVACY_KEY_BYTES_MIN = 32
# The ids of a decision that may embed its customer's id; an erasure rewrites them (erased_id).
ERASED_ID_FIELDS = ("request_id", "order_id", "incident_id")


def pseudonym(key: bytes, customer_id: str) -> str:
    """The pseudonym of a customer id under `key`: "erased:" + 32 hex digits of a keyed HMAC-SHA256."""
    if len(key) < PRIVACY_KEY_BYTES_MIN:
        raise ValueError(f"privacy key: {len(key)} bytes, at least {PRIVACY_KEY_BYTES_MIN} needed")
    digest = hmac.new(key, b"customer:" + customer_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def is_pseudonym(text: str) -> bool:
    """True when `text` has the shape of a pseudonym (an erased customer's id in projections and state)."""
    digits = text[len(PSEUDONYM_PREFIX):]
    return (text.startswith(PSEUDONYM_PREFIX) and len(digits) == PSEUDONYM_HEX_CHARS
            and all(c in "0123456789abcdef" for c in digits))


def erased_id(text: str | None, customer_id: str, customer_pseudonym: str) -> str | None:
    """An id of an erased customer's record with every occurrence of the customer id replaced by its
    pseudonym: the service's proactive request ids embed it ("proactive:<incident>:<customer>:<kind>"),
    and upstream ids often do ("req-<customer>-3"). Applied only to the erased customer's own
    records, the same way everywhere (projections, household and associate state), so every id of
    that customer still names the same thing as every other of its ids."""
    if text is None or not customer_id:
        return text
    return text.replace(customer_id, customer_pseudonym)


def erased_decision(decision: dict[str, Any], customer_pseudonym: str) -> dict[str, Any]:
    """A RemedyDecided datum as projections keep it for an erased customer: the pseudonym for the
    customer id (also inside its request, order and incident ids), no household or destination
    (address) id, no free-text note or gift message; money, kinds, outcomes, reason codes, items,
    dates and decision ids stay."""
    customer_id = decision["customer_id"]
    return {
        **decision,
        "customer_id": customer_pseudonym,
        **{name: erased_id(decision.get(name), customer_id, customer_pseudonym)
           for name in ERASED_ID_FIELDS},
        "household_id": None,
        "note": None,
        "shipping_address_id": None,
        "gift_message": None,
    }


@dataclass(frozen=True)
class Erasure:
    """The erased customers (as pseudonyms) under one key: maps decisions of those customers to
    their erased form and leaves every other decision untouched."""

    key: bytes = field(repr=False, default=b"")
    pseudonyms: frozenset[str] = frozenset()

    def pseudonym_of(self, customer_id: str) -> str | None:
        """The customer's pseudonym if the customer was erased, else None."""
        if not self.pseudonyms or is_pseudonym(customer_id):
            return None
        candidate = pseudonym(self.key, customer_id)
        return candidate if candidate in self.pseudonyms else None

    def decision(self, decision: dict[str, Any]) -> dict[str, Any]:
        """The decision as projections keep it (erased form for an erased customer)."""
        found = self.pseudonym_of(decision["customer_id"])
        return decision if found is None else erased_decision(decision, found)


def erasure_request_problems(customer_id: object, reason: object) -> list[str]:
    """Why an erasure request cannot be carried out, each naming its field; empty when it can."""
    problems = []
    if not isinstance(customer_id, str):
        problems.append("field 'customer_id': required, a string")
    elif id_problem(customer_id):
        problems.append(f"field 'customer_id': {id_problem(customer_id)}")
    elif is_pseudonym(customer_id):
        problems.append("field 'customer_id': already a pseudonym; erase the customer by its id")
    if not isinstance(reason, str) or not reason.strip():
        problems.append("field 'reason': required, why the customer is erased (never the customer's name or id)")
    elif text_problem(reason):
        problems.append(f"field 'reason': {text_problem(reason)}")
    return problems
