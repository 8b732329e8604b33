"""Prometheus metrics of a worker, in the text exposition format (no client library needed).

Names are prefixed `remedy_`; counters end in `_total`, histograms carry `_bucket`, `_sum` and
`_count`. Values are per process (Prometheus sums over workers).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Histogram buckets in seconds: from a millisecond to a minute.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    values: dict[tuple, float] = field(default_factory=dict)

    def inc(self, *label_values, by: float = 1) -> None:
        self.values[label_values] = self.values.get(label_values, 0) + by

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(self.labels, k)} {v:g}" for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Histogram:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = SECONDS_BUCKETS
    series: dict[tuple, list] = field(default_factory=dict)  # labels -> [bucket counts..., sum, count]

    def observe(self, value: float, *label_values) -> None:
        entry = self.series.setdefault(label_values, [0] * len(self.buckets) + [0.0, 0])
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            entry[index] += 1
        entry[-2] += value
        entry[-1] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, entry in sorted(self.series.items()):
            cumulative = 0
            for bound, count in zip(self.buckets, entry):
                cumulative += count
                le = 'le="%g"' % bound
                lines.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {cumulative}")
            infinity = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(self.labels, key, infinity)} {entry[-1]}")
            lines.append(f"{self.name}_sum{_labels(self.labels, key)} {entry[-2]:g}")
            lines.append(f"{self.name}_count{_labels(self.labels, key)} {entry[-1]}")
        return lines


def gauge(name: str, help: str, labels: tuple[str, ...], values: dict[tuple, float]) -> list[str]:
    """A gauge's lines from values read at scrape time."""
    lines = [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(labels, k)} {v:g}" for k, v in sorted(values.items())]
    return lines


class WorkerMetrics:
    """The counters and histograms the agents update."""

    def __init__(self):
        self.decisions = Counter("remedy_decisions_total", "Decisions emitted for the first time, by outcome and kind.",
                                 ("outcome", "kind"))
        self.granted_cents = Counter("remedy_granted_cents_total", "Cents granted by first-time decisions, by kind and currency.",
                                     ("kind", "currency"))
        self.dead_letters = Counter("remedy_dead_letters_total", "Messages sent to the dead-letter topic, by reason.",
                                    ("reason",))
        self.batch_seconds = Histogram("remedy_batch_seconds", "Wall time of one agent batch, restore excluded.", ("agent",))
        self.decision_latency = Histogram(
            "remedy_decision_latency_seconds",
            "From a request's arrival at its decide batch to its decision being sent (scope checks included).")
        self.sync_seconds = Histogram(
            "remedy_sync_request_seconds",
            "Synchronous API (POST /v1/remedy-requests) by hop: publish (validated and acknowledged by Kafka), "
            "decision (acknowledged to decision seen), total.", ("hop",))
        self.sync_answers = Counter("remedy_sync_answers_total", "Synchronous API answers by HTTP status.", ("status",))

    def render(self, extra: list[str]) -> str:
        lines: list[str] = []
        for metric in (self.decisions, self.granted_cents, self.dead_letters, self.batch_seconds, self.decision_latency,
                       self.sync_seconds, self.sync_answers):
            lines += metric.render()
        return "\n".join(lines + extra) + "\n"
