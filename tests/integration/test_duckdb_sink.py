"""The DuckDB sink on a real DuckDB file (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import encode
from schemas.topics import Topics
from sinks.agent import build_batch, load_until_stored, row_makers
from sinks.duckdb_sink import DuckDBSink
from sinks.rows import MESSAGES, STATUSES, message_row, status_row, to_arrow
from tests.support.events import message, status
from zapstream.errors import InvalidPayload, SinkBusy
from zapstream.settings import Settings


@pytest.fixture
def sink(tmp_path: Path):
    s = DuckDBSink(tmp_path / "z.duckdb")
    s.open()
    yield s
    s.close()


def count(sink: DuckDBSink, table: str) -> int:
    return int(sink.query(f"SELECT count(*) FROM {table}").rows[0][0])


def test_a_batch_lands_with_proper_types(sink: DuckDBSink) -> None:
    sink.load({"messages": to_arrow(MESSAGES, [message_row(message(i)) for i in range(3)])})
    res = sink.query(
        "SELECT message_id, typeof(sent_at), typeof(raw), raw->>'type' FROM messages ORDER BY 1"
    )
    assert [r[0] for r in res.rows] == ["wamid.TEST000000", "wamid.TEST000001", "wamid.TEST000002"]
    assert res.rows[0][1:] == ("TIMESTAMP WITH TIME ZONE", "JSON", "text")


def test_a_redelivered_event_never_makes_a_second_row(sink: DuckDBSink) -> None:
    rows = [message_row(message(1))]
    assert sink.load({"messages": to_arrow(MESSAGES, rows)}) == {"messages": 1}
    assert sink.load({"messages": to_arrow(MESSAGES, rows + rows)}) == {"messages": 0}
    assert count(sink, "messages") == 1


def test_a_batch_failing_midway_leaves_no_partial_rows_and_loads_on_retry(
    sink: DuckDBSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = {
        "messages": to_arrow(MESSAGES, [message_row(message(i)) for i in range(5)]),
        "statuses": to_arrow(STATUSES, [status_row(status(i)) for i in range(5)]),
    }
    real_insert = DuckDBSink._insert
    calls = {"n": 0}

    def flaky(self, con, name, table):  # fails on the second table, the first time only
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk went away")
        return real_insert(self, con, name, table)

    monkeypatch.setattr(DuckDBSink, "_insert", flaky)
    with pytest.raises(OSError, match="disk went away"):
        sink.load(batch)
    assert count(sink, "messages") == 0  # the first table was rolled back too
    assert count(sink, "statuses") == 0
    assert sink.load(batch) == {"messages": 5, "statuses": 5}


async def test_load_until_stored_retries_the_same_batch_until_duckdb_commits(
    sink: DuckDBSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = {"messages": to_arrow(MESSAGES, [message_row(message(i)) for i in range(4)])}
    real_load = DuckDBSink.load
    failures = {"left": 3}

    def failing(self, b):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("transient")
        return real_load(self, b)

    monkeypatch.setattr(DuckDBSink, "load", failing)
    assert await load_until_stored(sink, batch, max_delay=0.01) == {"messages": 4}
    assert failures["left"] == 0
    assert count(sink, "messages") == 4


def test_events_that_do_not_decode_are_kept_in_rejected_events(sink: DuckDBSink) -> None:
    topics = Topics.from_settings(Settings())
    items = [
        (topics.inbound, 0, 0, encode(message(1))),
        (topics.inbound, 0, 1, b"{not json"),
        (topics.inbound, 1, 7, b'{"schema_version": 1, "message_id": "x"}'),
    ]
    sink.load(build_batch(items, row_makers(topics)))
    assert count(sink, "messages") == 1
    rejected = sink.query('SELECT partition, "offset", value FROM rejected_events ORDER BY 2').rows
    assert [(r[0], r[1]) for r in rejected] == [(0, 1), (1, 7)]
    assert rejected[0][2] == "{not json"


def test_only_read_only_sql_goes_through_the_writer(sink: DuckDBSink) -> None:
    with pytest.raises(InvalidPayload):
        sink.query("DELETE FROM messages")
    with pytest.raises(InvalidPayload):
        sink.query("SELECT 1; DROP TABLE messages")
    assert sink.query("SELECT 42 AS answer").rows == [(42,)]


def test_a_second_writer_on_the_same_file_is_refused_with_a_clear_error(
    sink: DuckDBSink, tmp_path: Path
) -> None:
    import subprocess
    import sys

    code = (
        "from pathlib import Path; from sinks.duckdb_sink import DuckDBSink\n"
        f"DuckDBSink(Path({str(sink.path)!r})).open()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Exactly one `zapstream sink`" in proc.stderr
    assert SinkBusy.__name__ in proc.stderr
