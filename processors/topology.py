"""Faust's internal topics, declared up front so no broker auto-creates them."""

from __future__ import annotations

from schemas.topics import TopicSpec
from zapstream.settings import Settings

# Tables of the processing worker (changelog topics: `<app id>-<table>-changelog`).
WORKER_TABLES: tuple[str, ...] = ("seen", "pending", "sessions", "sent", "confirmed")


def faust_internal_topics(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(f"{settings.app_id}-{table}-changelog", settings.topic_partitions, compacted=True)
        for table in WORKER_TABLES
    ]
