"""Dedupe: has this user's message been seen already?

Meta delivers the same message more than once (its webhook retries for up to 7 days),
and at-least-once Kafka replays it again after a crash. Per user, remember each message
id with the time it was first seen:

    check(state | None, message_id, now, cfg) -> Seen(duplicate, state)

The state is a plain JSON-able dict (message id -> [epoch seconds, origin]) kept in a
Faust table keyed by user_id. `origin` names the Kafka record that first carried the
id ("partition:offset"): when the *same record* comes back (a crash before the offset
commit replays it), it is not a duplicate — the work it started may not have finished,
and everything downstream is idempotent by deterministic ids. Only another record with
the same message id (Meta's redelivery) is a duplicate.
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

Entry = float | list[float | str]
DedupeState = dict[str, Entry]
"""message_id -> [first seen (epoch seconds), origin record] (a bare float: no origin)."""


def _first_seen(entry: Entry) -> float:
    return float(entry[0]) if isinstance(entry, list) else float(entry)


def _origin(entry: Entry) -> str:
    return str(entry[1]) if isinstance(entry, list) and len(entry) > 1 else ""


@dataclass(frozen=True)
class DedupeConfig:
    horizon_s: float = 7 * 24 * 3600
    """Meta's webhook retries stop after 7 days: no redelivery comes later."""
    max_entries: int = 1000


class Seen(NamedTuple):
    duplicate: bool
    state: DedupeState


def prune(state: Mapping[str, Entry], now: datetime, cfg: DedupeConfig) -> DedupeState:
    """Entries still inside the horizon, the newest `max_entries` of them, oldest first."""
    cutoff = now.timestamp() - cfg.horizon_s
    live = sorted(
        ((mid, seen) for mid, seen in state.items() if _first_seen(seen) > cutoff),
        key=lambda kv: _first_seen(kv[1]),
    )
    if len(live) > cfg.max_entries:
        live = live[len(live) - max(cfg.max_entries, 0) :]
    return dict(live)


def check(
    state: Mapping[str, Entry] | None,
    message_id: str,
    now: datetime,
    cfg: DedupeConfig,
    origin: str = "",
) -> Seen:
    """Is `message_id` a duplicate for this user at `now`? Returns the state to store.

    A duplicate keeps its first-seen time: a retry must not extend its own life, or a
    message redelivered every few days would never expire. Pass the message's
    `received_at` as `now` so that replaying the topic decides the same way.
    """
    current = prune(state or {}, now, cfg)
    entry = current.get(message_id)
    if entry is not None:
        replayed = bool(origin) and _origin(entry) == origin
        return Seen(not replayed, current)
    current[message_id] = (
        [round(now.timestamp(), 3), origin] if origin else round(now.timestamp(), 3)
    )
    if len(current) > cfg.max_entries:
        current = prune(current, now, cfg)
    return Seen(False, current)
