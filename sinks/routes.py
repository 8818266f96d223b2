"""Which topic fills which tables, and how an event is decoded on the way.

`routes(topics)` is the one place that maps topics to tables: a new topic is one
entry there (with its event's mirror in `sinks.wire`, its row function in
`sinks.rows` and its table in `sinks.tables`). The sink consumes exactly the topics
listed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from pydantic import BaseModel

from schemas import (
    conversation,
    embeddings,
    events,
    handoff,
    media,
    outbound,
    processing,
    reengagement,
    replay,
)
from schemas.codec import decode
from schemas.topics import Topics
from sinks import rows, wire
from sinks.rows import Row, RowFn


@dataclass(frozen=True)
class Route:
    """One topic's event type and the rows (table, row function) each event makes."""

    model: type[BaseModel]
    mirror: type[wire.Event]
    targets: tuple[tuple[str, RowFn], ...]
    _fast: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fast", msgspec.json.Decoder(self.mirror))

    def decode_fast(self, value: bytes) -> Any | None:
        """The mirror, or None where it cannot be sure to read as the model does."""
        if wire.LONG_FRACTION.search(value):
            return None
        try:
            return self._fast.decode(value)
        except msgspec.MsgspecError:
            return None

    def decode(self, value: bytes) -> Any:
        """The mirror when it takes the value, else the model (raises InvalidPayload)."""
        event = self.decode_fast(value)
        return event if event is not None else decode(self.model, value)

    def rows(self, value: bytes) -> list[tuple[str, Row]]:
        event = self.decode(value)
        return [(table, make(event)) for table, make in self.targets]


def route(model: type[BaseModel], mirror: type[wire.Event], *targets: tuple[str, RowFn]) -> Route:
    return Route(model, mirror, targets)


def routes(topics: Topics) -> dict[str, Route]:
    outbound_messages = route(
        outbound.OutboundMessage, wire.OutboundMessage, ("outbound_messages", rows.outbound_row)
    )
    return {
        topics.inbound: route(
            events.MessageReceived, wire.MessageReceived, ("messages", rows.message_row)
        ),
        topics.statuses: route(
            events.StatusReceived, wire.StatusReceived, ("statuses", rows.status_row)
        ),
        topics.unrecognized: route(
            events.WebhookUnrecognized,
            wire.WebhookUnrecognized,
            ("unrecognized_webhooks", rows.unrecognized_row),
        ),
        topics.decisions: route(
            conversation.TurnDecided,
            wire.TurnDecided,
            ("turns", rows.turn_row),
            ("sessions", rows.session_row),
        ),
        topics.outbound_high: outbound_messages,
        topics.outbound_low: outbound_messages,
        topics.send_results: route(
            outbound.SendResult, wire.SendResult, ("send_results", rows.send_result_row)
        ),
        topics.dead_letters: route(
            outbound.DeadLetter, wire.DeadLetter, ("dead_letters", rows.dead_letter_row)
        ),
        topics.handoffs: route(
            handoff.HandoffEvent, wire.HandoffEvent, ("handoff_events", rows.handoff_event_row)
        ),
        topics.processing_dead_letters: route(
            processing.ProcessingDeadLetter,
            wire.ProcessingDeadLetter,
            ("processing_dead_letters", rows.processing_dead_letter_row),
        ),
        topics.embedding_vectors: route(
            embeddings.EmbeddingComputed,
            wire.EmbeddingComputed,
            ("embeddings", rows.embedding_row),
        ),
        topics.reengagements: route(
            reengagement.Reengagement,
            wire.Reengagement,
            ("reengagements", rows.reengagement_row),
        ),
        topics.replay_decisions: route(
            replay.ReplayDecided,
            wire.ReplayDecided,
            ("replay_decisions", rows.replay_decision_row),
        ),
        topics.replay_runs: route(
            replay.ReplayRunFinished, wire.ReplayRunFinished, ("replay_runs", rows.replay_run_row)
        ),
        topics.media: route(media.MediaFetched, wire.MediaFetched, ("media", rows.media_row)),
    }
