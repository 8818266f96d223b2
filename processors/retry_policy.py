"""Pure retry decisions for Graph API sends: classify an answer, pick the next delay.

Meta asks clients to branch on the Graph error `code`, not on the HTTP status
(see "Error codes", developers.facebook.com/documentation/business-messaging/
whatsapp/support/error-codes): the same 400 carries a throttle (130429), a
per-recipient pair-rate limit (131056) or a permanent refusal (131026), and some
permanent errors arrive as HTTP 500 (code 3, 131045). So `classify` looks at the code
first and falls back to the status only for codes it does not know.

Nothing here reads a clock, the environment or global randomness: `now` and `rng`
are passed in.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx

from zapstream.errors import (
    GraphError,
    GraphPermanentError,
    GraphRateLimited,
    GraphTransientError,
)
from zapstream.log import mask_text

# Throttling: the same request succeeds later. 4 app call limit, 80007 WABA limit,
# 130429 Cloud API throughput (80 msg/s per number by default), 131048 spam rate
# limit (quality-based; long backoff), 133016 (de)registration attempts.
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 133016})
# (business, consumer) pair limit: about one message every 6 s to one recipient.
# Only that recipient must slow down, never the whole sender.
PAIR_RATE_CODE = 131056
# Meta's side is down or overloaded: 1 API Unknown, 2 API Service, 131000 something
# went wrong, 131016 service unavailable, 131057 account in maintenance mode,
# 133004 server temporarily unavailable.
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})
# Retrying cannot help: token/permissions (0, 3, 10, 190, 200-299), policy (368,
# 130497, 131031 account locked), bad request (33, 100, 131008, 131009, 131021,
# 131051 unsupported type), the recipient (131026 undeliverable, 131047 outside the
# 24 h window, 131049 Meta chose not to deliver, 131050 user stopped marketing,
# 131062 BSUID not supported for this message), payment (131042), media (131052,
# 131053), registration (131037, 131045), experiments (130472), templates
# (132000-132069), 135000 generic user error, 470 (On-Premises: window expired).
PERMANENT_CODES = frozenset(
    {0, 3, 10, 33, 100, 190, 368, 470, 130472, 130497}
    | {131005, 131008, 131009, 131021, 131026, 131031, 131037, 131042, 131045}
    | {131047, 131049, 131050, 131051, 131052, 131053, 131062, 135000}
    | set(range(200, 300))
    | set(range(132000, 132070))
)
RETRYABLE_STATUSES = frozenset({408, 425, 429})
_MAX_REASON = 300


def parse_retry_after(value: str | None, *, now: float | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds, or an HTTP date (needs `now`,
    epoch seconds; without it a date is ignored rather than a clock read)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if now is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def regain_access_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `X-Business-Use-Case-Usage` (`estimated_time_to_regain_access`,
    in minutes), which Graph sends with throttling errors instead of Retry-After."""
    raw = _header(headers, "x-business-use-case-usage")
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        float(item["estimated_time_to_regain_access"])
        for items in (doc.values() if isinstance(doc, dict) else [])
        if isinstance(items, list)
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("estimated_time_to_regain_access"), int | float)
    ]
    longest = max(minutes, default=0.0)
    return longest * 60.0 if longest > 0 else None


def classify(
    status_code: int | None,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    exc: BaseException | None,
    *,
    outbound_id: str | None = None,
    now: float | None = None,
) -> GraphError:
    """The typed error for a failed Graph call: an error answer (`status_code`,
    parsed JSON `body`, `headers`) or no answer at all (`exc`)."""
    if exc is not None and status_code is None:
        return _classify_exception(exc, outbound_id)
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    reason = _reason(code, error, status_code)
    ctx: dict[str, Any] = {
        "status_code": status_code,
        "code": code,
        "subcode": subcode,
        "outbound_id": outbound_id,
    }
    retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)

    if code == PAIR_RATE_CODE:
        return GraphRateLimited(reason, retry_after=retry_after, per_recipient=True, **ctx)
    if code in RATE_LIMIT_CODES:
        retry_after = retry_after if retry_after is not None else regain_access_after(headers)
        return GraphRateLimited(reason, retry_after=retry_after, **ctx)
    if code in TRANSIENT_CODES:
        return _transient(reason, retry_after, ctx)
    if code in PERMANENT_CODES:
        return GraphPermanentError(reason, **ctx)
    # An unknown code (or none): the HTTP status decides.
    if status_code == 429:
        return GraphRateLimited(reason, retry_after=retry_after, **ctx)
    if status_code is None or status_code >= 500 or status_code in RETRYABLE_STATUSES:
        return _transient(reason, retry_after, ctx)
    return GraphPermanentError(reason, **ctx)


def _transient(reason: str, retry_after: float | None, ctx: dict[str, Any]) -> GraphError:
    # A server that says when to come back (503 + Retry-After) is asking us to slow
    # down: GraphRateLimited is the error that carries the delay.
    if retry_after is not None:
        return GraphRateLimited(reason, retry_after=retry_after, **ctx)
    return GraphTransientError(reason, **ctx)


def transport_cause(exc: BaseException) -> BaseException:
    """The aiohttp error under an httpx one. httpx's aiohttp transport
    (`processors.http_clients`) re-raises aiohttp's errors as httpx ones, not always
    the closest (a refused connection becomes ConnectTimeout): name and judge by the
    real one."""
    cause = exc.__cause__
    return cause if isinstance(cause, aiohttp.ClientError) else exc


def _classify_exception(exc: BaseException, outbound_id: str | None) -> GraphError:
    name = type(transport_cause(exc)).__name__
    # The URL is ours and wrong: every retry would fail the same way.
    if isinstance(
        exc,
        httpx.UnsupportedProtocol
        | httpx.InvalidURL
        | aiohttp.InvalidURL
        | aiohttp.NonHttpUrlClientError,
    ):
        return GraphPermanentError(f"bad Graph API URL ({name})", outbound_id=outbound_id)
    # A timeout after the request was written may still have sent the message; the
    # Graph API has no idempotency key, so a retry can duplicate it (at-least-once).
    # aiohttp.ClientError: what the Graph client's aiohttp session raises (a refused
    # connection, a dropped or broken answer), and what httpx's aiohttp transport
    # raises for a broken answer it does not map to an httpx error. A timeout is an
    # OSError (TimeoutError).
    if isinstance(exc, httpx.TransportError | OSError | aiohttp.ClientError):
        return GraphTransientError(
            f"no answer from the Graph API ({name})", outbound_id=outbound_id
        )
    return GraphPermanentError(
        f"unexpected error calling the Graph API ({name})", outbound_id=outbound_id
    )


def _reason(code: int | None, error: Mapping[str, Any], status_code: int | None) -> str:
    message = error.get("message")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    parts = [f"Graph API error {code if code is not None else '-'} (HTTP {status_code})"]
    parts += [str(p) for p in (message, details) if p]
    # Meta's texts sometimes quote the recipient: mask before it reaches any log.
    return mask_text(": ".join(parts))[:_MAX_REASON]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(attempt-1))],
    where `attempt` counts the failed attempts so far (1 after the first failure).
    Never below `retry_after`, even above `cap`: the server's word wins."""
    exponent = min(max(attempt, 1) - 1, 60)  # 2**60 already dwarfs any cap
    ceiling = min(cap, base * (2.0**exponent))
    delay = rng.uniform(0.0, ceiling)
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again and when to dead-letter.

    `max_attempts` counts every attempt (the first one too); `max_elapsed` bounds the
    time since the first attempt, so a reply never arrives long after it mattered.
    """

    max_attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    max_elapsed: float = 300.0
    pair_rate_delay: float = 6.0
    """Floor for 131056: Meta allows about one message every 6 s to one recipient."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base <= 0 or self.cap < self.base:
            raise ValueError("RetryPolicy needs max_attempts >= 1 and 0 < base <= cap")
        if self.max_elapsed <= 0 or self.pair_rate_delay < 0:
            raise ValueError("RetryPolicy needs max_elapsed > 0 and pair_rate_delay >= 0")

    def next_delay(
        self,
        error: GraphError,
        *,
        attempts: int,
        elapsed: float,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before attempt `attempts + 1`, or None: give up now.

        `attempts` are the attempts made so far; `elapsed` the seconds since the first.
        """
        if not error.retryable or attempts >= self.max_attempts:
            return None
        retry_after = error.retry_after if isinstance(error, GraphRateLimited) else None
        if isinstance(error, GraphRateLimited) and error.per_recipient:
            retry_after = max(retry_after or 0.0, self.pair_rate_delay)
        delay = backoff_delay(
            attempts, base=self.base, cap=self.cap, rng=rng, retry_after=retry_after
        )
        if elapsed + delay > self.max_elapsed:
            return None
        return delay
