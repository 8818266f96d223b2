"""The sink's loader on a real DuckDB file (no broker needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import duckdb
import pyarrow as pa
import pytest

import sinks.loader
from schemas.codec import encode
from schemas.events import ApiErrorInfo
from schemas.processing import ProcessingDeadLetter
from schemas.topics import Topics
from sinks.batch import Decoded, decode_batch
from sinks.loader import Loader
from sinks.migrate import migrate
from sinks.routes import routes
from sinks.tables import MESSAGES, TABLES
from tests.support.events import decided, message, send_result, status
from zapstream.errors import ConfigurationError, InvalidPayload, SinkBusy, SinkStorageUnavailable
from zapstream.settings import Settings

TOPICS = Topics.from_settings(Settings())
ROUTES = routes(TOPICS)


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    value: bytes | None


def batch(*records: tuple[str, bytes | None]) -> Decoded:
    """Records in the order given, offsets counting from 0 per topic."""
    seen: dict[str, int] = {}
    recs = []
    for topic, value in records:
        offset = seen.get(topic, 0)
        seen[topic] = offset + 1
        recs.append(Rec(topic, 0, offset, value))
    return decode_batch(recs, ROUTES, TABLES)


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Loader]:
    s = Loader(tmp_path / "z.duckdb")
    s.open()
    yield s
    s.close()


def count(loader: Loader, table: str) -> int:
    return int(loader.query(f"SELECT count(*) FROM {table}").rows[0][0])


def test_a_batch_lands_with_proper_types(loader: Loader) -> None:
    loader.load(batch(*[(TOPICS.inbound, encode(message(i))) for i in range(3)]))
    res = loader.query(
        "SELECT message_id, typeof(sent_at), typeof(raw), raw->>'type' FROM messages ORDER BY 1"
    )
    assert [r[0] for r in res.rows] == ["wamid.TEST000000", "wamid.TEST000001", "wamid.TEST000002"]
    assert res.rows[0][1:] == ("TIMESTAMP WITH TIME ZONE", "JSON", "text")


def test_a_redelivered_event_never_makes_a_second_row(loader: Loader) -> None:
    one = (TOPICS.inbound, encode(message(1)))
    assert loader.load(batch(one)).inserted == {"messages": 1}
    assert loader.load(batch(one, one)).inserted == {"messages": 0}
    assert count(loader, "messages") == 1


def test_within_a_batch_the_first_row_of_a_key_is_kept(loader: Loader) -> None:
    first, second = message(1, text="first"), message(1, text="second")
    loader.load(batch((TOPICS.inbound, encode(first)), (TOPICS.inbound, encode(second))))
    assert loader.query("SELECT text FROM messages").rows == [("first",)]


def test_a_batch_failing_midway_leaves_no_partial_rows_and_loads_on_retry(
    loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = batch(
        *[(TOPICS.inbound, encode(message(i))) for i in range(5)],
        *[(TOPICS.statuses, encode(status(i))) for i in range(5)],
    )
    real_sql = sinks.loader.insert_sql
    calls = {"n": 0}

    def flaky(spec, view):  # the second table hits an I/O error, the first time only
        calls["n"] += 1
        if calls["n"] == 2:
            return "SELECT * FROM read_csv('/nonexistent/disk-went-away.csv')"
        return real_sql(spec, view)

    monkeypatch.setattr(sinks.loader, "insert_sql", flaky)
    with pytest.raises(SinkStorageUnavailable, match="IOException"):
        loader.load(b)
    assert count(loader, "messages") == 0  # the first table was rolled back too
    assert count(loader, "statuses") == 0
    assert loader.load(b).inserted == {"messages": 5, "statuses": 5}


def test_events_that_do_not_decode_are_kept_in_rejected_events(loader: Loader) -> None:
    report = loader.load(
        batch(
            (TOPICS.inbound, encode(message(1))),
            (TOPICS.inbound, b"{not json"),
            (TOPICS.inbound, b'{"schema_version": 1, "message_id": "x"}'),
            (TOPICS.inbound, None),
            ("some.other.topic", b"{}"),
        )
    )
    assert report.rejected == 4
    assert count(loader, "messages") == 1
    rejected = loader.query(
        'SELECT topic, "offset", value, reason FROM rejected_events ORDER BY 1, 2'
    ).rows
    assert [r[:3] for r in rejected] == [
        ("some.other.topic", 0, "{}"),
        (TOPICS.inbound, 1, "{not json"),
        (TOPICS.inbound, 2, '{"schema_version": 1, "message_id": "x"}'),
        (TOPICS.inbound, 3, ""),
    ]
    assert "not JSON" in rejected[1][3]
    assert "invalid field" in rejected[2][3]


def test_a_processing_dead_letter_lands_with_its_value_readable_and_exact(loader: Loader) -> None:
    value = b'{"turn_id": "t1", \xff}'
    letter = ProcessingDeadLetter(
        stage="converse",
        topic=TOPICS.decisions,
        partition=2,
        offset=40,
        user_id="5511987654321",
        error_type="InvalidPayload",
        reason="bad turn",
        retryable=False,
        value_b64=ProcessingDeadLetter.encode_value(value),
        failed_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    )
    loader.load(batch((TOPICS.processing_dead_letters, encode(letter))))
    row = loader.query(
        'SELECT stage, topic, "offset", reason, value, value_b64 FROM processing_dead_letters'
    ).rows
    assert row == [
        (
            "converse",
            TOPICS.decisions,
            40,
            "bad turn",
            '{"turn_id": "t1", \ufffd}',
            letter.value_b64,
        )
    ]


def test_debounce_ticks_are_skipped(loader: Loader) -> None:
    from processors.ticker import tick_value

    report = loader.load(
        batch((TOPICS.inbound, tick_value(1.0)), (TOPICS.inbound, encode(message(1))))
    )
    assert (report.inserted, report.rejected) == ({"messages": 1}, 0)


def test_rows_arrow_cannot_hold_are_dead_lettered_and_the_rest_loads(loader: Loader) -> None:
    # Valid events whose numbers are too big for their columns (INTEGER, BIGINT).
    overflow = encode(send_result(2, attempts=2**31))
    huge_code = status(7).model_copy(update={"errors": [ApiErrorInfo(code=2**63, title="x")]})
    report = loader.load(
        batch(
            *[(TOPICS.send_results, encode(send_result(i))) for i in range(2)],
            (TOPICS.send_results, overflow),
            (TOPICS.send_results, encode(send_result(3))),
            (TOPICS.statuses, encode(status(6))),
            (TOPICS.statuses, encode(huge_code)),
            (TOPICS.statuses, encode(status(8))),
        )
    )
    assert report.inserted == {"send_results": 3, "statuses": 2}
    assert report.dead_lettered == 2
    assert count(loader, "send_results") == 3
    assert loader.query("SELECT wamid FROM statuses ORDER BY 1").rows == [
        ("wamid.OUT000006",),
        ("wamid.OUT000008",),
    ]
    dead = loader.query(
        'SELECT topic, "offset", table_name, value, reason FROM sink_dead_letters ORDER BY 3'
    ).rows
    assert [d[:4] for d in dead] == [
        (TOPICS.send_results, 2, "send_results", overflow.decode()),
        (TOPICS.statuses, 1, "statuses", encode(huge_code).decode()),
    ]
    assert "too large" in dead[0][4]

    assert loader.load(batch((TOPICS.send_results, encode(send_result(9))))).inserted == {
        "send_results": 1
    }


def test_rows_duckdb_refuses_for_good_are_dead_lettered_and_the_rest_loads(tmp_path: Path) -> None:
    path = tmp_path / "checked.duckdb"
    con = duckdb.connect(str(path))  # a file whose owner added a CHECK constraint
    con.execute(
        "CREATE TABLE messages (message_id VARCHAR NOT NULL PRIMARY KEY, text VARCHAR, "
        "CHECK (text <> 'forbidden'))"
    )
    con.close()
    loader = Loader(path)
    loader.open()
    try:
        report = loader.load(
            batch(
                (TOPICS.inbound, encode(message(1))),
                (TOPICS.inbound, encode(message(2, text="forbidden"))),
                (TOPICS.inbound, encode(message(3))),
            )
        )
        assert (report.inserted, report.dead_lettered) == ({"messages": 2}, 1)
        dead = loader.query('SELECT "offset", table_name, reason FROM sink_dead_letters').rows
        assert [d[:2] for d in dead] == [(1, "messages")]
        assert "CHECK constraint failed" in dead[0][2]
    finally:
        loader.close()


def test_sessions_keep_the_latest_snapshot_in_a_batch_and_across_batches(loader: Loader) -> None:
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def snap(turn: str, minutes: int, user: str = "5511900000001") -> tuple[str, bytes]:
        at = t0 + timedelta(minutes=minutes)
        return TOPICS.decisions, encode(decided(turn, user=user, updated_at=at, turn_count=minutes))

    def latest(user: str = "5511900000001") -> list[tuple[object, ...]]:
        return loader.query(
            f"SELECT last_turn_id, turn_count FROM sessions WHERE user_id = '{user}'"
        ).rows

    loader.load(batch(snap("t2", 2), snap("t3", 3), snap("t1", 1)))
    assert latest() == [("t3", 3)]
    loader.load(batch(snap("t0", 0)))  # older, later
    assert latest() == [("t3", 3)]
    loader.load(batch(snap("t4", 4), snap("u1", 1, user="5511900000002")))
    assert latest() == [("t4", 4)]
    assert latest("5511900000002") == [("u1", 1)]
    assert count(loader, "turns") == 6


def test_a_column_a_spec_adds_is_added_to_a_file_made_by_the_old_spec(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old_messages = dataclasses.replace(
        MESSAGES,
        schema=pa.schema([f for f in MESSAGES.schema if f.name not in ("profile_name", "raw")]),
    )
    con = duckdb.connect(str(path))
    migrate(con, [*(t for t in TABLES.values() if t.name != "messages"), old_messages])
    con.execute(
        "INSERT INTO messages (message_id, user_id, phone_number_id) VALUES ('old', 'u', 'p')"
    )
    con.close()

    loader = Loader(path)
    loader.open()
    try:
        loader.load(batch((TOPICS.inbound, encode(message(1)))))
        rows = loader.query(
            "SELECT message_id, profile_name IS NULL, raw->>'type' FROM messages ORDER BY 1"
        ).rows
        assert rows == [("old", True, None), ("wamid.TEST000001", True, "text")]
    finally:
        loader.close()


def test_a_column_whose_type_changed_stops_the_sink_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, TABLES.values())
    con.execute("ALTER TABLE send_results ALTER COLUMN attempts TYPE VARCHAR")
    con.close()
    loader = Loader(path)
    with pytest.raises(ConfigurationError, match=r"send_results\.attempts is VARCHAR"):
        loader.open()
    loader.close()


def test_only_read_only_sql_goes_through_the_writer(loader: Loader) -> None:
    with pytest.raises(InvalidPayload):
        loader.query("DELETE FROM messages")
    with pytest.raises(InvalidPayload):
        loader.query("SELECT 1; DROP TABLE messages")
    assert loader.query("SELECT 42 AS answer").rows == [(42,)]


def test_a_second_writer_on_the_same_file_is_refused_with_a_clear_error(loader: Loader) -> None:
    code = (
        "from pathlib import Path; from sinks.loader import Loader\n"
        f"Loader(Path({str(loader.path)!r})).open()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Exactly one `zapstream sink`" in proc.stderr
    assert SinkBusy.__name__ in proc.stderr
