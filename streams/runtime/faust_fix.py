"""The Faust restart race, closed: two small corrections to faust-streaming 0.15.3, applied at start-up
(and a third, to what Faust commits; see `_new_offset`).

Symptom (reproduced in 5 of 52 kill/restart runs under CPU load; docs/field-notes.md): a worker
restarted after SIGKILL recovers, logs "Worker ready", processes a few records and then nothing
more; the group shows lag 1 on one partition forever. Two flaws together:

1. `faust/tables/recovery.py`, `Recovery.on_recovery_completed` (lines 624-671 in 0.15.3) resumes
   the stream partitions, then awaits `consumer.perform_seek()` while the fetcher keeps running,
   then calls `app.flow_control.resume()`, which clears every `clear_on_resume` queue (every agent
   channel). Records delivered during the seek are wiped; aiokafka's position is already past them
   and nothing acks them. Corrected order: resume flow control and the consumer's flow first, then
   seek while the stream partitions are still paused, then resume the stream partitions, so no
   clear can follow a delivery.
2. `faust/transport/consumer.py`, `Consumer._wait_next_records` (line 795 in 0.15.3) hands the
   live, mutable active-partition set to the consumer thread; aiokafka's
   `Fetcher.fetched_records(partitions)` re-reads it on every wake-up and treats an empty set as
   "no filter", and Faust's `getmany` then drops records whose partition is not in the set at that
   moment. Corrected: pass a frozen snapshot, so aiokafka and Faust's filter see the same set.

Either alone is not enough. An app without tables (ours: state lives in our own changelog)
recovers through `Recovery._resume_streams` (lines 306-335 in 0.15.3), which has the same order
as flaw 1; the fetcher is usually stopped or the flow suspended there, but not when a worker that
had no partitions is assigned some, so it gets the same correction. The replacements below are the upstream methods with only those
changes; `apply()` refuses any other Faust version, because the copies would silently diverge.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional, cast

log = logging.getLogger("remedy.faust_fix")

# The exact faust-streaming release these corrections were written against (pyproject pins it).
FAUST_VERSION_EXPECTED = "0.15.3"

class FaustVersionError(RuntimeError):
    """The installed faust-streaming is not the release the restart-race fix was written for."""


def installed_version() -> str:
    """The installed faust-streaming version."""
    import faust

    return faust.__version__


def check_version() -> None:
    """Refuse to run on a Faust release the corrections were not written against."""
    found = installed_version()
    if found != FAUST_VERSION_EXPECTED:
        raise FaustVersionError(
            f"faust-streaming {found} is installed; streams/runtime/faust_fix.py corrects {FAUST_VERSION_EXPECTED} "
            "line by line. Re-check the restart race (docs/field-notes.md) against the new release before running it."
        )


async def _on_recovery_completed(self, generation_id: int = 0) -> None:
    """`Recovery.on_recovery_completed`, with flow resumed before the seek and partitions after it."""
    from faust.types import AppT

    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}")
        return
    # Correction 1: clear the channel queues (flow_control.resume) and resume the consumer's flow
    # while every stream partition is still paused, so nothing delivered afterwards is wiped.
    self.app.flow_control.resume()
    consumer.resume_flow()
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    await cast(AppT, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def _resume_streams(self, generation_id: int = 0) -> None:
    """`Recovery._resume_streams` (the path without tables, ours), with the same order as above."""
    from faust.types import AppT

    app = self.app
    consumer = app.consumer
    await app.on_rebalance_complete.send()
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    # Correction 1 again: clear the channel queues and resume the flow while the stream
    # partitions are still paused, then seek, then resume them.
    self.log.info("Resuming flow...")
    app.flow_control.resume()
    consumer.resume_flow()
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    else:
        self.log.info("Resuming streams with empty assignment")
    self.completed.set()
    await cast(AppT, app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")


async def _wait_next_records(self, timeout: float):
    """`Consumer._wait_next_records`, handing the consumer thread a frozen snapshot of the partitions."""
    if not self.flow_active:
        await self.wait(self.can_resume_flow)
    try:
        self.not_waiting_next_records.set()
        active_partitions: Optional[frozenset]
        if self.app.client_only:
            active_partitions = None
        else:
            # Correction 2: a snapshot, not the live set the event loop keeps mutating.
            active_partitions = frozenset(self._get_active_partitions())
        records: dict = {}
        if self.app.client_only or active_partitions:
            records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
        else:
            await self.sleep(1)
        return records, active_partitions
    finally:
        self.not_waiting_next_records.set()


# Correction 3 (not part of the restart race): the first offset each agent was delivered per
# topic-partition since it started (what the group's committed offset would say when it has none).
FIRST_DELIVERED: dict = {}


def note_delivered(tp, offset: int) -> None:
    """Remember the lowest offset delivered for a topic-partition (called for every tracked message)."""
    first = FIRST_DELIVERED.get(tp)
    if first is None or offset < first:
        FIRST_DELIVERED[tp] = offset


def _new_offset(self, tp) -> Optional[int]:
    """`Consumer._new_offset` (faust/transport/consumer.py lines 1097-1150 in 0.15.3), committing only
    acked offsets contiguous with the committed one.

    Upstream returns None (commit nothing) only when `min(acked) - committed_offset > 1`, and skips
    that test when the committed offset is None or 0. The committed offset is the next offset to
    read, so an unacked message right at it (a gap of one) was committed past: a limit check the
    limits agent held back (not acked) while later messages of its partition were acked was lost
    on the next crash. Corrected: nothing is committed unless the smallest acked offset is the
    committed offset itself (or, with none committed, the first offset delivered).
    """
    from faust.utils.functional import consecutive_numbers

    acked = self._acked[tp]
    if not acked:
        return None
    max_offset = max(acked)
    gap_for_tp = self._gap[tp]
    if gap_for_tp:
        candidates = gap_for_tp.overlap(0, max_offset)
        sorted_candidates = sorted(candidates, key=lambda x: x.begin)
        if sorted_candidates:
            stuff_to_add: list[int] = []
            for entry in sorted_candidates:
                stuff_to_add.extend(range(entry.begin, entry.end))
            new_max_offset = max(stuff_to_add[-1], max_offset + 1)
            acked.extend(stuff_to_add)
            gap_for_tp.chop(0, new_max_offset)
    acked.sort()
    start = self._committed_offset[tp]
    if start is None:
        start = FIRST_DELIVERED.get(tp)
    if start is not None and acked[0] > start:
        return None  # the message at the committed offset is not acked yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return batch[-1] + 1


_applied = False


def apply() -> None:
    """Check the Faust version, then install both corrections (idempotent)."""
    global _applied
    check_version()
    if _applied:
        return
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    Recovery.on_recovery_completed = _on_recovery_completed
    Recovery._resume_streams = _resume_streams
    Consumer._wait_next_records = _wait_next_records
    Consumer._new_offset = _new_offset
    _applied = True
    log.info("faust %s: restart-race corrections applied", FAUST_VERSION_EXPECTED)


def applied() -> bool:
    """True once both corrections are installed."""
    return _applied
