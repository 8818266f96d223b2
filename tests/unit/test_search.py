"""Search over a tiny DuckDB file loaded by the sink's own code: ranking, masking,
idempotence, SQL safety, the CLI's --json and the API's guard. The query encoder is a
stand-in (the real model: tests/e2e/test_embeddings_e2e.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from typer.testing import CliRunner

import processors.embeddings.search as search_module
from ingest.search import search_router
from processors.embeddings.search import SearchUnavailable, ranking_sql, search, vector_literal
from schemas.codec import encode
from schemas.topics import Topics
from sinks.batch import decode_batch
from sinks.loader import Loader
from sinks.routes import routes
from sinks.tables import TABLES, embeddings_spec
from tests.support.events import embedding_computed
from zapstream.cli import cli
from zapstream.settings import Settings

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MODEL = "all-MiniLM-L6-v2"
DOCS = {
    "wamid.A": ("5511911110001", "cancel my order please", [1.0, 0.0, 0.0]),
    "wamid.B": ("5511922220002", "where is my parcel", [0.6, 0.8, 0.0]),
    "wamid.C": ("5511933330003", "good morning", [0.0, 0.0, 1.0]),
}


class Rec:
    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, 0, offset, value


def load(path: Path, events: list[Any], dim: int = 3) -> None:
    settings = Settings(duckdb_path=path)
    topic = Topics.from_settings(settings).embedding_vectors
    tables = {**TABLES, "embeddings": embeddings_spec(dim)}
    loader = Loader(path, tables=tables)
    loader.open()
    try:
        records = [Rec(topic, i, encode(e)) for i, e in enumerate(events)]
        loader.load(decode_batch(records, routes(Topics.from_settings(settings)), loader.tables))
    finally:
        loader.close()


def docs(model: str = MODEL) -> list[Any]:
    return [
        embedding_computed(
            AT + timedelta(minutes=i), message_id=mid, user=u, text=t, vector=v, model=model
        )
        for i, (mid, (u, t, v)) in enumerate(DOCS.items())
    ]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    sql_seen: list[str] = []
    from zapstream.db_query import query as real_query

    def recording_query(s: Settings, sql: str) -> Any:
        sql_seen.append(sql)
        return real_query(s, sql)

    monkeypatch.setattr(search_module, "query", recording_query)
    monkeypatch.setattr(search_module, "encode_query", lambda s, text: ([1.0, 0.0, 0.0], MODEL))
    s = Settings(duckdb_path=tmp_path / "z.duckdb", admin_token=SecretStr("tok"))
    s.__dict__["_sql_seen"] = sql_seen  # (frozen model: stash for the test)
    return s


def test_hits_come_best_first_with_masked_users_scores_and_message_times(
    settings: Settings,
) -> None:
    load(settings.resolved_duckdb_path, docs())
    hits = search(settings, "I want to cancel", limit=10)
    assert [h.message_id for h in hits] == ["wamid.A", "wamid.B", "wamid.C"]
    assert [h.score for h in hits] == [1.0, 0.6, 0.0]
    assert hits[0].user_id == "55*******0001"
    assert hits[0].text == "cancel my order please"
    assert datetime.fromisoformat(hits[1].at or "") == AT + timedelta(minutes=1)
    assert len(search(settings, "x", limit=2)) == 2


def test_a_redelivered_vector_adds_no_row(settings: Settings) -> None:
    path = settings.resolved_duckdb_path
    load(path, docs())
    load(path, docs())  # the same events again (a redelivery, a replay)
    load(path, [docs()[0], docs()[0]])  # twice within one batch
    hits = search(settings, "anything", limit=10)
    assert sorted(h.message_id for h in hits) == ["wamid.A", "wamid.B", "wamid.C"]


def test_the_query_text_never_reaches_the_sql(settings: Settings) -> None:
    load(settings.resolved_duckdb_path, docs())
    evil = "x'); DROP TABLE embeddings; --"
    search(settings, evil)
    seen: list[str] = settings.__dict__["_sql_seen"]
    assert seen
    assert all(evil not in sql and "DROP" not in sql for sql in seen)
    assert len(search(settings, "again")) == 3  # the table is still there


def test_the_model_name_is_escaped_and_the_vector_is_numbers_only(tmp_path: Path) -> None:
    load(tmp_path / "z.duckdb", docs())
    import duckdb

    sql = ranking_sql([0.5, 0.5, 0.0], "it's", 5)
    assert "'it''s'" in sql
    con = duckdb.connect(str(tmp_path / "z.duckdb"), read_only=True)
    assert con.execute(sql).fetchall() == []  # valid SQL, no such model
    con.close()
    with pytest.raises(ValueError, match="finite"):
        vector_literal([float("nan"), 1.0])
    with pytest.raises(ValueError, match="limit"):
        ranking_sql([1.0], "m", 0)


def test_nothing_to_search_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(SearchUnavailable, match="no DuckDB file"):
        search(settings, "hello")
    load(settings.resolved_duckdb_path, [])
    with pytest.raises(SearchUnavailable, match="no embeddings yet"):
        search(settings, "hello")


def test_vectors_of_another_model_are_not_ranked_and_the_error_says_so(
    settings: Settings,
) -> None:
    load(settings.resolved_duckdb_path, docs(model="some-other-model"))
    with pytest.raises(SearchUnavailable, match="some-other-model"):
        search(settings, "hello")


def test_a_bad_query_is_refused_before_any_work(settings: Settings) -> None:
    with pytest.raises(ValueError, match="empty"):
        search(settings, "   ")
    with pytest.raises(ValueError, match="limit"):
        search(settings, "hi", limit=1000)


def test_the_cli_prints_a_json_array_of_hits_best_first(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(settings.resolved_duckdb_path, docs())
    monkeypatch.setenv("DUCKDB_PATH", str(settings.resolved_duckdb_path))
    result = CliRunner().invoke(cli, ["search", "cancel it", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["message_id"] for h in hits] == ["wamid.A", "wamid.B"]
    assert set(hits[0]) == {"message_id", "user_id", "text", "score", "at"}
    assert "5511911110001" not in result.stdout
    table = CliRunner().invoke(cli, ["search", "cancel it"])
    assert table.exit_code == 0
    assert "cancel my order please" in table.stdout


def test_the_cli_fails_clearly_when_there_is_nothing_to_search(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUCKDB_PATH", str(settings.resolved_duckdb_path))
    result = CliRunner().invoke(cli, ["search", "hello", "--json"])
    assert result.exit_code == 1
    assert "no DuckDB file" in result.stderr


def _get(app: FastAPI, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


def test_the_search_endpoint_needs_the_admin_token_and_answers_hits(settings: Settings) -> None:
    load(settings.resolved_duckdb_path, docs())
    app = FastAPI()
    app.include_router(search_router(settings))
    assert _get(app, "/search?q=cancel").status_code == 401
    assert _get(app, "/search?q=cancel", token="nope").status_code == 401
    resp = _get(app, "/search?q=cancel&limit=2", token="tok")
    assert resp.status_code == 200
    assert [h["message_id"] for h in resp.json()] == ["wamid.A", "wamid.B"]
    assert resp.json()[0]["user_id"] == "55*******0001"
    assert _get(app, "/search?q=cancel&limit=0", token="tok").status_code == 422
    closed = FastAPI()
    closed.include_router(search_router(Settings(duckdb_path=settings.duckdb_path)))
    assert _get(closed, "/search?q=cancel", token="tok").status_code == 403


def test_the_search_endpoint_says_when_there_is_nothing_to_search(settings: Settings) -> None:
    app = FastAPI()
    app.include_router(search_router(settings))
    resp = _get(app, "/search?q=cancel", token="tok")
    assert resp.status_code == 503
    assert "no DuckDB file" in resp.json()["detail"]
