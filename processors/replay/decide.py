"""The re-decision of a slice, in memory, with the worker's own pure functions.

Per inbound message, in offset order per partition (so in order per user):
`user_state.intake` (dedupe → debounce, on the message's own time) and, for every turn
that closes, the engine `load_engine` returns (guarded: opt-out and the 24-hour
window apply as live). Nothing here reads a clock, sends or stores anything.

Choices, and what they mean for a replay's fidelity:
* **Sessions start where the live ones stood** before each user's first message of
  the slice (`processors.replay.seeds`: the session after the user's latest live
  turn, read from DuckDB; none is written). A user with no earlier turn starts
  empty, as a first contact.
* **Debounce ticks: the recorded ones, and synthesized ones where none came.** A
  live tick in the topic is applied in its place with the time it was made, exactly
  as the worker applied it (so a burst the worker closed before a late-published
  message closes the same way here). Before a user's message, a burst whose deadline
  has already passed and that no tick closed is closed *at its deadline*; bursts still
  open at the slice's end are closed at theirs. Turn ids derive from message ids, so
  replayed turns carry the live turn ids (a burst cut by the slice's start or end
  makes a turn of its own, which the diff counts as unmatched).
* **Dedupe** covers the slice: Meta's redeliveries inside it are dropped.

Memory budget: one `UserState` per user of the slice (about 1 KB with a session) and
one dedupe entry per message id (~150 B); dedupe entries older than
DEDUPE_HORIZON_S of event time and users quiet for SESSION_TTL_S are dropped as the
replay moves on, as the worker's tables expire them.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from processors import debounce
from processors.actions import action_to_dict
from processors.engine import GuardedEngine
from processors.user_state import Origin, SeenEntry, UserState, intake, with_session
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived

END_OF_SLICE = 1 << 62
SWEEP_EVERY = 50_000
"""Messages between two sweeps of expired users."""


def engine_fingerprint(options: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a turn, as plain data: the engine, the playbook's bytes (or the HTTP
    engine's address), and the settings debounce and the policies read. A change of any
    of them is another engine version, hence another run id."""
    engine = str(options.get("engine", "playbook"))
    doc: dict[str, Any] = {
        "engine": engine,
        "debounce": [
            options.get("debounce_quiet_ms"),
            options.get("debounce_max_ms"),
            options.get("debounce_max_messages"),
        ],
        "service_window": [
            options.get("service_window_template"),
            options.get("service_window_template_language"),
            options.get("service_window_margin_s"),
        ],
    }
    if engine == "playbook":
        from processors.playbook import DEFAULT_PLAYBOOK

        path = Path(options.get("playbook_path") or DEFAULT_PLAYBOOK)
        doc["playbook_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    elif engine == "http":
        doc["engine_http_url"] = options.get("engine_http_url")
    return doc


def engine_version(fingerprint: Mapping[str, Any]) -> str:
    return _digest(fingerprint)[:12]


def run_id_for(
    topic: str, ranges: Sequence[Any], users: Sequence[str], fingerprint: Mapping[str, Any]
) -> str:
    """The run's id: a hash of the resolved slice (topic, offset ranges, users) and the
    engine. The same slice replayed by the same engine gets the same id, so its rows
    (keyed by run and turn) are the same rows; any change makes a new run."""
    doc = {
        "topic": topic,
        "ranges": sorted([r.partition, r.start, r.end] for r in ranges),
        "users": sorted(set(users)),
        "engine": dict(fingerprint),
    }
    return "replay-" + _digest(doc)[:20]


def _digest(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    engine: str
    engine_version: str


@dataclass(frozen=True)
class Replayed:
    """One turn decided again: the record for the sink and what the diff needs."""

    turn_id: str
    user_id: str
    intent: str
    actions: list[dict[str, Any]]
    record: bytes
    """`schemas.replay.ReplayDecided` as JSON (built without a model: the hot path)."""


@dataclass
class Replayer:
    engine: GuardedEngine
    cfg: debounce.DebounceConfig
    run: RunInfo
    originals: Mapping[str, str] = field(default_factory=dict)
    """turn id → the live decision's intent (`original_intent`)."""
    dedupe_horizon_s: float = 7 * 24 * 3600
    session_ttl_s: float = 90 * 24 * 3600
    users: dict[str, UserState] = field(default_factory=dict)
    seen: dict[str, SeenEntry] = field(default_factory=dict)
    messages: int = 0
    duplicates: int = 0
    turns: int = 0
    _seen_order: deque[tuple[float, str]] = field(default_factory=deque)

    async def message(self, partition: int, offset: int, msg: MessageReceived) -> list[Replayed]:
        """Apply one inbound message; the turns it closed, decided."""
        self.messages += 1
        out: list[Replayed] = []
        state = self.users.get(msg.user_id)
        pending = state.pending if state is not None else None
        deadline = debounce.next_deadline(pending, self.cfg) if pending is not None else None
        if state is not None and deadline is not None and deadline <= msg.received_at:
            # the tick the live worker made at the deadline, before this message
            state = await self._step(state, deadline, Origin(partition, 2 * offset - 1), out)
        step = intake(
            state, msg, Origin(partition, 2 * offset), self.seen.get(msg.message_id), self.cfg
        )
        if step.outcome == "duplicate":
            self.duplicates += 1
        if step.seen is not None:
            self.seen[msg.message_id] = step.seen
            self._seen_order.append((step.seen.first_seen, msg.message_id))
        if step.state is not None:
            self.users[msg.user_id] = await self._decided(step.state, step.turn, step.now, out)
        if self.messages % SWEEP_EVERY == 0:
            self._expire(msg.received_at.timestamp())
        return out

    async def tick(self, partition: int, offset: int, user: str, at: datetime) -> list[Replayed]:
        """Apply a recorded debounce tick of `user`, made at `at`."""
        state = self.users.get(user)
        if state is None or state.pending is None:
            return []
        out: list[Replayed] = []
        self.users[user] = await self._step(state, at, Origin(partition, 2 * offset), out)
        return out

    async def finish(self) -> list[Replayed]:
        """Close the bursts still open at the slice's end, each at its deadline."""
        out: list[Replayed] = []
        for user in sorted(self.users):
            state = self.users[user]
            deadline = debounce.next_deadline(state.pending, self.cfg)
            if deadline is None:
                continue
            partition = state.applied[0] if state.applied else 0
            self.users[user] = await self._step(
                state, deadline, Origin(partition, END_OF_SLICE), out
            )
        return out

    async def _step(
        self, state: UserState, at: datetime, origin: Origin, out: list[Replayed]
    ) -> UserState:
        step = intake(state, at, origin, None, self.cfg)
        if step.state is None:
            return state
        return await self._decided(step.state, step.turn, step.now, out)

    async def _decided(
        self, state: UserState, turn: Turn | None, now: datetime | None, out: list[Replayed]
    ) -> UserState:
        if turn is None or now is None:
            return state
        decision = await self.engine.decide(state.session, turn, now)
        self.turns += 1
        actions = [action_to_dict(a) for a in decision.actions]
        doc = {
            "schema_version": 1,
            "run_id": self.run.run_id,
            "turn_id": turn.turn_id,
            "user_id": turn.user_id,
            "engine": self.run.engine,
            "engine_version": self.run.engine_version,
            "intent": decision.intent,
            "actions": actions,
            "dropped": [d.to_dict() for d in decision.dropped],
            "message_ids": turn.message_ids,
            "original_intent": self.originals.get(turn.turn_id),
            "decided_at": now,
        }
        out.append(
            Replayed(turn.turn_id, turn.user_id, decision.intent, actions, orjson.dumps(doc))
        )
        return with_session(state, decision.session)

    def seed(self, user: str, session: Session) -> bool:
        """Start `user` from `session` (the live one before the slice); whether it was
        taken (a user the replay already holds keeps what it has)."""
        if user in self.users:
            return False
        since = session.last_inbound_at or session.updated_at
        self.users[user] = UserState(
            session=session, touched_at=since.timestamp() if since is not None else 0.0
        )
        return True

    def _expire(self, now: float) -> None:
        """Forget dedupe entries past the horizon and users quiet past the session TTL
        (event time), as the worker's tables do."""
        order, seen = self._seen_order, self.seen
        while order and order[0][0] < now - self.dedupe_horizon_s:
            seen.pop(order.popleft()[1], None)
        cutoff = now - self.session_ttl_s
        for user in [
            u for u, s in self.users.items() if s.touched_at < cutoff and s.pending is None
        ]:
            del self.users[user]
