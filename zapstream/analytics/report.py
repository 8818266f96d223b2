"""The figures of `zapstream report` and `GET /dashboard`: SQL over the sink's tables,
shaped into one plain, JSON-ready dict. Every definition is in docs/analytics.md.

`build_report(query, period)` takes any `query(sql) -> (columns, rows)`: a `Reader`
(the sink's `/query` or the file read-only) or a DuckDB connection in a test. The SQL
returns only numbers, text and NULL (what crosses the sink's JSON as itself), and
never depends on the connection's time zone (buckets are UTC).

Tables that other parts of the pipeline add (`handoffs`, `reengagements`, ...) are
optional: while one is missing its figures are 0 or null and its name is listed in
`missing_tables`, never an error. Replays write only `replay_*` tables, so nothing
here counts a replayed decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from zapstream.analytics.period import Period, iso

Rows = tuple[list[str], list[tuple[Any, ...]]]
Query = Callable[[str], Rows]

CONVERSATION_GAP = timedelta(minutes=30)
"""A user's turns belong to one conversation while each follows the previous within this."""
MAX_HOURLY_BUCKETS = 24 * 93
"""Periods longer than this (about three months) get no per-hour series, only per day."""

FALLBACK_INTENT = "fallback"
HANDOFF_ACTION = "request_handoff"


@dataclass(frozen=True)
class _Ctx:
    query: Query
    tables: frozenset[str]
    lo: str
    hi: str

    def has(self, *names: str) -> bool:
        return all(n in self.tables for n in names)

    def within(self, column: str) -> str:
        return f"{column} >= {self.lo} AND {column} < {self.hi}"

    def one(self, sql: str) -> dict[str, Any]:
        columns, rows = self.query(sql)
        return dict(zip(columns, rows[0], strict=True)) if rows else dict.fromkeys(columns)

    def all(self, sql: str) -> list[dict[str, Any]]:
        columns, rows = self.query(sql)
        return [dict(zip(columns, r, strict=True)) for r in rows]


OPTIONAL_TABLES = ("handoffs", "reengagements")
CORE_TABLES = (
    "messages",
    "turns",
    "outbound_messages",
    "send_results",
    "statuses",
    "dead_letters",
    "processing_dead_letters",
    "sink_dead_letters",
)


def build_report(
    query: Query, period: Period, *, conversation_gap: timedelta = CONVERSATION_GAP
) -> dict[str, Any]:
    _, rows = query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
    tables = frozenset(str(r[0]) for r in rows)
    lo, hi = period.sql_bounds()
    ctx = _Ctx(query, tables, lo, hi)
    conversations = _conversations(ctx, conversation_gap)
    return {
        "period": period.as_dict(),
        "missing_tables": [t for t in (*CORE_TABLES, *OPTIONAL_TABLES) if t not in tables],
        "inbound": _inbound(ctx, period),
        "reply_latency": _reply_latency(ctx),
        "decision_latency": _decision_latency(ctx),
        "conversations": conversations,
        "intents": _intents(ctx),
        "handoffs": _handoffs(ctx, conversations["count"]),
        "delivery": _delivery(ctx),
        "reengagements": _reengagements(ctx),
        "dead_letters": _dead_letters(ctx),
    }


# --- inbound ------------------------------------------------------------------------


def _inbound(ctx: _Ctx, period: Period) -> dict[str, Any]:
    hourly = period.hours <= MAX_HOURLY_BUCKETS
    out: dict[str, Any] = {
        "messages": 0,
        "active_users": 0,
        "per_hour": _fill(period, "hour", []) if hourly else None,
        "per_day": _fill(period, "day", []),
    }
    if not ctx.has("messages"):
        return out
    # one scan: the totals, the days and the hours (GROUPING SETS)
    rows = ctx.all(
        f"""
        WITH m AS (
            SELECT user_id, date_trunc('hour', timezone('UTC', received_at)) AS hour
            FROM messages WHERE {ctx.within("received_at")}
        )
        SELECT grouping(day) AS no_day, grouping(hour) AS no_hour,
               strftime(day, '%Y-%m-%d') AS day_at, strftime(hour, '%Y-%m-%dT%H:00:00Z') AS hour_at,
               count(*) AS messages, count(DISTINCT user_id) AS active_users
        FROM (SELECT user_id, hour, date_trunc('day', hour) AS day FROM m)
        GROUP BY GROUPING SETS ((), (day), {"(hour)" if hourly else "()"})
        """
    )
    days = [dict(r, at=r["day_at"]) for r in rows if not r["no_day"]]
    hours = [dict(r, at=r["hour_at"]) for r in rows if not r["no_hour"]]
    total = next((r for r in rows if r["no_day"] and r["no_hour"]), None)
    if total is not None:
        out["messages"] = int(total["messages"])
        out["active_users"] = int(total["active_users"])
    out["per_day"] = _fill(period, "day", days)
    if hourly:
        out["per_hour"] = _fill(period, "hour", hours)
    return out


def buckets(period: Period, unit: str) -> list[str]:
    """Every UTC hour (`2026-11-30T09:00:00Z`) or day (`2026-11-30`) the period touches."""
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    start = period.start.astimezone(UTC)
    at = (
        start.replace(minute=0, second=0, microsecond=0)
        if unit == "hour"
        else start.replace(hour=0, minute=0, second=0, microsecond=0)
    )
    out = []
    while at < period.end:
        out.append(iso(at) if unit == "hour" else at.date().isoformat())
        at += step
    return out


def _fill(period: Period, unit: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {str(r["at"]): r for r in rows}
    return [
        {
            "at": at,
            "messages": int(seen[at]["messages"]) if at in seen else 0,
            "active_users": int(seen[at]["active_users"]) if at in seen else 0,
        }
        for at in buckets(period, unit)
    ]


# --- latency --------------------------------------------------------------------------


def _reply_latency(ctx: _Ctx) -> dict[str, Any]:
    """Per turn: its first inbound message reaching the webhook → the first reply of it
    (not a mark-as-read) accepted by the Graph API."""
    out: dict[str, Any] = {"turns": 0, "answered": 0, "p50_s": None, "p95_s": None}
    if not ctx.has("turns"):
        return out
    out["turns"] = int(ctx.one(f"SELECT count(*) AS n FROM turns WHERE {ctx.within('decided_at')}")["n"])
    if not ctx.has("messages", "outbound_messages", "send_results"):
        return out
    row = ctx.one(
        f"""
        WITH t AS (
            SELECT turn_id, unnest(from_json(message_ids, '["VARCHAR"]')) AS message_id
            FROM turns WHERE {ctx.within("decided_at")}
        ),
        first_in AS (
            SELECT t.turn_id, min(m.received_at) AS at
            FROM t JOIN messages m ON m.message_id = t.message_id GROUP BY 1
        ),
        first_out AS (
            SELECT o.turn_id, min(r.sent_at) AS at
            FROM outbound_messages o
            JOIN send_results r ON r.outbound_id = o.outbound_id AND r.outcome = 'sent'
            WHERE o.kind <> 'mark_read' AND o.turn_id IN (SELECT turn_id FROM t)
            GROUP BY 1
        ),
        x AS (SELECT epoch(o.at - i.at) AS s FROM first_in i JOIN first_out o USING (turn_id))
        SELECT count(*) AS answered, quantile_cont(s, 0.5) AS p50_s,
               quantile_cont(s, 0.95) AS p95_s
        FROM x
        """
    )
    out.update(answered=int(row["answered"] or 0), p50_s=_f(row["p50_s"]), p95_s=_f(row["p95_s"]))
    return out


def _decision_latency(ctx: _Ctx) -> dict[str, Any]:
    """Per turn: its first message reaching the webhook → the engine's decision
    (`turns.latency_ms`; includes the debounce wait)."""
    if not ctx.has("turns"):
        return {"turns": 0, "p50_s": None, "p95_s": None}
    row = ctx.one(
        f"SELECT count(latency_ms) AS turns, quantile_cont(latency_ms, 0.5) / 1000 AS p50_s, "
        f"quantile_cont(latency_ms, 0.95) / 1000 AS p95_s FROM turns WHERE {ctx.within('decided_at')}"
    )
    return {"turns": int(row["turns"] or 0), "p50_s": _f(row["p50_s"]), "p95_s": _f(row["p95_s"])}


# --- conversations and intents -------------------------------------------------------------


def _conversations(ctx: _Ctx, gap: timedelta) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gap_s": gap.total_seconds(),
        "count": 0,
        "turns": 0,
        "turns_per_conversation": {"mean": None, "p50": None, "max": None},
    }
    if not ctx.has("turns"):
        return out
    row = ctx.one(
        f"""
        WITH t AS (
            SELECT user_id, decided_at,
                   lag(decided_at) OVER (PARTITION BY user_id ORDER BY decided_at) AS prev
            FROM turns WHERE {ctx.within("decided_at")}
        ),
        s AS (
            SELECT user_id,
                   sum(CASE WHEN prev IS NULL OR epoch(decided_at - prev) > {gap.total_seconds()}
                            THEN 1 ELSE 0 END)
                       OVER (PARTITION BY user_id ORDER BY decided_at) AS conversation
            FROM t
        ),
        c AS (SELECT count(*) AS turns FROM s GROUP BY user_id, conversation)
        SELECT count(*) AS conversations, coalesce(sum(turns), 0)::BIGINT AS turns,
               avg(turns)::DOUBLE AS mean, quantile_cont(turns, 0.5)::DOUBLE AS p50,
               max(turns)::BIGINT AS max
        FROM c
        """
    )
    out["count"] = int(row["conversations"] or 0)
    out["turns"] = int(row["turns"] or 0)
    out["turns_per_conversation"] = {"mean": _f(row["mean"]), "p50": _f(row["p50"]), "max": row["max"]}
    return out


def _intents(ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {"by_intent": [], "fallbacks": 0, "fallback_rate": None, "turns": 0}
    if not ctx.has("turns"):
        return out
    rows = ctx.all(
        f"SELECT coalesce(intent, '(none)') AS intent, count(*) AS turns FROM turns "
        f"WHERE {ctx.within('decided_at')} GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    total = sum(int(r["turns"]) for r in rows)
    fallbacks = sum(int(r["turns"]) for r in rows if r["intent"] == FALLBACK_INTENT)
    out.update(
        by_intent=[{"intent": r["intent"], "turns": int(r["turns"])} for r in rows],
        turns=total,
        fallbacks=fallbacks,
        fallback_rate=_rate(fallbacks, total),
    )
    return out


# --- handoffs --------------------------------------------------------------------------


def _handoffs(ctx: _Ctx, conversations: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requested_by_engine": 0,
        "opened": 0,
        "rate": None,
        "answered_by_human": 0,
        "time_to_human_s": {"p50": None, "p95": None},
        "by_outcome": [],
        "by_source": [],
    }
    if ctx.has("turns"):
        out["requested_by_engine"] = int(
            ctx.one(
                f"SELECT count(*) AS n FROM turns WHERE {ctx.within('decided_at')} AND "
                f"list_contains(json_extract_string(actions, '$[*].action'), '{HANDOFF_ACTION}')"
            )["n"]
        )
    if not ctx.has("handoffs"):
        return out
    where = ctx.within("opened_at")
    row = ctx.one(
        f"SELECT count(*) AS opened, count(first_agent_reply_at) AS answered, "
        f"quantile_cont(epoch(first_agent_reply_at - opened_at), 0.5) AS p50, "
        f"quantile_cont(epoch(first_agent_reply_at - opened_at), 0.95) AS p95 "
        f"FROM handoffs WHERE {where}"
    )
    out["opened"] = int(row["opened"] or 0)
    out["answered_by_human"] = int(row["answered"] or 0)
    out["rate"] = _rate(out["opened"], conversations)
    out["time_to_human_s"] = {"p50": _f(row["p50"]), "p95": _f(row["p95"])}
    for column, key in (("outcome", "by_outcome"), ("source", "by_source")):
        out[key] = [
            {column: r["v"], "count": int(r["n"])}
            for r in ctx.all(
                f"SELECT coalesce({column}, '(none)') AS v, count(*) AS n FROM handoffs "
                f"WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1"
            )
        ]
    return out


# --- delivery --------------------------------------------------------------------------


def _delivery(ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {
        "outbound": 0,
        "accepted": 0,
        "delivered": 0,
        "read": 0,
        "failed": 0,
        "dead_lettered": 0,
        "pending": 0,
        "delivery_rate": None,
        "read_rate": None,
        "delivery_delay_s": {"p50": None, "p95": None},
        "read_delay_s": {"p50": None, "p95": None},
    }
    if not ctx.has("outbound_messages", "send_results", "statuses", "dead_letters"):
        return out
    row = ctx.one(
        f"""
        WITH x AS ({delivery_rows_sql(ctx.lo, ctx.hi)})
        SELECT count(*) AS outbound,
               count(accepted_at) AS accepted,
               count(*) FILTER (WHERE state IN ('delivered', 'read')) AS delivered,
               count(*) FILTER (WHERE state = 'read') AS read,
               count(*) FILTER (WHERE state = 'failed') AS failed,
               count(*) FILTER (WHERE state = 'dead_lettered') AS dead_lettered,
               count(*) FILTER (WHERE state = 'pending') AS pending,
               quantile_cont(epoch(delivered_at - accepted_at), 0.5) AS d50,
               quantile_cont(epoch(delivered_at - accepted_at), 0.95) AS d95,
               quantile_cont(epoch(read_at - accepted_at), 0.5) AS r50,
               quantile_cont(epoch(read_at - accepted_at), 0.95) AS r95
        FROM x
        """
    )
    for key in ("outbound", "accepted", "delivered", "read", "failed", "dead_lettered", "pending"):
        out[key] = int(row[key] or 0)
    out["delivery_rate"] = _rate(out["delivered"], out["accepted"])
    out["read_rate"] = _rate(out["read"], out["delivered"])
    out["delivery_delay_s"] = {"p50": _f(row["d50"]), "p95": _f(row["d95"])}
    out["read_delay_s"] = {"p50": _f(row["r50"]), "p95": _f(row["r95"])}
    return out


def delivery_rows_sql(lo: str, hi: str) -> str:
    """`message_delivery` (sinks/migrate.py) for the replies created in [lo, hi) only,
    `mark_read` left out: the view aggregates every status ever received before it
    can be filtered, this looks only at the statuses of those replies. Same states,
    same times (a test holds the two to each other)."""
    return f"""
        WITH o AS (
            SELECT outbound_id FROM outbound_messages
            WHERE kind <> 'mark_read' AND created_at >= {lo} AND created_at < {hi}
        ),
        r AS (
            SELECT outbound_id, wamid, sent_at AS accepted_at FROM send_results
            WHERE outcome = 'sent' AND outbound_id IN (SELECT outbound_id FROM o)
        ),
        s AS (
            SELECT wamid,
                   min(status_at) FILTER (WHERE status = 'delivered') AS delivered_at,
                   min(status_at) FILTER (WHERE status = 'read') AS read_at,
                   max(CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                                   WHEN 'played' THEN 3 ELSE 0 END) AS step,
                   bool_or(status = 'failed') AS failed
            FROM statuses WHERE wamid IN (SELECT wamid FROM r) GROUP BY wamid
        ),
        d AS (SELECT outbound_id FROM dead_letters WHERE outbound_id IN (SELECT outbound_id FROM o))
        SELECT o.outbound_id, r.accepted_at, s.delivered_at, s.read_at,
               CASE WHEN s.failed THEN 'failed'
                    WHEN s.step = 3 THEN 'read' WHEN s.step = 2 THEN 'delivered'
                    WHEN s.step = 1 THEN 'sent'
                    WHEN r.outbound_id IS NOT NULL THEN 'accepted'
                    WHEN d.outbound_id IS NOT NULL THEN 'dead_lettered'
                    ELSE 'pending' END AS state
        FROM o LEFT JOIN r ON r.outbound_id = o.outbound_id
        LEFT JOIN s ON s.wamid = r.wamid
        LEFT JOIN d ON d.outbound_id = o.outbound_id
    """


# --- re-engagements ------------------------------------------------------------------------


def _reengagements(ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sent": 0,
        "returned": 0,
        "return_rate": None,
        "time_to_return_s": {"p50": None, "p95": None},
        "by_kind": [],
    }
    if not ctx.has("reengagements"):
        return out
    where = ctx.within("sent_at")
    row = ctx.one(
        f"SELECT count(*) AS sent, count(returned_at) AS returned, "
        f"quantile_cont(epoch(returned_at - sent_at), 0.5) AS p50, "
        f"quantile_cont(epoch(returned_at - sent_at), 0.95) AS p95 "
        f"FROM reengagements WHERE {where}"
    )
    out["sent"] = int(row["sent"] or 0)
    out["returned"] = int(row["returned"] or 0)
    out["return_rate"] = _rate(out["returned"], out["sent"])
    out["time_to_return_s"] = {"p50": _f(row["p50"]), "p95": _f(row["p95"])}
    out["by_kind"] = [
        {"kind": r["kind"], "sent": int(r["sent"]), "returned": int(r["returned"])}
        for r in ctx.all(
            f"SELECT coalesce(kind, '(none)') AS kind, count(*) AS sent, "
            f"count(returned_at) AS returned FROM reengagements WHERE {where} "
            f"GROUP BY 1 ORDER BY 2 DESC, 1"
        )
    ]
    return out


# --- dead letters ----------------------------------------------------------------------------


def _dead_letters(ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {"outbound": 0, "by_error_code": [], "processing": [], "sink": 0}
    if ctx.has("dead_letters"):
        rows = ctx.all(
            f"SELECT error_code, count(*) AS n, min(reason) AS reason FROM dead_letters "
            f"WHERE {ctx.within('failed_at')} GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST"
        )
        out["by_error_code"] = [
            {"error_code": r["error_code"], "count": int(r["n"]), "reason": r["reason"]}
            for r in rows
        ]
        out["outbound"] = sum(r["count"] for r in out["by_error_code"])
    if ctx.has("processing_dead_letters"):
        out["processing"] = [
            {"stage": r["stage"], "error_type": r["error_type"], "count": int(r["n"])}
            for r in ctx.all(
                f"SELECT stage, error_type, count(*) AS n FROM processing_dead_letters "
                f"WHERE {ctx.within('failed_at')} GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
            )
        ]
    if ctx.has("sink_dead_letters"):
        out["sink"] = int(
            ctx.one(
                f"SELECT count(*) AS n FROM sink_dead_letters WHERE {ctx.within('failed_at')}"
            )["n"]
        )
    return out


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _f(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
