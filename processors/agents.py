"""All `@app.agent` wiring of the processing worker. Agents stay thin: they decode,
call a pure function, store state in tables keyed like their topic (the user) and
route events to topics. The chain:

    inbound + debounce ticks ──intake (dedupe, debounce)──▶ turns
    turns ──converse (engine, per-user lanes)──▶ outbound.high / outbound.low,
                                                 turns.decided, handoffs, embeddings
    outbound.high / outbound.low ──send (Graph API, per-user lanes)──▶ results, dead letters
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust

from processors import debounce, dedupe
from processors.actions import EmbedText, RequestHandoff
from processors.engine import load_engine, turn_decided
from processors.graph_client import GraphClient
from processors.lanes import KeyedLanes
from processors.outbound import to_outbound
from processors.sender import Sender
from processors.ticker import Ticker
from schemas.codec import decode, encode
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived
from schemas.outbound import OutboundMessage, SendResult
from schemas.topics import Topics
from zapstream.errors import InvalidPayload
from zapstream.log import mask_phone
from zapstream.settings import Settings

log = logging.getLogger("zapstream.worker")
T = TypeVar("T")


def raw_topic(app: faust.App, *names: str) -> Any:
    """Keys and values as bytes: our own codec (schemas.codec) decodes them."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def utcnow() -> datetime:
    return datetime.now(UTC)


def register_agents(app: faust.App, settings: Settings) -> None:
    topics = Topics.from_settings(settings)
    n = settings.topic_partitions
    tables = {
        name: app.Table(name, default=None, partitions=n, key_type=str)
        for name in ("seen", "pending", "sessions", "sent")
    }
    out = {name: raw_topic(app, getattr(topics, name)) for name in (
        "debounce_ticks", "turns", "decisions", "outbound_high", "outbound_low",
        "send_results", "dead_letters", "handoffs", "embeddings")}
    _register_intake(app, settings, topics, tables, out)
    _register_converse(app, settings, topics, tables, out)
    _register_senders(app, settings, topics, tables, out)


async def _send(topic: Any, key: str, event: Any) -> None:
    await topic.send(key=key.encode(), value=encode(event))


# --- intake: dedupe + debounce ------------------------------------------------------
def _register_intake(app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]) -> None:
    cfg = debounce.DebounceConfig(settings.debounce_quiet_ms, settings.debounce_max_ms, settings.debounce_max_messages)
    dcfg = dedupe.DedupeConfig(settings.dedupe_horizon_s, settings.dedupe_max_per_user)
    seen, pending = tables["seen"], tables["pending"]
    ticker = Ticker()
    source = raw_topic(app, topics.inbound, topics.debounce_ticks)

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

    @app.agent(source, name="intake")
    async def intake(stream: Any) -> None:
        async for event in stream.events():
            user = event.key.decode() if event.key else ""
            if event.message.topic == topics.debounce_ticks:
                step = debounce.on_tick(load_pending(user), utcnow(), cfg)
            else:
                try:
                    msg = decode(MessageReceived, event.value)
                except InvalidPayload as exc:
                    log.error("undecodable inbound event skipped (kept by the sink): %s", exc.reason)
                    continue
                seen_step = dedupe.check(seen.get(user), msg.message_id, msg.received_at, dcfg)
                seen[user] = dict(seen_step.state)
                if seen_step.duplicate:
                    log.info("duplicate message dropped", extra={"message_id": msg.message_id, "wa_id": mask_phone(user)})
                    continue
                step = debounce.on_message(load_pending(user), msg, msg.received_at, cfg)
            store(user, step)
            if step.turn is not None:
                await _send(out["turns"], user, step.turn)

    @app.timer(0.05)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for user in ticker.take_due(time.time()):
            await out["debounce_ticks"].send(key=user.encode(), value=b"{}")

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def adopt_pending() -> None:
        # After a restart or rebalance the schedule is empty: rebuild it from the table.
        for user, doc in list(pending.items()):
            if doc and user not in ticker.due:
                deadline = debounce.next_deadline(debounce.Pending.model_validate(doc), cfg)
                ticker.adopt(user, deadline.timestamp() if deadline else time.time())


# --- converse: the engine, one turn at a time per user ----------------------------------
def _register_converse(app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]) -> None:
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
            await _send(out["outbound_high"] if msg.priority == "high" else out["outbound_low"], turn.user_id, msg)
        for action in decision.actions:
            if isinstance(action, RequestHandoff | EmbedText):
                name = "handoffs" if isinstance(action, RequestHandoff) else "embeddings"
                await out[name].send(key=turn.user_id.encode(), value=_action_event(turn, action))
        decided = turn_decided(turn, decision, engine=settings.engine, decided_at=utcnow())
        await _send(out["decisions"], turn.user_id, decided)
        sessions[turn.user_id] = decision.session.model_dump(mode="json")
        log.info("turn", extra={
            "event": "turn", "wa_id": mask_phone(turn.user_id), "message_id": turn.messages[-1].message_id,
            "turn_id": turn.turn_id, "messages": len(turn.messages), "intent": decision.intent,
            "actions": [type(a).__name__ for a in decision.actions],
            "latency_ms": decided.latency_ms, "engine_ms": round((time.perf_counter() - started) * 1000, 2),
        })

    @app.agent(source, name="converse")
    async def converse(stream: Any) -> None:
        lanes = KeyedLanes(_ack, settings.max_in_flight)
        async for event in stream.noack().events():
            try:
                turn = decode(Turn, event.value)
            except InvalidPayload as exc:
                log.error("undecodable turn skipped: %s", exc.reason)
                event.ack()
                continue
            await lanes.submit(turn.user_id, event.message.tp, event, _bind(handle, turn))


def _bind(fn: Callable[[T], Awaitable[None]], arg: T) -> Callable[[], Awaitable[None]]:
    return lambda: fn(arg)


async def _ack(event: Any) -> None:
    event.ack()


def _action_event(turn: Turn, action: RequestHandoff | EmbedText) -> bytes:
    doc = {"schema_version": 1, "turn_id": turn.turn_id, "user_id": turn.user_id,
           "phone_number_id": turn.phone_number_id, "at": utcnow().isoformat(), **action.model_dump(mode="json")}
    return json.dumps(doc, ensure_ascii=False).encode()


# --- send: Graph API, once per outbound id ------------------------------------------------
def _register_senders(app: faust.App, settings: Settings, topics: Topics, tables: dict[str, Any], out: dict[str, Any]) -> None:
    sent = tables["sent"]
    horizon = timedelta(seconds=settings.dedupe_horizon_s)
    holder: dict[str, Sender] = {}

    def sender() -> Sender:
        if "s" not in holder:  # created inside the worker's event loop
            holder["s"] = Sender(GraphClient(settings), settings)
        return holder["s"]

    async def handle(msg: OutboundMessage) -> None:
        record: dict[str, Any] = dict(sent.get(msg.user_id) or {})
        if msg.outbound_id in record:
            await _send(out["send_results"], msg.user_id, SendResult(
                outbound_id=msg.outbound_id, user_id=msg.user_id, turn_id=msg.turn_id,
                wamid=record[msg.outbound_id][0], outcome="skipped_duplicate", attempts=0, sent_at=utcnow()))
            return
        delivery = await sender().deliver(msg)
        now = utcnow()
        record = dict(sent.get(msg.user_id) or {})
        record[msg.outbound_id] = [delivery.result.wamid, now.timestamp()]
        sent[msg.user_id] = _prune_sent(record, now, horizon)
        await _send(out["send_results"], msg.user_id, delivery.result)
        if delivery.dead_letter is not None:
            await _send(out["dead_letters"], msg.user_id, delivery.dead_letter)
            log.warning("dead letter", extra={"outbound_id": msg.outbound_id, "reason": delivery.dead_letter.reason})

    def make_agent(topic_name: str, name: str) -> None:
        @app.agent(raw_topic(app, topic_name), name=name)
        async def send(stream: Any) -> None:
            lanes = KeyedLanes(_ack, settings.send_concurrency)
            async for event in stream.noack().events():
                try:
                    msg = decode(OutboundMessage, event.value)
                except InvalidPayload as exc:
                    log.error("undecodable outbound event skipped: %s", exc.reason)
                    event.ack()
                    continue
                await lanes.submit(msg.user_id, event.message.tp, event, _bind(handle, msg))

    make_agent(topics.outbound_high, "send-high")
    make_agent(topics.outbound_low, "send-low")


def _prune_sent(record: dict[str, Any], now: datetime, horizon: timedelta, cap: int = 2000) -> dict[str, Any]:
    """Keep the idempotency record bounded: drop ids older than the horizon, then the oldest."""
    cutoff = (now - horizon).timestamp()
    kept = {k: v for k, v in record.items() if v[1] >= cutoff}
    if len(kept) > cap:
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1][1])[-cap:])
    return kept
