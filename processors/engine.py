"""The engine seam: who decides how to answer a turn, and the rules every answer obeys.

An `Engine` is pure: `decide(session, turn, now)` reads no clock, env, network or
randomness. An `AsyncEngine` may do I/O (`processors.http_engine`). The agent only ever
sees what `load_engine` returns, a `GuardedEngine`, so it always writes

    decision = await engine.decide(session, turn, now)

and every engine's output has passed the same policies (pure functions, tested once):
  * opt-out: a user who opted out before this turn gets no message (`enforce_opt_out`);
  * the 24-hour customer-service window: outside it only templates (`enforce_service_window`);
  * human handoff: while a human has the conversation the bot sends nothing
    (`enforce_handoff`); a handoff the engine asks for opens in the session
    (`track_handoff`), and one nobody released ends after HANDOFF_EXPIRE_S
    (`expire_handoff`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

from processors.actions import (
    FREE_FORM_TYPES,
    SEND_TYPES,
    Action,
    MarkRead,
    RequestHandoff,
    SendTemplate,
    action_to_dict,
)
from schemas.conversation import Session, Turn, TurnDecided
from schemas.handoff import handoff_id_for
from zapstream.errors import ConfigurationError

SERVICE_WINDOW = timedelta(hours=24)
OUTSIDE_WINDOW = "outside_service_window"
OPTED_OUT = "opted_out"
DUPLICATE_TURN = "duplicate_turn"
HANDOFF_ACTIVE = "handoff_active"


@dataclass(frozen=True)
class Dropped:
    """An action a policy removed, and why (kept for the sink, never sent)."""

    action: Action
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**action_to_dict(self.action), "reason": self.reason}


@dataclass(frozen=True)
class Decision:
    session: Session
    """The session after the turn: the agent stores it."""
    actions: tuple[Action, ...]
    intent: str
    dropped: tuple[Dropped, ...] = field(default=())


class Engine(Protocol):
    name: str

    def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision: ...


@runtime_checkable
class AsyncEngine(Protocol):
    name: str

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision: ...


def observe_turn(session: Session | None, turn: Turn, now: datetime) -> Session:
    """The session once this inbound turn is counted: the window reopens at the user's
    latest send time, and identities are refreshed (a user may switch to a username).

    Idempotent per turn: the same turn seen twice counts once.
    """
    first = min(m.sent_at for m in turn.messages)
    base = session or Session.new(turn.user_id, first_inbound_at=first)
    last = turn.last_sent_at
    if base.last_inbound_at is not None:
        last = max(last, base.last_inbound_at)  # a late, older turn must not shrink the window
    repeat = base.last_turn_id == turn.turn_id
    return base.updated(
        wa_id=turn.wa_id or base.wa_id,
        bsuid=turn.bsuid or base.bsuid,
        phone_number_id=turn.phone_number_id,
        first_inbound_at=base.first_inbound_at or first,
        last_inbound_at=last,
        turn_count=base.turn_count + (0 if repeat else 1),
        last_turn_id=turn.turn_id,
        updated_at=now,
    )


# --- policies -----------------------------------------------------------------


class PolicyResult(NamedTuple):
    actions: tuple[Action, ...]
    dropped: tuple[Dropped, ...]


def window_open(
    last_inbound_at: datetime | None,
    now: datetime,
    *,
    window: timedelta = SERVICE_WINDOW,
    margin: timedelta = timedelta(0),
) -> bool:
    """True while free-form messages may be sent. `margin` closes it early, so a reply
    decided at 23:59:50 and queued for a few seconds is not refused with 131047."""
    return last_inbound_at is not None and now < last_inbound_at + window - margin


def enforce_service_window(
    session: Session | None,
    actions: Sequence[Action],
    now: datetime,
    *,
    fallback_template: SendTemplate | None = None,
    window: timedelta = SERVICE_WINDOW,
    margin: timedelta = timedelta(0),
) -> PolicyResult:
    """Outside the 24-hour window keep only templates (and non-message actions).

    Free-form sends are dropped with reason `outside_service_window`; if none of the
    actions is a template and `fallback_template` is given, it takes the place of the
    first dropped send (once: five dropped texts become one template, not five).
    Inside the window, or with nothing to drop, the actions come back unchanged.
    """
    last = session.last_inbound_at if session is not None else None
    if window_open(last, now, window=window, margin=margin):
        return PolicyResult(tuple(actions), ())
    has_template = any(isinstance(a, SendTemplate) for a in actions)
    kept: list[Action] = []
    dropped: list[Dropped] = []
    for action in actions:
        if not isinstance(action, FREE_FORM_TYPES):
            kept.append(action)
            continue
        dropped.append(Dropped(action, OUTSIDE_WINDOW))
        if fallback_template is not None and not has_template:
            kept.append(fallback_template)
            has_template = True
    return PolicyResult(tuple(kept), tuple(dropped))


def enforce_opt_out(
    before: Session | None, after: Session, actions: Sequence[Action]
) -> PolicyResult:
    """No message to a user who had opted out and still has. The turn that opts out may
    confirm it (before was in, after is out); the turn that opts back in may answer."""
    if not (after.opted_out and before is not None and before.opted_out):
        return PolicyResult(tuple(actions), ())
    kept = tuple(a for a in actions if not isinstance(a, SEND_TYPES))
    dropped = tuple(Dropped(a, OPTED_OUT) for a in actions if isinstance(a, SEND_TYPES))
    return PolicyResult(kept, dropped)


def _in_handoff(session: Session | None) -> bool:
    return session is not None and session.handoff_active


def enforce_handoff(
    before: Session | None, after: Session, actions: Sequence[Action]
) -> PolicyResult:
    """Silence while a human has the conversation: a user whose handoff was open before
    this turn and still is gets no message, no read receipt and no second handoff
    request (each dropped with reason `handoff_active`); other actions (embedding the
    text) go on. The turn that opens a handoff may announce it; the turn after it
    ended (released, expired) is answered."""
    if not (_in_handoff(before) and after.handoff_active):
        return PolicyResult(tuple(actions), ())
    silenced: tuple[type, ...] = (*SEND_TYPES, MarkRead, RequestHandoff)
    kept = tuple(a for a in actions if not isinstance(a, silenced))
    dropped = tuple(Dropped(a, HANDOFF_ACTIVE) for a in actions if isinstance(a, silenced))
    return PolicyResult(kept, dropped)


def expire_handoff(session: Session | None, now: datetime, after: timedelta | None) -> Session | None:
    """The session the engine sees: a handoff open for `after` or longer has ended (the
    bot answers this turn). None or zero: handoffs never expire."""
    if not (session is not None and session.handoff_active and after):
        return session
    since = session.handoff_since
    if since is None or now - since < after:
        return session
    return session.updated(handoff_active=False, handoff_since=None, handoff_id=None)


def track_handoff(before: Session | None, decision: Decision, turn: Turn, now: datetime) -> Decision:
    """Keep the session's handoff fields true to the decision, whatever the engine:
    a `RequestHandoff` (or an engine that set `handoff_active` itself) opens a handoff
    with an id derived from this turn (a replay makes the same id) and `handoff_since`;
    a handoff that ended loses its id. Opening one that is already open changes nothing."""
    after = decision.session
    requested = any(isinstance(a, RequestHandoff) for a in decision.actions)
    if _in_handoff(before) and after.handoff_active:
        assert before is not None
        if after.handoff_id != before.handoff_id or after.handoff_since != before.handoff_since:
            after = after.updated(handoff_id=before.handoff_id, handoff_since=before.handoff_since)
    elif requested or after.handoff_active:
        after = after.updated(
            handoff_active=True,
            handoff_since=after.handoff_since or now,
            handoff_id=handoff_id_for(turn.user_id, turn.turn_id),
            consecutive_fallbacks=0,
        )
    elif after.handoff_id is not None or after.handoff_since is not None:
        after = after.updated(handoff_id=None, handoff_since=None)
    if after is decision.session:
        return decision
    return Decision(after, decision.actions, decision.intent, decision.dropped)


def apply_policies(
    before: Session | None,
    decision: Decision,
    now: datetime,
    *,
    fallback_template: SendTemplate | None = None,
    margin: timedelta = timedelta(0),
) -> Decision:
    opt = enforce_opt_out(before, decision.session, decision.actions)
    human = enforce_handoff(before, decision.session, opt.actions)
    win = enforce_service_window(
        decision.session, human.actions, now, fallback_template=fallback_template, margin=margin
    )
    dropped = decision.dropped + opt.dropped + human.dropped + win.dropped
    return Decision(decision.session, win.actions, decision.intent, dropped)


# --- adapters -------------------------------------------------------------------


class SyncEngineAdapter:
    """Lets a pure engine be awaited like an I/O one; adds nothing else."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        return self.engine.decide(session, turn, now)


class GuardedEngine:
    """Any engine, plus the duplicate-turn check and the policies above.

    A turn whose id is the session's `last_turn_id` was already decided (a redelivery, or
    a restart after the session was stored): it gets no actions. So the agent should
    route the actions *before* storing the session: a crash in between re-decides from
    the old session, and the sender drops the repeats by `outbound_id`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        fallback_template: SendTemplate | None = None,
        margin: timedelta = timedelta(0),
        handoff_expiry: timedelta | None = None,
    ) -> None:
        self.engine = engine
        self.name = engine.name
        self.fallback_template = fallback_template
        self.margin = margin
        self.handoff_expiry = handoff_expiry

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        if session is not None and session.last_turn_id == turn.turn_id:
            return Decision(session, (), DUPLICATE_TURN)
        seen = expire_handoff(session, now, self.handoff_expiry)
        decision = track_handoff(seen, await self.engine.decide(seen, turn, now), turn, now)
        return apply_policies(
            seen, decision, now, fallback_template=self.fallback_template, margin=self.margin
        )

    async def aclose(self) -> None:
        close = getattr(self.engine, "aclose", None)  # only I/O engines hold resources
        if close is not None:
            await close()


BUILTIN_ENGINES: Mapping[str, str] = {
    "playbook": "processors.playbook:create_engine",
    "echo": "processors.echo_engine:create_engine",
    "http": "processors.http_engine:create_engine",
}


def _resolve(spec: str) -> Callable[..., Any]:
    path = BUILTIN_ENGINES.get(spec, spec)
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"ENGINE={spec!r}: use one of {sorted(BUILTIN_ENGINES)} or 'package.module:factory'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"ENGINE={spec!r}: cannot import {path} ({exc})") from exc
    if not callable(factory):
        raise ConfigurationError(f"ENGINE={spec!r}: {path} is not callable")
    return factory  # type: ignore[no-any-return]


def _call_with_accepted(factory: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """Pass the factory only the options it names (all of them if it takes **kwargs), so
    `load_engine(settings.engine, **settings.model_dump())` works for every engine."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return factory(**options)
    names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return factory(**{k: v for k, v in options.items() if k in names})


def load_engine(spec: str, /, **options: Any) -> GuardedEngine:
    """The engine named by ENGINE (`playbook`, `echo`, `http` or `package.module:factory`),
    async and guarded. Options are settings-like keyword arguments; this function reads
    `service_window_template` (+ `_language`), `service_window_margin_s` and
    `handoff_expire_s`, the factory
    whichever of the rest it names (`playbook_path`, `engine_http_url`, ...)."""
    engine = _call_with_accepted(_resolve(spec), options)
    if not hasattr(engine, "decide"):
        raise ConfigurationError(f"ENGINE={spec!r}: the factory returned no engine")
    if not inspect.iscoroutinefunction(engine.decide):
        engine = SyncEngineAdapter(engine)
    template_name = options.get("service_window_template")
    template = (
        SendTemplate(
            name=template_name,
            language=options.get("service_window_template_language") or "pt_BR",
        )
        if template_name
        else None
    )
    margin = timedelta(seconds=float(options.get("service_window_margin_s") or 0))
    expiry = float(options.get("handoff_expire_s") or 0)
    return GuardedEngine(
        engine,
        fallback_template=template,
        margin=margin,
        handoff_expiry=timedelta(seconds=expiry) if expiry else None,
    )


def turn_decided(
    turn: Turn,
    decision: Decision,
    *,
    engine: str,
    decided_at: datetime,
    latency_ms: float | None = None,
) -> TurnDecided:
    """The sink's record of a decision; latency defaults to webhook-to-decision time."""
    if latency_ms is None:
        first_seen = min(m.received_at for m in turn.messages)
        latency_ms = (decided_at - first_seen).total_seconds() * 1000
    return TurnDecided(
        turn_id=turn.turn_id,
        user_id=turn.user_id,
        wa_id=turn.wa_id,
        bsuid=turn.bsuid,
        phone_number_id=turn.phone_number_id,
        message_ids=turn.message_ids,
        intent=decision.intent,
        actions=[action_to_dict(a) for a in decision.actions],
        dropped=[d.to_dict() for d in decision.dropped],
        session=decision.session,
        decided_at=decided_at,
        engine=engine,
        latency_ms=round(latency_ms, 3),
    )
