"""Decision quality with ideal ordering: the workload folded in process, every limit check followed at once.

Run by bench/run.py (cwd = the source tree measured): python bench/quality_in_process.py CUSTOMERS DAYS SEED
The same workload as the Kafka runs, decided without any topic interleaving, so the difference
from the Kafka run's report is what timing (not policy) changes. Prints the report as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_size import fold_all  # noqa: E402  (a sibling script, not a package)

from streams.measure import quality  # noqa: E402
from streams.measure.simulate import WorkloadConfig  # noqa: E402


def main() -> None:
    customers, days, seed = (int(a) for a in sys.argv[1:4])
    config = WorkloadConfig(customers=customers, days=days, seed=seed)
    decisions, labels = fold_all(config)
    report = quality.evaluate(decisions, [{"label": "run", "customers": customers, "days": days, "seed": seed,
                                           "abuse_rate": config.abuse_rate}] + labels)
    reasons: dict[str, int] = {}
    for decision in quality.final_decisions(decisions).values():
        for reason in decision["reason_codes"]:
            reasons[reason] = reasons.get(reason, 0) + 1
    print(json.dumps({"report": report, "reasons": dict(sorted(reasons.items()))}))


if __name__ == "__main__":
    main()
