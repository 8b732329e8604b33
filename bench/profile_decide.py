"""Where the decide agent's CPU goes: cProfile of streams.runtime.batch.fold_batch plus the state round trip.

Run by bench/run.py (cwd = the source tree measured): python bench/profile_decide.py EVENTS.jsonl LIMIT OUT.prof
Encodes the first LIMIT events exactly as the publisher does, then runs them through the same
code path as the agent (decode, check, fold, encode decisions, serialise state) in batches of the
agent's size, without Kafka. Prints JSON with events/s and the top functions by cumulative time.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
import time
from itertools import islice
from pathlib import Path

import schemas
from streams.runtime.batch import Incoming, fold_batch, state_from_bytes, state_to_bytes
from streams.runtime.kafka_io import topic_names
from streams.runtime.settings import Settings
from streams.runtime.upstream import read_events

TOP_FUNCTIONS = 25


def main() -> None:
    path, limit, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    settings = Settings(topic_prefix="profile")
    names = topic_names(settings)
    messages = []
    # The Kafka timestamp a publisher gives them now (CreateTime): the inbound checks refuse event
    # times more than a day after it, so a timestamp of 0 would dead-letter every event.
    published_ms = int(time.time() * 1000)
    for offset, (record_name, datum) in enumerate(islice(read_events(path), limit)):
        messages.append(Incoming(names.for_event(record_name), 0, offset, datum["customer_id"].encode(),
                                 schemas.encode(record_name, datum), published_ms))
    table: dict[bytes, bytes] = {}

    dead_lettered = 0

    def run() -> int:
        nonlocal dead_lettered
        decided = 0
        for start in range(0, len(messages), settings.decide_batch_max):
            chunk = messages[start:start + settings.decide_batch_max]
            result = fold_batch(chunk, lambda cid: state_from_bytes(table.get(cid.encode())), settings.policy, names)
            for decision in result.decisions:
                schemas.encode("RemedyDecided", decision)
            for customer_id, state in result.states.items():
                table[customer_id.encode()] = state_to_bytes(state)
            decided += len(result.decisions)
            dead_lettered += len(result.dead_letters)
        return decided

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    decided = run()
    profiler.disable()
    elapsed = time.perf_counter() - started
    profiler.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(TOP_FUNCTIONS)
    total = pstats.Stats(profiler).total_tt
    by_area = {}
    stats = pstats.Stats(profiler).stats
    for (filename, _, function), (_, _, tottime, _, _) in stats.items():
        area = ("fastavro/schemas (decode+encode)" if "fastavro" in filename or "/schemas/" in filename
                else "json state (de)serialise" if filename.endswith("json/encoder.py") or filename.endswith("json/decoder.py") or "json" in function
                else "decision core" if filename.endswith("streams/core/decision.py")
                else "inbound checks" if filename.endswith("streams/core/inbound.py")
                else "other")
        by_area[area] = by_area.get(area, 0.0) + tottime
    print(json.dumps({
        "events": len(messages), "decisions": decided, "dead_letters": dead_lettered, "seconds_profiled": round(elapsed, 2),
        "events_per_s_profiled": round(len(messages) / elapsed),
        "self_time_share_by_area": {k: round(v / total, 3) for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])},
        "top_cumulative": text.getvalue().splitlines()[:TOP_FUNCTIONS + 12],
    }))


if __name__ == "__main__":
    main()
