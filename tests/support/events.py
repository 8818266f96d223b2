"""Small builders of valid events for tests."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.debounce import Pending, close
from schemas.conversation import Session, Turn, TurnDecided
from schemas.embeddings import EmbeddingComputed, encode_vector
from schemas.events import MessageReceived, StatusReceived
from schemas.outbound import SendResult


def message(i: int = 0, *, user: str = "5511987654321", text: str | None = None) -> MessageReceived:
    now = datetime(2026, 11, 26, 12, 0, i % 60, tzinfo=UTC)
    return MessageReceived(
        message_id=f"wamid.TEST{i:06d}",
        user_id=user,
        wa_id=user,
        phone_number_id="100000000000001",
        type="text",
        sent_at=now,
        received_at=now,
        text=text if text is not None else f"hello {i}",
        raw={"id": f"wamid.TEST{i:06d}", "type": "text"},
    )


def status(i: int = 0, status: str = "delivered", user: str = "5511987654321") -> StatusReceived:
    now = datetime(2026, 11, 26, 12, 0, i % 60, tzinfo=UTC)
    return StatusReceived(
        wamid=f"wamid.OUT{i:06d}",
        status=status,
        user_id=user,
        recipient_id=user,
        phone_number_id="100000000000001",
        status_at=now,
        received_at=now,
        raw={"status": status},
    )


def single_turn(text: str, *, user: str, at: datetime) -> Turn:
    """A turn holding one text message from `user`, closed at `at`."""
    msg = MessageReceived(
        message_id="m1",
        user_id=user,
        wa_id=user,
        phone_number_id="100",
        type="text",
        sent_at=at,
        received_at=at,
        text=text,
        raw={"id": "m1"},
    )
    return close(Pending(user_id=user, messages=(msg,), first_at=at, last_at=at), at, "quiet")


def decided(
    turn_id: str, *, user: str, updated_at: datetime, turn_count: int, intent: str = "greeting"
) -> TurnDecided:
    """A decision whose session snapshot was taken at `updated_at`."""
    session = Session(
        user_id=user,
        wa_id=user,
        turn_count=turn_count,
        last_intent=intent,
        last_turn_id=turn_id,
        first_inbound_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        last_inbound_at=updated_at,
        updated_at=updated_at,
    )
    return TurnDecided(
        turn_id=turn_id,
        user_id=user,
        wa_id=user,
        phone_number_id="100000000000001",
        message_ids=[f"wamid.{turn_id}"],
        intent=intent,
        actions=[{"type": "send_text", "text": "olá"}],
        session=session,
        decided_at=updated_at,
        engine="echo",
        latency_ms=12.5,
    )


def send_result(i: int = 0, *, attempts: int = 1, user: str = "5511987654321") -> SendResult:
    return SendResult(
        outbound_id=f"out_{i:06d}",
        user_id=user,
        turn_id=f"turn-{i}",
        wamid=f"wamid.SENT{i:06d}",
        outcome="sent",
        attempts=attempts,
        status_code=200,
        latency_ms=80.0,
        sent_at=datetime(2026, 11, 26, 12, 0, i % 60, tzinfo=UTC),
    )


def embedding_computed(
    at: datetime,
    *,
    message_id: str = "wamid.EMB000001",
    user: str = "5511987654321",
    text: str = "I would like to cancel my order",
    vector: list[float] | None = None,
    model: str = "all-MiniLM-L6-v2",
) -> EmbeddingComputed:
    values = vector if vector is not None else [0.6, 0.8, 0.0]
    return EmbeddingComputed(
        message_id=message_id,
        user_id=user,
        model=model,
        dim=len(values),
        vector_b64=encode_vector(values),
        text=text,
        at=at,
        embedded_at=at,
    )
