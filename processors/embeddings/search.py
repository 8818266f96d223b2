"""Semantic search over the `embeddings` table: `zapstream search` and `GET /search`.

    hits = search(settings, "I want to talk to a person", limit=10)

The query is encoded with the model the embedder uses (EMBEDDING_MODEL and
EMBEDDING_BACKEND; loaded once per process, lazily, on a thread of its own), then
DuckDB ranks the stored vectors of that same model by cosine similarity
(`array_cosine_similarity`, a full scan: tens of milliseconds for 100k vectors)
through `zapstream.db_query.query` (read-only, or through the running sink).

SQL safety: the query text never goes into SQL. The SQL holds the vector (numbers
this module formats from a float32 array, each checked finite), the model's name (a
quoted, escaped literal) and the limit (an int).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from zapstream.db_query import QueryFailed, query
from zapstream.errors import PermanentError
from zapstream.log import mask_phone
from zapstream.settings import Settings

MAX_LIMIT = 100
MAX_QUERY_CHARS = 1000


class SearchUnavailable(PermanentError):
    """Nothing to search (no sink file, no table, no vectors of the current model)."""


@dataclass(frozen=True)
class Hit:
    message_id: str
    user_id: str
    """Masked (`mask_phone`)."""
    text: str
    score: float
    at: str | None
    """The message's time, ISO 8601."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def vector_literal(vector: Sequence[float]) -> str:
    """`[0.1, -0.2, ...]::FLOAT[n]` from numbers; refuses NaN and infinities."""
    parts = []
    for x in vector:
        f = float(x)
        if not math.isfinite(f):
            raise ValueError("the query vector is not finite")
        parts.append(format(f, ".9g"))
    return f"[{', '.join(parts)}]::FLOAT[{len(parts)}]"


def ranking_sql(vector: Sequence[float], model: str, limit: int) -> str:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    return (
        "SELECT message_id, user_id, text, "
        f'array_cosine_similarity(vector, {vector_literal(vector)}) AS score, "at" '
        f"FROM embeddings WHERE model = {sql_literal(model)} AND dim = {len(vector)} "
        f"ORDER BY score DESC, message_id LIMIT {int(limit)}"
    )


INVENTORY_SQL = (
    "SELECT model, dim, count(*) AS n FROM embeddings GROUP BY model, dim ORDER BY n DESC"
)


def to_hits(rows: Sequence[Sequence[Any]]) -> list[Hit]:
    hits = []
    for message_id, user_id, text, score, at in rows:
        when = at.isoformat() if isinstance(at, datetime) else (str(at) if at is not None else None)
        hits.append(
            Hit(
                message_id=str(message_id),
                user_id=mask_phone(str(user_id)) if user_id is not None else "",
                text=str(text or ""),
                score=round(float(score), 4),
                at=when,
            )
        )
    return hits


class QueryEncoder:
    """The embedder's model, for queries: built and loaded once per process, on first use."""

    _lock = threading.Lock()
    _cache: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> Any:
        from processors.embeddings.model import offline

        offline()
        from processors.embedder import build_encoder, check_model

        key = (settings.embedding_model, settings.embedding_backend, settings.embedding_cache_dir)
        with cls._lock:
            if key not in cls._cache:
                model = check_model(settings)
                cls._cache[key] = (build_encoder(settings), model.name)
            return cls._cache[key]


def encode_query(settings: Settings, text: str) -> tuple[list[float], str]:
    """(unit vector, model name) of the query text. Blocking: call it off the event loop."""
    encoder, name = QueryEncoder.for_settings(settings)
    vector = encoder.encode([text])[0]
    return [float(x) for x in vector], name


def check_query(text: str, limit: int) -> str:
    text = text.strip()
    if not text:
        raise ValueError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    return text


def search(settings: Settings, text: str, limit: int = 10) -> list[Hit]:
    """Hits best first. ValueError for a bad query; SearchUnavailable when there is
    nothing to search; InvalidEmbeddingModel when the model is unusable."""
    text = check_query(text, limit)
    try:
        _, inventory = query(settings, INVENTORY_SQL)
    except QueryFailed as exc:
        if "embeddings" in str(exc) and ("does not exist" in str(exc) or "not found" in str(exc)):
            raise SearchUnavailable("no embeddings table yet (has the sink run?)") from exc
        raise SearchUnavailable(str(exc)) from exc
    if not inventory:
        raise SearchUnavailable("no embeddings yet (is an embedder running? EMBEDDING_WORKERS)")
    vector, model = encode_query(settings, text)
    if not any(m == model and int(d) == len(vector) for m, d, _ in inventory):
        held = ", ".join(f"{m} ({d} dims): {n}" for m, d, n in inventory)
        raise SearchUnavailable(
            f"no vectors of the model {model} ({len(vector)} dims); the table holds {held}"
        )
    try:
        _, rows = query(settings, ranking_sql(vector, model, limit))
    except QueryFailed as exc:
        raise SearchUnavailable(str(exc)) from exc
    return to_hits(rows)
