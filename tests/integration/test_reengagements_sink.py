"""The `reengagements` table on a real DuckDB file: one row per quiet period, and the
`returned` event's returned_at wins whichever order the two events load in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.codec import encode
from schemas.reengagement import ReengageMark, Reengagement
from sinks.loader import Loader
from tests.integration.test_duckdb_sink import TOPICS, batch

USER = "5511987654321"
SENT = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
BACK = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
MARK = ReengageMark(
    reengagement_id="reng_a",
    quiet_since=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    sent_at=SENT,
    kind="template",
    outbound_id="out_a",
)


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Loader]:
    s = Loader(tmp_path / "z.duckdb")
    s.open()
    yield s
    s.close()


def sent() -> tuple[str, bytes]:
    return TOPICS.reengagements, encode(Reengagement.of("sent", USER, MARK))


def returned() -> tuple[str, bytes]:
    mark = MARK.model_copy(update={"returned_at": BACK})
    return TOPICS.reengagements, encode(Reengagement.of("returned", USER, mark))


def rows(loader: Loader) -> list[tuple[object, ...]]:
    return list(
        loader.query(
            "SELECT reengagement_id, user_id, kind, outbound_id, sent_at, returned_at "
            "FROM reengagements"
        ).rows
    )


def test_sent_then_returned_across_batches_fills_returned_at(loader: Loader) -> None:
    loader.load(batch(sent()))
    assert rows(loader) == [("reng_a", USER, "template", "out_a", SENT, None)]
    loader.load(batch(returned()))
    loader.load(batch(sent()))  # a redelivered `sent` does not clear it
    assert rows(loader) == [("reng_a", USER, "template", "out_a", SENT, BACK)]


def test_returned_loaded_before_sent_in_one_batch_still_wins(loader: Loader) -> None:
    loader.load(batch(returned(), sent()))
    assert rows(loader) == [("reng_a", USER, "template", "out_a", SENT, BACK)]
