"""ENGINE=echo: answer every inbound message with `echo: <text>`, quoting it.

For load tests and smoke tests of the send path: one send per inbound message, so
counts line up (N messages in -> N replies out), no matter how they were grouped into
turns. Media without text echoes its type (`echo: image`). Reactions are echoed too: a
load test counts messages, not meaning.
"""

from __future__ import annotations

from datetime import datetime

from processors.actions import Action, SendText
from processors.engine import Decision, observe_turn
from schemas.conversation import Session, Turn

PREFIX = "echo: "
BODY_MAX = 4096


class EchoEngine:
    name = "echo"

    def decide(self, session: Session | None, turn: Turn, now: datetime) -> Decision:
        after = observe_turn(session, turn, now).updated(last_intent="echo")
        actions: list[Action] = [
            SendText(body=(PREFIX + (m.text or m.type))[:BODY_MAX], reply_to=m.message_id)
            for m in turn.messages
        ]
        return Decision(after, tuple(actions), "echo")


def create_engine() -> EchoEngine:
    return EchoEngine()
