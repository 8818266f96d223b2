"""An engine for the ordering test: echoes like ENGINE=echo, but takes 2 s for users
whose id ends in 0000 (an LLM having a slow day)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from processors.echo_engine import EchoEngine
from processors.engine import Decision
from schemas.conversation import Session, Turn


class SlowForSomeEngine:
    name = "slow-echo"

    def __init__(self) -> None:
        self.echo = EchoEngine()

    async def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        if turn.user_id.endswith("0000"):
            await asyncio.sleep(2.0)
        return self.echo.decide(session, turn, now)


def create_engine() -> SlowForSomeEngine:
    return SlowForSomeEngine()
