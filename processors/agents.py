"""All `@app.agent` wiring of the processing worker. Agents stay thin: they decode,
call a pure function, store state in tables keyed like their topic (the user) and
route events to topics. The chain:

    inbound (messages + debounce ticks) ──intake (dedupe, debounce)──▶ turns
    turns ──converse (engine, per-user lanes)──▶ outbound.high / outbound.low,
                                                 turns.decided, handoffs, embeddings
    outbound.high / outbound.low ──send (Graph API, per-user lanes)──▶ results, dead letters
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust
from pydantic import BaseModel

from processors import debounce, dedupe
from processors.actions import EmbedText, RequestHandoff
from processors.engine import load_engine, turn_decided
from processors.faust_transport import mark_received
from processors.graph_client import GraphClient
from processors.in_order import InOrder
from processors.lanes import KeyedLanes
from processors.outbound import to_outbound
from processors.sender import Sender
from processors.tables import durable_set
from processors.ticker import Ticker, tick_time, tick_value
from processors.topology import WORKER_TABLES
from schemas.codec import decode, encode
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived, StatusReceived
from schemas.outbound import OutboundMessage, SendResult
from schemas.topics import Topics
from zapstream.errors import InvalidPayload
from zapstream.log import mask_phone
from zapstream.settings import Settings

log = logging.getLogger("zapstream.worker")
T = TypeVar("T")
E = TypeVar("E", bound=BaseModel)


def raw_topic(app: faust.App, *names: str) -> Any:
    """Keys and values as bytes: our own codec (schemas.codec) decodes them."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def utcnow() -> datetime:
    return datetime.now(UTC)


def register_agents(app: faust.App, settings: Settings) -> None:
    topics = Topics.from_settings(settings)
    n = settings.topic_partitions
    tables = {
        name: app.Table(name, default=None, partitions=n, key_type=str) for name in WORKER_TABLES
    }
    out = {
        name: raw_topic(app, getattr(topics, name))
        for name in (
            "inbound",
            "turns",
            "decisions",
            "outbound_high",
            "outbound_low",
            "send_results",
            "dead_letters",
            "handoffs",
            "embeddings",
        )
    }
    _register_intake(app, settings, topics, tables, out)
    _register_converse(app, settings, topics, tables, out)
    _register_senders(app, settings, topics, tables, out)


async def _send(topic: Any, key: str, event: Any) -> None:
    """Send and wait for the broker's acknowledgement. State that records "done" (a
    table write) is written only after the effect it records is stored: a crash in
    between then repeats the effect (idempotent downstream) instead of losing it."""
    delivered = await topic.send(key=key.encode(), value=encode(event))
    await delivered


# --- intake: dedupe + debounce ------------------------------------------------------
def _register_intake(
    app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]
) -> None:
    cfg = debounce.DebounceConfig(
        settings.debounce_quiet_ms, settings.debounce_max_ms, settings.debounce_max_messages
    )
    dcfg = dedupe.DedupeConfig(settings.dedupe_horizon_s, settings.dedupe_max_per_user)
    seen, pending = tables["seen"], tables["pending"]
    ticker = Ticker()
    source = raw_topic(app, topics.inbound)

    def load_pending(user: str) -> debounce.Pending | None:
        doc = pending.get(user)
        return debounce.Pending.model_validate(doc) if doc else None

    def store(user: str, step: debounce.Step) -> None:
        if step.pending is None:
            if pending.get(user) is not None:
                del pending[user]
            ticker.forget(user)
        else:
            pending[user] = step.pending.model_dump(mode="json")
            deadline = debounce.next_deadline(step.pending, cfg)
            if deadline is not None:
                ticker.schedule(user, deadline.timestamp())

    async def handle(event: Any) -> None:
        user = event.key.decode() if event.key else ""
        tick_at = tick_time(event.value)
        if tick_at is not None:
            step = debounce.on_tick(load_pending(user), tick_at, cfg)
        else:
            try:
                msg = decode(MessageReceived, event.value)
            except InvalidPayload as exc:
                log.error("undecodable inbound event skipped (kept by the sink): %s", exc.reason)
                return
            origin = f"{event.message.partition}:{event.message.offset}"
            seen_step = dedupe.check(seen.get(user), msg.message_id, msg.received_at, dcfg, origin)
            seen[user] = dict(seen_step.state)
            if seen_step.duplicate:
                log.info(
                    "duplicate message dropped",
                    extra={"message_id": msg.message_id, "wa_id": mask_phone(user)},
                )
                return
            step = debounce.on_message(load_pending(user), msg, msg.received_at, cfg)
        if step.turn is not None:
            await _send(out["turns"], user, step.turn)  # before the buffer is cleared
        store(user, step)

    @app.agent(source, name="intake")
    async def intake(stream: Any) -> None:
        # One lane per user (processors.lanes): a user's messages and ticks in order,
        # other users' meanwhile, so waiting for a turn's acknowledgement does not
        # serialize the whole partition.
        lanes = KeyedLanes(_ack, settings.max_in_flight)
        in_order = InOrder(app)
        async for event in stream.noack().events():
            mark_received(event)
            if not await in_order.admit(event):
                continue
            user = event.key.decode() if event.key else ""
            await lanes.submit(user, event.message.tp, event, _bind(handle, event))

    @app.timer(0.05)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for user in ticker.take_due(time.time()):
            await out["inbound"].send(key=user.encode(), value=tick_value(time.time()))

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def adopt_pending() -> None:
        # After a restart or rebalance the schedule is empty: rebuild it from the table.
        for user, doc in list(pending.items()):
            if doc and user not in ticker.due:
                deadline = debounce.next_deadline(debounce.Pending.model_validate(doc), cfg)
                ticker.adopt(user, deadline.timestamp() if deadline else time.time())


# --- converse: the engine, one turn at a time per user ----------------------------------
def _register_converse(
    app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]
) -> None:
    engine = load_engine(settings.engine, **settings.model_dump())
    sessions = tables["sessions"]
    source = raw_topic(app, topics.turns)

    async def handle(turn: Turn) -> None:
        started = time.perf_counter()
        doc = sessions.get(turn.user_id)
        session = Session.model_validate(doc) if doc else None
        now = utcnow()
        decision = await engine.decide(session, turn, now)
        # Send before storing the session: after a crash in between, the turn is decided
        # again and the sender drops the repeated outbound ids.
        outbound = to_outbound(turn, list(decision.actions), now=now)
        for msg in outbound:
            await _send(
                out["outbound_high"] if msg.priority == "high" else out["outbound_low"],
                turn.user_id,
                msg,
            )
        for action in decision.actions:
            if isinstance(action, RequestHandoff | EmbedText):
                name = "handoffs" if isinstance(action, RequestHandoff) else "embeddings"
                await out[name].send(key=turn.user_id.encode(), value=_action_event(turn, action))
        decided = turn_decided(turn, decision, engine=settings.engine, decided_at=utcnow())
        await _send(out["decisions"], turn.user_id, decided)
        sessions[turn.user_id] = decision.session.model_dump(mode="json")
        log.info(
            "turn",
            extra={
                "event": "turn",
                "wa_id": mask_phone(turn.user_id),
                "message_id": turn.messages[-1].message_id,
                "turn_id": turn.turn_id,
                "messages": len(turn.messages),
                "intent": decision.intent,
                "actions": [type(a).__name__ for a in decision.actions],
                "latency_ms": decided.latency_ms,
                "engine_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    lane_agent(app, source, "converse", Turn, handle, settings.max_in_flight)


def lane_agent(
    app: faust.App,
    source: Any,
    name: str,
    event_type: type[E],
    handle: Callable[[E], Awaitable[None]],
    max_in_flight: int,
) -> None:
    """An agent that handles each event in its user's lane (`processors.lanes`): in
    order per user, concurrently across users, offsets acked as a contiguous prefix."""

    @app.agent(source, name=name)
    async def agent(stream: Any) -> None:
        lanes = KeyedLanes(_ack, max_in_flight)
        in_order = InOrder(app)
        async for event in stream.noack().events():
            mark_received(event)
            if not await in_order.admit(event):
                continue
            try:
                decoded = decode(event_type, event.value)
            except InvalidPayload as exc:
                log.error("undecodable %s skipped: %s", event_type.__name__, exc.reason)
                event.ack()
                continue
            await lanes.submit(decoded.user_id, event.message.tp, event, _bind(handle, decoded))  # type: ignore[attr-defined]


def _bind(fn: Callable[[T], Awaitable[None]], arg: T) -> Callable[[], Awaitable[None]]:
    return lambda: fn(arg)


async def _ack(event: Any) -> None:
    event.ack()


def _action_event(turn: Turn, action: RequestHandoff | EmbedText) -> bytes:
    doc = {
        "schema_version": 1,
        "turn_id": turn.turn_id,
        "user_id": turn.user_id,
        "phone_number_id": turn.phone_number_id,
        "at": utcnow().isoformat(),
        **action.model_dump(mode="json"),
    }
    return json.dumps(doc, ensure_ascii=False).encode()


# --- send: Graph API, once per outbound id ------------------------------------------------
# `sent[user][outbound_id]` = [wamid, epoch, state]: "sending" is written durably (awaited)
# *before* the Graph call, "done" after it. A crash in between leaves "sending": on
# replay the message is in doubt, and the sender waits for Meta's status webhook, which
# echoes our outbound id (`biz_opaque_callback_data`, see the `confirm` agent), before
# deciding to send again. Only a message Meta accepted but never reported within
# SEND_CONFIRM_WAIT_S can still go out twice.
def _register_senders(
    app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]
) -> None:
    sent, confirmed = tables["sent"], tables["confirmed"]
    horizon = timedelta(seconds=settings.dedupe_horizon_s)
    holder: dict[str, Sender] = {}

    def sender() -> Sender:
        if "s" not in holder:  # created inside the worker's event loop
            holder["s"] = Sender(GraphClient(settings), settings)
        return holder["s"]

    async def wait_confirmed(msg: OutboundMessage) -> str | None:
        deadline = time.monotonic() + settings.send_confirm_wait_s
        while True:
            entry = (confirmed.get(msg.user_id) or {}).get(msg.outbound_id)
            if entry is not None or time.monotonic() >= deadline:
                return str(entry[0]) if entry is not None else None
            await asyncio.sleep(0.1)

    async def skipped(msg: OutboundMessage, wamid: str | None, reason: str | None = None) -> None:
        await _send(
            out["send_results"],
            msg.user_id,
            SendResult(
                outbound_id=msg.outbound_id,
                user_id=msg.user_id,
                turn_id=msg.turn_id,
                wamid=wamid,
                outcome="skipped_duplicate",
                attempts=0,
                error_reason=reason,
                sent_at=utcnow(),
            ),
        )

    def record(msg: OutboundMessage, wamid: str | None, state: str) -> dict[str, Any]:
        rec = dict(sent.get(msg.user_id) or {})
        rec[msg.outbound_id] = [wamid, utcnow().timestamp(), state]
        return _prune_sent(rec, utcnow(), horizon)

    async def handle(msg: OutboundMessage) -> None:
        entry = (sent.get(msg.user_id) or {}).get(msg.outbound_id)
        if entry is not None and _state(entry) == "done":
            await skipped(msg, entry[0])
            return
        if entry is not None and msg.kind != "mark_read":
            wamid = await wait_confirmed(msg)  # in doubt: did Meta take it before the crash?
            if wamid is not None:
                sent[msg.user_id] = record(msg, wamid, "done")
                await skipped(msg, wamid, "confirmed by a status webhook after a restart")
                return
            log.warning(
                "in-doubt send not confirmed; sending again", extra={"outbound_id": msg.outbound_id}
            )
        await durable_set(sent, msg.user_id, record(msg, None, "sending"))
        delivery = await sender().deliver(msg)
        sent[msg.user_id] = record(msg, delivery.result.wamid, "done")
        await _send(out["send_results"], msg.user_id, delivery.result)
        if delivery.dead_letter is not None:
            await _send(out["dead_letters"], msg.user_id, delivery.dead_letter)
            log.warning(
                "dead letter",
                extra={"outbound_id": msg.outbound_id, "reason": delivery.dead_letter.reason},
            )

    lane_agent(
        app,
        raw_topic(app, topics.outbound_high),
        "send-high",
        OutboundMessage,
        handle,
        settings.send_concurrency,
    )
    lane_agent(
        app,
        raw_topic(app, topics.outbound_low),
        "send-low",
        OutboundMessage,
        handle,
        settings.send_concurrency,
    )

    @app.agent(raw_topic(app, topics.statuses), name="confirm")
    async def confirm(stream: Any) -> None:
        """Remember which outbound ids Meta reported (statuses echo our outbound id)."""
        async for event in stream.events():
            mark_received(event)
            try:
                status = decode(StatusReceived, event.value)
            except InvalidPayload:
                continue  # the sink keeps it in rejected_events
            oid = status.biz_opaque_callback_data
            if not oid or not oid.startswith("out_"):
                continue
            rec = dict(confirmed.get(status.user_id) or {})
            if oid not in rec:
                rec[oid] = [status.wamid, utcnow().timestamp()]
                confirmed[status.user_id] = _prune_sent(rec, utcnow(), horizon)


def _state(entry: list[Any]) -> str:
    return str(entry[2]) if len(entry) > 2 else "done"


def _prune_sent(
    record: dict[str, Any], now: datetime, horizon: timedelta, cap: int = 2000
) -> dict[str, Any]:
    """Keep the idempotency record bounded: drop ids older than the horizon, then the oldest."""
    cutoff = (now - horizon).timestamp()
    kept = {k: v for k, v in record.items() if v[1] >= cutoff}
    if len(kept) > cap:
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1][1])[-cap:])
    return kept
