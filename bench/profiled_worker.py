"""`remedy-ledger worker` under cProfile, writing the profile although the worker leaves with os._exit.

    python bench/profiled_worker.py OUT.prof [worker options, e.g. --loglevel warning]

The Faust-agent worker ends its process with `os._exit` (streams/runtime/app.py `_leave`, and
agents.py on a failed batch), so `python -m cProfile` never gets to write its file. This wrapper
profiles the main thread (the event loop: Faust, aiokafka, the agents and the core; not the
ClickHouse thread) from the worker command on, and dumps the profile just before any exit.
Run by bench/run.py's "profile" step; read the file with `python -m pstats OUT.prof`.
"""

from __future__ import annotations

import cProfile
import os
import sys


def main() -> None:
    out, worker_args = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()
    real_exit = os._exit

    def dump() -> None:
        profiler.disable()
        profiler.dump_stats(out)

    def exit_after_dump(status: int) -> None:
        dump()
        real_exit(status)

    os._exit = exit_after_dump
    from streams.commands.cli import main as cli_main

    profiler.enable()
    try:
        status = cli_main(["worker", *worker_args])
    finally:
        dump()
    sys.exit(status)


if __name__ == "__main__":
    main()
