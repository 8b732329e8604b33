"""The limits agent's sequencer: household, linked and associate checks judged in order-key order.

Checks reach a limits partition from every decide partition (and, passed on, from every limits
partition), each source in its own order but interleaved by timing. The sequencer holds each
RESERVE until every source's PROGRESS watermark is past its key (streams/core/ordering.py), then
releases the held checks in key order; other messages (RELEASE, SETTLE, PROGRESS, anything
undecodable) pass at once. Held events are not acked, so a crash or a rebalance redelivers
them; watermarks are kept in memory only (every source sends its watermark again at least every
PROGRESS_RESEND_S). Memory is bounded by HELD_EVENTS_MAX: past it the smallest keys are released
anyway, counted as forced (first come, first served for those).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import time
from typing import Callable, Sequence

import schemas
from streams.core import ordering
from streams.errors import DecodeError
from streams.runtime.metrics import Counter, Histogram

log = logging.getLogger("remedy.sequence")

# Checks held over all partitions before the smallest keys are released regardless of watermarks.
HELD_EVENTS_MAX = 200_000
# Every source sends its watermark again at least this often, even unchanged (a restarted limits
# worker starts with no watermarks and holds every check until it heard from every source).
PROGRESS_RESEND_S = 2.0


def decide_source(partition: int) -> str:
    """The name a decide partition's watermarks carry."""
    return f"decide:{partition}"


def limits_source(partition: int, level: int = 1) -> str:
    """The name a limits partition's watermark for the checks it passes on to scopes of `level`
    carries (level 1, the first after the household: "limits:<partition>")."""
    return level_source(f"limits:{partition}", level)


def level_source(source: str, level: int) -> str:
    """The name of `source`'s watermark for `level` (the higher levels ride in progress_datum's `route`)."""
    return source if level == 1 else f"{source}:L{level}"


def progress_datum(source: str, mark: ordering.Key, higher: Sequence[tuple[int, ordering.Key]] = ()) -> dict:
    """A LimitCheck PROGRESS: `source` sends no check with a key below `mark` after this one.

    A limits partition's watermarks for the levels after the first ride in the same message, in
    `route`, each as the JSON text [level, order_ms, order_customer, order_n] (one message per
    partition and tick, however many levels)."""
    return {
        "event_id": f"progress/{source}", "request_id": source, "customer_id": "", "action": "PROGRESS",
        "scope": "progress", "scope_key": source,
        "route": [json.dumps([level, *key], separators=(",", ":")) for level, key in higher],
        "reserved": [], "amount_cents": 0,
        "kind": "UNKNOWN", "incident_id": None, "incident_kind": None, "at": 0, "passed": False,
        "outcome": "UNKNOWN", "reason_codes": [], "inputs": {}, "policy_version": "",
        "order_ms": mark[0], "order_customer": mark[1], "order_n": mark[2],
    }


class Sequencer:
    """Holds RESERVE events per partition and releases them in order-key order behind the watermarks.

    Has the Aligner's interface (add, take, held, drop_all), so the agent shell treats it the same.
    `levels()` names the scopes' levels in route order (`scopes.scope_levels` of the policy in
    force): a check of level i is judged below the decide partitions' watermarks and every limits
    partition's level-i watermark.
    """

    def __init__(self, partitions: int, levels: Callable[[], Sequence[str]] = lambda: ("household", "associate"),
                 clock_s: Callable[[], float] = time.monotonic):
        self.partitions = partitions
        self.clock_s = clock_s
        # What the cross-partition order costs, per level: how long each check waited here for
        # the watermarks (README, /metrics); the rare events beside it, as counters.
        self.hold_seconds = Histogram(
            "remedy_scope_check_hold_seconds",
            "Time a scope check (RESERVE) was held by the limits agent's sequencer until every watermark "
            "passed its key, by scope level.", ("level",))
        self.events = Counter(
            "remedy_sequencer_events_total",
            "Sequencer events: late (a check below its partition's frontier), forced (released past the held "
            "maximum), malformed_mark (a watermark that could not be read).", ("event",))
        self.levels = levels
        self.decide_sources = [decide_source(p) for p in range(partitions)]
        self.marks: dict[int, dict[str, ordering.Key]] = {}
        self.heaps: dict[int, list] = {}
        self.passing: list = []
        self._tie = itertools.count()
        self.held_waits_total = 0  # batches that left checks held behind a watermark

    def _count(self, event: str) -> int:
        return int(self.events.values.get((event,), 0))

    @property
    def forced_total(self) -> int:
        """Checks released past HELD_EVENTS_MAX."""
        return self._count("forced")

    @property
    def late_total(self) -> int:
        """Checks that arrived below their partition's frontier (a source broke its watermark)."""
        return self._count("late")

    @property
    def malformed_marks_total(self) -> int:
        """Higher levels' watermarks in a PROGRESS that could not be read."""
        return self._count("malformed_mark")

    @property
    def limits_sources(self) -> list[str]:
        """Every limits watermark the levels in force need."""
        return [source for level in range(1, len(self.levels())) for source in self._limits_sources(level)]

    def _limits_sources(self, level: int) -> list[str]:
        return [limits_source(p, level) for p in range(self.partitions)]

    def add(self, events: list, topic_of, partition_of, offset_of) -> None:
        """Take delivered events: RESERVEs are held, watermarks noted, everything else passes."""
        for event in events:
            partition = partition_of(event)
            try:
                name, datum = schemas.decode(event.message.value)
            except (DecodeError, TypeError):
                self.passing.append(event)  # the fold dead-letters it
                continue
            if name != "LimitCheck":
                self.passing.append(event)
                continue
            if datum["action"] == "PROGRESS":
                marks = self.marks.setdefault(partition, {})
                marks[datum["request_id"]] = ordering.order_key(datum)
                for entry in datum["route"]:
                    try:
                        level, order_ms, customer, n = json.loads(entry)
                        mark = (int(order_ms), str(customer), int(n))
                        source = level_source(datum["request_id"], int(level))
                    except (ValueError, TypeError):
                        # Not a watermark this worker wrote: ignored, so its level's checks wait for
                        # a good one (never released early).
                        self.events.inc("malformed_mark")
                        log.warning("sequencer: malformed watermark %r from %s ignored", entry[:100], datum["request_id"])
                        continue
                    marks[source] = mark
                self.passing.append(event)
            elif datum["action"] == "RESERVE":
                key = ordering.order_key(datum)
                level = ordering.level_name(datum["scope"], datum["scope_key"])
                if key < self.frontier(partition, level):
                    self.events.inc("late")
                heapq.heappush(self.heaps.setdefault(partition, []), (key, next(self._tie), level, event, self.clock_s()))
            else:
                self.passing.append(event)

    def household_frontier(self, partition: int) -> ordering.Key:
        return ordering.household_frontier(self.marks.get(partition, {}), self.decide_sources)

    def level_frontier(self, partition: int, level: int) -> ordering.Key:
        """Checks of the level at this index (0: household) at `partition` with a smaller key can be judged."""
        return ordering.level_frontier(self.marks.get(partition, {}), self.decide_sources,
                                       self._limits_sources(level) if level else ())

    def frontier(self, partition: int, level_name: str) -> ordering.Key:
        """Checks of the level so named ("household", "linked:device", "associate") at `partition`
        with a smaller key can be judged."""
        return self.level_frontier(partition, ordering.level_index(level_name, tuple(self.levels())))

    def held(self) -> int:
        return sum(len(heap) for heap in self.heaps.values())

    def drop_all(self) -> list:
        """Let go of every held event (a rebalance: they are redelivered from the committed offsets)."""
        dropped = self.passing + [entry[3] for heap in self.heaps.values() for entry in heap]
        self.passing = []
        self.heaps.clear()
        self.marks.clear()
        return dropped

    async def take(self, timestamp_of) -> list:
        """Everything that passes, then per partition the releasable RESERVEs in key order."""
        out, self.passing = self.passing, []
        levels = tuple(self.levels())
        for partition, heap in self.heaps.items():
            frontiers = [self.level_frontier(partition, level) for level in range(len(levels))]
            # Every level's frontier is at or below the household's (each includes the decide
            # partitions' watermarks), so nothing at or above it can go: only the keys below it are
            # looked at. Among those, a check at or above its own level's frontier stays.
            kept, now_s = [], self.clock_s()
            while heap and heap[0][0] < frontiers[0]:
                entry = heapq.heappop(heap)
                if entry[0] < frontiers[ordering.level_index(entry[2], levels)]:
                    out.append(entry[3])
                    self.hold_seconds.observe(now_s - entry[4], entry[2])
                else:
                    kept.append(entry)
            for entry in kept:
                heapq.heappush(heap, entry)
            if heap:
                self.held_waits_total += 1
        overflow = self.held() - HELD_EVENTS_MAX
        if overflow > 0:
            out.extend(self._force(overflow))
        return out

    def _force(self, count: int) -> list:
        out = []
        while len(out) < count:
            heaps = [(heap[0][0], partition) for partition, heap in self.heaps.items() if heap]
            if not heaps:
                break
            _, partition = min(heaps)
            entry = heapq.heappop(self.heaps[partition])
            out.append(entry[3])
            self.hold_seconds.observe(self.clock_s() - entry[4], entry[2])
        if out:
            self.events.inc("forced", by=len(out))
            log.warning("sequencer: %d checks released past %d held (first come, first served)", len(out), HELD_EVENTS_MAX)
        return out
