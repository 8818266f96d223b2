"""Crash soak: SIGKILL the worker again and again mid-stream; every reply must arrive
exactly once, in order.

Each round, `--users` users send `--per-user` texts each over concurrent webhooks
(ENGINE=echo), and 0.3 s in the worker is killed with SIGKILL; the supervisor restarts
it. The round passes when every user got exactly its replies, in order, with no
repeat. Rounds are spaced so the supervisor's restart budget (5 a minute) holds.
Prints, per round, the time from the kill to the last reply, and at the end how many
times the worker re-read a record Faust had lost (its "never handled" warning).

    .venv/bin/python bench/crash_soak.py --brokers tansu,kafka --kills 12
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.stack import Sandbox, Stack, new_user

KILL_SPACING_S = 13.0


def one_round(
    stack: Stack, sandbox: Sandbox, users: int, per_user: int, dump_after: float
) -> tuple[bool, float]:
    people = [new_user() for _ in range(users)]

    def send_all(user: str) -> None:
        for i in range(per_user):
            assert stack.post_text(f"k{i}", wa_id=user).status_code == 200

    with ThreadPoolExecutor(users) as pool:
        futures = [pool.submit(send_all, u) for u in people]
        time.sleep(0.3)
        os.kill(stack.child_pids()["worker"], signal.SIGKILL)
        killed = time.monotonic()
        for f in futures:
            f.result()
    expected = [f"echo: k{i}" for i in range(per_user)]
    deadline, dumped = killed + 60, False
    while time.monotonic() < deadline:
        if all(len(sandbox.texts(u)) >= per_user for u in people):
            break
        if not dumped and time.monotonic() > killed + dump_after:
            # a stall: the worker prints its tasks and consumer state (see the log)
            os.kill(stack.child_pids()["worker"], signal.SIGUSR1)
            print(f"    no full recovery after {dump_after:.0f} s: worker state dumped", flush=True)
            dumped = True
        time.sleep(0.2)
    recovered = time.monotonic() - killed
    time.sleep(1.0)  # a repeat would show up now
    ok = all(sandbox.texts(u) == expected for u in people)
    if not ok:
        for u in people:
            if sandbox.texts(u) != expected:
                print(f"    {u[-4:]}: got {sandbox.texts(u)}", flush=True)
    return ok, recovered


def run(
    kind: str, kills: int, users: int, per_user: int, log: Path | None, dump_after: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp), broker=kind, ENGINE="echo", DEBOUNCE_QUIET_MS="0", SEND_BACKOFF_BASE_S="0.05"
        ).start()
        sandbox = Sandbox(stack)
        passed, times = 0, []
        try:
            for k in range(kills):
                started = time.monotonic()
                ok, recovered = one_round(stack, sandbox, users, per_user, dump_after)
                passed += ok
                times.append(recovered)
                print(
                    f"  {kind} kill {k + 1}: {'ok' if ok else 'FAILED'}, "
                    f"last reply {recovered:.1f} s after the kill",
                    flush=True,
                )
                time.sleep(max(0.0, KILL_SPACING_S - (time.monotonic() - started)))
        finally:
            rereads = sum("but never handled" in line for line in stack.lines)
            stack.stop()
            if log is not None:
                path = log.with_name(f"{log.stem}-{kind}{log.suffix}")
                path.write_text("\n".join(stack.lines))
                print(f"{kind}: the stack's output is in {path}", flush=True)
        print(
            f"{kind}: {passed}/{kills} kills with every reply exactly once and in order; "
            f"slowest recovery {max(times):.1f} s; lost records re-read {rereads} times",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--brokers", default="tansu")
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--log", type=Path, help="write the stack's output to LOG-<broker>.txt")
    ap.add_argument(
        "--dump-after",
        type=float,
        default=25.0,
        help="seconds after a kill with replies still missing before the worker is asked "
        "(SIGUSR1) to print its tasks and consumer state into the log",
    )
    args = ap.parse_args()
    for kind in args.brokers.split(","):
        run(kind, args.kills, args.users, args.per_user, args.log, args.dump_after)


if __name__ == "__main__":
    main()
