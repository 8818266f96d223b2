"""Faust table helpers."""

from __future__ import annotations

from typing import Any

from faust.streams import current_event


async def durable_set(table: Any, key: str, value: Any) -> None:
    """`table[key] = value`, returning only once the changelog record is acknowledged.

    A plain assignment queues the changelog write; this one waits for it, for state
    that must be stored *before* an effect it guards (the intent to send a message)."""
    if current_event() is None:
        raise RuntimeError("tables can only change while an event is being handled")
    table.data[key] = value  # the local store, without a second changelog write
    await table.send_changelog(table.partition_for_key(key), key, value)
