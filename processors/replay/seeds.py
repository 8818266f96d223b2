"""Where each user's conversation stood when the slice begins.

A replay decides each user's turns on top of the session the live worker had before
the user's first message of the slice: the session after the user's latest live turn
decided before that message reached the webhook (DuckDB `turns.session`, read-only).
A turn decided before that instant holds only messages the user sent before it, so
none of them is in the slice and none is decided twice. Without such a turn (a new
user, a turn older than the sink's `session` column, or no DuckDB file to read) the
user starts with no session, as a first contact.

The lookups go in chunks, one query per chunk of users first met in a batch of
records, so a replay costs a query per few hundred users, not one per user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson

from schemas.conversation import Session
from zapstream.settings import Settings

CHUNK = 500
"""Users per query (the SQL holds one VALUES row per user)."""

SeedLoader = Callable[[Mapping[str, datetime]], dict[str, Session]]
"""(user → the instant the user's first message of the slice reached the webhook) →
the session each of them had then, for the users that had one."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def seeds_sql(wanted: Mapping[str, datetime]) -> str:
    """One query: per user, the session of the latest turn decided before its cutoff."""
    values = ", ".join(
        f"({_literal(user)}, TIMESTAMPTZ {_literal(at.astimezone(UTC).isoformat())})"
        for user, at in wanted.items()
    )
    return (
        f"WITH wanted(user_id, cutoff) AS (VALUES {values}) "
        "SELECT t.user_id, t.session FROM turns t JOIN wanted w ON t.user_id = w.user_id "
        "WHERE t.decided_at < w.cutoff AND t.session IS NOT NULL "
        "QUALIFY row_number() OVER (PARTITION BY t.user_id ORDER BY t.decided_at DESC) = 1"
    )


def parse_seeds(rows: list[tuple[object, ...]]) -> dict[str, Session]:
    """`seeds_sql`'s rows as sessions (the JSON column comes back as text or as data)."""
    out: dict[str, Session] = {}
    for user, doc in rows:
        if doc is None:
            continue
        data = orjson.loads(doc) if isinstance(doc, str | bytes) else doc
        out[str(user)] = Session.model_validate(data)
    return out


def duckdb_seeds(settings: Settings) -> SeedLoader:
    """A loader reading DuckDB through `zapstream.db_query` (the running sink's read
    path, or the file read-only): the single-writer rule holds."""
    from zapstream.db_query import query

    def load(wanted: Mapping[str, datetime]) -> dict[str, Session]:
        users = list(wanted)
        out: dict[str, Session] = {}
        for i in range(0, len(users), CHUNK):
            chunk = {u: wanted[u] for u in users[i : i + CHUNK]}
            _, rows = query(settings, seeds_sql(chunk))
            out.update(parse_seeds(rows))
        return out

    return load
