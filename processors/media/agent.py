"""The worker's media agents: every inbound media message → its bytes under MEDIA_DIR
and one report on `{prefix}.media.v1` (→ the sink's `media` table).

    inbound ──media-pick──▶ media.requested ──media (Graph, MEDIA_DIR)──▶ media.v1

`media-pick` reads the inbound topic beside `converse` and only forwards the records
of media messages (as they are) to `{prefix}.media.requested.v1`: no I/O but one
produce, so it never holds the inbound partitions. The downloads happen in `media`,
over that topic: when Graph is slow or down, only that topic's partitions back up
(Faust pauses a partition whose agent's buffer is full, and the inbound topic would
pause `converse` with it), so a media backlog never delays a reply. Both run in
per-user lanes (`processors.lanes`): one user's media in order, users concurrently,
failures dead-lettered; ticks, control records and messages without media are passed
over without decoding.

Once per media id in effect: bytes are stored under their sha256, which the webhook
already gives, so a redelivered or replayed message whose file exists is reported
again (the sink keeps one row per media id) with no Graph call at all. Where the
webhook gave no sha256, the lookup's sha256 is checked the same way before any
download. Outcomes:
- stored: downloaded (or found), sha256 verified;
- refused: over MEDIA_MAX_BYTES (Graph's `file_size`, the download's Content-Length, or
  the bytes counted so far), never retried, no file;
- failed: Graph's 4xx, or 5xx/429/timeouts/bad transfers still failing after
  MEDIA_FETCH_MAX_ATTEMPTS / MEDIA_FETCH_MAX_ELAPSED_S (backoff with jitter, Retry-After
  honoured: `retry_policy.RetryPolicy`); the record also goes to the processing dead
  letters with the reason (`MediaFetchFailed`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram

from processors import metrics
from processors.media.fetch import MediaClient, fetch_once
from processors.media.jobs import MediaJob, media_event, media_job, valid_media_id
from processors.media.store import MediaStore
from processors.retry_policy import RetryPolicy
from processors.ticker import tick_time
from schemas.codec import decode, encode
from schemas.control import is_control
from schemas.events import MessageReceived
from schemas.media import MediaFetched
from zapstream.errors import (
    GraphError,
    GraphTransientError,
    InvalidPayload,
    MediaFetchFailed,
    MediaIntegrityError,
    MediaTooLarge,
)
from zapstream.log import mask_phone
from zapstream.metrics import LATENCY_BUCKETS, PerLabel
from zapstream.settings import Settings

if TYPE_CHECKING:
    from processors.agents import Worker

log = logging.getLogger("zapstream.media")

LaneAgent = Callable[[Any, Any, str, Callable[[Any], Awaitable[None]], int], None]
"""`processors.agents.lane_agent`, passed in (agents.py imports this module)."""

NO_MEDIA = b'"media":null'


def without_media(value: bytes) -> bool:
    """True for a MessageReceived that our encoder wrote without media: most of the
    traffic is text, and such records are passed over without decoding. The encoder
    writes fields in their declared order, and only `text` (a string, whose quotes are
    escaped) comes before `media`: the first `"media":` is the field itself, not a key
    deep inside `raw` or `referral`."""
    at = value.find(b'"media":')
    return at >= 0 and value.startswith(NO_MEDIA, at)


media_reports = PerLabel(
    Counter(
        "zapstream_media_total",
        "Inbound media ids reported, by status (stored, refused, failed)",
        ("status",),
        registry=metrics.REGISTRY,
    )
)
media_fetch_seconds = Histogram(
    "zapstream_media_fetch_seconds",
    "One media id from its turn to its report: lookups, download, retries",
    buckets=LATENCY_BUCKETS,
    registry=metrics.REGISTRY,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def retry_policy(settings: Settings) -> RetryPolicy:
    base = settings.media_fetch_backoff_base_s
    return RetryPolicy(
        max_attempts=settings.media_fetch_max_attempts,
        base=base,
        cap=max(settings.media_fetch_backoff_cap_s, base),
        max_elapsed=settings.media_fetch_max_elapsed_s,
        pair_rate_delay=0.0,
    )


class MediaFetcher:
    """Resolves one media job to its report, with retries. I/O only at its edges
    (`MediaClient`, `MediaStore`); created in the worker's event loop."""

    def __init__(
        self,
        settings: Settings,
        client: MediaClient,
        store: MediaStore,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.limit = settings.media_max_bytes
        self.client = client
        self.store = store
        self.policy = retry_policy(settings)
        self.rng = rng or random.Random()  # noqa: S311 - backoff jitter
        self.sleep = sleep
        self.slots = asyncio.Semaphore(settings.media_concurrency)

    async def resolve(self, job: MediaJob) -> tuple[MediaFetched, bool]:
        """The report of `job`, and for a `failed` one whether its cause was transient
        (retries spent: replaying it later may succeed)."""
        if job.sha256 is not None and (found := self.store.find(job.sha256)) is not None:
            stored = media_event(
                job, "stored", at=found.stored_at, size_bytes=found.size, sha256=found.sha256
            )
            return stored, False
        if not valid_media_id(job.media_id):
            return media_event(job, "failed", at=utcnow(), reason="not a Graph media id"), False
        started, attempts = time.monotonic(), 0
        while True:
            attempts += 1
            try:
                async with self.slots:
                    fetched = await fetch_once(job, self.client, self.store, self.limit)
            except MediaTooLarge as exc:
                refused = media_event(
                    job,
                    "refused",
                    at=utcnow(),
                    size_bytes=exc.size,
                    reason=str(exc),
                    attempts=attempts,
                )
                return refused, False
            except (GraphError, MediaIntegrityError) as exc:
                error = exc if isinstance(exc, GraphError) else GraphTransientError(str(exc))
                elapsed = time.monotonic() - started
                delay = self.policy.next_delay(
                    error, attempts=attempts, elapsed=elapsed, rng=self.rng
                )
                if delay is None:
                    failed = media_event(
                        job, "failed", at=utcnow(), reason=str(exc), attempts=attempts
                    )
                    return failed, exc.retryable
                log.warning(
                    "media fetch attempt %d failed (%s); retrying in %.2fs",
                    attempts,
                    str(exc)[:200],
                    delay,
                    extra={"media_id": job.media_id},
                )
                await self.sleep(delay)
                continue
            stored_file = fetched.stored
            report = media_event(
                job,
                "stored",
                at=stored_file.stored_at,
                mime_type=fetched.mime_type,
                size_bytes=stored_file.size,
                sha256=stored_file.sha256,
                attempts=attempts,
            )
            return report, False


def media_request(value: bytes | None) -> MediaJob | None:
    """The media job an inbound record asks for: None for ticks, control records,
    messages without media and records that do not decode (converse dead-letters
    those, once)."""
    if not value or without_media(value) or tick_time(value) is not None or is_control(value):
        return None
    try:
        return media_job(decode(MessageReceived, value))
    except InvalidPayload:
        return None


def register_media(worker: Worker, lane_agent: LaneAgent) -> None:
    """The `media-pick` and `media` agents (nothing when MEDIA_ENABLED is false)."""
    settings: Settings = worker.settings
    if not settings.media_enabled:
        return
    app = worker.app

    def raw(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    requests, reports = raw(worker.topics.media_requested), raw(worker.topics.media)
    store = MediaStore(settings.resolved_media_dir)
    fetcher: list[MediaFetcher] = []

    def get_fetcher() -> MediaFetcher:
        if not fetcher:  # created inside the worker's event loop
            removed = store.prune_parts(time.time())
            if removed:
                log.info("removed %d unfinished media downloads left by a crash", removed)
            fetcher.append(MediaFetcher(settings, MediaClient(settings), store))
        return fetcher[0]

    async def pick(event: Any) -> None:
        if media_request(event.value) is not None:
            await (await requests.send(key=event.key, value=event.value))
            metrics.published_to(requests)

    async def fetch(event: Any) -> None:
        job = media_job(decode(MessageReceived, event.value))  # InvalidPayload: dead letter
        if job is None:
            return
        started = time.perf_counter()
        report, transient = await get_fetcher().resolve(job)
        await (await reports.send(key=job.user_id.encode(), value=encode(report)))
        metrics.published_to(reports)
        media_fetch_seconds.observe(time.perf_counter() - started)
        media_reports.inc(report.status)
        level = logging.INFO if report.status == "stored" else logging.WARNING
        log.log(
            level,
            "media %s",
            report.status,
            extra={
                "media_id": job.media_id,
                "message_id": job.message_id,
                "wa_id": mask_phone(job.user_id),
                "size_bytes": report.size_bytes,
                "attempts": report.attempts,
                "reason": report.reason,
            },
        )
        if report.status == "failed":
            raise MediaFetchFailed(
                job.media_id,
                report.reason or "failed",
                attempts=report.attempts,
                cause_retryable=transient,
            )

    retention = settings.media_retention_s
    if retention is not None:

        @app.timer(settings.media_prune_interval_s)  # type: ignore[untyped-decorator]
        async def prune_media() -> None:
            files, size = await asyncio.to_thread(store.prune_older_than, time.time(), retention)
            if files:
                log.info("deleted %d media files (%d bytes) past MEDIA_RETENTION_S", files, size)

    lane_agent(worker, raw(worker.topics.inbound), "media-pick", pick, settings.max_in_flight)
    lane_agent(worker, requests, "media", fetch, settings.media_max_in_flight)
