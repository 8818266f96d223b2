"""The `embeddings` table in a real DuckDB file: FLOAT[dim], one row per message, and
a file made for another vector size keeps its size (no sink stop) while the vectors
that do not fit are dead-lettered with DuckDB's reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from schemas.codec import encode
from schemas.topics import Topics
from sinks.batch import decode_batch
from sinks.loader import Loader
from sinks.routes import routes
from sinks.tables import TABLES, embeddings_spec
from tests.support.events import embedding_computed
from zapstream.settings import Settings

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TOPIC = Topics.from_settings(Settings()).embedding_vectors
ROUTES = routes(Topics.from_settings(Settings()))


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = TOPIC, 0, offset, value


def load(path: Path, dim: int, events: list[Any], first_offset: int = 0) -> None:
    loader = Loader(path, tables={**TABLES, "embeddings": embeddings_spec(dim)})
    loader.open()
    try:
        records = [Rec(first_offset + i, encode(e)) for i, e in enumerate(events)]
        loader.load(decode_batch(records, ROUTES, loader.tables))
    finally:
        loader.close()


def read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_vectors_land_as_fixed_size_float_arrays_once_per_message(tmp_path: Path) -> None:
    path = tmp_path / "z.duckdb"
    event = embedding_computed(AT, vector=[0.6, 0.8, 0.0])
    load(path, 3, [event, event])
    load(path, 3, [event], first_offset=2)  # redelivered later
    assert read(path, "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'embeddings' AND column_name = 'vector'") == [("FLOAT[3]",)]  # fmt: skip
    rows = read(path, 'SELECT message_id, user_id, model, dim, vector, text, "at" FROM embeddings')
    assert len(rows) == 1
    message_id, user, model, dim, vector, text, at = rows[0]
    assert (message_id, user, model, dim, text) == (
        event.message_id, event.user_id, event.model, 3, event.text,
    )  # fmt: skip
    assert [round(x, 6) for x in vector] == [0.6, 0.8, 0.0]
    assert at == AT


def test_a_file_of_another_vector_size_keeps_it_and_misfits_are_dead_lettered(
    tmp_path: Path,
) -> None:
    path = tmp_path / "z.duckdb"
    load(path, 3, [embedding_computed(AT, message_id="m1", vector=[1.0, 0.0, 0.0])])
    # The model changed (5 dims): the sink still opens the file and loads the rest.
    five = embedding_computed(AT, message_id="m2", vector=[1.0, 0.0, 0.0, 0.0, 0.0])
    three = embedding_computed(AT, message_id="m3", vector=[0.0, 1.0, 0.0])
    load(path, 5, [five, three], first_offset=1)
    assert read(path, "SELECT message_id FROM embeddings ORDER BY 1") == [("m1",), ("m3",)]
    letters = read(path, "SELECT table_name, reason FROM sink_dead_letters")
    assert len(letters) == 1
    assert letters[0][0] == "embeddings"
    assert "length 5" in letters[0][1]
