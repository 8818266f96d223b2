"""An engine for the ordering test: echoes like ENGINE=echo, but slow for users whose
id ends in 0000 (an LLM having a slow day).

With `SLOW_ENGINE_GATE_DIR` set, a user's turn waits while the file `<dir>/<user id>`
exists (at most `GATE_MAX_S`): the test holds that user until it removes the file,
so "the others did not wait for it" needs no clock. Other users ending in 0000: 2 s."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path

from processors.echo_engine import EchoEngine
from processors.engine import Decision
from schemas.conversation import Session, Turn

GATE_MAX_S = 300.0


class SlowForSomeEngine:
    name = "slow-echo"

    def __init__(self, gate: Path | None = None) -> None:
        self.echo = EchoEngine()
        self.gate = gate

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        held = self.gate / turn.user_id if self.gate is not None else None
        if held is not None and held.exists():
            deadline = time.monotonic() + GATE_MAX_S
            while held.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        elif turn.user_id.endswith("0000"):
            await asyncio.sleep(2.0)
        return self.echo.decide(session, turn, now)


def create_engine() -> SlowForSomeEngine:
    gate = os.environ.get("SLOW_ENGINE_GATE_DIR")
    return SlowForSomeEngine(Path(gate) if gate else None)
