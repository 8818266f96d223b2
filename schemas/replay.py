"""Records of a replay (`zapstream replay`): decisions re-made by the current engine
over a slice of inbound history, and one summary per run. Never sent to anyone: the
sink loads them into `replay_decisions` and `replay_runs`, beside the live tables.

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused.

Everything in a `ReplayDecided` is derived from the slice and the engine, never from
the clock (`decided_at` is the event time the engine decided at), so replaying the same
slice with the same engine makes the same records: the same `run_id`, the same rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.events import Event


class ReplayDecided(Event):
    """One turn of the slice, decided again by the current engine (keyed by user)."""

    KIND: ClassVar[str] = "replay_decided"
    schema_version: Literal[1] = 1
    run_id: str
    """The run that made it (`processors.replay.run_id_for`: slice + engine)."""
    turn_id: str
    user_id: str
    engine: str
    """ENGINE of the run (`playbook`, `echo`, ...)."""
    engine_version: str
    """A hash of what decides: the playbook's bytes, the debounce and window settings."""
    intent: str
    actions: list[dict[str, Any]]
    """What the engine would do, `action_to_dict` of each action: recorded, never sent."""
    dropped: list[dict[str, Any]] = Field(default_factory=list)
    message_ids: list[str] = Field(default_factory=list)
    original_intent: str | None = None
    """The live decision's intent for the same turn id (DuckDB `turns`), if found."""
    decided_at: datetime
    """The event time the engine decided at (the turn's close), not the wall clock."""

    @property
    def key(self) -> str:
        return self.user_id


class ReplayRunFinished(Event):
    """One finished replay run: what it read and decided (keyed by run id)."""

    KIND: ClassVar[str] = "replay_run_finished"
    schema_version: Literal[1] = 1
    run_id: str
    started_at: datetime
    finished_at: datetime
    engine: str
    engine_version: str
    topic: str
    selection: dict[str, Any]
    """What was asked (`--from`, `--to`, `--offsets`, `--user`) and the offset ranges
    it resolved to, per partition."""
    events: int
    """Inbound messages of the slice that were decided (after `--user`)."""
    turns: int
    changed: int | None = None
    """Turns whose intent or actions differ from the live decision (None: not compared)."""

    @property
    def key(self) -> str:
        return self.run_id
