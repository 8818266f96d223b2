"""Worker wiring of the handoff: commands in the user's lane, the notifier, renotify.

Commands (`POST /handoffs`, `POST /handoffs/{user}/release`) arrive as control records
on the inbound topic (`schemas.control`) and run in the converse agent's lane for the
user, behind the offset fence: the session changes and the lifecycle event is
published once per record, a replay after a crash changes nothing.

The notifier is a lane agent (`notify`) on the handoffs topic. Per `opened` event it
posts one notification to the helpdesk (`processors.handoff.notify` for the ledger
that makes a redelivered event post nothing); a helpdesk that keeps failing ends in a
`notify_failed` event and a processing dead letter (stage `notify`) with the reason.

Renotify: tables may change only while an event of their partition is handled, so a
timer only *asks*: it scans the ledger's headers (one entry per handoff of the last
HANDOFF_EXPIRE_S, `due` set only while a renotification is pending) and publishes a
`handoff_renotify` control record keyed by the user onto the handoffs topic; the
notifier handles it in the user's lane like any event and renotifies at most once.
State: one ledger entry per handoff (~1 KB: the opened event; kept without a helpdesk
too, state `open`, so `zapstream_handoffs_open` counts every open handoff), removed by
the sweeper after `notify.ledger_ttl_s`; `asked` in memory holds only handoffs due
right now.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from processors import metrics
from processors.agents import ControlHandler, Worker, lane_agent, publish, publish_all, raw_topic
from processors.handoff import lifecycle
from processors.handoff.client import HelpdeskClient
from processors.handoff.notify import (
    Kind,
    LedgerEntry,
    LedgerState,
    headers,
    is_open,
    ledger_ttl_s,
    notification_body,
    renotify_due,
    should_post,
)
from processors.tables import Sweeper, durable_set, header, unwrap, wrap
from processors.user_state import Origin, UserState
from schemas.codec import decode
from schemas.control import Control, control_value, parse_control
from schemas.handoff import HandoffEvent, event_id_for
from schemas.processing import ProcessingDeadLetter
from zapstream.errors import HelpdeskError
from zapstream.log import mask_phone

log = logging.getLogger("zapstream.handoff")

OPEN = "handoff_open"
RELEASE = "handoff_release"
RENOTIFY = "handoff_renotify"
LEDGER = "notified"
RENOTIFY_CHECK_S = 1.0
OPEN_GAUGE_S = 5.0
REASK_AFTER_S = 60.0
"""A renotify request not handled within this long (a rebalance dropped it) is asked again."""


def register_handoff(worker: Worker) -> None:
    worker.control_handlers[OPEN] = _open_handler(worker)
    worker.control_handlers[RELEASE] = _release_handler(worker)
    _register_notifier(worker)


def _when(control: Control) -> datetime:
    return datetime.fromtimestamp(control.at, UTC)


def _with_session(state: UserState | None, session: Any, at: float) -> UserState:
    base = state or UserState()
    return base.model_copy(update={"session": session, "touched_at": max(base.touched_at, at)})


def _open_handler(worker: Worker) -> ControlHandler:
    async def handle(
        user: str, state: UserState | None, control: Control, origin: Origin
    ) -> UserState | None:
        reason = str(control.fields.get("reason") or "agent")[:500]
        opened = lifecycle.open_by_agent(
            state.session if state else None,
            user,
            opened_by=f"control:{origin}",
            at=_when(control),
            reason=reason,
        )
        if opened is None:
            log.info("handoff already open", extra={"wa_id": mask_phone(user)})
            return None
        session, event = opened
        await publish(worker.out["handoffs"], user, event)
        log.info(
            "handoff opened by an agent",
            extra={"wa_id": mask_phone(user), "handoff_id": event.handoff_id},
        )
        return _with_session(state, session, control.at)

    return handle


def _release_handler(worker: Worker) -> ControlHandler:
    async def handle(
        user: str, state: UserState | None, control: Control, origin: Origin
    ) -> UserState | None:
        released = lifecycle.release(
            state.session if state else None,
            at=_when(control),
            by=str(control.fields.get("by") or "agent")[:200],
        )
        if released is None:
            log.info("release of a user with no open handoff", extra={"wa_id": mask_phone(user)})
            return None
        session, event = released
        await publish(worker.out["handoffs"], user, event)
        log.info(
            "handoff released", extra={"wa_id": mask_phone(user), "handoff_id": event.handoff_id}
        )
        return _with_session(state, session, control.at)

    return handle


def _register_notifier(worker: Worker) -> None:
    app, settings, out = worker.app, worker.settings, worker.out
    ledger = worker.tables[LEDGER]
    secret = settings.helpdesk_secret.get_secret_value()
    ttl = ledger_ttl_s(settings.handoff_renotify_s, settings.handoff_expire_s)
    clients: list[HelpdeskClient] = []
    asked: dict[str, float] = {}
    if not settings.helpdesk_webhook_url:
        log.info("HELPDESK_WEBHOOK_URL is not set: handoffs notify no helpdesk")

    def client() -> HelpdeskClient:
        if not clients:  # created inside the worker's event loop
            clients.append(HelpdeskClient(settings))
        return clients[0]

    def entry(handoff_id: str) -> LedgerEntry | None:
        value = ledger.get(handoff_id)
        return LedgerEntry.decode(unwrap(value).payload) if value is not None else None

    def value(state: LedgerState, opened: HandoffEvent, partition: int, due: float = 0.0) -> bytes:
        expires = (opened.opened_at or opened.at).timestamp() + ttl
        return wrap(expires, partition, LedgerEntry(state, opened).encode(), due)

    async def handle(event: Any) -> None:
        control = parse_control(event.value)
        if control is not None:
            if control.kind == RENOTIFY:
                await renotify(str(control.fields.get("handoff_id")), event)
            return
        ev = decode(HandoffEvent, event.value)  # InvalidPayload: dead letter
        if ev.handoff_id is None:
            return
        if ev.event == "opened" and not settings.helpdesk_webhook_url:
            if entry(ev.handoff_id) is None:  # counted as open, nobody to notify
                ledger[ev.handoff_id] = value("open", ev, event.message.partition)
        elif ev.event == "opened":
            await notify_opened(ev, event)
        elif ev.event in ("released", "expired"):
            current = entry(ev.handoff_id)
            if current is not None and current.state != "closed":
                ledger[ev.handoff_id] = value("closed", current.opened, event.message.partition)
            asked.pop(ev.handoff_id, None)

    async def notify_opened(opened: HandoffEvent, event: Any) -> None:
        hid = opened.handoff_id
        assert hid is not None
        current = entry(hid)
        if not should_post(current.state if current else None, "opened"):
            return  # notified already (a redelivery), or closed
        partition = event.message.partition
        await durable_set(ledger, hid, value("sending", opened, partition))
        await post(opened, "opened", event, "notified")

    async def renotify(hid: str, event: Any) -> None:
        asked.pop(hid, None)
        current = entry(hid)
        if current is None or not should_post(current.state, "renotify"):
            return  # released, renotified already, failed or unknown
        await durable_set(
            ledger, hid, value("renotifying", current.opened, event.message.partition)
        )
        await post(current.opened, "renotify", event, "renotified")

    async def post(opened: HandoffEvent, kind: Kind, event: Any, done: LedgerState) -> None:
        hid, user, partition = opened.handoff_id or "", opened.user_id, event.message.partition
        body = notification_body(opened, kind)
        try:
            attempts = await client().deliver(
                body, headers(secret, body, opened, kind), f"{hid}.{kind}"
            )
        except HelpdeskError as exc:
            ledger[hid] = value("failed", opened, partition)
            await give_up(opened, kind, event, exc)
            return
        due = renotify_due(opened, settings.handoff_renotify_s) if kind == "opened" else 0.0
        ledger[hid] = value(done, opened, partition, due)
        await publish(
            out["handoffs"],
            user,
            HandoffEvent(
                event_id=event_id_for(hid, done),
                event=done,
                handoff_id=hid,
                user_id=user,
                at=datetime.now(UTC),
                attempts=attempts,
                opened_at=opened.opened_at,
            ),
        )
        log.info(
            "helpdesk notified",
            extra={
                "wa_id": mask_phone(user),
                "handoff_id": hid,
                "kind": kind,
                "attempts": attempts,
            },
        )

    async def give_up(opened: HandoffEvent, kind: Kind, event: Any, exc: HelpdeskError) -> None:
        hid, user = opened.handoff_id or "", opened.user_id
        now = datetime.now(UTC)
        reason = f"{kind}: {exc.reason} after {exc.attempts} attempt(s)"
        failed = HandoffEvent(
            event_id=event_id_for(hid, "notify_failed", kind),
            event="notify_failed",
            handoff_id=hid,
            user_id=user,
            at=now,
            reason=reason,
            attempts=exc.attempts,
            opened_at=opened.opened_at,
        )
        letter = ProcessingDeadLetter.for_event(
            "notify",
            event,
            exc,
            attempts=max(exc.attempts, 1),
            failed_at=now,
            reason=reason,
            retryable=exc.retryable,
        )
        await publish_all(
            [(out["handoffs"], user, failed), (out["processing_dead_letters"], user, letter)]
        )
        log.error(
            "helpdesk notification dead-lettered",
            extra={"wa_id": mask_phone(user), "handoff_id": hid, "reason": reason},
        )

    lane_agent(
        worker, raw_topic(app, worker.topics.handoffs), "notify", handle, settings.max_in_flight
    )

    @app.timer(RENOTIFY_CHECK_S)  # type: ignore[untyped-decorator]
    async def renotify_timer() -> None:
        if not settings.helpdesk_webhook_url or settings.handoff_renotify_s <= 0:
            return
        if not app.flow_control.is_active():
            return
        now = time.time()
        owned = worker.owned(worker.topics.handoffs)
        for hid, raw in list(ledger.data.items()):
            _, partition, due = header(raw)
            if (
                not due
                or due > now
                or partition not in owned
                or asked.get(hid, 0) > now - REASK_AFTER_S
            ):
                continue
            user = LedgerEntry.decode(unwrap(raw).payload).opened.user_id
            await out["handoffs"].send(
                key=user.encode(), value=control_value(RENOTIFY, now, handoff_id=hid)
            )
            asked[hid] = now
        for hid in [h for h, at in asked.items() if at <= now - REASK_AFTER_S]:
            del asked[hid]  # bounded: only handoffs due now, each asked again a minute later

    @app.timer(OPEN_GAUGE_S)  # type: ignore[untyped-decorator]
    async def count_open() -> None:
        """`zapstream_handoffs_open`: this worker's share (its partitions' ledger)."""
        owned = worker.owned(worker.topics.handoffs)
        n = 0
        for raw in list(ledger.data.values()):
            envelope = unwrap(raw)
            n += envelope.partition in owned and is_open(envelope.payload)
        metrics.handoffs_open.set(n)

    sweeper = Sweeper(ledger, lambda: worker.owned(worker.topics.handoffs))

    @app.timer(settings.state_sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep_ledger() -> None:
        if app.flow_control.is_active():
            await sweeper.sweep(time.time())
