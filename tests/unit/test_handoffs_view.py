"""The DuckDB view `handoffs` folds lifecycle events, in whatever order they were
loaded, into one row per handoff (the contract's columns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from sinks.migrate import migrate
from sinks.tables import TABLES

T0 = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
COLUMNS = (
    "handoff_id, user_id, reason, source, opened_at, notified_at, renotified_at, "
    "first_agent_reply_at, released_at, outcome"
)


@pytest.fixture
def con() -> Any:
    c = duckdb.connect()
    migrate(c, TABLES.values())
    return c


def load(con: Any, *events: tuple[str, str, str | None, str, float, str | None]) -> None:
    for event_id, event, hid, user, minutes, reason in reversed(events):  # order must not matter
        con.execute(
            "INSERT INTO handoff_events (event_id, event, handoff_id, user_id, event_at, reason, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [event_id, event, hid, user, T0 + timedelta(minutes=minutes), reason,
             "engine" if event == "opened" else None],
        )  # fmt: skip


def row(con: Any, hid: str) -> dict[str, Any]:
    rel = con.execute(f"SELECT {COLUMNS} FROM handoffs WHERE handoff_id = ?", [hid])
    names = [d[0] for d in rel.description]
    [values] = rel.fetchall()
    return dict(zip(names, values, strict=True))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_each_step_keeps_its_first_time_and_the_outcome_follows_the_last_step(con: Any) -> None:
    load(
        con,
        ("h1:opened", "opened", "h1", "u1", 0, "asked"),
        ("h1:notified", "notified", "h1", "u1", 1, None),
        ("-:agent_reply:o1", "agent_reply", None, "u1", 3, None),
        ("-:agent_reply:o2", "agent_reply", None, "u1", 4, None),
        ("h1:released", "released", "h1", "u1", 5, "agent"),
        ("-:agent_reply:o3", "agent_reply", None, "u1", 9, None),  # after the release
    )
    r = row(con, "h1")
    assert (r["reason"], r["source"], r["outcome"]) == ("asked", "engine", "released")
    assert (r["opened_at"], r["notified_at"], r["released_at"]) == (at(0), at(1), at(5))
    assert r["first_agent_reply_at"] == at(3)
    assert r["renotified_at"] is None


def test_a_failed_notification_is_the_outcome_until_a_replay_succeeds_or_it_ends(con: Any) -> None:
    load(
        con,
        ("h2:opened", "opened", "h2", "u2", 0, "x"),
        ("h2:nf", "notify_failed", "h2", "u2", 1, "500"),
    )
    assert row(con, "h2")["outcome"] == "notify_failed"
    load(con, ("h2:notified", "notified", "h2", "u2", 30, None))
    assert row(con, "h2")["outcome"] == "open"
    load(con, ("h2:expired", "expired", "h2", "u2", 60, "expired"))
    r = row(con, "h2")
    assert (r["outcome"], r["released_at"]) == ("expired", at(60))


def test_a_reply_counts_only_for_the_handoff_of_its_user_open_at_the_time(con: Any) -> None:
    load(
        con,
        ("a:opened", "opened", "a", "u3", 0, "x"),
        ("a:released", "released", "a", "u3", 2, "agent"),
        ("b:opened", "opened", "b", "u3", 10, "y"),
        ("-:agent_reply:o9", "agent_reply", None, "u3", 11, None),
        ("-:agent_reply:o8", "agent_reply", None, "someone-else", 1, None),
    )
    assert row(con, "a")["first_agent_reply_at"] is None
    assert row(con, "b")["first_agent_reply_at"] == at(11)
