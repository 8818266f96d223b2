"""Each partition's records reach an agent strictly in offset order, or not at all.

Faust can lose a record between its fetch loop and an agent around a rebalance (see
`processors.faust_transport`). The strict commit keeps such a record uncommitted, and
the consumer's hole finder reads it again, but by then the agent may already have
handled the records after it: a user would get the answer to their second message
before the answer to their first. So the lane agents admit records through
`InOrder`: a record past the one expected next is not handled; the partition is read
again from the expected offset (once a second at most), and records come back in
order. A record before the expected one was already taken: it is a repeat of a
re-read and is released.

    verdict(expected | None, offset) -> "take" | "repeat" | "gap"
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

log = logging.getLogger(__name__)

Verdict = Literal["take", "repeat", "gap"]
REREAD_EVERY_S = 1.0
MAX_REREADS = 5
"""A gap still there after this many re-reads is real (no record at that offset:
compaction or transaction markers, which our topics do not have) and is accepted."""


def verdict(expected: int | None, offset: int) -> Verdict:
    if expected is None or offset == expected:
        return "take"
    return "repeat" if offset < expected else "gap"


class InOrder:
    """Per agent: the next offset expected on each partition, started at the
    committed offset of the consumer generation that delivers it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.expected: dict[Any, int] = {}
        self._generation: dict[Any, int | None] = {}
        self._reread_at: dict[Any, float] = {}
        self._rereads: dict[tuple[Any, int], int] = {}
        guards = getattr(app.consumer, "guards", None)
        if guards is not None:
            guards.add(self)  # so the consumer's state dump (SIGUSR1) shows it

    async def admit(self, event: Any) -> bool:
        """True: handle `event` now. False: it was released (not handled, not acked)."""
        message = event.message
        tp = message.tp
        consumer = self.app.consumer
        if self._generation.get(tp, -1) != message.generation_id:
            # a rebalance sought every partition back to its committed offset
            self._generation[tp] = message.generation_id
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                self.expected.pop(tp, None)
            else:
                self.expected[tp] = committed
        expected = self.expected.get(tp)
        seen = verdict(expected, message.offset)
        if (
            seen == "gap"
            and expected is not None
            and self._rereads.get((tp, expected), 0) >= MAX_REREADS
        ):
            log.warning(
                "offsets %s..%s of %s do not exist; skipping them", expected, message.offset - 1, tp
            )
            seen = "take"
        if seen == "take":
            self.expected[tp] = message.offset + 1
            if self._rereads:  # the gap before this offset is filled: forget its count
                self._rereads.pop((tp, message.offset), None)
            return True
        consumer.release(message)
        if seen == "gap" and expected is not None:
            now = time.monotonic()
            if now - self._reread_at.get(tp, 0.0) >= REREAD_EVERY_S:
                self._reread_at[tp] = now
                self._rereads[(tp, expected)] = self._rereads.get((tp, expected), 0) + 1
                log.warning(
                    "record %s of %s arrived before %s; reading the partition again from %s",
                    message.offset,
                    tp,
                    expected,
                    expected,
                )
                await consumer.seek(tp, expected)
        return False
