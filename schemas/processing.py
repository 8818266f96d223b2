"""Records about the processing itself: events a stage gave up on.

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.events import Event


class ProcessingDeadLetter(Event):
    """An event a worker stage could not handle: its handler raised a permanent error,
    or kept failing for `HANDLER_MAX_ATTEMPTS` / `HANDLER_MAX_ELAPSED_S`. The record is
    kept whole (topic, partition, offset, key, value) so it can be inspected and
    replayed; its offset is committed only once this record is stored."""

    KIND: ClassVar[str] = "processing_dead_letter"
    schema_version: Literal[1] = 1
    stage: str
    """The agent that gave up (`converse`, `send-high`, `send-low`, `confirm`)."""
    topic: str
    partition: int
    offset: int
    user_id: str | None = None
    """The record's key (the user); the sink stores it, logs mask it."""
    error_type: str
    reason: str
    retryable: bool
    """False for a permanent error (bad content); True when it was given up on for time
    or attempts: replaying it later may succeed."""
    attempts: int = Field(default=1, ge=0)
    value_b64: str
    """The record's value, base64 (it may not be valid UTF-8 or JSON)."""
    failed_at: datetime

    @property
    def key(self) -> str | None:
        return self.user_id

    @property
    def value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    @staticmethod
    def encode_value(value: bytes | None) -> str:
        return base64.b64encode(value or b"").decode()

    @classmethod
    def for_event(
        cls,
        stage: str,
        event: Any,
        exc: BaseException,
        *,
        attempts: int,
        failed_at: datetime,
        reason: str | None = None,
        retryable: bool | None = None,
    ) -> ProcessingDeadLetter:
        """The dead letter of a Faust event (its message's topic, partition, offset, key
        and value) that `stage` gave up on with `exc`. The reason defaults to the error's
        text, retryable to the error's own `retryable` (True when it has none: given up
        on for time or attempts, a later replay may succeed)."""
        message = event.message
        return cls(
            stage=stage,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            user_id=event.key.decode() if event.key else None,
            error_type=type(exc).__name__,
            reason=reason or str(exc)[:1000] or type(exc).__name__,
            retryable=bool(getattr(exc, "retryable", True)) if retryable is None else retryable,
            attempts=attempts,
            value_b64=cls.encode_value(event.value),
            failed_at=failed_at,
        )
