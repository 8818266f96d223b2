"""Posts handoff notifications to the helpdesk: httpx, retried with tenacity.

A 2xx answer is success. 408, 429, 5xx, timeouts and connection errors are retried
with exponential backoff and jitter (a `Retry-After` wins, capped), up to
HANDOFF_NOTIFY_MAX_ATTEMPTS posts; any other 4xx is refused for good at once. What
comes out is the number of posts made, or the typed error of the last one
(`HelpdeskUnavailable`, `HelpdeskRefused`) carrying `attempts`.
"""

from __future__ import annotations

import logging

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from processors.handoff.notify import classify, retry_after_s
from zapstream.errors import HelpdeskError, HelpdeskRefused, HelpdeskUnavailable
from zapstream.settings import Settings

log = logging.getLogger("zapstream.handoff")


class HelpdeskClient:
    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = settings.helpdesk_webhook_url or ""
        self.max_attempts = settings.handoff_notify_max_attempts
        self.base_s = settings.handoff_notify_backoff_base_s
        self.cap_s = max(settings.handoff_notify_backoff_cap_s, self.base_s)
        self._http = httpx.AsyncClient(
            timeout=settings.handoff_notify_timeout_s, transport=transport
        )
        self._backoff = wait_exponential_jitter(multiplier=self.base_s, max=self.cap_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post_once(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            resp = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HelpdeskUnavailable(f"no answer from the helpdesk: {type(exc).__name__}") from exc
        verdict = classify(resp.status_code)
        if verdict == "ok":
            return
        reason = f"helpdesk answered {resp.status_code}"
        if verdict == "retry":
            wait = retry_after_s(resp.headers.get("retry-after"), self.cap_s)
            raise HelpdeskUnavailable(reason, status_code=resp.status_code, retry_after=wait)
        raise HelpdeskRefused(reason, status_code=resp.status_code)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        return float(after) if after is not None else float(self._backoff(state))

    async def deliver(self, body: bytes, headers: dict[str, str], delivery: str) -> int:
        """Post until the helpdesk takes it; the number of posts made. Raises the last
        `HelpdeskError` (with `attempts` set) when it keeps failing or refuses."""
        attempts = 0

        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "helpdesk notification %s: attempt %d failed (%s); retrying in %.2fs",
                delivery,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(HelpdeskUnavailable),
                stop=stop_after_attempt(self.max_attempts),
                wait=self._wait,
                before_sleep=note,
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self.post_once(body, headers)
        except HelpdeskError as exc:
            exc.attempts = attempts
            raise
        return attempts
