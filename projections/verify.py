"""`remedy-ledger verify`: fold the decision topic independently and compare every figure with ClickHouse.

The fold uses only kafka-python, the codec and the pure projections.figures; ClickHouse computes
the same figures with SQL (Store.figures). Before comparing, verify waits (bounded) until the
projector has written up to the last decision it read, and it starts again if the topic grew
meanwhile, so a busy worker does not produce false alarms.
"""

from __future__ import annotations

import time

import schemas
from projections.figures import differences, fold
from projections.rebuild import DecisionLog
from streams.errors import DecodeError
from streams.runtime.privacy import erasure_for
from streams.runtime.settings import Settings

# Times verify re-reads the topic when it grew while verify was comparing.
VERIFY_ROUNDS_MAX = 3
# How often verify asks how far the projector got.
PROJECTOR_POLL_S = 0.5


def fold_log(settings: Settings) -> tuple[list[dict], dict[int, int], dict]:
    """The decisions of the decision topic, the last decision offset per partition, and what was read."""
    log = DecisionLog(settings)
    decisions, last, undecodable = [], {}, 0
    try:
        while chunk := log.chunk():
            for message in chunk:
                try:
                    name, datum = schemas.decode(message.value or b"")
                except DecodeError:
                    undecodable += 1  # the projector dead-letters these; they carry no money
                    continue
                if name != "RemedyDecided":
                    undecodable += 1
                    continue
                decisions.append(datum)
                last[message.partition] = message.offset
        read = {"messages": log.read, "undecodable": undecodable,
                "end_offsets": {tp.partition: log.end[tp] for tp in log.partitions}}
    finally:
        log.close()
    return decisions, last, read


def verify(settings: Settings, snapshot, wait_s: float) -> dict:
    """Compare the log with ClickHouse; `snapshot()` returns {"positions": ..., "figures": ...} from ClickHouse."""
    started = time.monotonic()
    for round_number in range(1, VERIFY_ROUNDS_MAX + 1):
        decisions, last, read = fold_log(settings)
        deadline = time.monotonic() + wait_s
        while True:
            actual = snapshot()
            positions = {int(p): int(o) for p, o in actual["positions"].items()}
            behind = {p: o for p, o in last.items() if positions.get(p, -1) < o}
            if not behind or time.monotonic() > deadline:
                break
            time.sleep(PROJECTOR_POLL_S)
        # Erased customers are known by their pseudonyms in ClickHouse: the log's ids are mapped
        # through the same key before comparing (docs/privacy.md).
        erasure = erasure_for(settings, actual.get("erased", ()))
        expected = fold([erasure.decision(decision) for decision in decisions])
        found = differences(expected, actual["figures"])
        if behind:
            found.insert(0, f"the projector is behind the log on partitions {sorted(behind)} after {wait_s:.0f}s")
        if not found or round_number == VERIFY_ROUNDS_MAX:
            break
        _, _, again = fold_log(settings)
        if again["end_offsets"] == read["end_offsets"]:
            break  # the log did not move: the differences are real
    return {
        "ok": not found,
        "differences": found,
        "decisions": expected["decisions"],
        "messages_read": read["messages"],
        "undecodable": read["undecodable"],
        "elapsed_s": round(time.monotonic() - started, 2),
    }


def render(report: dict) -> str:
    """verify's report for people."""
    head = (f"{report['messages_read']:,} messages read, {report['decisions']['all']:,} decisions "
            f"({report['decisions']['current']:,} current), {report['elapsed_s']}s")
    if report["ok"]:
        return f"OK: every figure in ClickHouse equals the decision log; every decision's postings balance.\n{head}"
    shown = report["differences"][:100]
    more = len(report["differences"]) - len(shown)
    lines = [f"MISMATCH: {len(report['differences'])} difference(s) between the decision log and ClickHouse", head]
    lines += [f"  {line}" for line in shown]
    if more:
        lines.append(f"  ... and {more} more (use --json for all)")
    return "\n".join(lines)
