"""The chain benchmark's results: one row per step, the idle figures, the table."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bench.chain_load import Verdict, pct
from bench.chain_stack import ROLES


@dataclasses.dataclass
class Row:
    code: str
    broker: str
    quiet_ms: int
    status_webhooks: bool
    rate: float
    users: int
    posts: int
    non_200: int
    verdict: Verdict
    window_s: float
    cpu_s: dict[str, float]
    stalled: bool
    sandbox: dict[str, Any]  # the sandbox's counters after the step
    notes: list[str]
    idle_pct: float | None = None  # the whole stack's idle CPU, % of one core, if measured

    def net_cpu_ms_per_msg(self) -> float:
        """CPU per answered message above what the stack burns idle over the window."""
        if self.idle_pct is None:
            return math.nan
        idle = self.idle_pct / 100 * self.window_s
        return (sum(self.cpu_s.values()) - idle) * 1000 / max(self.verdict.answered, 1)

    def cpu_ms_per_msg(self, role: str | None = None) -> float:
        used = sum(self.cpu_s.values()) if role is None else self.cpu_s.get(role, 0.0)
        return used * 1000 / max(self.verdict.answered, 1)

    def meets(self, slo_ms: float) -> bool:
        v = self.verdict
        return v.ok and not self.non_200 and not self.stalled and pct(v.beyond_ms, 99) <= slo_ms


@dataclasses.dataclass
class Idle:
    code: str
    broker: str
    quiet_ms: int
    seconds: float
    share: dict[str, float]  # role -> % of one core


def describe(row: Row) -> str:
    v = row.verdict
    split = ", ".join(f"{r} {row.cpu_ms_per_msg(r):.2f}" for r in ROLES if r in row.cpu_s)
    shares = ", ".join(
        f"{r} {row.cpu_s[r] / row.window_s * 100:.0f}%" for r in ROLES if r in row.cpu_s
    )
    text = (
        f"    {row.rate:g}/s status webhooks {'on' if row.status_webhooks else 'off'}: "
        f"{row.users} users: answered {v.answered}/{v.messages} (posts {row.posts}, "
        f"non-200 {row.non_200}), "
        f"missing {v.missing}, duplicates {v.duplicates}, inversions {v.inversions}, "
        f"users with a wrong reply count {v.users_wrong}{', STALLED' if row.stalled else ''}\n"
        f"      beyond debounce p50 {pct(v.beyond_ms, 50):.0f} p95 {pct(v.beyond_ms, 95):.0f} "
        f"p99 {pct(v.beyond_ms, 99):.0f} max {max(v.beyond_ms, default=math.nan):.0f} ms; "
        f"replies/s {v.throughput:.0f}; window {row.window_s:.1f}s\n"
        f"      cpu ms per answered message: {split}; total {row.cpu_ms_per_msg():.2f}"
        f"{f'; net of idle {row.net_cpu_ms_per_msg():.2f}' if row.idle_pct is not None else ''}\n"
        f"      cpu % of one core over the window: {shares}\n"
        f"      sandbox: {row.sandbox}"
    )
    return "\n".join([text, *(f"      {n}" for n in row.notes)])


def table(rows: list[Row], idles: list[Idle], slo_ms: float) -> str:
    head = (
        f"{'code':<10} {'broker':<6} {'quiet':>5} {'st':<3} {'rate':>5} {'answered':>11} "
        f"{'miss':>4} {'dup':>4} {'inv':>4} {'n200':>4} {'p50':>6} {'p95':>6} {'p99':>6} "
        f"{'rep/s':>6} | {'cpu ms/msg':>10} {'net':>6} " + " ".join(f"{r:>7}" for r in ROLES)
    )
    lines = [
        "",
        "reply latency beyond debounce in ms; cpu ms per answered message (net: less the "
        "stack's idle cpu over the same time, with --idle-s)",
        head,
    ]
    lines.append("-" * len(head))
    for r in rows:
        v = r.verdict
        lines.append(
            f"{r.code:<10} {r.broker:<6} {r.quiet_ms:>5} {'on' if r.status_webhooks else 'off':<3} "
            f"{r.rate:>5g} {f'{v.answered}/{v.messages}':>11} {v.missing:>4} {v.duplicates:>4} "
            f"{v.inversions:>4} {r.non_200:>4} {pct(v.beyond_ms, 50):>6.0f} "
            f"{pct(v.beyond_ms, 95):>6.0f} {pct(v.beyond_ms, 99):>6.0f} {v.throughput:>6.0f} | "
            f"{r.cpu_ms_per_msg():>10.2f} {'-' if r.idle_pct is None else f'{r.net_cpu_ms_per_msg():.2f}':>6} "
            + " ".join(f"{r.cpu_ms_per_msg(role):>7.2f}" for role in ROLES)
            + (" STALLED" if r.stalled else "")
        )
    groups: dict[tuple[str, str, int, bool], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.code, r.broker, r.quiet_ms, r.status_webhooks), []).append(r)
    lines.append(
        f"\nsustained: highest rate with every message answered once, in order, no non-200, "
        f"p99 beyond debounce <= {slo_ms:g} ms"
    )
    for (code, broker, quiet, hooks), group in groups.items():
        good = [r.rate for r in group if r.meets(slo_ms)]
        best = f"{max(good):g}/s" if good else f"none of {', '.join(f'{r.rate:g}' for r in group)}"
        lines.append(
            f"  {code:<10} {broker:<6} quiet {quiet:>4} st {'on ' if hooks else 'off'} {best}"
        )
    if idles:
        lines.append(f"\nidle cpu, % of one core ({idles[0].seconds:g}s, no traffic)")
        lines.append(
            f"{'code':<10} {'broker':<6} {'quiet':>5} {'total':>7} "
            + " ".join(f"{r:>7}" for r in ROLES)
        )
        for i in idles:
            lines.append(
                f"{i.code:<10} {i.broker:<6} {i.quiet_ms:>5} {sum(i.share.values()):>7.1f} "
                + " ".join(f"{i.share.get(r, 0.0):>7.1f}" for r in ROLES)
            )
    return "\n".join(lines)


def row_json(r: Row) -> dict[str, Any]:
    v = r.verdict
    out = {k: getattr(r, k) for k in ("code", "broker", "quiet_ms", "status_webhooks", "rate")}
    return out | {
        "answered": v.answered, "messages": v.messages, "missing": v.missing,
        "duplicates": v.duplicates, "inversions": v.inversions, "non_200": r.non_200,
        "p50_ms": pct(v.beyond_ms, 50), "p95_ms": pct(v.beyond_ms, 95),
        "p99_ms": pct(v.beyond_ms, 99), "replies_per_s": v.throughput, "stalled": r.stalled,
        "cpu_ms_per_msg": {k: r.cpu_ms_per_msg(k) for k in r.cpu_s} | {"total": r.cpu_ms_per_msg(), "net_of_idle": r.net_cpu_ms_per_msg()},
    }  # fmt: skip
