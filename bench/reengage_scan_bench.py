"""Cost of one re-engagement scan over N users (no broker): the `users` table's values
as the worker holds them, a fake worker, the real scan.

    PYTHONPATH=. python bench/reengage_scan_bench.py --users 100000

Prints the first scan (every value decoded), a scan with nothing changed (identity
checks only), a scan after 1 % of the users wrote, and the memory the scan keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from datetime import timedelta

from processors.reengage.decide import CONTROL_KIND, ReengageConfig, reengage_step
from schemas.control import control_value, parse_control
from tests.support.reengage_fakes import T0, FakeClock, FakeWorker, reengager, user_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument(
        "--unhandled",
        action="store_true",
        help="worst case: every user past the quiet time is still waiting to be asked "
        "(default: they were re-engaged already, the steady state)",
    )
    args = parser.parse_args()
    n = args.users
    worker = FakeWorker(partitions=12)
    cfg = ReengageConfig(after_s=23 * 3600, text="oi?", template="volte", window_margin_s=60)
    for i in range(n):
        user = f"55{11_900_000_000 + i}"
        # last messages spread over two days: half of them quiet for longer than 23 h
        last = T0 - timedelta(seconds=(i * 172_800) // n)
        state = user_state(user, last)
        if not args.unhandled and last <= T0 - timedelta(hours=23):
            asked = control_value(CONTROL_KIND, T0.timestamp(), quiet_since=last.isoformat())
            control = parse_control(asked)
            assert control is not None
            state = reengage_step(user, state, control, cfg).state or state
        worker.put(user, state)
    clock = FakeClock(T0.timestamp())
    r = reengager(worker, clock, cfg)
    r.republish_after_s = 0.0

    def timed(label: str) -> None:
        worker.published.clear()
        started, cpu = time.perf_counter(), time.process_time()
        asked = asyncio.run(r.scan())
        ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.process_time() - cpu) * 1000
        print(
            f"{label:<34} {ms:8.1f} ms wall, {cpu_ms:8.1f} ms CPU "
            f"({cpu_ms * 1000 / n:.2f} µs CPU/user, {asked} asked)"
        )

    timed("first scan (decode every value)")
    timed("nothing changed")
    data = worker.tables["users"].data
    for i, user in enumerate(list(data)):
        if i % 100 == 0:
            data[user] = bytes(data[user])  # a new value object: as if the user wrote
    timed("1 % of the users changed")
    # what the scan keeps between scans (its per-user read), measured apart: tracemalloc
    # slows the scan itself several times
    other = reengager(worker, clock, cfg)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(other.scan())
    del other.asked
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"users: {n}, value bytes ~{sum(map(len, data.values())) // n}/user, "
          f"scan keeps {kept / n:.0f} B/user ({kept / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
