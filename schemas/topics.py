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

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        p = settings.topic_prefix
        return cls(
            inbound=f"{p}.messages.inbound.v1",
            statuses=f"{p}.statuses.v1",
            unrecognized=f"{p}.webhooks.unrecognized.v1",
        )

    def specs(self, settings: Settings) -> list[TopicSpec]:
        n = settings.topic_partitions
        return [
            TopicSpec(self.inbound, n),
            TopicSpec(self.statuses, n),
            TopicSpec(self.unrecognized, 1),
        ]


def all_topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the stack uses, Faust's internal ones included: created at start,
    never left to auto-creation (Tansu would make them with 4 partitions)."""
    from processors.topology import faust_internal_topics

    specs = Topics.from_settings(settings).specs(settings)
    return specs + faust_internal_topics(settings)
