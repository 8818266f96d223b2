"""Sink benchmark: rows/s into DuckDB.

1. `load`: DuckDBSink.load of message rows in batches (Arrow, one transaction each).
2. `kafka`: events already on the inbound topic → `zapstream sink` → DuckDB, timed
   from the sink's start until the last row is stored (the real path: Kafka fetch,
   decode, Arrow, DuckDB, offset commit).

    .venv/bin/python bench/sink_bench.py --rows 200000 --brokers tansu,kafka
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.events import MessageReceived
from schemas.topics import Topics, all_topic_specs
from sinks.duckdb_sink import DuckDBSink
from sinks.rows import MESSAGES, message_row, to_arrow
from zapstream.brokers.factory import make_broker
from zapstream.brokers.process import free_port
from zapstream.kafka_admin import ensure_topics_sync
from zapstream.settings import Settings


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
    evs = events(rows)
    with tempfile.TemporaryDirectory() as tmp:
        sink = DuckDBSink(Path(tmp) / "b.duckdb")
        sink.open()
        t0 = time.perf_counter()
        build = 0.0
        for i in range(0, rows, batch):
            b0 = time.perf_counter()
            table = to_arrow(MESSAGES, [message_row(e) for e in evs[i : i + batch]])
            build += time.perf_counter() - b0
            sink.load({"messages": table})
        elapsed = time.perf_counter() - t0
        n = sink.query("SELECT count(*) FROM messages").rows[0][0]
        sink.close()
    print(
        f"  load: {n} rows in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s "
        f"(rows→Arrow {build:.2f}s, DuckDB {elapsed - build:.2f}s; batch {batch})",
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


def bench_kafka(kind: str, rows: int) -> None:
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
            )
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "zapstream.cli", "sink"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                import httpx

                n = 0
                while n < rows and time.perf_counter() - t0 < 300:
                    time.sleep(0.2)
                    try:
                        r = httpx.get(
                            f"http://127.0.0.1:{port}/query",
                            params={"sql": "SELECT count(*) FROM messages"},
                            timeout=5,
                        )
                        n = r.json()["rows"][0][0]
                    except (httpx.HTTPError, KeyError, ValueError):
                        continue  # the sink is still starting
                elapsed = time.perf_counter() - t0
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            print(
                f"  {kind}: {n} rows from Kafka to DuckDB in {elapsed:.2f}s = {n / elapsed:,.0f} rows/s "
                "(includes the sink's start-up and group join)",
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
    args = ap.parse_args()
    print("DuckDB sink", flush=True)
    bench_load(args.rows, args.batch)
    for kind in filter(None, args.brokers.split(",")):
        bench_kafka(kind, args.rows)


if __name__ == "__main__":
    main()
