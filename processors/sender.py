"""Delivers one OutboundMessage through the Graph API: rate limits, retries, dead letters.

- A token bucket per business phone number (SEND_RATE_PER_S) keeps us under Meta's
  throughput limit; high-priority sends take tokens first, low-priority ones wait
  while any high one is waiting and are capped in number (LOW_PRIORITY_CONCURRENCY).
- Errors are classified by Graph error code (`retry_policy.classify`, in the client):
  throttling and transient errors are retried with exponential backoff and jitter,
  honouring Retry-After; 130429 pauses the whole bucket; 131056 (pair rate) pauses
  that recipient only; permanent errors are dead-lettered at once, never retried.
The caller (the sender agent) keeps the idempotency record: this module only sends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from processors import metrics
from processors.graph_client import GraphClient
from processors.rate_limit import RecipientPacer, TokenBucket
from processors.retry_policy import RetryPolicy
from schemas.outbound import DeadLetter, OutboundMessage, SendResult
from zapstream.errors import GraphError, GraphRateLimited, ReplayRefused
from zapstream.settings import Settings


@dataclass(frozen=True)
class Delivery:
    result: SendResult
    dead_letter: DeadLetter | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def share_of_partitions(owned: int, total: int) -> float:
    """The part of a group-wide limit a worker owning `owned` of `total` partitions
    takes (never 0: a worker between assignments keeps a trickle, not a crash)."""
    return max(owned, 1) / max(total, 1) if owned < total else 1.0


class Sender:
    def __init__(
        self,
        client: GraphClient,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.policy = RetryPolicy(
            max_attempts=settings.send_max_attempts,
            base=settings.send_backoff_base_s,
            cap=max(settings.send_backoff_cap_s, settings.send_backoff_base_s),
            max_elapsed=settings.send_max_elapsed_s,
            pair_rate_delay=settings.pair_rate_backoff_s,
        )
        self.buckets: dict[str, TokenBucket] = {}
        self.rate = settings.send_rate_per_s
        self.burst = settings.send_burst
        self.share = 1.0
        """This worker's part of the group-wide limit (`set_share`)."""
        self.pacer = RecipientPacer(
            settings.recipient_min_interval_s,
            settings.pair_rate_backoff_s,
            max_backoff=max(300.0, settings.pair_rate_backoff_s),
        )
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.clock = clock
        self.wall = wall
        self._high_waiting = 0
        # never more calls than connections: requests queued inside the pool cost CPU
        self._in_flight = asyncio.Semaphore(settings.graph_max_connections)
        self._low = asyncio.Semaphore(settings.low_priority_concurrency)

    def _scaled(self) -> tuple[float, float]:
        return self.rate * self.share, max(1.0, self.burst * self.share)

    def set_share(self, share: float) -> None:
        """Take `share` (0 < share <= 1) of SEND_RATE_PER_S and SEND_BURST.

        SEND_RATE_PER_S is Meta's limit for the business number, for the whole consumer
        group: a worker that owns k of the n outbound partitions sends at most k/n of
        it (`share_of_partitions`), so N workers together never exceed it, whatever N.
        """
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], not {share}")
        self.share = share
        rate, burst = self._scaled()
        for bucket in self.buckets.values():
            bucket.rescale(rate, burst)

    def _bucket(self, phone_number_id: str) -> TokenBucket:
        bucket = self.buckets.get(phone_number_id)
        if bucket is None:
            bucket = self.buckets[phone_number_id] = TokenBucket(*self._scaled())
        return bucket

    async def _admit(self, msg: OutboundMessage) -> None:
        """Wait for this recipient's pace and a token of the business number."""
        high = msg.priority == "high"
        if high:
            self._high_waiting += 1
        try:
            while True:
                now = self.clock()
                wait = self.pacer.wait_time(msg.to, now)
                if wait <= 0 and (high or self._high_waiting == 0):
                    wait = self._bucket(msg.phone_number_id).try_take(now)
                    if wait <= 0:
                        self.pacer.try_take(msg.to, now)
                        return
                await asyncio.sleep(wait if wait > 0 else 0.005)
        finally:
            if high:
                self._high_waiting -= 1

    async def deliver(self, msg: OutboundMessage) -> Delivery:
        started = time.perf_counter()
        if msg.replay is not None:
            delivery = self._refused(msg, ReplayRefused(msg.outbound_id, msg.replay))
        elif msg.priority == "low":
            async with self._low:
                delivery = await self._deliver(msg)
        else:
            delivery = await self._deliver(msg)
        metrics.delivery_seconds.observe(time.perf_counter() - started)
        metrics.sends.inc(delivery.result.outcome)
        return delivery

    async def _deliver(self, msg: OutboundMessage) -> Delivery:
        started = self.clock()
        attempts = 0
        if msg.is_stale(self.wall()):
            return self._dead(msg, attempts, "stale: past not_after", None, retryable=False)
        while True:
            await self._admit(msg)
            attempts += 1
            try:
                async with self._in_flight:
                    call_started = time.perf_counter()
                    try:
                        outcome = await self.client.send(msg)
                    except GraphError:
                        metrics.send_latency_error.observe(time.perf_counter() - call_started)
                        raise
            except GraphError as err:
                self._penalize(msg, err)
                delay = self.policy.next_delay(
                    err, attempts=attempts, elapsed=self.clock() - started, rng=self.rng
                )
                if delay is None:
                    return self._dead(msg, attempts, str(err), err, retryable=err.retryable)
                metrics.send_retries.inc(metrics.error_code(err))
                await asyncio.sleep(delay)
                continue
            metrics.send_latency_ok.observe(outcome.latency_ms / 1000)
            self.pacer.record_success(msg.to)
            return Delivery(
                SendResult(
                    outbound_id=msg.outbound_id,
                    user_id=msg.user_id,
                    turn_id=msg.turn_id,
                    wamid=outcome.wamid,
                    outcome="sent",
                    attempts=attempts,
                    status_code=outcome.status_code,
                    latency_ms=round(outcome.latency_ms, 2),
                    sent_at=self.wall(),
                )
            )

    def _refused(self, msg: OutboundMessage, err: ReplayRefused) -> Delivery:
        """Never sent, not retried, not dead-lettered: recorded as `refused`."""
        return Delivery(
            SendResult(
                outbound_id=msg.outbound_id,
                user_id=msg.user_id,
                turn_id=msg.turn_id,
                outcome="refused",
                attempts=0,
                error_reason=str(err)[:500],
                sent_at=self.wall(),
            )
        )

    def _penalize(self, msg: OutboundMessage, err: GraphError) -> None:
        if not isinstance(err, GraphRateLimited):
            return
        now = self.clock()
        if err.per_recipient:
            self.pacer.penalize(msg.to, now, err.retry_after)
        elif err.retry_after:
            self._bucket(msg.phone_number_id).pause(now, err.retry_after)

    def _dead(
        self,
        msg: OutboundMessage,
        attempts: int,
        reason: str,
        err: GraphError | None,
        *,
        retryable: bool,
    ) -> Delivery:
        at = self.wall()
        # without a Graph error the message went stale before its first attempt
        metrics.send_dead_letters.inc(metrics.error_code(err, fallback="stale"))
        code = err.code if err else None
        status = err.status_code if err else None
        tried = msg.model_copy(update={"attempt": attempts})
        return Delivery(
            SendResult(
                outbound_id=msg.outbound_id,
                user_id=msg.user_id,
                turn_id=msg.turn_id,
                outcome="dead_lettered",
                attempts=attempts,
                status_code=status,
                error_code=code,
                error_reason=reason[:500],
                sent_at=at,
            ),
            DeadLetter.of(
                tried,
                reason=reason[:500],
                failed_at=at,
                retryable=retryable,
                error_code=code,
                status_code=status,
            ),
        )
