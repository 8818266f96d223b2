"""Replay benchmark: events/s read, re-decided and published, and loaded by the sink.

Per broker: `--messages` inbound messages of `--users` users (texts the playbook
answers in different ways, a few seconds of event time apart per user) are seeded on
the inbound topic; the DuckDB sink (`zapstream sink`, a separate process) runs; then
`zapstream replay --json` (a separate process, as an operator runs it) replays the
whole topic. Reported: the replay's own rate (records read, decided and published,
from its start to its last acknowledgement), and the rate with the sink in the loop
(from the replay's start until DuckDB holds every replayed decision).

    .venv/bin/python bench/replay_bench.py --messages 100000 --users 10000 --brokers tansu,kafka

`--jobs N` passes `--jobs` to the replay; `--py-spy FILE` records the replay process
(`--format raw`: collapsed stacks) and prints its heaviest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from schemas.codec import encode  # noqa: E402
from schemas.events import MessageReceived  # noqa: E402
from schemas.topics import Topics, all_topic_specs  # noqa: E402
from zapstream.brokers.factory import make_broker  # noqa: E402
from zapstream.brokers.process import free_port  # noqa: E402
from zapstream.kafka_admin import ensure_topics_sync  # noqa: E402
from zapstream.settings import Settings  # noqa: E402

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
TEXTS = [
    "oi",
    "olá, tudo bem?",
    "qual o horário de funcionamento?",
    "menu",
    "quanto custa a entrega?",
    "obrigado!",
    "hello, what are your hours?",
    "atendente",
    "asdkjh qwe",
    "bom dia",
]


def seed_values(n: int, users: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(12)
    start = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for i in range(n):
        user = f"55119{i % users:08d}"
        at = start + timedelta(milliseconds=i * 50)  # a user's messages ~users*50 ms apart
        text = rng.choice(TEXTS)
        msg = MessageReceived(
            message_id=f"wamid.RB{i:09d}",
            user_id=user,
            wa_id=user,
            phone_number_id="100000000000001",
            type="text",
            sent_at=at,
            received_at=at,
            text=text,
            raw={"id": f"wamid.RB{i:09d}", "type": "text", "text": {"body": text}},
        )
        out.append((user.encode(), encode(msg)))
    return out


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=k) for k, v in values]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(port: int, sql: str) -> int | None:
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/query", json={"sql": sql}, timeout=10)
        return int(r.json()["rows"][0][0])
    except (httpx.HTTPError, KeyError, ValueError, IndexError, TypeError):
        return None


def top_frames(raw: Path, n: int = 25) -> list[tuple[float, str]]:
    """Own-time share of the heaviest frames in py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        total += int(samples)
        own[stack.split(";")[-1]] += int(samples)
    return [(c / max(total, 1), frame) for frame, c in own.most_common(n)]


def bench(kind: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = make_broker(kind, Path(tmp) / "broker")
        bootstrap = broker.start()
        sink = None
        try:
            settings = Settings(kafka_bootstrap_servers=bootstrap, data_dir=Path(tmp))
            ensure_topics_sync(bootstrap, all_topic_specs(settings))
            t0 = time.perf_counter()
            values = seed_values(args.messages, args.users)
            asyncio.run(produce(bootstrap, Topics.from_settings(settings).inbound, values))
            print(
                f"  {kind}: seeded {len(values)} messages in {time.perf_counter() - t0:.1f}s",
                flush=True,
            )
            port = free_port()
            env = dict(
                os.environ,
                KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                DATA_DIR=tmp,
                SINK_WEB_PORT=str(port),
                LOG_LEVEL="WARNING",
                ENGINE=args.engine,
                DEBOUNCE_QUIET_MS=str(args.quiet_ms),
                PYTHONPATH=str(ROOT),
            )
            sink = subprocess.Popen(
                [sys.executable, "-m", "zapstream.cli", "sink"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while count(port, "SELECT count(*) FROM messages") != args.messages:
                time.sleep(0.5)  # the sink has loaded the seed: only the replay moves now
            cmd = [sys.executable, "-m", "zapstream.cli", "replay", "--json", "--no-progress"]
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            if args.py_spy:
                cmd = [PY_SPY, "record", "--format", "raw", "--rate", "100", "--subprocesses",
                       "--nonblocking", "--output", str(args.py_spy), "--", *cmd]  # fmt: skip
            sink_cpu = cpu_seconds(sink.pid)
            started = time.perf_counter()
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read().decode(), err.read().decode()
            replayed = time.perf_counter()
            cpu = usage.ru_utime + usage.ru_stime  # the replay and its jobs' processes
            if proc.returncode != 0:
                raise SystemExit(f"replay failed ({proc.returncode}): {stderr[-2000:]}")
            lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
            if not lines:
                raise SystemExit(f"no report: {stdout[-1000:]} {stderr[-1000:]}")
            report = json.loads(lines[-1])
            turns = report["turns"]
            sql = f"SELECT count(*) FROM replay_decisions WHERE run_id = '{report['run_id']}'"
            while (count(port, sql) or 0) < turns:
                time.sleep(0.05)
            loaded = time.perf_counter()
            sink_cpu = cpu_seconds(sink.pid) - sink_cpu
            n = report["records"]
            print(
                f"  {kind}: engine {args.engine}, quiet {args.quiet_ms} ms, jobs "
                f"{args.jobs or 1}: {n} records, {report['messages']} messages of "
                f"{report['users']} users -> {turns} turns.\n"
                f"    replay alone {report['elapsed_s']:.2f}s = {report['records_per_s']:,.0f} events/s "
                f"(process {replayed - started:.2f}s with start-up: {n / (replayed - started):,.0f}/s); "
                f"with the sink in the loop {loaded - started:.2f}s = {n / (loaded - started):,.0f} events/s "
                f"(DuckDB held every decision {loaded - replayed:.2f}s after the replay ended)\n"
                f"    CPU: replay {cpu:.1f}s = {n / cpu:,.0f} events per CPU second "
                f"({1e6 * cpu / n:.0f} us/event, start-up included; the work alone "
                f"{report['cpu_s']:.1f}s = {1e6 * report['cpu_s'] / n:.0f} us/event); sink {sink_cpu:.1f}s "
                f"= {turns / max(sink_cpu, 1e-9):,.0f} rows per CPU second",
                flush=True,
            )
            if args.py_spy:
                print("    heaviest frames (own time):")
                for share, frame in top_frames(Path(args.py_spy)):
                    print(f"      {share:6.1%}  {frame[:150]}")
        finally:
            if sink is not None:
                sink.terminate()
                sink.wait(timeout=60)
            broker.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--brokers", default="tansu")
    p.add_argument("--engine", default="playbook")
    p.add_argument("--quiet-ms", type=int, default=1500)
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--py-spy", type=Path, default=None)
    args = p.parse_args()
    for kind in args.brokers.split(","):
        bench(kind.strip(), args)


if __name__ == "__main__":
    main()
