"""CPU cost of the worker's metric updates, per operation and per answered message.

    PYTHONPATH=. .venv/bin/python bench/metrics_cost.py

The per-message estimate counts what one answered message does with status webhooks
on (one message → one turn → mark-as-read + reply): 7 records consumed (message,
debounce tick, 2 outbound, 3 statuses), 6 published (2 outbound, the decision, the
embedding request, 2 send results), 4 lane events (handled + latency), one turn,
2 sends (outcome, Graph latency, delivery time) and 12 clock reads.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors import metrics
from processors.metrics import StageMetrics

N = 200_000


def cost_us(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    for _ in range(N):
        fn()
    return (time.process_time() - t0) / N * 1e6


def main() -> None:
    stage = StageMetrics("bench")
    ops: dict[str, tuple[int, Callable[[], object]]] = {
        "consumed.inc(topic)": (7, lambda: metrics.consumed.inc("zapstream.messages.inbound.v1")),
        "published.inc(topic)": (6, lambda: metrics.published.inc("zapstream.turns.decided.v1")),
        "stage handled.inc()": (4, stage.handled.inc),
        "stage latency.observe()": (4, lambda: stage.latency.observe(0.003)),
        "turn(messages, seconds)": (1, lambda: metrics.turn(1, 0.002)),
        "sends.inc(outcome)": (2, lambda: metrics.sends.inc("sent")),
        "send_latency_ok.observe()": (2, lambda: metrics.send_latency_ok.observe(0.02)),
        "delivery_seconds.observe()": (2, lambda: metrics.delivery_seconds.observe(0.02)),
        "time.perf_counter()": (12, time.perf_counter),
    }
    per_message = 0.0
    for name, (count, fn) in ops.items():
        us = cost_us(fn)
        per_message += count * us
        print(f"{name:30s} {us:6.3f} µs  × {count:2d} per message")
    print(f"per answered message: {per_message:.1f} µs of CPU")


if __name__ == "__main__":
    main()
