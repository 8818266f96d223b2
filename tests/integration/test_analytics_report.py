"""`zapstream report` on a seeded DuckDB file equals the figures worked out by hand.

The dataset is tests/support/analytics_seed.py (period 2026-11-02, UTC). No broker:
the file is made by the sink's own DDL and filled with INSERTs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

from tests.support.analytics_seed import PERIOD, seed
from zapstream.analytics.report import build_report, delivery_rows_sql
from zapstream.cli import cli


def _report(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:

        def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
            rel = con.execute(sql)
            return [d[0] for d in rel.description or []], rel.fetchall()

        return build_report(query, PERIOD)
    finally:
        con.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("analytics") / "seeded.duckdb"
    seed(path)
    return path


def test_inbound_messages_and_active_users_per_hour_and_day(seeded: Path) -> None:
    inbound = _report(seeded)["inbound"]
    assert inbound["messages"] == 6  # m1..m6; mx before the period, my at its end
    assert inbound["active_users"] == 3
    assert inbound["per_day"] == [{"at": "2026-11-02", "messages": 6, "active_users": 3}]
    hours = inbound["per_hour"]
    assert len(hours) == 24
    busy = {h["at"]: (h["messages"], h["active_users"]) for h in hours if h["messages"]}
    assert busy == {
        "2026-11-02T09:00:00Z": (3, 2),
        "2026-11-02T10:00:00Z": (2, 1),
        "2026-11-02T13:00:00Z": (1, 1),
    }


def test_reply_and_decision_latency_percentiles(seeded: Path) -> None:
    r = _report(seeded)
    # first reply per turn (mark_read left out, the first of two replies counts):
    # t1 4 s, t2 3 s, t3 2 s, t5 6 s; t4 was dead-lettered (not answered)
    assert r["reply_latency"]["turns"] == 5
    assert r["reply_latency"]["answered"] == 4
    assert r["reply_latency"]["p50_s"] == pytest.approx(3.5)
    assert r["reply_latency"]["p95_s"] == pytest.approx(5.7)  # 4 + 0.85 × 2
    # turns.latency_ms 1.5, 2, 3, 4, 5 s
    assert r["decision_latency"] == {"turns": 5, "p50_s": 3.0, "p95_s": pytest.approx(4.8)}


def test_turns_per_conversation_and_intents(seeded: Path) -> None:
    r = _report(seeded)
    # u1: t1 | t3 t4 (75 min gap > 30), u2: t2, u3: t5 → 4 conversations of 1, 2, 1, 1
    assert r["conversations"]["count"] == 4
    assert r["conversations"]["turns"] == 5
    assert r["conversations"]["turns_per_conversation"] == {"mean": 1.25, "p50": 1.0, "max": 2}
    intents = r["intents"]
    assert intents["by_intent"] == [
        {"intent": "fallback", "turns": 2},
        {"intent": "faq_hours", "turns": 1},
        {"intent": "greeting", "turns": 1},
        {"intent": "handoff", "turns": 1},
    ]  # the replayed decision of t2 (faq_hours) is not a live turn
    assert intents["fallbacks"] == 2
    assert intents["fallback_rate"] == pytest.approx(0.4)


def test_handoff_rate_and_time_to_a_human(seeded: Path) -> None:
    h = _report(seeded)["handoffs"]
    assert h["requested_by_engine"] == 1
    assert h["opened"] == 2
    assert h["rate"] == pytest.approx(0.5)  # 2 handoffs / 4 conversations
    assert h["answered_by_human"] == 1
    assert h["time_to_human_s"] == {"p50": 120.0, "p95": 120.0}
    assert h["by_outcome"] == [{"outcome": "expired", "count": 1}, {"outcome": "released", "count": 1}]
    assert h["by_source"] == [{"source": "agent", "count": 1}, {"source": "engine", "count": 1}]


def test_delivery_and_read_rates_and_delays(seeded: Path) -> None:
    d = _report(seeded)["delivery"]
    assert (d["outbound"], d["accepted"], d["delivered"], d["read"]) == (6, 5, 3, 2)
    assert (d["failed"], d["dead_lettered"], d["pending"]) == (1, 1, 0)
    assert d["delivery_rate"] == pytest.approx(0.6)
    assert d["read_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert d["delivery_delay_s"] == {"p50": 3.0, "p95": pytest.approx(3.9)}  # 2 s, 4 s
    assert d["read_delay_s"] == {"p50": 45.0, "p95": pytest.approx(58.5)}  # 60 s, 30 s


def test_reengagements_and_returns(seeded: Path) -> None:
    e = _report(seeded)["reengagements"]
    assert (e["sent"], e["returned"]) == (3, 2)
    assert e["return_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert e["time_to_return_s"] == {"p50": 4500.0, "p95": pytest.approx(6930.0)}
    assert e["by_kind"] == [
        {"kind": "template", "sent": 2, "returned": 1},
        {"kind": "text", "sent": 1, "returned": 1},
    ]


def test_dead_letters_by_error_code(seeded: Path) -> None:
    dl = _report(seeded)["dead_letters"]
    assert dl["outbound"] == 3
    assert dl["by_error_code"] == [
        {"error_code": 131026, "count": 2, "reason": "recipient unreachable"},
        {"error_code": None, "count": 1, "reason": "stale"},
    ]
    assert dl["processing"] == [
        {"stage": "decide", "error_type": "EngineFailed", "count": 2},
        {"stage": "send", "error_type": "ValueError", "count": 1},
    ]
    assert dl["sink"] == 1


def test_tables_not_created_yet_give_empty_figures_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "core-only.duckdb"
    seed(path, contract_tables=False)
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW handoffs")  # a file written by a sink older than the handoffs view
    con.close()
    r = _report(path)
    assert "handoffs" in r["missing_tables"]  # reengagements may come from the sink's DDL (empty)
    assert r["handoffs"]["opened"] == 0
    assert r["handoffs"]["rate"] is None
    assert r["handoffs"]["requested_by_engine"] == 1
    assert r["reengagements"]["sent"] == 0
    assert r["inbound"]["messages"] == 6


def test_zapstream_report_prints_the_same_figures_as_json_and_as_a_table(
    seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUCKDB_PATH", str(seeded))
    monkeypatch.setenv("SINK_WEB_PORT", "1")  # nothing there: the file is read directly
    runner = CliRunner()
    args = ["report", "--from", "2026-11-02", "--to", "2026-11-03T00:00:00Z"]
    got = runner.invoke(cli, [*args, "--json"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.output) == json.loads(json.dumps(_report(seeded)))
    text = runner.invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "inbound messages" in text.output
    assert "131026" in text.output
    bad = runner.invoke(cli, ["report", "--from", "yesterday-ish"])
    assert bad.exit_code == 2
    assert "not a time" in bad.output


def test_the_reports_delivery_rows_match_the_message_delivery_view(seeded: Path) -> None:
    lo, hi = PERIOD.sql_bounds()
    con = duckdb.connect(str(seeded), read_only=True)
    try:
        ours = con.execute(
            f"SELECT outbound_id, state, accepted_at, delivered_at, read_at "
            f"FROM ({delivery_rows_sql(lo, hi)}) ORDER BY 1"
        ).fetchall()
        view = con.execute(
            f"SELECT outbound_id, state, accepted_at, delivered_at, read_at FROM message_delivery "
            f"WHERE kind <> 'mark_read' AND created_at >= {lo} AND created_at < {hi} ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert len(ours) == 6
    assert ours == view
    assert {state for _, state, *_ in ours} == {"read", "delivered", "failed", "sent", "dead_lettered"}
