"""Re-engagement records: what a user's state remembers of the message sent to them
after a quiet period (`ReengageMark`, part of `processors.user_state.UserState`), and
the lifecycle events the sink loads into the `reengagements` table (`Reengagement`).

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused.

Ids are derived from (user, quiet_since), never random: a quiet period has one
re-engagement id and one outbound id however often it is decided (two workers, a
restart, a rebalance), so the sender's ledger drops any repeat send.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from schemas.events import Event
from schemas.outbound import outbound_id_for

ReengageKind = Literal["text", "template"]


def reengagement_id_for(user_id: str, quiet_since: datetime) -> str:
    """One id per (user, quiet period); the period is named by the user's last send time."""
    digest = hashlib.sha256(f"{user_id}\x1f{quiet_since.isoformat()}".encode()).hexdigest()
    return f"reng_{digest[:32]}"


def reengage_outbound_id(reengagement_id: str) -> str:
    return outbound_id_for(reengagement_id, 0)


class ReengageMark(BaseModel):
    """In the user's state: the quiet period already re-engaged, and whether the user
    has written since (then `returned_at` is set and no further event is sent)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    reengagement_id: str
    quiet_since: datetime
    """The user's last send time when the period began (session.last_inbound_at)."""
    sent_at: datetime
    """The control record's time: when the message was decided and queued."""
    kind: ReengageKind
    outbound_id: str
    returned_at: datetime | None = None


class Reengagement(Event):
    """One step of a re-engagement: `sent` (queued on the low-priority lane) or
    `returned` (the user wrote again). Each carries the whole row, so the sink can
    upsert by `reengagement_id` with the latest `returned_at` winning."""

    KIND: ClassVar[str] = "reengagement"
    schema_version: Literal[1] = 1
    event: Literal["sent", "returned"]
    reengagement_id: str
    user_id: str
    quiet_since: datetime
    sent_at: datetime
    kind: ReengageKind
    outbound_id: str
    returned_at: datetime | None = None

    @property
    def key(self) -> str:
        return self.user_id

    @classmethod
    def of(
        cls, event: Literal["sent", "returned"], user_id: str, mark: ReengageMark
    ) -> Reengagement:
        return cls(event=event, user_id=user_id, **mark.model_dump())
