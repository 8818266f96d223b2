"""Pure: how many wrong tokens a client may try at the dashboard's login form.

A client (the connecting address) that gets the token wrong `max_failures` times
within `window_s` is refused for `lock_s`, whatever it sends then, the right token
included: guessing ADMIN_TOKEN through the form costs hours per handful of tries, not
the 0.5 s delay per try (which parallel requests do not even pay in series). A login
with the right token before the lock clears the client's record.

Behind a reverse proxy every client has the proxy's address: the lock then holds the
form for everybody, which is the safe side (the bearer token still works).

Memory is bounded: one entry per client with recent failures, dropped `window_s`
after its last failure or once its lock is over, as the clock passes (no need for the
client to come back), and past `max_clients` the least recently failed goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_FAILURES = 5
WINDOW_S = 300.0
LOCK_S = 900.0
MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        lock_s: float = LOCK_S,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lock_s <= 0 or max_clients < 1:
            raise ValueError("LoginThrottle needs positive limits")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lock_s = lock_s
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def locked_for(self, client: str, now: float) -> float:
        """Seconds `client` must still wait before trying (0.0: it may try now)."""
        self._prune(now)
        record = self._clients.get(client)
        return max(0.0, record.locked_until - now) if record is not None else 0.0

    def failed(self, client: str, now: float) -> float:
        """A wrong token from `client`; the lock it earned (0.0: none yet)."""
        record = self._clients.pop(client, None) or _Record()
        record.failures = [t for t in record.failures if t > now - self.window_s]
        record.failures.append(now)
        record.last = now
        if len(record.failures) >= self.max_failures:
            record.locked_until = now + self.lock_s
            record.failures.clear()
        self._clients[client] = record  # most recent failure last
        self._prune(now)
        return max(0.0, record.locked_until - now)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _prune(self, now: float) -> None:
        # Front = least recently failed. Amortised O(1): each entry leaves once.
        while self._clients:
            client, record = next(iter(self._clients.items()))
            idle = record.last <= now - self.window_s and record.locked_until <= now
            if not idle and len(self._clients) <= self.max_clients:
                break
            del self._clients[client]
