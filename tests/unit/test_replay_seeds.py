"""Where a replay starts each user: the session after the user's latest live turn
decided before the user's first message of the slice (DuckDB `turns.session`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from processors.replay.seeds import duckdb_seeds, parse_seeds, seeds_sql
from schemas.conversation import Session
from sinks.migrate import migrate
from sinks.rows import session_json
from sinks.tables import TABLES
from tests.unit.test_replay_decide import T0, feed, msg, replayer
from zapstream.settings import Settings


def _file_with_turns(path: Path, turns: list[tuple[str, str, datetime, Session | None]]) -> None:
    con = duckdb.connect(str(path))
    try:
        migrate(con, TABLES.values())
        for turn_id, user, decided_at, session in turns:
            con.execute(
                "INSERT INTO turns (turn_id, user_id, intent, decided_at, session) "
                "VALUES (?, ?, 'x', ?, ?)",
                [turn_id, user, decided_at, session_json(session) if session else None],
            )
    finally:
        con.close()


def _session(user: str, turns: int) -> Session:
    return Session.new(user, wa_id=user, turn_count=turns, last_inbound_at=T0)


def test_each_user_gets_the_session_of_its_latest_turn_before_its_own_cutoff(
    tmp_path: Path,
) -> None:
    odd = "55'11"  # a quote in a key must not break (or inject into) the query
    _file_with_turns(
        tmp_path / "z.duckdb",
        [
            ("t1", "a", T0 - timedelta(minutes=9), _session("a", 1)),
            ("t2", "a", T0 - timedelta(minutes=5), _session("a", 2)),
            ("t3", "a", T0 + timedelta(seconds=1), _session("a", 3)),  # after a's cutoff
            ("t4", "b", T0 + timedelta(minutes=1), _session("b", 1)),  # after b's cutoff
            ("t5", odd, T0 - timedelta(minutes=1), _session(odd, 7)),
            ("t6", "c", T0 - timedelta(minutes=1), None),  # a row from before the column
        ],
    )
    load = duckdb_seeds(Settings(duckdb_path=tmp_path / "z.duckdb"))
    found = load({"a": T0, "b": T0, odd: T0 + timedelta(hours=1), "c": T0, "nobody": T0})
    assert {u: s.turn_count for u, s in found.items()} == {"a": 2, odd: 7}
    assert found["a"] == _session("a", 2)  # the whole session, read back as it was


def test_the_query_names_every_user_once_and_parses_json_text_or_data() -> None:
    sql = seeds_sql({"a": T0, "b": T0})
    assert sql.count("TIMESTAMPTZ") == 2
    doc = session_json(_session("a", 3))
    assert parse_seeds([("a", doc), ("b", None)]) == {"a": _session("a", 3)}


async def test_a_seeded_user_goes_on_from_its_live_session() -> None:
    """A second fallback in a row asks for a human; from an empty session it would be
    a first fallback."""
    r = replayer()
    assert r.seed("5511", Session.new("5511", wa_id="5511", consecutive_fallbacks=1))
    [turn] = await feed(r, [msg(1, "5511", 0, "xyzzy plugh")])
    assert turn.intent == "handoff"
    fresh = await feed(replayer(), [msg(1, "5511", 0, "xyzzy plugh")])
    assert [t.intent for t in fresh] == ["fallback"]


async def test_a_user_in_a_live_handoff_stays_silent_in_the_replay_too() -> None:
    r = replayer()
    r.seed(
        "5511",
        Session.new("5511", wa_id="5511", handoff_active=True, handoff_since=T0, handoff_id="h1"),
    )
    [turn] = await feed(r, [msg(1, "5511", 0, "oi")])
    assert turn.intent == "handoff_active"
    assert not [a for a in turn.actions if a["action"].startswith("send")]


async def test_a_seed_never_replaces_what_the_replay_already_holds() -> None:
    r = replayer()
    await r.message(0, 0, msg(1, "5511", 0, "oi"))  # a burst still open
    held = r.users["5511"]
    assert not r.seed("5511", Session.new("5511", consecutive_fallbacks=1))
    assert r.users["5511"] is held
