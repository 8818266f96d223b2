"""Pure pacing for outbound sends; the caller passes the clock (`now`, seconds).

Two limits from the Cloud API, two tools:
- `TokenBucket`: the business number's throughput (80 msg/s by default, error
  130429 beyond it). One per phone number id.
- `RecipientPacer`: the (business, consumer) pair limit, about one message every
  6 s to one user sustained (error 131056). A 131056 slows that recipient only.

The outbound topic is keyed by user, so each recipient lives on one partition and
one worker: in-process state is enough, no shared store is needed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up; starts full."""

    __slots__ = ("_blocked_until", "_last", "burst", "rate_per_s", "tokens")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self._last: float | None = None
        self._blocked_until = float("-inf")

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate_per_s)
        # A clock that steps back must not mint tokens: keep the latest instant seen.
        if self._last is None or now > self._last:
            self._last = now

    def try_take(self, now: float, n: float = 1.0) -> float:
        """0.0 when `n` tokens were taken; otherwise the seconds to wait (nothing taken)."""
        if n > self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.burst}")
        self._refill(now)
        if now < self._blocked_until:
            return self._blocked_until - now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate_per_s

    def rescale(self, rate_per_s: float, burst: float) -> None:
        """Change the rate and the burst (a worker's share of a group-wide limit moved);
        tokens saved up beyond the new burst are dropped."""
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = min(self.tokens, float(burst))

    def pause(self, now: float, seconds: float) -> None:
        """Grant nothing for `seconds` (after a 130429 with a known delay); what was
        saved up is spent, so the restart is gentle rather than a full burst."""
        self._refill(now)
        self._blocked_until = max(self._blocked_until, now + seconds)
        self.tokens = 0.0


@dataclass(slots=True)
class _Pace:
    next_allowed: float
    strikes: int = 0


class RecipientPacer:
    """Per-recipient spacing: at most one send every `min_interval_s`, and after a
    131056 a pause of `backoff` seconds doubling with each consecutive penalty (up to
    `max_backoff`).

    Memory is bounded: entries are kept in least-recently-used order; idle ones
    (pause over for `max_backoff` seconds) are dropped as the clock passes, and past
    `max_entries` the least recently used goes first.
    """

    def __init__(
        self,
        min_interval_s: float,
        backoff: float,
        *,
        max_backoff: float = 300.0,
        max_entries: int = 100_000,
    ) -> None:
        if min_interval_s < 0 or backoff < 0 or max_backoff < backoff or max_entries < 1:
            raise ValueError("RecipientPacer needs 0 <= backoff <= max_backoff, max_entries >= 1")
        self.min_interval_s = min_interval_s
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_entries = max_entries
        self._paces: OrderedDict[str, _Pace] = OrderedDict()

    def __len__(self) -> int:
        return len(self._paces)

    def wait_time(self, recipient: str, now: float) -> float:
        """Seconds until `recipient` may get a message (0.0: now). Changes nothing."""
        pace = self._paces.get(recipient)
        return max(0.0, pace.next_allowed - now) if pace is not None else 0.0

    def try_take(self, recipient: str, now: float) -> float:
        """0.0 when a send to `recipient` is allowed now (and is counted); otherwise
        the seconds to wait."""
        wait = self.wait_time(recipient, now)
        if wait > 0:
            return wait
        pace = self._paces.get(recipient)
        if pace is None:
            pace = self._paces[recipient] = _Pace(next_allowed=now)
        pace.next_allowed = now + self.min_interval_s
        self._paces.move_to_end(recipient)
        self._prune(now)
        return 0.0

    def penalize(self, recipient: str, now: float, delay: float | None = None) -> float:
        """A 131056 for `recipient`: hold it back (and nobody else). Returns the pause:
        at least `delay` (e.g. a Retry-After), else the doubling backoff."""
        pace = self._paces.get(recipient)
        if pace is None:
            pace = self._paces[recipient] = _Pace(next_allowed=now)
        elif pace.next_allowed + self.max_backoff <= now:
            pace.strikes = 0  # the last penalty is long past: start the doubling over
        pace.strikes += 1
        doubling = min(self.max_backoff, self.backoff * 2.0 ** min(pace.strikes - 1, 60))
        pause = max(delay or 0.0, doubling)
        pace.next_allowed = max(pace.next_allowed, now + pause)
        self._paces.move_to_end(recipient)
        self._prune(now)
        return pause

    def record_success(self, recipient: str) -> None:
        """A send went through: the next 131056 starts the doubling from `backoff`."""
        pace = self._paces.get(recipient)
        if pace is not None:
            pace.strikes = 0

    def _prune(self, now: float) -> None:
        # Front = least recently touched. Amortised O(1): each entry leaves once.
        while self._paces:
            recipient, pace = next(iter(self._paces.items()))
            idle = pace.next_allowed + self.max_backoff <= now
            if not idle and len(self._paces) <= self.max_entries:
                break
            del self._paces[recipient]
