"""Control records: work a timer or an operator asks of a user's lane, carried on the
user's own topic (the inbound topic) so it runs in that user's order, behind every
message of theirs already published, through the same exactly-once machinery as a
message (the `applied` offset fence of `processors.user_state`).

A control record is JSON `{"zapstream_control": <kind>, "at": <epoch s>, ...fields}`:
`at` is when it was made, so a replay decides the same way. Consumers that load
messages (the sink) skip every value that starts with `CONTROL_PREFIX`, as they skip
debounce ticks. Each kind is owned by the feature that handles it; an unknown kind is
logged and skipped by the worker (a newer producer, an older worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

CONTROL_PREFIX = b'{"zapstream_control":'


@dataclass(frozen=True)
class Control:
    kind: str
    at: float
    """Epoch seconds when it was made."""
    fields: dict[str, Any] = field(default_factory=dict)


def control_value(kind: str, at: float, **fields: Any) -> bytes:
    if not kind:
        raise ValueError("a control record needs a kind")
    return orjson.dumps({"zapstream_control": kind, "at": round(at, 3), **fields})


def is_control(value: bytes | None) -> bool:
    return bool(value) and value.startswith(CONTROL_PREFIX)  # type: ignore[union-attr]


def parse_control(value: bytes | None) -> Control | None:
    """The control record in `value`, or None when it is not one (a message, a tick)."""
    if not is_control(value):
        return None
    assert value is not None
    doc = orjson.loads(value)
    kind = doc.pop("zapstream_control")
    at = float(doc.pop("at", 0.0))
    return Control(str(kind), at, doc)
