"""Dedupe: has this user's message been seen already?

Meta delivers the same message more than once (its webhook retries for up to 7 days),
and at-least-once Kafka replays it again after a crash. Per user, remember each message
id with the time it was first seen:

    check(state | None, message_id, now, cfg) -> Seen(duplicate, state)

The state is a plain JSON-able `dict[str, float]` (message id -> epoch seconds) so the
lead can keep it in a Faust table keyed by user_id and assign it back on each event.
It is bounded: entries older than the horizon are pruned on every touch, and at most
`max_entries` of the newest are kept, so a user's entry never grows forever.

Trade-off of the cap: a user who sends more than `max_entries` messages within the
horizon could see a redelivery of one of their oldest messages pass as new. Meta's
retries come soonest first, so the newest ids are the ones worth keeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

DedupeState = dict[str, float]
"""message_id -> first seen, in epoch seconds (JSON-able, compact)."""


@dataclass(frozen=True)
class DedupeConfig:
    horizon_s: float = 7 * 24 * 3600
    """Meta's webhook retries stop after 7 days: no redelivery comes later."""
    max_entries: int = 1000


class Seen(NamedTuple):
    duplicate: bool
    state: DedupeState


def prune(state: Mapping[str, float], now: datetime, cfg: DedupeConfig) -> DedupeState:
    """Entries still inside the horizon, the newest `max_entries` of them, oldest first."""
    cutoff = now.timestamp() - cfg.horizon_s
    live = sorted(
        ((mid, seen) for mid, seen in state.items() if seen > cutoff), key=lambda kv: kv[1]
    )
    if len(live) > cfg.max_entries:
        live = live[len(live) - max(cfg.max_entries, 0) :]
    return dict(live)


def check(
    state: Mapping[str, float] | None, message_id: str, now: datetime, cfg: DedupeConfig
) -> Seen:
    """Is `message_id` a duplicate for this user at `now`? Returns the state to store.

    A duplicate keeps its first-seen time: a retry must not extend its own life, or a
    message redelivered every few days would never expire. Pass the message's
    `received_at` as `now` so that replaying the topic decides the same way.
    """
    current = prune(state or {}, now, cfg)
    if message_id in current:
        return Seen(True, current)
    current[message_id] = round(now.timestamp(), 3)
    if len(current) > cfg.max_entries:
        current = prune(current, now, cfg)
    return Seen(False, current)
