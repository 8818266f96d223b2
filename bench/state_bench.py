"""State benchmark: memory and recovery time of one worker holding N users' state.

Writes N users' entries (a session that has seen a few turns) and N dedupe entries
straight into the worker's changelog topics, as a worker that served N users would
have left them, then starts `zapstream worker` and measures:
- recovery: from the worker's start until it reports its partitions assigned and its
  tables recovered (the `partitions assigned:` log line),
- RSS of the worker process once recovered, and per user.

    .venv/bin/python bench/state_bench.py --users 1000000 --brokers tansu,kafka --stores rocksdb,memory

Each worker is started twice on the same DATA_DIR: the second start shows what a
restart costs (with TABLE_STORE=rocksdb only the changelog written since is replayed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from aiokafka import AIOKafkaProducer

from processors.tables import wrap
from processors.user_state import SeenEntry, UserState
from schemas.conversation import Session
from schemas.topics import all_topic_specs
from zapstream.brokers.factory import make_broker
from zapstream.kafka_admin import ensure_topics_sync
from zapstream.settings import Settings


def user_value(i: int, partition: int, now: float) -> bytes:
    at = datetime.fromtimestamp(now, UTC)
    session = Session(
        user_id=f"55119{i:08d}",
        wa_id=f"55119{i:08d}",
        phone_number_id="100000000000001",
        first_inbound_at=at,
        last_inbound_at=at,
        turn_count=7,
        last_intent="faq_hours",
        language="pt",
        last_turn_id="turn-" + f"{i:032x}",
        updated_at=at,
    )
    state = UserState(session=session, applied=(partition, 10 * i), touched_at=now)
    return wrap(now + 90 * 86400, partition, state.encode())


async def produce(bootstrap: str, app_id: str, users: int, partitions: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    now = time.time()
    t0 = time.perf_counter()
    try:
        batch = []
        for i in range(users):
            p = i % partitions
            key = orjson.dumps(f"55119{i:08d}")  # Faust's json key serializer
            batch.append(
                await producer.send(
                    f"{app_id}-users-changelog", user_value(i, p, now), key=key, partition=p
                )
            )
            seen = SeenEntry(round(now, 3), f"{p}:{10 * i}").encode()
            batch.append(
                await producer.send(
                    f"{app_id}-seen-changelog",
                    wrap(now + 7 * 86400, p, seen),
                    key=orjson.dumps(f"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYIDNBRkU{i:012d}"),
                    partition=p,
                )
            )
            if len(batch) >= 20_000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench(kind: str, users: int, store: str) -> tuple[float, float, float] | None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = make_broker(kind, Path(tmp) / "broker")
        bootstrap = broker.start()
        try:
            settings = Settings(kafka_bootstrap_servers=bootstrap, data_dir=Path(tmp))
            ensure_topics_sync(bootstrap, all_topic_specs(settings))
            took = asyncio.run(produce(bootstrap, settings.app_id, users, settings.topic_partitions))
            print(f"  {kind}: wrote {users:,} users + {users:,} dedupe entries in {took:.1f}s", flush=True)
            env = dict(
                os.environ,
                KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                DATA_DIR=tmp,
                LOG_FORMAT="json",
                TABLE_STORE=store,
                WORKER_SLOT="bench",
            )
            first = start_worker(env)
            if first is None:
                print(f"  {kind}/{store}: the worker did not report its tables recovered in 600 s")
                return None
            print(
                f"  {kind}/{store}: {users:,} users ready {first[0]:.1f}s after the worker's "
                f"start; RSS {first[1]:,.0f} MiB",
                flush=True,
            )
            again = start_worker(env)
            if again is not None:
                print(
                    f"  {kind}/{store}: restarted on the same folder: ready in {again[0]:.1f}s; "
                    f"RSS {again[1]:,.0f} MiB",
                    flush=True,
                )
            return first[0], first[1], again[0] if again else float("nan")
        finally:
            broker.stop()


def start_worker(env: dict[str, str]) -> tuple[float, float] | None:
    """Start `zapstream worker`, wait until it reports its tables recovered, stop it:
    (seconds to ready, RSS in MiB once ready)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zapstream.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "partitions assigned:" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        ok = ready.wait(timeout=600)
        recovered = time.perf_counter() - t0
        time.sleep(2)
        rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return (recovered, rss) if ok else None


def main() -> None:
    # SIGTERM runs the `finally` blocks: the broker and the worker are stopped by pid.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--brokers", default="tansu,kafka")
    ap.add_argument("--stores", default="rocksdb,memory", help="TABLE_STORE values to compare")
    args = ap.parse_args()
    print(f"Worker state: {args.users:,} users", flush=True)
    for kind in filter(None, args.brokers.split(",")):
        for store in filter(None, args.stores.split(",")):
            empty, full = bench(kind, 0, store), bench(kind, args.users, store)
            if empty and full:
                extra_s, extra_mib = full[0] - empty[0], full[1] - empty[1]
                print(
                    f"  {kind}/{store}: the state of {args.users:,} users costs {extra_s:.1f}s "
                    f"of recovery at a first start, {full[2] - empty[2]:.1f}s at a restart, and "
                    f"{extra_mib:,.0f} MiB = {extra_mib * 2**20 / args.users:,.0f} bytes/user "
                    "(one session and one dedupe entry each)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
