"""A small, hand-checkable DuckDB dataset for the analytics tests.

The file is made by the sink's own DDL (`sinks.migrate` over `sinks.tables.TABLES`),
then the tables other parts of the pipeline add (handoffs, re-engagements, replays)
with the columns of their contract when the specs do not create them yet, then rows.
The period under test is PERIOD (2026-11-02, a whole UTC day); a few rows sit just
outside it on both sides and must not count. The expected figures are worked out by
hand in tests/integration/test_analytics_report.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from sinks.migrate import migrate
from sinks.tables import TABLES
from zapstream.analytics.period import Period

PERIOD = Period(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))

CONTRACT_DDL = {
    "reengagements": """CREATE TABLE IF NOT EXISTS reengagements (reengagement_id VARCHAR
        PRIMARY KEY, user_id VARCHAR, quiet_since TIMESTAMPTZ, sent_at TIMESTAMPTZ,
        kind VARCHAR, outbound_id VARCHAR, returned_at TIMESTAMPTZ)""",
    "replay_decisions": """CREATE TABLE IF NOT EXISTS replay_decisions (run_id VARCHAR,
        turn_id VARCHAR, user_id VARCHAR, engine VARCHAR, intent VARCHAR, actions JSON,
        original_intent VARCHAR, decided_at TIMESTAMPTZ, PRIMARY KEY (run_id, turn_id))""",
    "replay_runs": """CREATE TABLE IF NOT EXISTS replay_runs (run_id VARCHAR PRIMARY KEY,
        started_at TIMESTAMPTZ, engine VARCHAR, selection JSON, events BIGINT, turns BIGINT)""",
}


def at(hms: str, day: int = 2) -> datetime:
    """`at("09:00:01.5")` is that time on 2026-11-<day> UTC."""
    return datetime.fromisoformat(f"2026-11-{day:02d}T{hms}+00:00")


def insert(con: duckdb.DuckDBPyConnection, table: str, **values: Any) -> None:
    cols = ", ".join(f'"{c}"' for c in values)
    marks = ", ".join("?" for _ in values)
    con.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', list(values.values()))


def create_schema(path: Path, *, contract_tables: bool = True) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    migrate(con, TABLES.values())
    if contract_tables:
        for ddl in CONTRACT_DDL.values():
            con.execute(ddl)
    return con


def _message(con: duckdb.DuckDBPyConnection, mid: str, user: str, received: datetime) -> None:
    insert(
        con, "messages", message_id=mid, user_id=user, wa_id=user, phone_number_id="100",
        type="text", text=f"text of {mid}", sent_at=received, received_at=received,
    )


def _turn(
    con: duckdb.DuckDBPyConnection, tid: str, user: str, mids: list[str], decided: datetime,
    latency_ms: float, intent: str, actions: list[str],
) -> None:
    insert(
        con, "turns", turn_id=tid, user_id=user, wa_id=user, phone_number_id="100",
        intent=intent, engine="playbook", message_count=len(mids),
        message_ids=json.dumps(mids), actions=json.dumps([{"action": a} for a in actions]),
        dropped="[]", decided_at=decided, latency_ms=latency_ms,
    )


def _outbound(
    con: duckdb.DuckDBPyConnection, oid: str, user: str, tid: str, kind: str, created: datetime,
    *, sent: datetime | None = None, wamid: str | None = None, dead: bool = False,
) -> None:
    insert(
        con, "outbound_messages", outbound_id=oid, user_id=user, turn_id=tid, priority="high",
        kind=kind, payload="{}", created_at=created,
    )
    if sent is not None:
        insert(
            con, "send_results", outbound_id=oid, outcome="sent", user_id=user, turn_id=tid,
            wamid=wamid, attempts=1, status_code=200, latency_ms=80.0, sent_at=sent,
        )
    if dead:
        insert(
            con, "send_results", outbound_id=oid, outcome="dead_lettered", user_id=user,
            turn_id=tid, attempts=3, status_code=400, error_code=131026,
            sent_at=created,
        )


def _status(con: duckdb.DuckDBPyConnection, wamid: str, status: str, when: datetime,
            error_code: int | None = None) -> None:
    insert(
        con, "statuses", wamid=wamid, status=status, user_id="x", recipient_id="x",
        status_at=when, received_at=when, error_code=error_code,
    )


def seed(path: Path, *, contract_tables: bool = True) -> None:
    con = create_schema(path, contract_tables=contract_tables)
    con.execute("BEGIN")
    # inbound: six in the period, one just before it and one at its (exclusive) end
    for mid, user, t in [
        ("m1", "u1", at("09:00:00")), ("m2", "u1", at("09:00:01")),
        ("m3", "u2", at("09:30:00")), ("m4", "u1", at("10:15:00")),
        ("m6", "u1", at("10:20:00")), ("m5", "u3", at("13:00:00")),
        ("mx", "u9", at("23:59:59", day=1)), ("my", "u9", at("00:00:00", day=3)),
    ]:
        _message(con, mid, user, t)
    _turn(con, "t1", "u1", ["m1", "m2"], at("09:00:03"), 3000, "greeting", ["send_text"])
    _turn(con, "t2", "u2", ["m3"], at("09:30:02"), 2000, "fallback", ["send_buttons"])
    _turn(con, "t3", "u1", ["m4"], at("10:15:01.5"), 1500, "faq_hours", ["send_text"])
    _turn(con, "t4", "u1", ["m6"], at("10:20:04"), 4000, "fallback", ["send_buttons"])
    _turn(con, "t5", "u3", ["m5"], at("13:00:05"), 5000, "handoff",
          ["send_text", "request_handoff"])
    _turn(con, "tx", "u9", ["mx"], at("23:59:59.5", day=1), 500, "fallback",
          ["send_text", "request_handoff"])

    _outbound(con, "o1a", "u1", "t1", "mark_read", at("09:00:03"), sent=at("09:00:03.2"))
    _outbound(con, "o1b", "u1", "t1", "text", at("09:00:03"), sent=at("09:00:04"), wamid="w1b")
    _outbound(con, "o2", "u2", "t2", "interactive", at("09:30:02"), sent=at("09:30:03"),
              wamid="w2")
    _outbound(con, "o3", "u1", "t3", "text", at("10:15:01.5"), sent=at("10:15:02"), wamid="w3")
    _outbound(con, "o4", "u1", "t4", "interactive", at("10:20:04"), dead=True)
    _outbound(con, "o5a", "u3", "t5", "text", at("13:00:05"), sent=at("13:00:06"), wamid="w5a")
    _outbound(con, "o5b", "u3", "t5", "text", at("13:00:05"), sent=at("13:00:07"), wamid="w5b")
    _outbound(con, "ox", "u9", "tx", "text", at("23:59:59.5", day=1),
              sent=at("23:59:59.9", day=1), wamid="wx")

    _status(con, "w1b", "sent", at("09:00:05"))
    _status(con, "w1b", "delivered", at("09:00:06"))
    _status(con, "w1b", "read", at("09:01:04"))
    _status(con, "w2", "delivered", at("09:30:07"))
    _status(con, "w3", "read", at("10:15:32"))  # its 'delivered' never came
    _status(con, "w5a", "failed", at("13:00:08"), error_code=131026)
    _status(con, "w5b", "sent", at("13:00:08"))
    _status(con, "wx", "delivered", at("00:00:01", day=2))

    for oid, code, t, reason in [
        ("o4", 131026, at("10:20:10"), "recipient unreachable"),
        ("o7", 131026, at("11:00:00"), "recipient unreachable"),
        ("o8", None, at("12:00:00"), "stale"),
        ("o9", 131047, at("12:00:00", day=3), "outside the window"),
    ]:
        insert(con, "dead_letters", outbound_id=oid, user_id="u1", reason=reason,
               error_code=code, retryable=False, attempts=3, message="{}", failed_at=t)
    for off, stage, etype, t in [
        (1, "decide", "EngineFailed", at("10:00:00")),
        (2, "decide", "EngineFailed", at("11:00:00")),
        (3, "send", "ValueError", at("12:00:00")),
        (4, "send", "ValueError", at("12:00:00", day=1)),
    ]:
        insert(con, "processing_dead_letters", stage=stage, topic="in", partition=0,
               offset=off, error_type=etype, reason="boom", retryable=False, attempts=6,
               value="{}", value_b64="e30=", failed_at=t)
    insert(con, "sink_dead_letters", topic="in", partition=0, offset=9, table_name="messages",
           reason="bad", value="{}", failed_at=at("08:00:00"))

    if contract_tables:
        for hid, user, source, opened, reply, outcome in [
            ("h1", "u3", "engine", at("13:00:05"), at("13:02:05"), "released"),
            ("h2", "u2", "agent", at("20:00:00"), None, "expired"),
            ("h3", "u9", "engine", at("23:00:00", day=1), at("23:01:00", day=1), "released"),
        ]:
            # `handoffs` is a view over the sink's `handoff_events` (one row per event)
            events = [("opened", opened), ("agent_reply", reply)]
            end = (reply or opened) + timedelta(minutes=1)
            events.append(("released" if outcome == "released" else "expired", end))
            for event, event_at in events:
                if event_at is None:
                    continue
                insert(con, "handoff_events", event_id=f"{hid}-{event}", event=event,
                       handoff_id=hid, user_id=user, event_at=event_at, reason="r",
                       source=source, opened_at=opened)
        for rid, user, sent, kind, returned in [
            ("r1", "u2", at("12:00:00"), "text", at("14:00:00")),
            ("r2", "u1", at("15:00:00"), "template", None),
            ("r3", "u3", at("16:00:00"), "template", at("16:30:00")),
        ]:
            insert(con, "reengagements", reengagement_id=rid, user_id=user,
                   quiet_since=sent, sent_at=sent, kind=kind, returned_at=returned)
        # a replay of t2 decided differently: it must change none of the live figures
        insert(con, "replay_runs", run_id="run1", started_at=at("18:00:00"), engine="playbook",
               selection="{}", events=1, turns=1)
        insert(con, "replay_decisions", run_id="run1", turn_id="t2", user_id="u2",
               engine="playbook", intent="faq_hours", actions='[{"action": "send_text"}]',
               original_intent="fallback", decided_at=at("18:00:01"))
    con.execute("COMMIT")
    con.close()
