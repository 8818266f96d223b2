"""How long `zapstream report` and `zapstream export` take on a big DuckDB file.

Builds a synthetic file with the sink's own DDL (N users, messages, one turn per two
messages, one reply per turn with sent/delivered/read statuses, spread over 30 days),
then times the report over 7 and 30 days and a Parquet export of `messages`, reading
the file directly (no sink running).

    .venv/bin/python bench/report_bench.py --messages 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from sinks.migrate import migrate
from sinks.tables import TABLES
from zapstream.analytics.export import export_table
from zapstream.analytics.period import Period
from zapstream.analytics.report import build_report
from zapstream.analytics.source import reader
from zapstream.settings import Settings

END = datetime(2026, 12, 1, tzinfo=UTC)
SPAN_S = 30 * 86400


def build(path: Path, messages: int, users: int) -> None:
    con = duckdb.connect(str(path))
    migrate(con, TABLES.values())
    t0 = f"TIMESTAMPTZ '{(END - timedelta(seconds=SPAN_S)).isoformat()}'"
    con.execute(f"""
        INSERT INTO messages (message_id, user_id, phone_number_id, type, text, sent_at, received_at)
        SELECT 'm' || i, 'u' || (i % {users}), '100', 'text', 'hello',
               {t0} + to_seconds(i * {SPAN_S} / {messages}), {t0} + to_seconds(i * {SPAN_S} / {messages})
        FROM range({messages}) r(i)""")
    con.execute(f"""
        INSERT INTO turns (turn_id, user_id, phone_number_id, intent, engine, message_count,
                           message_ids, actions, dropped, decided_at, latency_ms)
        SELECT 't' || i, 'u' || ((2 * i) % {users}), '100',
               CASE WHEN i % 5 = 0 THEN 'fallback' ELSE 'faq' || (i % 7) END, 'playbook', 1,
               '["m' || (2 * i) || '"]', '[{{"action": "send_text"}}]', '[]',
               {t0} + to_seconds(2 * i * {SPAN_S} / {messages} + 1.5), 1500 + (i % 1000)
        FROM range({messages // 2}) r(i)""")
    con.execute(f"""
        INSERT INTO outbound_messages (outbound_id, user_id, turn_id, priority, kind, payload, created_at)
        SELECT 'o' || i, 'u' || ((2 * i) % {users}), 't' || i, 'high', 'text', '{{}}',
               {t0} + to_seconds(2 * i * {SPAN_S} / {messages} + 1.5)
        FROM range({messages // 2}) r(i)""")
    con.execute(f"""
        INSERT INTO send_results (outbound_id, outcome, user_id, turn_id, wamid, attempts, sent_at)
        SELECT 'o' || i, 'sent', 'u' || ((2 * i) % {users}), 't' || i, 'w' || i, 1,
               {t0} + to_seconds(2 * i * {SPAN_S} / {messages} + 2)
        FROM range({messages // 2}) r(i)""")
    for status, delay in (("sent", 2.5), ("delivered", 3), ("read", 60)):
        con.execute(f"""
            INSERT INTO statuses (wamid, status, user_id, phone_number_id, status_at, received_at)
            SELECT 'w' || i, '{status}', 'u', '100',
                   {t0} + to_seconds(2 * i * {SPAN_S} / {messages} + {delay}),
                   {t0} + to_seconds(2 * i * {SPAN_S} / {messages} + {delay})
            FROM range({messages // 2}) r(i)""")
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        build(path, args.messages, args.users)
        print(f"built {args.messages:,} messages, {args.messages // 2:,} turns/replies "
              f"(4 status rows each) in {time.perf_counter() - started:.1f} s")
        settings = Settings(duckdb_path=path, sink_web_port=1)
        for days in (7, 30):
            period = Period(END - timedelta(days=days), END)
            with reader(settings) as r:
                started = time.perf_counter()
                figures = build_report(r.query, period)
                took = time.perf_counter() - started
            print(f"report over {days} days: {took:.2f} s "
                  f"({figures['inbound']['messages']:,} messages, {figures['intents']['turns']:,} turns, "
                  f"reply p50 {figures['reply_latency']['p50_s']} s)")
        with reader(settings) as r:
            started = time.perf_counter()
            done = export_table(r, "messages", Path(tmp) / "messages.parquet", None)
            print(f"export of messages ({done.rows:,} rows) to Parquet: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
