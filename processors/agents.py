"""All `@app.agent` wiring of the processing worker. Agents stay thin: they decode,
call a pure function, store state in tables and route events to topics. The chain:

    inbound (messages + debounce ticks)
      ──converse (per-user lanes: dedupe → debounce → engine)──▶ outbound.high / outbound.low,
                                                                 turns.decided, handoffs,
                                                                 embeddings
    outbound.high / outbound.low ──send (Graph API, per-user lanes)──▶ results, dead letters
    inbound ──media-pick──▶ media.requested ──media (Graph, MEDIA_DIR)──▶ media  (processors.media)

One hop from the webhook's record to the engine: dedupe, debounce and the engine share
the user's key and partition, so they run in one handler over one state record per
user (`processors.user_state`). Every table entry is O(1) per message and expires
(`processors.tables`). A handler that fails is retried, then dead-lettered
(`processors.lanes`); a rebalance cancels the lanes' unfinished work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
from pydantic import BaseModel

from processors import debounce, metrics
from processors.embeddings.requests import embedding_requests
from processors.engine import load_engine, turn_decided
from processors.faust_transport import mark_received
from processors.graph_client import GraphClient
from processors.handoff.lifecycle import turn_events as handoff_turn_events
from processors.in_order import InOrder
from processors.lanes import KeyedLanes, RetryPlan
from processors.media.agent import register_media
from processors.outbound import to_outbound
from processors.reengage.timer import install as install_reengage
from processors.sender import Sender, share_of_partitions
from processors.status_scan import StatusScan
from processors.tables import Sweeper, durable_set, header, raw_table, unwrap, wrap
from processors.ticker import Ticker, tick_time, tick_value
from processors.user_state import Origin, SeenEntry, UserState, intake, with_session
from schemas.codec import decode, encode
from schemas.control import Control, parse_control
from schemas.conversation import Turn
from schemas.events import MessageReceived
from schemas.outbound import OutboundMessage, SendResult
from schemas.processing import ProcessingDeadLetter
from schemas.topics import WORKER_TABLES, Topics
from zapstream.log import mask_phone
from zapstream.settings import Settings

log = logging.getLogger("zapstream.worker")
T = TypeVar("T")

ControlHandler = Callable[[str, UserState | None, Control, Origin], Awaitable[UserState | None]]
"""(user, state, control, origin) → the state to store, or None to store nothing. It
publishes its effects (and waits for the broker) before it returns; the converse agent
then stores the state with `applied` set to the control record's offset, so a replay
of the record after a crash changes nothing."""
MessageHook = Callable[[str, UserState, MessageReceived], Awaitable[UserState]]
"""(user, state with the message applied, message) → the state to store. Runs in the
user's lane for each new inbound message (not a duplicate, not a replay), before the
turn is decided; it publishes its effects before it returns."""

FLOW_CHECK_S = 0.1


def raw_topic(app: faust.App, *names: str) -> Any:
    """Keys and values as bytes: our own codec (schemas.codec) decodes them."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Worker:
    """What the agents share: settings, tables, output topics, the lanes of each agent
    (cancelled together at a rebalance) and the partitions this worker owns."""

    def __init__(
        self, app: faust.App, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.app = app
        self.settings = settings
        self.clock = clock
        """Epoch seconds for timers that ask for work (tests move it); never a decision's."""
        self.topics = Topics.from_settings(settings)
        n = settings.topic_partitions
        self.tables = {name: raw_table(app, name, n) for name in WORKER_TABLES}
        self.out = {
            name: raw_topic(app, getattr(self.topics, name))
            for name in (
                "inbound",
                "decisions",
                "outbound_high",
                "outbound_low",
                "send_results",
                "dead_letters",
                "handoffs",
                "embeddings",
                "processing_dead_letters",
                "reengagements",
            )
        }
        self.lanes: list[KeyedLanes] = []
        self.control_handlers: dict[str, ControlHandler] = {}
        """Control record kind → its handler (`schemas.control`), run in the user's lane."""
        self.message_hooks: list[MessageHook] = []
        self.ticker = Ticker()
        self._sender: Sender | None = None
        self.status_scan = StatusScan(settings, self.topics.statuses)
        """Meta's statuses of in-doubt sends, read from the statuses topic on demand."""
        self.retry = RetryPlan(
            max_attempts=settings.handler_max_attempts,
            max_elapsed_s=settings.handler_max_elapsed_s,
            base_s=settings.handler_backoff_base_s,
            cap_s=max(settings.handler_backoff_cap_s, settings.handler_backoff_base_s),
        )

    def sender(self) -> Sender:
        if self._sender is None:  # created inside the worker's event loop
            self._sender = Sender(GraphClient(self.settings), self.settings)
        return self._sender

    async def aclose(self) -> None:
        """The consumer has stopped: stop a status scan, close the Graph API's pool."""
        await self.status_scan.aclose()
        if self._sender is not None:
            await self._sender.client.aclose()

    def current(self, event: Any) -> bool:
        """False once a rebalance began (flow suspended) or ended the event's consumer
        generation: its partition is read again from the committed offset."""
        app = self.app
        return bool(
            app.flow_control.is_active()
            and event.message.generation_id == app.consumer_generation_id
        )

    def owned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def new_lanes(self, stage: str, max_in_flight: int) -> KeyedLanes:
        async def dead_letter(event: Any, exc: BaseException, attempts: int) -> None:
            letter = ProcessingDeadLetter.for_event(
                stage, event, exc, attempts=attempts, failed_at=utcnow()
            )
            await publish(self.out["processing_dead_letters"], letter.user_id or "", letter)

        lanes = KeyedLanes(
            _ack,
            max_in_flight,
            dead_letter=dead_letter,
            release=lambda event: cast(Any, self.app.consumer).release(event.message),
            current=self.current,
            retry=self.retry,
            name=stage,
        )
        self.lanes.append(lanes)
        return lanes


def register_agents(
    app: faust.App, settings: Settings, *, clock: Callable[[], float] = time.time
) -> Worker:
    worker = Worker(app, settings, clock=clock)
    install_reengage(worker, publish_all)
    _register_converse(worker)
    _register_senders(worker)
    _register_housekeeping(worker)
    register_media(worker, lane_agent)
    return worker


async def publish(topic: Any, key: str, event: BaseModel | bytes) -> None:
    """Send and wait for the broker's acknowledgement."""
    await publish_all([(topic, key, event)])


async def publish_all(items: list[tuple[Any, str, BaseModel | bytes]]) -> None:
    """Send every record at once, then wait for all the acknowledgements: one round
    trip to the broker instead of one per record."""
    pending = [
        await topic.send(key=key.encode(), value=value if isinstance(value, bytes) else encode(value))
        for topic, key, value in items
    ]
    await asyncio.gather(*pending)
    for topic, _, _ in items:
        metrics.published_to(topic)


def lane_agent(
    worker: Worker,
    source: Any,
    name: str,
    handle: Callable[[Any], Awaitable[None]],
    max_in_flight: int,
) -> None:
    """An agent that handles each event in its key's lane (`processors.lanes`): in
    order per user, concurrently across users, offsets acked as a contiguous prefix,
    failures retried then dead-lettered."""
    app = worker.app

    @app.agent(source, name=name)
    async def agent(stream: Any) -> None:
        lanes = worker.new_lanes(name, max_in_flight)
        in_order = InOrder(app)
        async for event in stream.noack().events():
            mark_received(event)
            if not await in_order.admit(event):
                continue
            key = event.key.decode() if event.key else ""
            await lanes.submit(key, event.message.tp, event, _bind(handle, event))


# --- converse: dedupe → debounce → engine, one user at a time -------------------------
def _register_converse(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    cfg = debounce.DebounceConfig(
        settings.debounce_quiet_ms, settings.debounce_max_ms, settings.debounce_max_messages
    )
    engine = load_engine(settings.engine, **settings.model_dump())
    users, seen = worker.tables["users"], worker.tables["seen"]
    out = worker.out
    ticker = worker.ticker

    async def handle(event: Any) -> None:
        user = event.key.decode() if event.key else ""
        message = event.message
        origin = Origin(message.partition, message.offset)
        stored = users.get(user)
        state = UserState.decode(unwrap(stored).payload) if stored is not None else None
        control = parse_control(event.value)
        if control is not None:
            await handle_control(user, state, control, origin)
            return
        tick_at = tick_time(event.value)
        record: MessageReceived | datetime
        entry: SeenEntry | None = None
        if tick_at is not None:
            record = tick_at
        else:
            record = decode(MessageReceived, event.value)  # InvalidPayload: dead letter
            known = seen.get(record.message_id)
            entry = SeenEntry.decode(unwrap(known).payload) if known is not None else None
        step = intake(state, record, origin, entry, cfg)
        if step.outcome == "duplicate":
            assert isinstance(record, MessageReceived)
            metrics.dedupe_dropped.inc()
            log.info(
                "duplicate message dropped",
                extra={"message_id": record.message_id, "wa_id": mask_phone(user)},
            )
            return
        if step.state is None:
            return  # replayed (already applied) or a tick with nothing due
        if step.seen is not None:
            assert isinstance(record, MessageReceived)
            seen[record.message_id] = wrap(
                step.seen.first_seen + settings.dedupe_horizon_s,
                origin.partition,
                step.seen.encode(),
            )
        new_state = step.state
        if isinstance(record, MessageReceived):
            for hook in worker.message_hooks:
                new_state = await hook(user, new_state, record)
        if step.turn is not None and step.now is not None:
            session = await decide(step.turn, new_state, step.now)
            new_state = with_session(new_state, session)
        store(user, new_state, origin)

    def store(user: str, new_state: UserState, origin: Origin) -> None:
        deadline = debounce.next_deadline(new_state.pending, cfg)
        due = deadline.timestamp() if deadline is not None else 0.0
        # Stored after the effects it records (publish_all waited for the broker): a
        # crash in between applies the record again, with the same ids.
        users[user] = wrap(
            new_state.touched_at + settings.session_ttl_s,
            origin.partition,
            new_state.encode(),
            due,
        )
        if due:
            ticker.schedule(user, due)
        else:
            ticker.forget(user)

    async def handle_control(
        user: str, state: UserState | None, control: Control, origin: Origin
    ) -> None:
        if state is not None and state.already_applied(origin):
            return  # replayed after a crash: its effects are already stored
        handler = worker.control_handlers.get(control.kind)
        if handler is None:
            log.warning("unknown control record skipped", extra={"kind": control.kind})
            return
        new_state = await handler(user, state, control, origin)
        if new_state is not None:
            store(user, new_state.model_copy(update={"applied": tuple(origin)}), origin)

    def embedding_items(turn: Turn) -> list[tuple[Any, str, BaseModel | bytes]]:
        """One embedding request per text message of the turn, whatever the engine
        decided (also while a human has the conversation). Any path that closes a
        turn publishes these with its other effects."""
        if not settings.embedding_workers:
            return []  # embeddings off
        return [(out["embeddings"], turn.user_id, r) for r in embedding_requests(turn)]

    async def decide(turn: Turn, state: UserState, now: datetime) -> Any:
        started = time.perf_counter()
        decision = await engine.decide(state.session, turn, now)
        metrics.turn(len(turn.messages), time.perf_counter() - started)
        outbound = to_outbound(turn, list(decision.actions), now=now)
        items: list[tuple[Any, str, BaseModel | bytes]] = [
            (out["outbound_high"] if m.priority == "high" else out["outbound_low"], turn.user_id, m)
            for m in outbound
        ]
        handoffs = handoff_turn_events(state.session, decision.session, turn, decision.actions, now)
        items += [(out["handoffs"], turn.user_id, e) for e in handoffs]
        items += embedding_items(turn)  # the engine's EmbedText actions: these supersede them
        decided = turn_decided(turn, decision, engine=settings.engine, decided_at=utcnow())
        items.append((out["decisions"], turn.user_id, decided))
        await publish_all(items)
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
        return decision.session

    lane_agent(worker, raw_topic(app, worker.topics.inbound), "converse", handle, settings.max_in_flight)

    @app.timer(0.05)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        if not ticker.due:
            return
        for user in ticker.take_due(time.time()):
            await out["inbound"].send(key=user.encode(), value=tick_value(time.time()))


def _bind(fn: Callable[[T], Awaitable[None]], arg: T) -> Callable[[], Awaitable[None]]:
    return lambda: fn(arg)


async def _ack(event: Any) -> None:
    event.ack()


# --- send: Graph API, once per outbound id ------------------------------------------------
# `sent[outbound_id]` = "<state> <wamid>": "sending" is written durably (awaited)
# *before* the Graph call, "done" after it. A crash in between leaves "sending": on
# replay the message is in doubt, and the sender waits for Meta's status webhook, which
# echoes our outbound id (`biz_opaque_callback_data`), looking for it on the statuses
# topic from the time of the "sending" entry (`processors.status_scan`), before
# deciding to send again. Only a message Meta accepted but never reported within
# SEND_CONFIRM_WAIT_S can still go out twice. Mark-as-read needs no ledger: repeating
# it is harmless.
def _register_senders(worker: Worker) -> None:
    app, settings, out = worker.app, worker.settings, worker.out
    sent = worker.tables["sent"]
    ttl = settings.send_ledger_ttl_s
    sender = worker.sender
    statuses = worker.status_scan

    def ledger(oid: str) -> tuple[str, str | None, float] | None:
        """(state, wamid, when the entry was written) of the outbound id, if any."""
        value = sent.get(oid)
        if value is None:
            return None
        entry = unwrap(value)
        state, _, wamid = entry.payload.decode().partition(" ")
        return state, wamid or None, entry.expires_at - ttl

    def record(oid: str, partition: int, state: str, wamid: str | None) -> bytes:
        return wrap(time.time() + ttl, partition, f"{state} {wamid or ''}".encode())

    def skipped(msg: OutboundMessage, wamid: str | None, reason: str | None = None) -> SendResult:
        metrics.sends.inc("skipped_duplicate")
        return SendResult(
            outbound_id=msg.outbound_id,
            user_id=msg.user_id,
            turn_id=msg.turn_id,
            wamid=wamid,
            outcome="skipped_duplicate",
            attempts=0,
            error_reason=reason,
            sent_at=utcnow(),
        )

    async def handle(event: Any) -> None:
        msg = decode(OutboundMessage, event.value)  # InvalidPayload: dead letter
        oid, partition = msg.outbound_id, event.message.partition
        if msg.kind == "mark_read":
            delivery = await sender().deliver(msg)
            await publish(out["send_results"], msg.user_id, delivery.result)
            return
        entry = ledger(oid)
        if entry is not None and entry[0] == "done":
            await publish(out["send_results"], msg.user_id, skipped(msg, entry[1]))
            return
        if entry is not None:  # in doubt: did Meta take it before the crash?
            wamid = await statuses.find(oid, entry[2], settings.send_confirm_wait_s)
            if wamid is not None:
                sent[oid] = record(oid, partition, "done", wamid)
                reason = "confirmed by a status webhook after a restart"
                await publish(out["send_results"], msg.user_id, skipped(msg, wamid, reason))
                return
            log.warning("in-doubt send not confirmed; sending again", extra={"outbound_id": oid})
        await durable_set(sent, oid, record(oid, partition, "sending", None))
        delivery = await sender().deliver(msg)
        sent[oid] = record(oid, partition, "done", delivery.result.wamid)
        items: list[tuple[Any, str, BaseModel | bytes]] = [
            (out["send_results"], msg.user_id, delivery.result)
        ]
        if delivery.dead_letter is not None:
            items.append((out["dead_letters"], msg.user_id, delivery.dead_letter))
            log.warning(
                "dead letter",
                extra={"outbound_id": oid, "reason": delivery.dead_letter.reason},
            )
        await publish_all(items)

    for name, topic in (("send-high", worker.topics.outbound_high), ("send-low", worker.topics.outbound_low)):
        lane_agent(worker, raw_topic(app, topic), name, handle, settings.send_concurrency)


# --- housekeeping: rebalances, the rate share, expiry ---------------------------------
def _register_housekeeping(worker: Worker) -> None:
    app, settings, ticker = worker.app, worker.settings, worker.ticker
    users = worker.tables["users"]
    flow = {"active": True}

    @app.timer(FLOW_CHECK_S)  # type: ignore[untyped-decorator]
    async def watch_flow() -> None:
        """A rebalance suspends the flow, then waits for the events in flight before it
        revokes the partitions: stop the lanes' unfinished work at once (a send could
        otherwise retry for minutes and hold the rebalance) and forget the tick
        schedule. The released events are read again from the committed offset by
        whichever worker owns their partition after the rebalance."""
        active = app.flow_control.is_active()
        if not active and flow["active"]:
            cancelled = sum(lanes.cancel_all() for lanes in worker.lanes)
            ticker.clear()
            if cancelled:
                log.info("rebalance: %d unfinished events released for re-reading", cancelled)
        flow["active"] = active

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(sender: Any = None, **kwargs: Any) -> None:
        """The tables of the partitions this worker now owns are recovered: rebuild the
        tick schedule from their users' entries, and take this worker's share of the
        group-wide rate limit."""
        owned = worker.owned(worker.topics.inbound)
        ticker.clear()
        adopted = 0
        for user, value in list(users.data.items()):
            _, partition, due = header(value)
            if due and partition in owned:
                ticker.adopt(user, due)
                adopted += 1
        owned_out = len(worker.owned(worker.topics.outbound_high))
        share = share_of_partitions(owned_out, settings.topic_partitions)
        worker.sender().set_share(share)
        log.info(
            "partitions assigned: %d inbound, %d outbound; %d open bursts; send rate share %.2f",
            len(owned),
            owned_out,
            adopted,
            share,
        )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_clients(sender: Any = None, **kwargs: Any) -> None:
        await worker.aclose()

    sweepers = [
        Sweeper(worker.tables[name], lambda topic=topic: worker.owned(topic))  # type: ignore[misc]
        for name, topic in (
            ("users", worker.topics.inbound),
            ("seen", worker.topics.inbound),
            ("sent", worker.topics.outbound_high),
        )
    ]

    @app.timer(settings.state_sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        if not app.flow_control.is_active():
            return
        now = time.time()
        for sweeper in sweepers:
            await sweeper.sweep(now)
