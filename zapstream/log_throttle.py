"""A repeated warning once per interval and per reason, not once per event.

A broker outage fails every webhook request and every reconnection attempt; the log
should say so when it starts, then now and then with a count of what it held back.
`LogThrottle` decides for our own lines; `RepeatFilter` does the same for a
library's (aiokafka logs an error for every failed connection attempt).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    logged_at: float
    held: int = 0


class LogThrottle:
    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: dict[str, _Seen] = {}

    def ready(self, key: str) -> int | None:
        """None: hold this line back. Otherwise log it, adding how many lines of this
        key were held back since the last one (0 the first time)."""
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._forget_old(now)
            self._seen[key] = _Seen(now)
            return 0
        if now - seen.logged_at < self.interval_s:
            seen.held += 1
            return None
        held, seen.logged_at, seen.held = seen.held, now, 0
        return held

    def _forget_old(self, now: float) -> None:
        if len(self._seen) < self._max_keys:
            return
        self._seen = {k: v for k, v in self._seen.items() if now - v.logged_at < self.interval_s}
        if len(self._seen) >= self._max_keys:
            self._seen.clear()


class RepeatFilter(logging.Filter):
    """On a handler: a record of the named loggers (and their children) whose text was
    logged less than `interval_s` ago is dropped; the next one says how many were."""

    def __init__(
        self,
        loggers: tuple[str, ...],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.loggers = loggers
        self._throttle = LogThrottle(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(record.name == n or record.name.startswith(n + ".") for n in self.loggers):
            return True
        text = record.getMessage()
        held = self._throttle.ready(text)
        if held is None:
            return False
        if held:
            record.msg, record.args = f"{text} ({held} more like it held back)", None
        return True


def throttle_library_logs(
    loggers: tuple[str, ...] = ("aiokafka",), interval_s: float = 15.0
) -> None:
    """Add a `RepeatFilter` to every handler of the root logger (call after the
    handlers are installed, Faust's included)."""
    repeat = RepeatFilter(loggers, interval_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(repeat)
