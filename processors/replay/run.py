"""One replay run: resolve the slice, read it, re-decide it, publish the decisions.

Publishes to `replay.decisions.v1` (one `ReplayDecided` per turn, keyed by user) and,
once every decision is acknowledged, to `replay.runs.v1` (one `ReplayRunFinished`):
a run row in `replay_runs` means all its decisions are in Kafka. Nothing else is
published: no outbound message, handoff, re-engagement or notification exists for a
replay, and no live table or session is read or written (the live `turns` are read
from DuckDB, read-only, to compare with).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from processors import debounce
from processors.engine import load_engine
from processors.replay.decide import (
    Replayer,
    RunInfo,
    engine_fingerprint,
    engine_version,
    run_id_for,
)
from processors.replay.diff import Diff, Original
from processors.replay.kafka_log import KafkaLog
from processors.replay.selection import (
    EmptySelection,
    OffsetRange,
    Selection,
    resolve,
    total,
)
from processors.ticker import TICK_PREFIX
from schemas.codec import decode, encode
from schemas.control import is_control
from schemas.events import MessageReceived
from schemas.replay import ReplayRunFinished
from schemas.topics import Topics, TopicSpec
from zapstream.errors import InvalidPayload
from zapstream.settings import Settings

log = logging.getLogger("zapstream.replay")

ORIGINALS_MARGIN = timedelta(minutes=10)
"""Live decisions are looked up from this long before the slice's first record."""
SEND_WINDOW = 10_000
"""Decisions in flight to the broker before the replay waits for their acknowledgements."""


@dataclass
class Report:
    run_id: str
    engine: str
    engine_version: str
    topic: str
    ranges: list[OffsetRange]
    dry_run: bool
    records: int = 0
    messages: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Records not decided: ticks, control records, other users, undecodable."""
    users: int = 0
    turns: int = 0
    duplicates: int = 0
    published: int = 0
    originals: int | None = None
    """Live decisions found to compare with (None: DuckDB not read)."""
    elapsed_s: float = 0.0
    diff: Diff | None = None

    @property
    def rate(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "topic": self.topic,
            "dry_run": self.dry_run,
            "ranges": [str(r) for r in self.ranges],
            "records": self.records,
            "messages": self.messages,
            "skipped": dict(self.skipped),
            "users": self.users,
            "turns": self.turns,
            "duplicates": self.duplicates,
            "published": self.published,
            "originals": self.originals,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.rate, 1),
            "diff": self.diff.to_dict() if self.diff is not None else None,
        }

    def render(self) -> str:
        lines = [
            f"run {self.run_id}  engine {self.engine} ({self.engine_version})  topic {self.topic}",
            f"ranges {' '.join(str(r) for r in self.ranges)}",
            f"records {self.records} in {self.elapsed_s:.2f} s ({self.rate:,.0f}/s): "
            f"{self.messages} messages of {self.users} users"
            + (f", skipped {dict(self.skipped)}" if self.skipped else ""),
        ]
        if self.dry_run:
            lines.append("dry run: nothing decided, nothing published")
        else:
            lines.append(
                f"turns {self.turns} decided, {self.published} published to replay_decisions"
                + (f", {self.duplicates} duplicate messages dropped" if self.duplicates else "")
            )
        if self.diff is not None:
            lines.append(self.diff.render())
        return "\n".join(lines)


def load_originals(settings: Settings, since: datetime) -> dict[str, Original]:
    """The live decisions (DuckDB `turns`) from `since` on, by turn id; read-only."""
    from zapstream.db_query import query

    stamp = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    _, rows = query(
        settings,
        f"SELECT turn_id, intent, actions FROM turns WHERE decided_at >= TIMESTAMPTZ '{stamp}+00'",
    )
    out: dict[str, Original] = {}
    for turn_id, intent, actions in rows:
        parsed = orjson.loads(actions) if isinstance(actions, str | bytes) else actions
        out[str(turn_id)] = Original(str(intent), list(parsed or []))
    return out


async def _slice_start(log_: KafkaLog, ranges: list[OffsetRange]) -> datetime | None:
    stamps = [await log_.timestamp_at(r.partition, r.start) for r in ranges]
    found = [ts for _, ts in (s for s in stamps if s is not None)]
    return datetime.fromtimestamp(min(found) / 1000, UTC) if found else None


async def replay(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    with_diff: bool = False,
    samples: int = 5,
    progress: bool = False,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Report:
    """Run one replay; raises `SelectionError`s (and BrokerUnavailable) for the CLI."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    options = settings.model_dump()
    fingerprint = engine_fingerprint(options)
    version = engine_version(fingerprint)
    topics = Topics.from_settings(settings)
    async with KafkaLog(settings, selection.topic) as source:
        ranges = await resolve(selection, source)
        if not ranges:
            raise EmptySelection(f"no records of {selection.topic} match {_describe(selection)}")
        run_id = run_id_for(selection.topic, ranges, selection.users, fingerprint)
        report = Report(run_id, settings.engine, version, selection.topic, ranges, dry_run)
        originals: dict[str, Original] = {}
        if not dry_run:
            since = selection.since or await _slice_start(source, ranges)
            if since is not None:
                try:
                    originals = load_originals(settings, since - ORIGINALS_MARGIN)
                    report.originals = len(originals)
                except Exception as exc:  # compare with nothing rather than not replay
                    warn(f"live decisions not read ({exc}): original_intent stays empty")
        if with_diff and not dry_run:
            report.diff = Diff(originals, max_samples=samples)
        engine = load_engine(settings.engine, **options)
        cfg = debounce.DebounceConfig(
            settings.debounce_quiet_ms, settings.debounce_max_ms, settings.debounce_max_messages
        )
        replayer = Replayer(
            engine,
            cfg,
            RunInfo(run_id, settings.engine, version),
            {k: v.intent for k, v in originals.items()},
            dedupe_horizon_s=settings.dedupe_horizon_s,
            session_ttl_s=settings.session_ttl_s,
        )
        publisher = None if dry_run else await _Publisher.start(settings, topics)
        try:
            await _run(source, ranges, selection, replayer, publisher, report, progress, dry_run)
            if replayer.messages == 0 and report.messages == 0:
                raise EmptySelection(
                    f"the slice holds {report.records} records but no message"
                    + (f" of users {', '.join(selection.users)}" if selection.users else "")
                )
            report.elapsed_s = time.perf_counter() - started
            if publisher is not None:
                await publisher.drain()
                run = ReplayRunFinished(
                    run_id=run_id,
                    started_at=started_at,
                    finished_at=datetime.now(UTC),
                    engine=settings.engine,
                    engine_version=version,
                    topic=selection.topic,
                    selection={**selection.request(), "ranges": [str(r) for r in ranges]},
                    events=report.messages,
                    turns=report.turns,
                    changed=report.diff.changed if report.diff is not None else None,
                )
                await publisher.send(topics.replay_runs, run_id, encode(run))
                await publisher.drain()
        finally:
            if publisher is not None:
                await publisher.stop()
    await engine.aclose()
    report.turns = replayer.turns
    report.duplicates = replayer.duplicates
    return report


async def _run(
    source: KafkaLog,
    ranges: list[OffsetRange],
    selection: Selection,
    replayer: Replayer,
    publisher: _Publisher | None,
    report: Report,
    progress: bool,
    dry_run: bool,
) -> None:
    users = {u.encode() for u in selection.users}
    seen_users: set[bytes] = set()
    topic = Topics.from_settings(publisher.settings).replay_decisions if publisher else ""
    bar = _progress_bar(total(ranges), enabled=progress)
    skipped = report.skipped
    try:
        async for batch in source.read(ranges):
            report.records += len(batch)
            bar.advance(len(batch))
            for rec in batch:
                value = rec.value
                if not value or value.startswith(TICK_PREFIX):
                    skipped["ticks" if value else "empty"] += 1
                    continue
                if is_control(value):
                    skipped["control"] += 1
                    continue
                key = rec.key or b""
                if users and key not in users:
                    skipped["other_users"] += 1
                    continue
                try:
                    msg = decode(MessageReceived, value)
                except InvalidPayload:
                    skipped["undecodable"] += 1
                    continue
                report.messages += 1
                seen_users.add(key)
                if dry_run:
                    continue
                for r in await replayer.message(rec.partition, rec.offset, msg):
                    if report.diff is not None:
                        report.diff.add(r.turn_id, r.user_id, r.intent, r.actions)
                    assert publisher is not None
                    await publisher.send(topic, r.user_id, r.record)
                    report.published += 1
        if not dry_run:
            for r in await replayer.finish():
                if report.diff is not None:
                    report.diff.add(r.turn_id, r.user_id, r.intent, r.actions)
                assert publisher is not None
                await publisher.send(topic, r.user_id, r.record)
                report.published += 1
    finally:
        bar.close()
    report.users = len(seen_users)
    report.turns = replayer.turns


class _Bar:
    """A rich progress bar with events/s and ETA on stderr (or nothing)."""

    def __init__(self, total_: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = (
            Progress(
                "replay",
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                "eta",
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                refresh_per_second=4,
            )
            if enabled
            else None
        )
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("replay", total=total_)

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _progress_bar(total_: int, *, enabled: bool) -> _Bar:
    return _Bar(total_, enabled)


def _rate_text(speed: float | None) -> str:
    return f"{speed:,.0f} events/s" if speed else "- events/s"


try:
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(_rate_text(task.speed))

except ImportError:  # pragma: no cover - rich comes with typer
    pass


class _Publisher:
    """An aiokafka producer for the replay's own topics, acknowledgements awaited in
    windows (SEND_WINDOW) instead of one round trip per record."""

    def __init__(self, settings: Settings, producer: Any) -> None:
        self.settings = settings
        self.producer = producer
        self.pending: list[asyncio.Future[Any]] = []

    @classmethod
    async def start(cls, settings: Settings, topics: Topics) -> _Publisher:
        from aiokafka import AIOKafkaProducer

        from zapstream.kafka_admin import ensure_topics
        from zapstream.kafka_clients import producer_kwargs

        bootstrap = settings.require_bootstrap()
        n = settings.topic_partitions
        await ensure_topics(
            bootstrap,
            [TopicSpec(topics.replay_decisions, n), TopicSpec(topics.replay_runs, 1)],
            settings.topic_replication_factor,
        )
        kwargs = producer_kwargs(settings, idempotent=False)
        kwargs.update(
            client_id=f"{settings.kafka_client_id}-replay",
            linger_ms=5,
            max_batch_size=512 * 1024,
            compression_type=None,
        )
        producer = AIOKafkaProducer(**kwargs)
        await producer.start()
        return cls(settings, producer)

    async def send(self, topic: str, key: str, value: bytes) -> None:
        self.pending.append(await self.producer.send(topic, value=value, key=key.encode()))
        if len(self.pending) >= SEND_WINDOW:
            await self.drain()

    async def drain(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        await self.producer.stop()


def _describe(selection: Selection) -> str:
    asked = {k: v for k, v in selection.request().items() if v}
    return ", ".join(f"{k}={v}" for k, v in asked.items()) or "the whole topic"
