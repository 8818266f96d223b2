"""Topic names and partition counts: one place, derived from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from zapstream.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


@dataclass(frozen=True)
class Topics:
    inbound: str
    statuses: str
    unrecognized: str
    decisions: str
    outbound_high: str
    outbound_low: str
    send_results: str
    dead_letters: str
    handoffs: str
    embeddings: str
    """Embedding requests (`schemas.embeddings.EmbeddingRequested`): converse → embedder."""
    processing_dead_letters: str
    embedding_vectors: str
    """Vectors (`schemas.embeddings.EmbeddingComputed`): embedder → sink."""
    reengagements: str
    replay_decisions: str
    replay_runs: str
    media: str
    media_requested: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        p = settings.topic_prefix
        return cls(
            inbound=f"{p}.messages.inbound.v1",
            statuses=f"{p}.statuses.v1",
            unrecognized=f"{p}.webhooks.unrecognized.v1",
            decisions=f"{p}.turns.decided.v1",
            outbound_high=f"{p}.outbound.high.v1",
            outbound_low=f"{p}.outbound.low.v1",
            send_results=f"{p}.outbound.results.v1",
            dead_letters=f"{p}.outbound.deadletters.v1",
            handoffs=f"{p}.handoffs.v1",
            embeddings=f"{p}.embeddings.requested.v1",
            processing_dead_letters=f"{p}.processing.deadletters.v1",
            embedding_vectors=f"{p}.embeddings.vectors.v1",
            reengagements=f"{p}.reengagements.v1",
            replay_decisions=f"{p}.replay.decisions.v1",
            replay_runs=f"{p}.replay.runs.v1",
            media=f"{p}.media.v1",
            media_requested=f"{p}.media.requested.v1",
        )

    def outbound(self, priority: str) -> str:
        return self.outbound_high if priority == "high" else self.outbound_low

    def specs(self, settings: Settings) -> list[TopicSpec]:
        n = settings.topic_partitions
        # Every user-keyed topic has the same partition count, so a user's messages,
        # ticks, decisions and sends sit on the same partition number everywhere.
        keyed = [
            self.inbound,
            self.statuses,
            self.decisions,
            self.outbound_high,
            self.outbound_low,
            self.send_results,
            self.dead_letters,
            self.handoffs,
            self.embeddings,
            self.processing_dead_letters,
            self.embedding_vectors,
            self.reengagements,
            self.replay_decisions,
            self.media,
            self.media_requested,
        ]
        return [TopicSpec(t, n) for t in keyed] + [
            TopicSpec(self.unrecognized, 1),
            TopicSpec(self.replay_runs, 1),  # keyed by run id: a few records per replay
        ]


# Tables of the processing worker (Faust changelog topics `<app id>-<table>-changelog`):
# `users` (one record per user: session, debounce buffer, last applied record),
# `seen` (dedupe, one entry per message id), `sent` (the send ledger, one entry per
# outbound id), `notified` (the handoff notifier's ledger, one entry per handoff). See
# processors/tables.py.
WORKER_TABLES: tuple[str, ...] = ("users", "seen", "sent", "notified")


def faust_internal_topics(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(f"{settings.app_id}-{table}-changelog", settings.topic_partitions, compacted=True)
        for table in WORKER_TABLES
    ]


def all_topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the stack uses, Faust's internal ones included: created at start,
    never left to auto-creation (Tansu would make them with 4 partitions)."""
    return Topics.from_settings(settings).specs(settings) + faust_internal_topics(settings)
