"""Sink benchmark: rows/s into DuckDB, and the sink process's CPU.

1. `load`: decode and loader alone, in this process, one thread: records → decode
   (msgspec mirrors) → Arrow → DuckDB, in batches of `--batch` (one transaction each).
2. per broker: `--rows` events already on the inbound topic → `zapstream sink` (a
   separate process) → DuckDB. Reported: rows/s from the first row stored to the last
   (the steady rate) and from the sink's start (with start-up and group join), the
   sink's CPU seconds over the load and per 1,000 rows, and its CPU share while idle
   afterwards (`--idle` seconds, nothing to read).

    .venv/bin/python bench/sink_bench.py --rows 200000 --brokers tansu,kafka

`--sink-root DIR` runs the sink from another checkout (the old code, say) with the
same events, to compare on one machine. `--py-spy FILE` records the sink with py-spy
during the load (`--format raw`: collapsed stacks, one per line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from schemas.codec import encode  # noqa: E402
from schemas.events import MessageReceived  # noqa: E402
from schemas.topics import Topics, all_topic_specs  # noqa: E402
from sinks.batch import decode_batch  # noqa: E402
from sinks.loader import Loader  # noqa: E402
from sinks.routes import routes  # noqa: E402
from zapstream.brokers.factory import make_broker  # noqa: E402
from zapstream.brokers.process import free_port  # noqa: E402
from zapstream.kafka_admin import ensure_topics_sync  # noqa: E402
from zapstream.settings import Settings  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes


def events(n: int) -> list[MessageReceived]:
    now = datetime.now(UTC)
    return [
        MessageReceived(
            message_id=f"wamid.BENCH{i:09d}",
            user_id=f"55119{i % 10000:08d}",
            wa_id=f"55119{i % 10000:08d}",
            phone_number_id="100000000000001",
            type="text",
            sent_at=now,
            received_at=now,
            text=f"benchmark message number {i}",
            raw={
                "id": f"wamid.BENCH{i:09d}",
                "type": "text",
                "text": {"body": f"benchmark message number {i}"},
            },
        )
        for i in range(n)
    ]


def bench_load(rows: int, batch: int) -> None:
    topics = Topics.from_settings(Settings())
    values = [encode(e) for e in events(rows)]
    recs = [Rec(topics.inbound, 0, i, v) for i, v in enumerate(values)]
    table_routes = routes(topics)
    with tempfile.TemporaryDirectory() as tmp:
        loader = Loader(Path(tmp) / "b.duckdb")
        loader.open()
        t0 = time.perf_counter()
        build = 0.0
        for i in range(0, rows, batch):
            b0 = time.perf_counter()
            decoded = decode_batch(recs[i : i + batch], table_routes, loader.tables)
            build += time.perf_counter() - b0
            loader.load(decoded)
        elapsed = time.perf_counter() - t0
        n = loader.query("SELECT count(*) FROM messages").rows[0][0]
        loader.close()
    print(
        f"  load: {n} rows in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s "
        f"(decode + Arrow {build:.2f}s, DuckDB {elapsed - build:.2f}s; batch {batch})",
        flush=True,
    )


async def produce(bootstrap: str, topic: str, evs: list[MessageReceived]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futs = [await producer.send(topic, encode(e), key=e.user_id.encode()) for e in evs]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def count_rows(port: int) -> int | None:
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/query",
            params={"sql": "SELECT count(*) FROM messages"},
            timeout=5,
        )
        return int(r.json()["rows"][0][0])
    except (httpx.HTTPError, KeyError, ValueError, IndexError):
        return None  # still starting


def bench_kafka(kind: str, rows: int, idle_s: float, sink_root: Path, py_spy: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = make_broker(kind, Path(tmp) / "broker")
        bootstrap = broker.start()
        try:
            settings = Settings(kafka_bootstrap_servers=bootstrap, data_dir=Path(tmp))
            ensure_topics_sync(bootstrap, all_topic_specs(settings))
            asyncio.run(produce(bootstrap, Topics.from_settings(settings).inbound, events(rows)))
            port = free_port()
            env = dict(
                os.environ,
                KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                DATA_DIR=tmp,
                SINK_WEB_PORT=str(port),
                LOG_LEVEL="WARNING",
                PYTHONPATH=str(sink_root),
            )
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "zapstream.cli", "sink"],
                env=env,
                cwd=sink_root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            spy = None
            try:
                n, first, first_n, cpu_first = 0, None, 0, 0.0
                while n < rows and time.perf_counter() - t0 < 600:
                    time.sleep(0.1)
                    got = count_rows(port)
                    if got is None:
                        continue
                    n = got
                    if first is None and n:
                        first, first_n, cpu_first = time.perf_counter(), n, cpu_seconds(proc.pid)
                        if py_spy is not None:
                            spy = subprocess.Popen(
                                [
                                    PY_SPY,
                                    "record",
                                    "--format",
                                    "raw",
                                    "--rate",
                                    "200",
                                    "--threads",
                                    "--nonblocking",
                                    "--output",
                                    str(py_spy),
                                    "--pid",
                                    str(proc.pid),
                                ],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                            )
                last = time.perf_counter()
                cpu_load = cpu_seconds(proc.pid) - cpu_first
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(timeout=60)
                c0, i0 = cpu_seconds(proc.pid), time.perf_counter()
                time.sleep(idle_s)
                idle = (cpu_seconds(proc.pid) - c0) / (time.perf_counter() - i0)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            assert first is not None, "no row ever arrived"
            steady = (n - first_n) / max(last - first, 1e-9)
            print(
                f"  {kind}: {n} rows; {steady:,.0f} rows/s first row to last "
                f"({n / (last - t0):,.0f} rows/s from the sink's start, start-up "
                f"{first - t0:.1f}s); sink CPU {cpu_load:.1f}s over the load "
                f"({1e6 * cpu_load / max(n - first_n, 1):.1f} ms per 1,000 rows, "
                f"{cpu_load / max(last - first, 1e-9):.0%} of a core); idle afterwards: "
                f"{idle:.1%} of a core",
                flush=True,
            )
        finally:
            broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument(
        "--brokers", default="tansu", help="comma list for the Kafka path; empty to skip"
    )
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured after")
    ap.add_argument("--sink-root", type=Path, default=ROOT, help="checkout the sink runs from")
    ap.add_argument("--py-spy", type=Path, default=None, help="py-spy raw output (one broker)")
    ap.add_argument("--skip-load", action="store_true", help="only the Kafka path")
    args = ap.parse_args()
    print("DuckDB sink", flush=True)
    if not args.skip_load:
        bench_load(args.rows, args.batch)
    for kind in filter(None, args.brokers.split(",")):
        bench_kafka(kind, args.rows, args.idle, args.sink_root.resolve(), args.py_spy)


if __name__ == "__main__":
    main()
