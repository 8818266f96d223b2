"""Does an embedding backlog delay replies? Reply latency with and without one.

One `zapstream up` (ENGINE=echo, debounce off, one embedder) from this checkout. The
same load is measured twice (the chain benchmark's load generator and judge,
`bench/chain_bench.py`): first with the embedder idle, then right after 5,000
embedding requests were written straight onto `embeddings.requested.v1`, so that the
embedder works through them during the whole second step. Reported per step: reply
latency beyond debounce (p50/p95/p99), every reply once, the CPU of each process, and
how many vectors the sink loaded during the step (the backlog was really being
worked on).

    .venv/bin/python bench/embed_backlog_bench.py --rate 20 --messages 300 --backlog 5000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chain_bench import Sandbox, parse_args, step, warm_up
from bench.chain_load import pct
from bench.chain_report import describe
from bench.chain_stack import CodeTree, UpStack, free_port
from schemas.codec import encode
from schemas.embeddings import EmbeddingRequested
from schemas.topics import Topics
from tests.support.embedding_texts import corpus
from zapstream.settings import Settings

HERE = Path(__file__).resolve().parents[1]
OUT = HERE / "bench" / "out"


async def write_backlog(bootstrap: str, topic: str, count: int) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        now = datetime.now(UTC)
        sends = []
        for i, text in enumerate(corpus(count)):
            user = f"5511{900000000 + i % 500}"
            event = EmbeddingRequested(
                message_id=f"wamid.BACKLOG{i:07d}", user_id=user, text=text, at=now
            )
            sends.append(await producer.send(topic, encode(event), key=user.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def vectors(sink_port: int) -> int:
    resp = httpx.post(
        f"http://127.0.0.1:{sink_port}/query",
        json={"sql": "SELECT count(*) FROM embeddings"},
        timeout=30,
    )
    resp.raise_for_status()
    return int(resp.json()["rows"][0][0])


def wait_for_line(stack: UpStack, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(stack.tail):
            if needle in line:
                return line
        time.sleep(0.5)
    raise RuntimeError(f"no {needle!r} in the stack's output:\n{stack.output()}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--broker", default="tansu")
    ap.add_argument("--rate", type=float, default=20.0, help="webhooks per second")
    ap.add_argument("--messages", type=int, default=300, help="messages per step")
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument(
        "--cache-dir", type=Path, default=OUT / "embedding-cache", help="EMBEDDING_CACHE_DIR"
    )
    ap.add_argument("--backend", default="onnx")
    args = ap.parse_args()
    users = max(1, args.messages // 5)
    chain_args = parse_args(
        ["--rates", str(args.rate), "--users", str(users), "--per-user", "5", "--redeliver", "0"]
    )
    sink_port = free_port()
    env = {
        "ENGINE": "echo",
        "DEBOUNCE_QUIET_MS": "0",
        "SEND_RATE_PER_S": "100000",
        "SEND_BURST": "100000",
        "LOG_LEVEL": "INFO",
        "EMBEDDING_WORKERS": "1",
        "EMBEDDING_BACKEND": args.backend,
        "EMBEDDING_CACHE_DIR": str(args.cache_dir.resolve()),
        "SINK_WEB_PORT": str(sink_port),
    }
    with tempfile.TemporaryDirectory(prefix="embed-backlog-") as tmp:
        log = OUT / "logs" / f"embed-backlog-{args.broker}-{time.strftime('%H%M%S')}.log"
        stack = UpStack(CodeTree.at(str(HERE)), Path(tmp), args.broker, env, log)
        try:
            stack.start()
            wait_for_line(stack, "embedding model ready", timeout=600)
            line = wait_for_line(stack, " ready at ", timeout=10)
            m = re.search(r"ready at (\S+)", line)
            assert m, line
            bootstrap = m.group(1)
            sandbox = Sandbox(stack.sandbox_url)
            warm_up(stack, sandbox, chain_args)
            results = []
            for tag, backlog in ((1, 0), (2, args.backlog)):
                topic = Topics.from_settings(Settings()).embeddings  # the default prefix
                if backlog:
                    took = asyncio.run(write_backlog(bootstrap, topic, backlog))
                    print(f"  wrote {backlog} embedding requests in {took:.1f}s", flush=True)
                before = vectors(sink_port)
                row = step(
                    stack, sandbox, chain_args, tag=tag, rate=args.rate, quiet_ms=0, hooks=True
                )
                loaded = vectors(sink_port) - before
                print(describe(row), flush=True)
                results.append((backlog, row, loaded))
            print(
                f"\nreply latency beyond debounce, {args.rate:g} webhooks/s, "
                f"{args.messages} messages per step, broker {args.broker}, "
                f"EMBEDDING_BACKEND={args.backend}"
            )
            print(
                f"{'backlog':>8} {'answered':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
                f"{'vectors loaded in step':>23} {'embedder cpu %':>15} {'worker cpu %':>13}"
            )
            for backlog, row, loaded in results:
                v = row.verdict
                share = {r: s / row.window_s * 100 for r, s in row.cpu_s.items()}
                print(
                    f"{backlog:>8} {v.answered:>5}/{v.messages:<4} {pct(v.beyond_ms, 50):>7.0f} "
                    f"{pct(v.beyond_ms, 95):>7.0f} {pct(v.beyond_ms, 99):>7.0f} {loaded:>23} "
                    f"{share.get('embedder', 0):>15.0f} {share.get('worker', 0):>13.0f}"
                )
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
