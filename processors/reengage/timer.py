"""Re-engagement in the worker: a timer that finds quiet users, and the lane work.

A timer cannot change tables (`processors.ticker` explains why), so, like the
debounce ticker, it only *asks*: every `REENGAGE_SCAN_INTERVAL_S` it scans the `users`
entries of the inbound partitions this worker owns and publishes a control record
`reengage` (`schemas.control`, at = the injectable clock, quiet_since = the period)
onto each due user's own inbound partition. The converse agent runs it in the user's
lane (`on_control`): the pure `decide.reengage_step` checks every rule again against
the current state at the record's own time, publishes the message (low-priority
outbound topic) and the `sent` event, and returns the state with the period marked,
which the agent stores behind the offset fence. So:
  * a second control record for the period (another worker, a rebalance, a re-scan)
    finds the period marked and does nothing;
  * a crash between the publish and the store replays the record to the same
    decision and the same outbound id, which the sender's `sent` ledger drops.

The scan skips users handled for their period, opted out, with a human, not yet
due, or past the window with no template configured, and does not ask twice for one
user and period within `republish_after_s` (in memory, cleared at a rebalance). It
keeps, per user, the value object it last decoded and what it read there: an entry
not written since the last scan costs an identity check (see README, budget).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

import orjson

from processors import metrics
from processors.engine import SERVICE_WINDOW
from processors.reengage.decide import (
    CONTROL_KIND,
    Quiet,
    ReengageConfig,
    quiet_of_json,
    reengage_step,
    returned_step,
)
from processors.tables import header, unwrap
from processors.user_state import Origin, UserState
from schemas.control import Control, control_value
from schemas.events import MessageReceived
from zapstream.log import mask_phone

log = logging.getLogger("zapstream.reengage")

PublishAll = Callable[[list[tuple[Any, str, Any]]], Awaitable[None]]
CHUNK = 5_000
"""Entries scanned between two yields to the event loop."""
MAX_PER_SCAN = 2_000
"""Control records one scan publishes at most (the rest wait for the next scan)."""
PUBLISH_BATCH = 500


class Seen(NamedTuple):
    """What the scan read from one `users` value, kept while the value is the same
    object (a write replaces it): 4 slots, no strings."""

    value: bytes
    partition: int
    due: float
    """Epoch seconds when the period is due; `NEVER`: handled, opted out, with a human."""
    burst_open: bool = False
    """The user is mid-burst: asked once the burst closes (the value changes then)."""


NEVER = math.inf


@dataclass(frozen=True)
class ScanRule:
    after_s: float
    closes_after_due_s: float
    """The window closes this long after the period is due (negative: before)."""
    has_template: bool

    @classmethod
    def of(cls, cfg: ReengageConfig) -> ScanRule:
        window = SERVICE_WINDOW - timedelta(seconds=cfg.window_margin_s)
        return cls(cfg.after_s, window.total_seconds() - cfg.after_s, bool(cfg.template))

    def due(self, quiet: Quiet) -> float:
        """When the period is due (epoch seconds), `NEVER` when it never will be."""
        if quiet.quiet_since is None:
            return NEVER
        if quiet.reengaged_for == quiet.quiet_since or quiet.opted_out or quiet.handoff_active:
            return NEVER
        return quiet.quiet_since.timestamp() + self.after_s

    def why_not(self, seen: Seen, now: float) -> str:
        """ "" when the user is due now, else the reason."""
        if seen.due == NEVER:
            return "handled"
        if now < seen.due:
            return "not_due"
        if seen.burst_open:
            return "burst_open"
        if now >= seen.due + self.closes_after_due_s and not self.has_template:
            return "outside_window_no_template"
        return ""


class Reengager:
    def __init__(
        self,
        worker: Any,
        publish_all: PublishAll,
        cfg: ReengageConfig,
        clock: Callable[[], float],
        *,
        republish_after_s: float,
    ) -> None:
        self.worker = worker
        self.publish_all = publish_all
        self.cfg = cfg
        self.clock = clock
        self.rule = ScanRule.of(cfg)
        self.republish_after_s = republish_after_s
        self.seen: dict[str, Seen] = {}
        self.asked: dict[str, tuple[float, float]] = {}
        """user → (due, when asked): not asked again for that period within
        republish_after_s. Bounded: entries older than that are dropped each scan."""

    # --- in the user's lane ---------------------------------------------------------
    async def on_control(
        self, user: str, state: UserState | None, control: Control, origin: Origin
    ) -> UserState | None:
        step = reengage_step(user, state, control, self.cfg)
        if step.outbound is None or step.event is None:
            log.info(
                "re-engagement skipped",
                extra={"wa_id": mask_phone(user), "reason": step.skipped, "origin": str(origin)},
            )
            return None
        out = self.worker.out
        await self.publish_all(
            [(out["outbound_low"], user, step.outbound), (out["reengagements"], user, step.event)]
        )
        metrics.reengagements_sent.inc()
        log.info(
            "re-engagement sent",
            extra={
                "wa_id": mask_phone(user),
                "kind": step.event.kind,
                "outbound_id": step.outbound.outbound_id,
                "reengagement_id": step.event.reengagement_id,
            },
        )
        return step.state

    async def on_message(self, user: str, state: UserState, message: MessageReceived) -> UserState:
        new_state, event = returned_step(user, state, message)
        if event is not None:
            await self.publish_all([(self.worker.out["reengagements"], user, event)])
            log.info(
                "re-engaged user returned",
                extra={"wa_id": mask_phone(user), "reengagement_id": event.reengagement_id},
            )
        return new_state

    # --- the timer ---------------------------------------------------------------------
    def forget_asked(self) -> None:
        self.asked.clear()

    async def tick(self) -> None:
        """One scan for the timer: a failure (the broker unreachable, say) is logged and
        the next scan tries again; it never stops the timer or the worker."""
        try:
            await self.scan()
        except Exception as exc:
            log.warning(
                "re-engagement scan failed; the next one retries",
                extra={"error_type": type(exc).__name__, "reason": str(exc)[:300]},
            )

    async def scan(self) -> int:
        """Publish a `reengage` control record for every due user this worker owns;
        returns how many. Stops (publishing nothing) if a rebalance begins meanwhile."""
        worker = self.worker
        if not worker.app.flow_control.is_active():
            return 0
        owned = worker.owned(worker.topics.inbound)
        if not owned:
            return 0
        now = self.clock()
        items = list(worker.tables["users"].data.items())
        due: list[tuple[str, Seen]] = []
        reasons: Counter[str] = Counter()
        seen: dict[str, Seen] = {}
        for start in range(0, len(items), CHUNK):
            if start:
                await asyncio.sleep(0)  # let the agents run between chunks
            self._due(items[start : start + CHUNK], owned, now, due, reasons, seen)
        if not worker.app.flow_control.is_active():
            return 0
        self.seen = seen
        for user in [u for u, (_, at) in self.asked.items() if now - at > self.republish_after_s]:
            del self.asked[user]
        asked = self.asked
        batch = [(u, e) for u, e in due if asked.get(u, (None,))[0] != e.due][:MAX_PER_SCAN]
        inbound = worker.out["inbound"]
        for start in range(0, len(batch), PUBLISH_BATCH):
            part = batch[start : start + PUBLISH_BATCH]
            await self.publish_all(
                [
                    (inbound, user, control_value(CONTROL_KIND, now, quiet_since=since))
                    for user, since in ((u, _quiet_since(e.value)) for u, e in part)
                ]
            )
            for user, entry in part:
                asked[user] = (entry.due, now)
        level = logging.INFO if batch else logging.DEBUG
        log.log(
            level,
            "re-engagement scan: %d asked, %d due, %d users seen, skipped %s",
            len(batch),
            len(due),
            len(seen),
            dict(reasons),
        )
        return len(batch)

    def _due(
        self,
        items: list[tuple[str, bytes]],
        owned: set[int],
        now: float,
        due: list[tuple[str, Seen]],
        reasons: Counter[str],
        seen: dict[str, Seen],
    ) -> None:
        old, why_not = self.seen, self.rule.why_not
        for user, value in items:
            entry = old.get(user)
            if entry is None or entry.value is not value:
                entry = self._read(value)
            seen[user] = entry
            if entry.partition not in owned:
                continue
            if now < entry.due:  # the common case, inline: handled or not yet due
                reasons["handled" if entry.due == NEVER else "not_due"] += 1
                continue
            why = why_not(entry, now)
            if why:
                reasons[why] += 1
            else:
                due.append((user, entry))

    def _read(self, value: bytes) -> Seen:
        _, partition, _ = header(value)
        try:
            quiet = quiet_of_json(orjson.loads(unwrap(value).payload))
        except (ValueError, TypeError):  # not ours to judge here: the lane reports it
            return Seen(value, partition, NEVER)
        return Seen(value, partition, self.rule.due(quiet), quiet.burst_open)


def _quiet_since(value: bytes) -> str:
    """The period's exact `quiet_since` (as the lane will read it), for the few asked."""
    quiet = quiet_of_json(orjson.loads(unwrap(value).payload))
    return quiet.quiet_since.isoformat() if quiet.quiet_since is not None else ""


def install(worker: Any, publish_all: PublishAll) -> Reengager:
    """Register the control handler, the message hook and the scan timer on the
    worker, when re-engagement is on (REENGAGE_AFTER_S > 0)."""
    settings = worker.settings
    cfg = ReengageConfig.from_settings(settings)
    interval = settings.reengage_scan_interval_s
    reengager = Reengager(
        worker, publish_all, cfg, worker.clock, republish_after_s=max(60.0, 2 * interval)
    )
    # Always handled: a control record published before REENGAGE_AFTER_S was set to 0
    # is then skipped ("off"), and a returning user is still recorded.
    worker.control_handlers[CONTROL_KIND] = reengager.on_control
    worker.message_hooks.append(reengager.on_message)
    if not cfg.enabled:
        return reengager
    app = worker.app

    @app.timer(interval)  # type: ignore[untyped-decorator]
    async def reengage_scan() -> None:
        await reengager.tick()

    @app.on_rebalance_complete.connect  # type: ignore[untyped-decorator]
    async def forget(sender: Any = None, **kwargs: Any) -> None:
        reengager.forget_asked()

    return reengager
