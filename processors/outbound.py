"""Pure: the engine's send actions → `OutboundMessage` events with deterministic ids."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from processors.actions import (
    Action,
    MarkRead,
    SendButtons,
    SendList,
    SendMedia,
    SendTemplate,
    SendText,
    outbound_payload,
)
from schemas.conversation import Turn
from schemas.outbound import OutboundKind, OutboundMessage, outbound_id_for

GRAPH_ACTIONS = (SendText, SendButtons, SendList, SendTemplate, SendMedia, MarkRead)
MEDIA_KINDS = {"image", "document", "audio", "video", "sticker"}
Priority = Literal["high", "low"]


def _kind(graph_type: str) -> OutboundKind:
    if graph_type == "read":
        return "mark_read"
    if graph_type in MEDIA_KINDS:
        return "media"
    if graph_type in ("text", "interactive", "template"):
        return graph_type  # type: ignore[return-value]
    raise ValueError(f"no outbound kind for Graph type {graph_type!r}")


def to_outbound(
    turn: Turn,
    actions: list[Action],
    *,
    now: datetime,
    priority: Priority = "high",
    stale_after: timedelta | None = timedelta(hours=1),
) -> list[OutboundMessage]:
    """One OutboundMessage per Graph-bound action, ids `outbound_id_for(turn_id, i)`.

    `i` counts only Graph-bound actions, in the engine's order, so re-deciding the same
    turn gives the same ids (and the sender drops the repeats)."""
    out: list[OutboundMessage] = []
    for action in actions:
        if not isinstance(action, GRAPH_ACTIONS):
            continue  # internal actions (handoff, embeddings) are routed elsewhere
        graph_type, payload = outbound_payload(action)  # InvalidAction is an engine bug
        payload = {k: v for k, v in payload.items() if k != "type"}
        kind = _kind(graph_type)
        if kind == "mark_read":
            payload = {k: v for k, v in payload.items() if k != "status"}
        reply_to = getattr(action, "reply_to", None)
        if isinstance(action, MarkRead):
            reply_to = action.message_id
        out.append(
            OutboundMessage(
                outbound_id=outbound_id_for(turn.turn_id, len(out)),
                user_id=turn.user_id,
                to=turn.wa_id or turn.bsuid or turn.user_id,
                phone_number_id=turn.phone_number_id,
                priority=priority,
                kind=kind,
                payload=payload,
                reply_to=reply_to,
                turn_id=turn.turn_id,
                created_at=now,
                not_after=now + stale_after if stale_after else None,
            )
        )
    return out
