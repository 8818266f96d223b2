"""Which texts get embedded, and the vector records the embedder makes (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from ingest.parse import parse_webhook
from processors.debounce import Pending, close
from processors.embedder import backend_of, vector_events
from processors.embeddings.requests import MAX_TEXT_CHARS, embedding_requests
from schemas.codec import decode, encode
from schemas.embeddings import EmbeddingComputed, EmbeddingRequested, encode_vector, vector_of
from schemas.events import MessageReceived
from zapstream.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def fixture_messages(*names: str) -> list[MessageReceived]:
    out: list[MessageReceived] = []
    for name in names:
        doc = json.loads((FIXTURES / "webhooks" / f"{name}.json").read_bytes())
        out += parse_webhook(doc, AT).messages
    return out


def turn_of(messages: list[MessageReceived], user: str = "5511987654321") -> object:
    msgs = tuple(m.model_copy(update={"user_id": user}) for m in messages)
    return close(Pending(user_id=user, messages=msgs, first_at=AT, last_at=AT), AT, "quiet")


def test_texts_captions_and_button_titles_are_embedded_reactions_and_media_without_text_not() -> (
    None
):
    messages = fixture_messages(
        "message_text",
        "message_image",
        "message_interactive_button_reply",
        "message_reaction",  # "👍": a reaction, not a message of its own
        "message_location",
        "message_audio_voice",
    )
    requests = embedding_requests(turn_of(messages))  # type: ignore[arg-type]
    by_type = {r.message_type: r for r in requests}
    # body, caption, button title, a location's name: whatever `MessageReceived.text` holds
    assert set(by_type) == {"text", "image", "interactive", "location"}
    assert by_type["image"].text == "Este modelo aqui"
    assert by_type["interactive"].text == "Sim, confirmar"
    assert "reaction" not in by_type
    assert "audio" not in by_type
    for r in requests:
        source = next(m for m in messages if m.message_id == r.message_id)
        assert r.text == source.text
        assert r.at == source.sent_at  # the message's time, not the turn's
        assert r.user_id == "5511987654321"
        assert r.key == r.user_id


def test_one_request_per_message_of_the_turn_in_the_users_order() -> None:
    base = fixture_messages("message_text")[0]
    messages = [
        base.model_copy(
            update={
                "message_id": f"m{i}",
                "text": f"text {i}",
                "sent_at": AT + timedelta(seconds=i),
            }
        )
        for i in range(3)
    ]
    turn = turn_of(messages)
    requests = embedding_requests(turn)  # type: ignore[arg-type]
    assert [r.message_id for r in requests] == ["m0", "m1", "m2"]
    assert {r.turn_id for r in requests} == {turn.turn_id}  # type: ignore[attr-defined]


def test_blank_texts_are_skipped_and_long_ones_cut() -> None:
    base = fixture_messages("message_text")[0]
    blank = base.model_copy(update={"message_id": "blank", "text": "   "})
    long = base.model_copy(update={"message_id": "long", "text": "x" * 10_000})
    requests = embedding_requests(turn_of([blank, long]))  # type: ignore[arg-type]
    assert [r.message_id for r in requests] == ["long"]
    assert len(requests[0].text) == MAX_TEXT_CHARS


def test_vector_records_carry_each_requests_row_exactly() -> None:
    requests = [
        EmbeddingRequested(message_id=f"m{i}", user_id="5511", text=f"t{i}", at=AT)
        for i in range(3)
    ]
    vectors = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    out = vector_events(requests, vectors, "all-MiniLM-L6-v2", AT)
    assert [o.message_id for o in out] == ["m0", "m1", "m2"]
    for i, o in enumerate(out):
        assert o.dim == 5
        assert np.array_equal(o.vector, vectors[i])  # float32, exact
        assert o.at == AT
        assert o.model == "all-MiniLM-L6-v2"
    with pytest.raises(ValueError, match="shape"):
        vector_events(requests, vectors[:2], "m", AT)


def test_a_vector_survives_the_wire_exactly_and_is_compact() -> None:
    v = np.linspace(-1, 1, 384, dtype=np.float32)
    b64 = encode_vector(v)
    assert np.array_equal(vector_of(b64), v)
    assert len(b64) == 2048  # 384 float32 as base64


@pytest.mark.parametrize(
    ("model", "name"),
    [(EmbeddingRequested, "embedding_requested"), (EmbeddingComputed, "embedding_computed")],
)
def test_stored_v1_records_still_decode(model: type[BaseModel], name: str) -> None:
    raw = (FIXTURES / "embeddings" / "v1" / f"{name}.json").read_bytes()
    event: Any = decode(model, raw)
    assert event.schema_version == 1
    assert decode(model, encode(event)) == event


def test_the_onnx_backend_is_the_default_and_onnx_names_the_int8_form() -> None:
    assert Settings().embedding_backend == "onnx"
    assert backend_of(Settings()) == "onnx-int8"
    assert backend_of(Settings(embedding_backend="onnx-int8")) == "onnx-int8"
    assert backend_of(Settings(embedding_backend="torch")) == "torch"


def test_embedding_settings_are_bounded() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(embedding_batch_size=0)
    with pytest.raises(ValidationError):
        Settings(embedding_batch_size=257)
    assert Settings(embedding_workers=0).embedding_workers == 0
    assert Settings(data_dir=Path("/d")).resolved_embedding_cache_dir == Path(
        "/d/models/embeddings"
    )


@pytest.mark.parametrize(("linger", "fetch_wait"), [(50, 50), (0, 10), (200, 200)])
def test_the_embedder_fetches_no_more_often_than_it_batches(
    tmp_path: Path, linger: int, fetch_wait: int
) -> None:
    from processors.embedder import create_embedder_app

    s = Settings(
        _env_file=None,
        data_dir=tmp_path,
        embedding_linger_ms=linger,
        consumer_fetch_max_wait_ms=10,
        kafka_bootstrap_servers="127.0.0.1:9",  # never contacted: the app is only built
    )
    app = create_embedder_app(s)
    assert app.zapstream_fetch_max_wait_ms == fetch_wait
    assert app.zapstream_fetch_idle_wait_ms == 2000  # no reply waits on an embedding
