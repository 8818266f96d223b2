"""Pure: whether a quiet user gets a re-engagement message, which one, and what a
user's next message records. No clock, env or network: `now` is the control record's
time (`schemas.control.Control.at`), so a replay decides exactly as the first run did.

A quiet period begins at the user's last send time (`session.last_inbound_at`, the
`quiet_since` of the period) and ends when they write again. One period gets at most
one message, sent only if, at `now`:
  * the user is still quiet for that same period (`quiet_since` unchanged) and has been
    for `after_s` (`REENGAGE_AFTER_S`), with no burst of theirs still open;
  * they have not opted out and no human has the conversation (`handoff_active`);
  * the period was not re-engaged already (`UserState.reengaged`);
  * something fits: `REENGAGE_TEXT` while the 24-hour window is open (closed early by
    `SERVICE_WINDOW_MARGIN_S`), else the template `REENGAGE_TEMPLATE`; neither → none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from processors.actions import SendTemplate, SendText, outbound_payload
from processors.engine import SERVICE_WINDOW, window_open
from processors.user_state import UserState
from schemas.control import Control
from schemas.events import MessageReceived
from schemas.outbound import OutboundMessage
from schemas.reengagement import (
    ReengageKind,
    ReengageMark,
    Reengagement,
    reengage_outbound_id,
    reengagement_id_for,
)
from zapstream.settings import Settings

CONTROL_KIND = "reengage"
TEMPLATE_STALE_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class ReengageConfig:
    after_s: float
    text: str
    template: str | None = None
    template_language: str = "pt_BR"
    window_margin_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReengageConfig:
        return cls(
            after_s=settings.reengage_after_s,
            text=settings.reengage_text,
            template=settings.reengage_template or None,
            template_language=settings.reengage_template_language,
            window_margin_s=settings.service_window_margin_s,
        )

    @property
    def enabled(self) -> bool:
        return self.after_s > 0


class Quiet(NamedTuple):
    """What the rules read of a user's state (from a `UserState`, or cheaply from its
    JSON in the worker's scan: `quiet_of_json`)."""

    quiet_since: datetime | None
    opted_out: bool
    handoff_active: bool
    burst_open: bool
    reengaged_for: datetime | None


def quiet_of(state: UserState | None) -> Quiet:
    """From a `processors.user_state.UserState` (or None)."""
    session = state.session if state is not None else None
    mark = state.reengaged if state is not None else None
    return Quiet(
        quiet_since=session.last_inbound_at if session is not None else None,
        opted_out=bool(session and session.opted_out),
        handoff_active=bool(session and session.handoff_active),
        burst_open=bool(state is not None and state.pending is not None),
        reengaged_for=mark.quiet_since if mark is not None else None,
    )


def quiet_of_json(doc: dict[str, Any]) -> Quiet:
    """From the decoded JSON of a `UserState` (no model built: the scan reads many)."""
    session = doc.get("session") or {}
    mark = doc.get("reengaged") or {}
    return Quiet(
        quiet_since=_ts(session.get("last_inbound_at")),
        opted_out=bool(session.get("opted_out")),
        handoff_active=bool(session.get("handoff_active")),
        burst_open=doc.get("pending") is not None,
        reengaged_for=_ts(mark.get("quiet_since")),
    )


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def due_at(quiet: Quiet, cfg: ReengageConfig) -> datetime | None:
    """When the user's current quiet period becomes due, or None if it never will
    (no inbound yet, already re-engaged, opted out, with a human, re-engagement off)."""
    if not cfg.enabled or quiet.quiet_since is None:
        return None
    if quiet.reengaged_for == quiet.quiet_since or quiet.opted_out or quiet.handoff_active:
        return None
    return quiet.quiet_since + timedelta(seconds=cfg.after_s)


def check(quiet: Quiet, now: datetime, cfg: ReengageConfig) -> tuple[ReengageKind | None, str]:
    """(the kind of message to send, "") or (None, why not)."""
    if not cfg.enabled:
        return None, "off"
    if quiet.quiet_since is None:
        return None, "no_inbound"
    if quiet.reengaged_for == quiet.quiet_since:
        return None, "already_reengaged"
    if quiet.opted_out:
        return None, "opted_out"
    if quiet.handoff_active:
        return None, "handoff_active"
    if quiet.burst_open:
        return None, "burst_open"
    if now < quiet.quiet_since + timedelta(seconds=cfg.after_s):
        return None, "not_quiet_yet"
    margin = timedelta(seconds=cfg.window_margin_s)
    if window_open(quiet.quiet_since, now, margin=margin):
        return "text", ""
    if cfg.template:
        return "template", ""
    return None, "outside_window_no_template"


class Step(NamedTuple):
    state: UserState | None
    """The state to store, or None (nothing changed)."""
    outbound: OutboundMessage | None
    event: Reengagement | None
    skipped: str
    """Why nothing was sent ("" when something was)."""


def control_quiet_since(control: Control) -> datetime | None:
    value = control.fields.get("quiet_since")
    return _ts(value) if isinstance(value, str) else None


def reengage_step(
    user: str, state: UserState | None, control: Control, cfg: ReengageConfig
) -> Step:
    """Decide one `reengage` control record for `user`'s state."""
    now = datetime.fromtimestamp(control.at, UTC)
    quiet = quiet_of(state)
    asked = control_quiet_since(control)
    if asked is not None and quiet.quiet_since is not None and asked != quiet.quiet_since:
        return Step(None, None, None, "period_changed")  # the user wrote after the scan
    kind, why = check(quiet, now, cfg)
    if kind is None:
        return Step(None, None, None, why)
    assert state is not None  # check() saw an inbound
    assert state.session is not None
    session = state.session
    if not session.phone_number_id:
        return Step(None, None, None, "no_phone_number_id")
    assert quiet.quiet_since is not None
    rid = reengagement_id_for(user, quiet.quiet_since)
    mark = ReengageMark(
        reengagement_id=rid,
        quiet_since=quiet.quiet_since,
        sent_at=now,
        kind=kind,
        outbound_id=reengage_outbound_id(rid),
    )
    action = (
        SendText(body=cfg.text)
        if kind == "text"
        else SendTemplate(name=cfg.template or "", language=cfg.template_language)
    )
    graph_type, payload = outbound_payload(action)
    if kind == "text":  # free-form: useless (refused with 131047) once the window closes
        margin = timedelta(seconds=cfg.window_margin_s)
        not_after = quiet.quiet_since + SERVICE_WINDOW - margin
    else:
        not_after = now + TEMPLATE_STALE_AFTER
    outbound = OutboundMessage(
        outbound_id=mark.outbound_id,
        user_id=user,
        to=session.wa_id or session.bsuid or user,
        phone_number_id=session.phone_number_id,
        priority="low",
        kind=graph_type,  # type: ignore[arg-type]  # "text" | "template"
        payload={k: v for k, v in payload.items() if k != "type"},
        turn_id=rid,
        created_at=now,
        not_after=not_after,
    )
    new_state = state.model_copy(
        update={"reengaged": mark, "touched_at": max(state.touched_at, control.at)}
    )
    return Step(new_state, outbound, Reengagement.of("sent", user, mark), "")


def returned_step(
    user: str, state: UserState, message: MessageReceived
) -> tuple[UserState, Reengagement | None]:
    """A new inbound message of `user` (already applied to `state`): the first
    one after a re-engagement marks it returned (once)."""
    mark = state.reengaged
    if mark is None or mark.returned_at is not None or message.sent_at <= mark.quiet_since:
        return state, None
    returned = mark.model_copy(update={"returned_at": message.received_at})
    return (
        state.model_copy(update={"reengaged": returned}),
        Reengagement.of("returned", user, returned),
    )
