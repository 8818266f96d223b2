"""Pure: which handoff lifecycle events a turn or an operator's command makes.

A handoff lives in the user's session (`handoff_active`, `handoff_since`,
`handoff_id`), changed only in the user's lane (the converse agent), so opening,
silence and release are ordered with the user's messages. These functions read no
clock: the event time comes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from processors.actions import Action, RequestHandoff
from schemas.conversation import Session, Turn
from schemas.handoff import HandoffEvent, event_id_for, handoff_id_for

TEXT_MAX = 1000


def _active(session: Session | None) -> bool:
    return session is not None and session.handoff_active


def _identity(session: Session) -> dict[str, str | None]:
    return {
        "wa_id": session.wa_id,
        "bsuid": session.bsuid,
        "phone_number_id": session.phone_number_id,
    }


def opened_event(
    session: Session,
    *,
    at: datetime,
    reason: str,
    source: str,
    turn_id: str | None = None,
    text: str | None = None,
) -> HandoffEvent:
    assert session.handoff_id is not None
    return HandoffEvent(
        event_id=event_id_for(session.handoff_id, "opened"),
        event="opened",
        handoff_id=session.handoff_id,
        user_id=session.user_id,
        at=at,
        reason=reason,
        source=source,  # type: ignore[arg-type]
        turn_id=turn_id,
        text=text[:TEXT_MAX] if text else None,
        opened_at=session.handoff_since or at,
        **_identity(session),
    )


def ended_event(before: Session, event: str, *, at: datetime, reason: str) -> HandoffEvent:
    return HandoffEvent(
        event_id=event_id_for(before.handoff_id, event),
        event=event,  # type: ignore[arg-type]
        handoff_id=before.handoff_id,
        user_id=before.user_id,
        at=at,
        reason=reason,
        opened_at=before.handoff_since,
        **_identity(before),
    )


def turn_events(
    before: Session | None, after: Session, turn: Turn, actions: Sequence[Action], now: datetime
) -> list[HandoffEvent]:
    """The events of one decided turn: the end of the handoff that was open (expired,
    or released because the user opted out) and the opening of a new one."""
    events: list[HandoffEvent] = []
    same = _active(before) and after.handoff_active and before.handoff_id == after.handoff_id  # type: ignore[union-attr]
    if same:
        return events
    if _active(before):
        assert before is not None
        kind, reason = ("released", "opted_out") if after.opted_out else ("expired", "expired")
        events.append(ended_event(before, kind, at=now, reason=reason))
    if after.handoff_active and after.handoff_id is not None:
        asked = next((a.reason for a in actions if isinstance(a, RequestHandoff)), None)
        events.append(
            opened_event(
                after,
                at=now,
                reason=asked or "engine",
                source="engine",
                turn_id=turn.turn_id,
                text="\n".join(turn.texts),
            )
        )
    return events


def open_by_agent(
    session: Session | None, user_id: str, *, opened_by: str, at: datetime, reason: str
) -> tuple[Session, HandoffEvent] | None:
    """An agent opens a handoff (`POST /handoffs`): the new session and its `opened`
    event, or None when one is open already. `opened_by` names the command (its
    control record's position), so a replay makes the same handoff id."""
    if _active(session):
        return None
    base = session or Session.new(user_id)
    after = base.updated(
        handoff_active=True,
        handoff_since=at,
        handoff_id=handoff_id_for(user_id, opened_by),
        consecutive_fallbacks=0,
        updated_at=at,
    )
    return after, opened_event(after, at=at, reason=reason, source="agent")


def release(
    session: Session | None, *, at: datetime, by: str = "agent"
) -> tuple[Session, HandoffEvent] | None:
    """An agent hands the conversation back (`POST /handoffs/{user}/release`): the
    session without the handoff and its `released` event, or None when none is open."""
    if session is None or not session.handoff_active:
        return None
    after = session.updated(
        handoff_active=False, handoff_since=None, handoff_id=None, updated_at=at
    )
    return after, ended_event(session, "released", at=at, reason=by)
