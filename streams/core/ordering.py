"""The order in which household and associate scopes judge checks, and the watermarks that let
them judge in that order (pure).

Every check carries an order key: (where its customer's partition stood in the log when the check
was made: the newest record timestamp, the customer id, the customer's check number). Each
partition that sends checks also sends, after them, a PROGRESS watermark: no later check from it has a smaller key. A scope
partition judges a check only once every source's watermark is past its key, so it judges in key
order, whatever the timing of the partitions: a replay of the same log decides the same, with or
without crashes, with one or more workers (docs/decisions.md, "Order across partitions").
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

Key = tuple[int, str, int]

# Smaller than every key: a source not heard from yet holds everything back.
MIN_KEY: Key = (-1, "", 0)
# Larger than every key: a source with nothing left to send (idle, caught up, nothing in flight).
IDLE_MS = 1 << 62
IDLE_KEY: Key = (IDLE_MS, "", 0)


def order_key(check: dict[str, Any]) -> Key:
    """A check's order key (checks written before order keys existed sort first)."""
    return (check.get("order_ms") or 0, check.get("order_customer") or "", check.get("order_n") or 0)


def decide_watermark(position_ms: int | None, blocked: Iterable[Key], quiet: bool) -> Key:
    """The smallest key a decide partition can still send.

    New input makes checks at the partition's position (newest record timestamp) or later; a
    customer whose check is in flight makes its next one at its blocked key (`decision.blocked_order_key`). A quiet partition (no
    input left on the broker, none buffered) only has its blocked customers left.
    """
    floor = min(blocked, default=IDLE_KEY)
    if quiet:
        return floor
    return min((position_ms or 0, "", 0), floor)


def household_frontier(marks: dict[str, Key], decide_sources: Iterable[str]) -> Key:
    """Checks from decide partitions below this key have all arrived (households judge up to it)."""
    return min((marks.get(source, MIN_KEY) for source in decide_sources), default=IDLE_KEY)


# Scopes by level. A request passes its scopes in route order (household, each linked scope,
# associate), so a check reaches a scope of level i from decide partitions (when it is the
# request's first scope) or passed on by a scope of a lower level. Each level judges in key order
# once every source that can still send it a smaller key is past: the decide partitions, and
# every limits partition's level-i watermark (what its scopes of lower levels may still pass on).


def level_name(scope: str, scope_key: str = "") -> str:
    """The level a check's scope belongs to: its scope, or "linked:<link kind>" for a linked scope
    (scope_key "<link kind>:<id>")."""
    if scope == "linked":
        return "linked:" + scope_key.partition(":")[0]
    return scope


def level_of_state_key(state_key: str) -> str:
    """The level of a scope state's key ("household:<id>", "linked:<kind>:<id>", "associate:<id>")."""
    scope, _, rest = state_key.partition(":")
    return level_name(scope, rest)


def level_index(name: str, levels: Sequence[str]) -> int:
    """A level's position; a scope the levels do not name (switched off here, on elsewhere) is
    judged with the last level, behind everything passed on."""
    try:
        return levels.index(name)
    except ValueError:
        return len(levels) - 1


def level_frontier(marks: dict[str, Key], decide_sources: Iterable[str], limits_sources: Iterable[str]) -> Key:
    """Checks of one level below this key have all arrived: from the decide partitions and, passed
    on, from every limits partition (its watermark for this level; none for the first level)."""
    return min(household_frontier(marks, decide_sources), min((marks.get(s, MIN_KEY) for s in limits_sources),
                                                             default=IDLE_KEY))


def limits_watermarks(frontiers: Sequence[Key], waiting: Sequence[Iterable[Key]]) -> list[Key]:
    """One limits partition's watermark for each level after the first: the smallest key its scopes
    of lower levels can still pass on. `frontiers[j]` is the partition's own frontier of level j
    (what it has not judged yet at that level), `waiting[j]` the keys waiting at its level-j scopes
    for an earlier request to settle. Level i's mark is the minimum over the levels below it."""
    marks, floor = [], IDLE_KEY
    for frontier, keys in zip(frontiers, waiting):
        floor = min(floor, frontier, min(keys, default=IDLE_KEY))
        marks.append(floor)
    return marks
