"""What the sandbox remembers: accepted messages in arrival order, reads, counters.

Thread-safe, because tests read it from their own thread while uvicorn serves the
sandbox from another. Rejected requests are counted, never recorded as messages.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    seq: int
    wamid: str
    to: str
    type: str
    phone_number_id: str
    body: dict[str, Any]
    received_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "wamid": self.wamid,
            "to": self.to,
            "type": self.type,
            "phone_number_id": self.phone_number_id,
            "body": self.body,
            "received_at": self.received_at.isoformat(),
        }


@dataclass
class SandboxRecorder:
    """Accepted messages in arrival order, reads and counters. Thread-safe: tests
    read it while uvicorn serves from another thread."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _messages: list[RecordedMessage] = field(default_factory=list)
    _reads: list[str] = field(default_factory=list)
    _counts: Counter[str] = field(default_factory=Counter)

    def record(self, wamid: str, to: str, type_: str, pnid: str, body: dict[str, Any]) -> None:
        with self._lock:
            seq = len(self._messages) + 1
            received = datetime.now(UTC)
            self._messages.append(RecordedMessage(seq, wamid, to, type_, pnid, body, received))
            self._counts["accepted"] += 1

    def record_read(self, message_id: str) -> None:
        with self._lock:
            self._reads.append(message_id)
            self._counts["reads"] += 1

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def messages(self, to: str | None = None) -> list[RecordedMessage]:
        with self._lock:
            return [m for m in self._messages if to is None or m.to == to]

    def reads(self) -> list[str]:
        with self._lock:
            return list(self._reads)

    def peak_rate(self, window_s: float = 1.0) -> dict[str, int]:
        """Per business phone number, the most messages accepted within any `window_s`
        seconds: what Meta's throughput limit counts (all senders together)."""
        with self._lock:
            by_number: dict[str, list[float]] = {}
            for m in self._messages:
                by_number.setdefault(m.phone_number_id, []).append(m.received_at.timestamp())
        peaks: dict[str, int] = {}
        for number, times in by_number.items():
            times.sort()
            start = best = 0
            for end, t in enumerate(times):
                while t - times[start] >= window_s:
                    start += 1
                best = max(best, end - start + 1)
            peaks[number] = best
        return peaks

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = dict(self._counts)
        errors = {k.removeprefix("error_"): v for k, v in c.items() if k.startswith("error_")}
        plain = ("requests", "accepted", "reads", "rejected")
        hooks = ("delivered", "failed", "dropped")
        return {k: c.get(k, 0) for k in plain} | {
            "errors": errors,
            "webhooks": {k: c.get(f"webhooks_{k}", 0) for k in hooks},
        }

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._reads.clear()
            self._counts.clear()
