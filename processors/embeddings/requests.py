"""Pure: which texts of a closed turn get embedded.

Every inbound message that reads as text (a text body, a media caption, a button or
list title: `MessageReceived.text`), reactions left out, one request each, whatever
the engine decided: a conversation that is with a human (the engine silent) is
embedded all the same. Blank texts are skipped.
"""

from __future__ import annotations

from schemas.conversation import Turn
from schemas.embeddings import EmbeddingRequested

MAX_TEXT_CHARS = 4096
"""Longer texts are cut here (the model reads ~256 tokens anyway; WhatsApp's limit)."""


def embedding_requests(turn: Turn) -> list[EmbeddingRequested]:
    requests: list[EmbeddingRequested] = []
    seen: set[str] = set()
    for m in turn.messages:
        if m.type == "reaction" or not m.text or not m.text.strip() or m.message_id in seen:
            continue
        seen.add(m.message_id)
        requests.append(
            EmbeddingRequested(
                message_id=m.message_id,
                user_id=turn.user_id,
                text=m.text[:MAX_TEXT_CHARS],
                at=m.sent_at,
                message_type=m.type,
                turn_id=turn.turn_id,
            )
        )
    return requests
