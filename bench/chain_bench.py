"""End-to-end benchmark: signed webhook → Kafka → worker → Graph API (the sandbox),
with the stack started as users start it, from one or more code trees in turn.

For each code tree (`--code DIR`, repeatable; `--compare DIR` puts DIR before this
tree), broker and DEBOUNCE_QUIET_MS, a fresh `python -m zapstream.cli up` runs from
that tree (its own CLI, its own PYTHONPATH; nothing of it is imported here) with the
user's defaults (LOG_LEVEL=INFO, status webhooks on) except ENGINE=echo, the quiet
time asked for and the send rate limit lifted (SEND_RATE_PER_S; `--send-rate` puts
one back). Then, per status-webhook setting and rate: users who send several messages
each (`--users`, `--per-user`), `--redeliver` of the webhooks posted twice, and from
outside: every message answered exactly once, per-user order inversions, latency from
POST to the sandbox's receipt beyond debounce, and the CPU time of each of the
stack's processes (found as the descendants of the `up` process) per answered
message. `--idle-s` also measures each process's CPU while idle (after
`--idle-wait-s` from ready, no traffic), and then also the CPU per message net of
that idle burn (the CPU window runs from the first post until the last reply is in and
the sandbox has posted its status webhooks). One table at the end, a row per (code,
broker, quiet, status webhooks, rate); a step "meets" the sustained rate when every
message was answered once, in order, with no webhook refused and p99 within --slo-ms.
Logs and profiles go to bench/out/.

    .venv/bin/python bench/chain_bench.py --brokers tansu,kafka --rates 100,200,300 \\
        --users 300 --per-user 10 --compare /path/to/old/checkout --idle-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chain_load import TEXT, Plan, build_plan, drive, judge, pct
from bench.chain_profile import Recording, top_functions
from bench.chain_report import Idle, Row, describe, row_json, table
from bench.chain_stack import ROLES, CodeTree, UpStack, cpu_used, replaced_roles, sample_cpu

HERE = Path(__file__).resolve().parents[1]
OUT = HERE / "bench" / "out"
APP_SECRET = "dev-app-secret"
PHONE_NUMBER_ID = "100000000000001"  # the stack's development default


class Sandbox:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def configure(self, **knobs: Any) -> None:
        self.http.post("/_sandbox/config", json=knobs).raise_for_status()

    def reset(self) -> None:
        self.http.delete("/_sandbox/messages").raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/stats").json())

    def messages(self) -> list[dict[str, Any]]:
        resp = self.http.get("/_sandbox/messages")
        resp.raise_for_status()
        return list(resp.json())


def wait_for_replies(
    stack: UpStack, sandbox: Sandbox, plan: Plan, *, hooks: bool, deadline: float, stall_s: float
) -> tuple[float, bool]:
    """Until every message has a reply (and, with status webhooks, the sandbox has
    posted them all); returns (monotonic end, stalled)."""
    wanted = {(m.wa_id, m.k) for m in plan.messages}
    last_seen, progress_at, complete = -1, time.monotonic(), False
    while True:
        now = time.monotonic()
        st = sandbox.stats()
        accepted = int(st.get("accepted", 0))
        if accepted != last_seen:
            last_seen, progress_at = accepted, now
            if accepted >= len(wanted):
                got = {
                    (m.group(2), int(m.group(1)))
                    for r in sandbox.messages()
                    if (m := echo_key(r)) is not None
                }
                complete = wanted <= got
        if complete and (not hooks or not st.get("webhooks_pending")):
            return now, False
        if now > deadline or now - progress_at > stall_s or not stack.alive():
            return now, True
        time.sleep(0.25)


def echo_key(reply: dict[str, Any]) -> re.Match[str] | None:
    return TEXT.match((reply.get("body", {}).get("text") or {}).get("body", ""))


def measure_idle(stack: UpStack, args: argparse.Namespace) -> dict[str, float]:
    assert stack.ready_at is not None
    time.sleep(max(0.0, stack.ready_at + args.idle_wait_s - time.monotonic()))
    before = sample_cpu(stack.pid)
    time.sleep(args.idle_s)
    after = sample_cpu(stack.pid)
    seconds = after.at - before.at
    return {role: s / seconds * 100 for role, s in cpu_used(before, after).items()}


def warm_up(stack: UpStack, sandbox: Sandbox, args: argparse.Namespace) -> None:
    """A few messages first, so no step pays for partition assignment or first
    connections; then the sandbox starts empty."""
    if args.warmup:
        plan = build_plan(
            rate=50, count=args.warmup, users=args.warmup, per_user=1, redeliver=0,
            redeliver_max_s=0, tag=99, seed=args.seed, secret=APP_SECRET,
            phone_number_id=PHONE_NUMBER_ID,
        )  # fmt: skip
        asyncio.run(drive(f"{stack.url}/webhook", plan))
        _, stalled = wait_for_replies(
            stack, sandbox, plan, hooks=True, deadline=time.monotonic() + 120, stall_s=60
        )
        if stalled:
            print("    warm-up: not every message was answered", flush=True)
    sandbox.reset()


def write_timeline(path: Path, timeline: list[tuple[float, float]]) -> str:
    """Each reply's latency by when its message was posted (CSV), and the second of the
    load whose replies were slowest: a tail from one stall reads differently from a
    chain that fell behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("posted_s,beyond_ms\n" + "".join(f"{t:.3f},{ms:.1f}\n" for t, ms in timeline))
    seconds: dict[int, list[float]] = {}
    for t, ms in timeline:
        seconds.setdefault(int(t), []).append(ms)
    if not seconds:
        return f"timeline: {path} (no replies)"
    worst = max(seconds, key=lambda s: pct(seconds[s], 95))
    over = sum(1 for s in seconds.values() if pct(s, 95) > 250)
    return (
        f"timeline: {path}; slowest second of load: {worst}s (p95 {pct(seconds[worst], 95):.0f} "
        f"ms); seconds with p95 > 250 ms: {over} of {len(seconds)}"
    )


def step(
    stack: UpStack,
    sandbox: Sandbox,
    args: argparse.Namespace,
    *,
    tag: int,
    rate: float,
    quiet_ms: int,
    hooks: bool,
) -> Row:
    sandbox.configure(status_webhooks=hooks)
    sandbox.reset()
    name = f"{stack.code.rev}-{stack.broker}-q{quiet_ms}-{'st' if hooks else 'nost'}-{rate:g}"
    recordings = []
    for role in args.profile:
        for i, pid in enumerate(stack.pids(role)):
            ext = "json" if args.profile_format == "speedscope" else "svg"
            path = OUT / "profiles" / f"{name}-{role}{i or ''}.{ext}"
            recordings.append(Recording(pid, path, args.profile_format))
    if recordings:
        time.sleep(1.0)  # py-spy attaching
    count = round(rate * args.duration) if args.duration else args.users * args.per_user
    # built last, so that setup (py-spy attaching, above) is not in the schedule
    plan = build_plan(
        rate=rate, count=count, users=args.users, per_user=args.per_user,
        redeliver=args.redeliver, redeliver_max_s=args.redeliver_max_s, tag=tag,
        seed=args.seed, secret=APP_SECRET, phone_number_id=PHONE_NUMBER_ID,
    )  # fmt: skip
    before = sample_cpu(stack.pid)
    sent = asyncio.run(drive(f"{stack.url}/webhook", plan))
    last_post = max(at for at, _ in plan.posts)
    deadline = time.monotonic() + max(0.0, last_post - time.time()) + quiet_ms / 1000
    end, stalled = wait_for_replies(
        stack, sandbox, plan, hooks=hooks, deadline=deadline + args.drain_s,
        stall_s=args.stall_s,
    )  # fmt: skip
    after = sample_cpu(stack.pid)
    notes = [r.stop() for r in recordings]
    for r in recordings:
        notes += top_functions(r.out)
    time.sleep(args.tail_s)  # late duplicates still count
    verdict = judge(plan, sandbox.messages(), quiet_ms, args.debounce_max_ms, args.debounce_max)
    stats = sandbox.stats()
    notes.append(write_timeline(OUT / "timelines" / f"{name}.csv", verdict.timeline))
    if verdict.inversions:
        notes.append("inversions: " + "; ".join(verdict.inversion_examples))
    if sent.errors:
        notes.append("post errors: " + "; ".join(sent.errors))
    notes.append(
        f"webhook answered in p50 {pct(sent.answer_ms, 50):.0f} p99 {pct(sent.answer_ms, 99):.0f} "
        f"max {max(sent.answer_ms, default=math.nan):.0f} ms"
        + (
            f"; {len(sent.held_ms)} posts waited for the user's previous one "
            f"(max {max(sent.held_ms):.0f} ms)"
            if sent.held_ms
            else ""
        )
    )
    if sent.max_lag_s > 0.1:
        notes.append(f"load generator fell {sent.max_lag_s:.2f}s behind its schedule")
    if gone := replaced_roles(before, after):
        notes.append(f"processes replaced during the step: {', '.join(gone)}")
    return Row(
        code=stack.code.label,
        broker=stack.broker,
        quiet_ms=quiet_ms,
        status_webhooks=hooks,
        rate=rate,
        users=len({m.wa_id for m in plan.messages}),
        posts=len(plan.posts),
        non_200=sum(n for status, n in sent.statuses.items() if status != 200),
        verdict=verdict,
        window_s=end - before.at,
        cpu_s=cpu_used(before, after),
        stalled=stalled,
        sandbox={k: stats.get(k) for k in ("requests", "accepted", "reads", "rejected")}
        | {"webhooks": stats.get("webhooks"), "webhooks_pending": stats.get("webhooks_pending")},
        notes=notes,
    )


def run_stack(
    code: CodeTree, broker: str, quiet_ms: int, args: argparse.Namespace, rows: list[Row],
    idles: list[Idle],
) -> None:  # fmt: skip
    env = {
        "ENGINE": "echo",
        "DEBOUNCE_QUIET_MS": str(quiet_ms),
        "SEND_RATE_PER_S": str(args.send_rate or 100000),
        "LOG_LEVEL": args.log_level,
        "WORKERS": str(args.workers),
    }
    if not args.send_rate:
        env["SEND_BURST"] = "100000"
    env.update(kv.split("=", 1) for kv in args.env)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="chain-bench-") as tmp:
        log = OUT / "logs" / f"{code.rev}-{broker}-q{quiet_ms}-{time.strftime('%H%M%S')}.log"
        stack = UpStack(code, Path(tmp), broker, env, log)
        where = stack.check_imports()
        print(f"\n== code {code.label} ({code.path}, imports {where}) broker={broker} "
              f"DEBOUNCE_QUIET_MS={quiet_ms}; log {log}", flush=True)  # fmt: skip
        t0 = time.monotonic()
        try:
            stack.start()
            print(f"  up in {time.monotonic() - t0:.1f}s", flush=True)
            sandbox = Sandbox(stack.sandbox_url)
            if args.idle_s:
                share = measure_idle(stack, args)
                idles.append(Idle(code.label, broker, quiet_ms, args.idle_s, share))
                print("  idle cpu (% of one core): " + ", ".join(
                    f"{r} {share[r]:.1f}" for r in ROLES if r in share
                ) + f"; total {sum(share.values()):.1f}", flush=True)  # fmt: skip
            warm_up(stack, sandbox, args)
            idle_pct = sum(idles[-1].share.values()) if args.idle_s else None
            tag = 0
            for hooks in args.status_webhooks:
                for rate in args.rates:
                    tag += 1
                    row = step(
                        stack, sandbox, args, tag=tag, rate=rate, quiet_ms=quiet_ms, hooks=hooks
                    )
                    row.idle_pct = idle_pct
                    rows.append(row)
                    print(describe(row), flush=True)
                    if not stack.alive():
                        print("  the stack exited:\n" + stack.output(), flush=True)
                        return
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"  failed: {exc}", flush=True)
        finally:
            code_rc = stack.stop()
            if code_rc not in (0, None):
                print(f"  zapstream up exited with {code_rc}", flush=True)
            if stack.problems:
                print("  warnings/errors in the stack's output: " + ", ".join(
                    f"{k} ×{n}" for k, n in stack.problems.most_common()
                ), flush=True)  # fmt: skip
                for line in stack.problem_samples[:5]:
                    print(f"    {line}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="DIR",
        help="a code tree to measure (repeatable; default: this checkout)",
    )
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="DIR",
        help="measure DIR too, before the --code trees (e.g. an old commit's worktree)",
    )
    ap.add_argument("--brokers", default="tansu")
    ap.add_argument("--rates", default="100,200,300", help="webhooks per second, comma list")
    ap.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load per rate (default: one cohort, users × per-user / rate)",
    )
    ap.add_argument("--quiet-ms", default="0", help="DEBOUNCE_QUIET_MS values, comma list")
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument(
        "--redeliver",
        type=float,
        default=0.05,
        help="fraction of webhooks posted twice (same message id)",
    )
    ap.add_argument(
        "--redeliver-max-s",
        type=float,
        default=3.0,
        help="a redelivery comes 0..this many seconds after the first delivery",
    )
    ap.add_argument("--status-webhooks", default="on", help="on, off or on,off")
    ap.add_argument(
        "--idle-s", type=float, default=0.0, help="measure idle CPU for this long (0: skip)"
    )
    ap.add_argument(
        "--idle-wait-s", type=float, default=10.0, help="idle measure starts this long after ready"
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument(
        "--send-rate", type=float, default=None, help="SEND_RATE_PER_S (default: lifted to 100000)"
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the stack (repeatable)",
    )
    ap.add_argument("--warmup", type=int, default=20, help="messages answered before measuring")
    ap.add_argument(
        "--drain-s",
        type=float,
        default=60.0,
        help="longest wait for replies after the last post (+ quiet time)",
    )
    ap.add_argument(
        "--stall-s", type=float, default=30.0, help="give up after this long without a reply"
    )
    ap.add_argument("--tail-s", type=float, default=1.0, help="wait this long for late duplicates")
    ap.add_argument(
        "--slo-ms",
        type=float,
        default=2000.0,
        help="p99 beyond debounce that a sustained rate must meet",
    )
    ap.add_argument(
        "--profile",
        default="",
        help="py-spy record these processes: worker, api, sink, sandbox, up",
    )
    ap.add_argument("--profile-format", default="speedscope", choices=["speedscope", "flamegraph"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)  # fmt: skip
    args.rates = [float(r) for r in args.rates.split(",")]
    args.quiet = [int(q) for q in args.quiet_ms.split(",")]
    args.brokers = args.brokers.split(",")
    args.status_webhooks = [s.strip() == "on" for s in args.status_webhooks.split(",")]
    args.profile = [p for p in args.profile.split(",") if p]
    env = dict(kv.split("=", 1) for kv in args.env)
    args.debounce_max_ms = int(env.get("DEBOUNCE_MAX_MS", 5000))
    args.debounce_max = int(env.get("DEBOUNCE_MAX_MESSAGES", 10))
    args.trees = [CodeTree.at(d) for d in args.compare + (args.code or [str(HERE)])]
    return args


def main() -> None:
    args = parse_args()
    rows: list[Row] = []
    idles: list[Idle] = []
    print("code trees: " + ", ".join(f"{t.label} = {t.path}" for t in args.trees), flush=True)
    for broker in args.brokers:
        for quiet in args.quiet:
            for code in args.trees:
                run_stack(code, broker, quiet, args, rows, idles)
    print(table(rows, idles, args.slo_ms), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "rows": [row_json(r) for r in rows],
            "idle_pct_of_one_core": [dataclasses.asdict(i) for i in idles],
        }
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
