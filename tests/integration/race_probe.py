"""A minimal Faust worker that shows whether the restart race loses records (tests/integration/test_restart_race.py).

    python tests/integration/race_probe.py BOOTSTRAP TOPIC EXPECTED_COUNT fixed|unfixed
        [--app-id ID] [--seen FILE] [--kill-after K] [--seek-delay S] [--no-table]
        [--timeout S] [--idle-timeout S]

One agent (concurrency 1) reads raw bytes from TOPIC and records every distinct (partition, offset)
it processes. It also counts records per partition in a Faust table (memory store, changelog topic
`<app id>-counts-changelog`, which the caller creates: Faust declares no topic here). The table is
what puts a restart on the path of the race: the restarted worker recovers the table from its
changelog with the fetcher running and flow control resumed, then runs
`Recovery.on_recovery_completed` (../shared/FIELD_NOTES.md, "The restart race"). With `--no-table`
Faust takes `Recovery._resume_streams` instead, the path of an app without tables.

The window is injected deterministically: the seek that recovery performs when it completes
(`Consumer.perform_seek`, called from `on_recovery_completed`, its fixed replacement or
`_resume_streams`) sleeps `--seek-delay` seconds before and again after the real seek. Unfixed
Faust has resumed the stream partitions before that seek and clears every agent channel
(`flow_control.resume()`) after it, so records delivered after the seek are wiped while aiokafka's
position is already past them. The sleep before the seek must exceed 1 s: the changelog partitions
have just been paused, and a Faust fetcher that finds no active partition sleeps 1 s before it
fetches again (with 0.5 s nothing was fetched in the window and nothing was lost). `fixed` applies
streams/runtime/faust_fix.py first: it seeks while the stream partitions are still paused, so the
same sleeps open no window. The injection wraps Faust's own `perform_seek`, so it is the same in
both modes and the worker's code carries no test hook.

Diagnostics in the final line: "wiped", the channel queue entries each `FlowControlEvent.resume()`
cleared (records delivered to the agent that it will never see; an offset delivered twice counts
twice); "gaps", the offset ranges Faust never delivered and recorded as gaps (`Consumer._add_gap`),
which its commits may pass over; "committed" and "read_offsets" of the probe's topic.

`--kill-after K`: after K new distinct records the agent takes no more, Faust commits what was
acked, and the process SIGKILLs itself (the first life of a restart scenario). Otherwise the probe
runs until EXPECTED_COUNT distinct records were processed (those already in `--seen`, the records
of earlier lives, included), until `--timeout`, or until nothing new was processed for
`--idle-timeout` seconds after start-up, whichever comes first.

Progress lines and the final line are JSON on stdout; the final one has "final": true, "reason",
"processed" (distinct records, earlier lives included), "expected" and the diagnostics. The
process leaves with os._exit (Faust's own shutdown is slow and not under test). RACE_PROBE_LOG=info
sends Faust's and aiokafka's logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Faust commits acked offsets this often in the probe (the worker uses 1 s).
COMMIT_INTERVAL_S = 0.5
# The broker's smallest session timeout (group.min.session.timeout.ms): a restarted probe joins
# once the killed one's session has expired.
SESSION_TIMEOUT_S = 6.0
# Per-record work in the agent: the agent is slower than the fetcher, as a real agent is, so
# records wait in its channel queue when the window closes.
RECORD_WORK_S = 0.004
# Callers of `perform_seek` whose seek is delayed: unfixed and fixed `on_recovery_completed`, and
# the path of an app without tables.
DELAYED_CALLERS = {"on_recovery_completed", "_on_recovery_completed", "_resume_streams"}


def emit(**fields) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("expected", type=int)
    parser.add_argument("mode", choices=("fixed", "unfixed"))
    parser.add_argument("--app-id", default=None, help="Faust app id and consumer group (default: a new one)")
    parser.add_argument("--seen", type=Path, default=None, help="file of processed 'partition offset' lines, appended to")
    parser.add_argument("--kill-after", type=int, default=0, help="SIGKILL self after this many new records (0: never)")
    parser.add_argument("--seek-delay", type=float, default=1.2, help="seconds slept before and after the recovery seek")
    parser.add_argument("--no-table", action="store_true", help="no Faust table: recovery takes _resume_streams")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--idle-timeout", type=float, default=8.0)
    return parser.parse_args(argv)


def inject_seek_window(delay_s: float, delayed: list[str]) -> None:
    """Sleep `delay_s` before and after the seek that recovery performs when it completes.

    The wrapper is a plain function returning the coroutine, so it reads its caller's name when
    Faust calls it (the frame that later awaits the coroutine is Faust's `wait_first`).
    """
    from faust.transport.consumer import Consumer

    real = Consumer.perform_seek

    async def delayed_seek(consumer, caller: str) -> None:
        delayed.append(caller)
        await asyncio.sleep(delay_s)
        await real(consumer)
        await asyncio.sleep(delay_s)

    def perform_seek(self):
        caller = sys._getframe(1).f_code.co_name
        if delay_s > 0 and caller in DELAYED_CALLERS:
            return delayed_seek(self, caller)
        return real(self)

    Consumer.perform_seek = perform_seek


def count_wiped(wiped: list[int]) -> None:
    """Record how many queue entries each `FlowControlEvent.resume()` clears from the agent channels."""
    from mode.utils.queues import FlowControlEvent

    real = FlowControlEvent.resume

    def resume(self) -> None:
        queued = sum(len(queue._queue) for queue in self._queues)
        if queued:
            wiped.append(queued)
        real(self)

    FlowControlEvent.resume = resume


def record_gaps(gaps: list[list]) -> None:
    """Record the offset ranges Faust treats as gaps (never delivered; commits may pass over them)."""
    from faust.transport.consumer import Consumer

    real = Consumer._add_gap

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        gaps.append([tp.topic, tp.partition, offset_from, offset_to])
        await real(self, tp, offset_from, offset_to)

    Consumer._add_gap = _add_gap


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if os.environ.get("RACE_PROBE_LOG"):
        import logging

        logging.basicConfig(level=os.environ["RACE_PROBE_LOG"].upper(), stream=sys.stderr,
                            format="%(relativeCreated)7.0f %(name)s %(levelname)s %(message)s")
    from streams.runtime import faust_fix

    if args.mode == "fixed":
        faust_fix.apply()
    else:
        faust_fix.check_version()  # the unfixed behaviour shown is that of the pinned release
    delayed: list[str] = []
    wiped: list[int] = []
    inject_seek_window(args.seek_delay, delayed)
    count_wiped(wiped)
    gaps: list[list] = []
    record_gaps(gaps)
    asyncio.run(run(args, faust_fix.applied(), delayed, wiped, gaps))


async def run(args: argparse.Namespace, fix_applied: bool, delayed: list[str], wiped: list[int],
              gaps: list[list]) -> None:
    """Build the app inside the running loop, start it, and watch the agent until it is done."""
    import faust

    started = time.monotonic()
    app_id = args.app_id or f"race-probe-{os.getpid()}-{int(time.time())}"
    app = faust.App(
        app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        autodiscover=False,
        # Faust's default data directory is "<app id>-data" in the working directory: keep it
        # beside the file of seen records (the test's temporary directory).
        datadir=str(Path(args.seen).parent / f"{app_id}-data"),
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=4,
        topic_replication_factor=1,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        broker_commit_interval=COMMIT_INTERVAL_S,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 3,
        table_standby_replicas=0,
    )
    counts = None if args.no_table else app.Table("counts", default=int, partitions=4)
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    seen: set[tuple[int, int]] = set()
    if args.seen is not None and args.seen.exists():
        for line in args.seen.read_text().splitlines():
            partition, offset = line.split()
            seen.add((int(partition), int(offset)))
    earlier = len(seen)
    seen_file = open(args.seen, "a", buffering=1) if args.seen is not None else None
    new = 0
    last_progress = time.monotonic()
    done = asyncio.Event()
    halt = asyncio.Event()  # --kill-after reached: the agent takes no more records

    @app.agent(topic, name="probe", concurrency=1)
    async def probe(stream):
        nonlocal new, last_progress
        async for event in stream.events():
            if halt.is_set():
                await asyncio.Event().wait()  # hold this record, unacked, until the SIGKILL
            message = event.message
            key = (message.partition, message.offset)
            if counts is not None:
                counts[str(message.partition)] += 1  # a changelog write: a restart has a table to recover
            await asyncio.sleep(RECORD_WORK_S)
            if key not in seen:
                seen.add(key)
                new += 1
                last_progress = time.monotonic()
                if seen_file is not None:
                    seen_file.write(f"{key[0]} {key[1]}\n")
                if args.kill_after and new >= args.kill_after:
                    halt.set()
                if len(seen) >= args.expected:
                    done.set()

    def ours(offsets) -> dict:
        return {tp.partition: offset for tp, offset in offsets.items() if tp.topic == args.topic}

    def finish(reason: str) -> None:
        consumer = app.consumer
        emit(final=True, reason=reason, mode=args.mode, app_id=app_id, processed=len(seen), expected=args.expected,
             earlier=earlier, new=new, wiped=sum(wiped), delayed_seeks=delayed, fix_applied=fix_applied,
             table=counts is not None, elapsed_s=round(time.monotonic() - started, 2),
             committed=ours(consumer._committed_offset), read_offsets=ours(consumer._read_offset),
             gaps=[gap[1:] for gap in gaps if gap[0] == args.topic][:20],
             queued=sum(len(queue._queue) for queue in app.flow_control._queues))
        os._exit(0)

    deadline = started + args.timeout
    await app.start()  # returns once table recovery has completed ("Worker ready")
    emit(event="ready", after_s=round(time.monotonic() - started, 2), processed=len(seen), wiped=sum(wiped))
    last_progress = max(last_progress, time.monotonic())
    while True:
        if args.kill_after and halt.is_set():
            await asyncio.sleep(COMMIT_INTERVAL_S * 4)  # let Faust commit what the agent acked
            emit(event="sigkill", processed=len(seen), new=new, committed=ours(app.consumer._committed_offset))
            os.kill(os.getpid(), signal.SIGKILL)
        if done.is_set():
            return finish("all processed")
        now = time.monotonic()
        if now >= deadline:
            return finish("timeout")
        if now - last_progress >= args.idle_timeout:
            return finish("idle")
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    main(sys.argv[1:])
