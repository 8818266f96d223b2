"""One replay run: resolve the slice, read it, re-decide it, publish the decisions.

Publishes to `replay.decisions.v1` (one `ReplayDecided` per turn, keyed by user) and,
once every decision is acknowledged, to `replay.runs.v1` (one `ReplayRunFinished`):
a run row in `replay_runs` means all its decisions are in Kafka. Nothing else is
published: no outbound message, handoff, re-engagement or notification exists for a
replay, and no live table or session is read or written (the live `turns` are read
from DuckDB, read-only, to compare with).

`jobs > 1` splits the partitions between that many processes (a user's records all
sit on one partition, so the parts are independent), each reading, deciding and
publishing its own; the parent merges their counts and publishes the run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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
from processors.replay.progress import Bar
from processors.replay.publish import Publisher
from processors.replay.seeds import SeedLoader, duckdb_seeds
from processors.replay.selection import EmptySelection, OffsetRange, Selection, resolve, total
from processors.ticker import tick_time
from schemas.codec import decode, encode
from schemas.control import is_control
from schemas.events import MessageReceived
from schemas.replay import ReplayRunFinished
from schemas.topics import Topics
from zapstream.errors import InvalidPayload
from zapstream.settings import Settings

ORIGINALS_MARGIN = timedelta(minutes=10)
"""Live decisions are looked up from this long before the slice's first record."""


@dataclass
class Part:
    """What one job (all of the slice, or some of its partitions) read and decided."""

    records: int = 0
    messages: int = 0
    ticks: int = 0
    """Debounce ticks applied (the live worker's, in their place)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Records left out: control records, other users' records, undecodable ones."""
    users: set[bytes] = field(default_factory=set)
    turns: int = 0
    duplicates: int = 0
    published: int = 0
    seeded: int = 0
    """Users started from the session the live worker had before the slice."""
    seed_error: str | None = None
    """Why no session could be read (then every user started empty)."""
    cpu_s: float = 0.0
    """CPU seconds of the process(es) that did the work, start-up excluded."""
    diff: Diff | None = None

    def merge(self, other: Part) -> None:
        self.records += other.records
        self.messages += other.messages
        self.ticks += other.ticks
        self.skipped.update(other.skipped)
        self.users |= other.users
        self.turns += other.turns
        self.duplicates += other.duplicates
        self.published += other.published
        self.seeded += other.seeded
        self.seed_error = self.seed_error or other.seed_error
        self.cpu_s += other.cpu_s
        if self.diff is not None and other.diff is not None:
            self.diff.merge(other.diff)


@dataclass
class Report:
    run_id: str
    engine: str
    engine_version: str
    topic: str
    ranges: list[OffsetRange]
    dry_run: bool
    jobs: int = 1
    part: Part = field(default_factory=Part)
    originals: int | None = None
    """Live decisions found to compare with (None: DuckDB not read)."""
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.part.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        p = self.part
        return {
            "run_id": self.run_id,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "topic": self.topic,
            "dry_run": self.dry_run,
            "jobs": self.jobs,
            "ranges": [str(r) for r in self.ranges],
            "records": p.records,
            "messages": p.messages,
            "ticks": p.ticks,
            "skipped": dict(p.skipped),
            "users": len(p.users),
            "turns": p.turns,
            "duplicates": p.duplicates,
            "published": p.published,
            "seeded_users": p.seeded,
            "originals": self.originals,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.rate, 1),
            "cpu_s": round(p.cpu_s, 3),
            "diff": p.diff.to_dict() if p.diff is not None else None,
        }

    def render(self) -> str:
        p = self.part
        lines = [
            f"run {self.run_id}  engine {self.engine} ({self.engine_version})  topic {self.topic}",
            f"ranges {' '.join(str(r) for r in self.ranges)}",
            f"records {p.records} in {self.elapsed_s:.2f} s ({self.rate:,.0f}/s, {self.jobs} "
            f"job{'s' if self.jobs > 1 else ''}): {p.messages} messages of {len(p.users)} users, "
            f"{p.ticks} debounce ticks" + (f", skipped {dict(p.skipped)}" if p.skipped else ""),
        ]
        if self.dry_run:
            lines.append("dry run: nothing decided, nothing published")
        else:
            lines.append(
                f"turns {p.turns} decided, {p.published} published to replay_decisions"
                + (f", {p.duplicates} duplicate messages dropped" if p.duplicates else "")
            )
            lines.append(
                f"sessions: {p.seeded} of {len(p.users)} users started from their live session"
                + (f" (not read: {p.seed_error})" if p.seed_error else "")
            )
        if p.diff is not None:
            lines.append(p.diff.render())
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


async def replay(
    settings: Settings,
    selection: Selection,
    *,
    dry_run: bool = False,
    with_diff: bool = False,
    samples: int = 5,
    progress: bool = False,
    jobs: int = 1,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Report:
    """Run one replay; raises `SelectionError`s (and BrokerUnavailable) for the CLI."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    fingerprint = engine_fingerprint(settings.model_dump())
    version = engine_version(fingerprint)
    async with KafkaLog(settings, selection.topic) as source:
        ranges = await resolve(selection, source)
        if not ranges:
            raise EmptySelection(f"no records of {selection.topic} match {_describe(selection)}")
        run = RunInfo(
            run_id_for(selection.topic, ranges, selection.users, fingerprint),
            settings.engine,
            version,
        )
        report = Report(run.run_id, settings.engine, version, selection.topic, ranges, dry_run)
        originals: dict[str, Original] = {}
        if not dry_run:
            stamps = [await source.timestamp_at(r.partition, r.start) for r in ranges]
            first = min((ts for _, ts in filter(None, stamps)), default=None)
            since = selection.since or (
                datetime.fromtimestamp(first / 1000, UTC) if first is not None else None
            )
            if since is not None:
                try:
                    originals = load_originals(settings, since - ORIGINALS_MARGIN)
                    report.originals = len(originals)
                except Exception as exc:  # compare with nothing rather than not replay
                    warn(f"live decisions not read ({exc}): original_intent stays empty")
    job = Job(settings, selection, run, originals, with_diff and not dry_run, samples, dry_run)
    groups = split(ranges, jobs)
    report.jobs = len(groups)
    bar = Bar(total(ranges), enabled=progress)
    try:
        report.part = await (
            job.run_job(groups[0], bar.advance) if len(groups) == 1 else _fan_out(job, groups, bar)
        )
    finally:
        bar.close()
    part = report.part
    if part.messages == 0:
        users = f" of users {', '.join(selection.users)}" if selection.users else ""
        raise EmptySelection(f"the slice holds {part.records} records but no message{users}")
    report.elapsed_s = time.perf_counter() - started
    if not dry_run:
        summary = ReplayRunFinished(
            run_id=run.run_id,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            engine=settings.engine,
            engine_version=version,
            topic=selection.topic,
            selection={**selection.request(), "ranges": [str(r) for r in ranges]},
            events=part.messages,
            turns=part.turns,
            changed=part.diff.changed if part.diff is not None else None,
        )
        topics = Topics.from_settings(settings)
        publisher = await Publisher.start(settings, topics)
        try:
            await publisher.send(topics.replay_runs, run.run_id, encode(summary))
            await publisher.drain()
        finally:
            await publisher.stop()
    return report


def split(ranges: list[OffsetRange], jobs: int) -> list[list[OffsetRange]]:
    """Ranges in at most `jobs` groups of about equal size (largest first, each to the
    lightest group). Whole partitions only: a user's records must stay in one job."""
    n = max(1, min(jobs, len(ranges)))
    groups: list[list[OffsetRange]] = [[] for _ in range(n)]
    sizes = [0] * n
    for r in sorted(ranges, key=lambda r: -((r.end or r.start) - r.start)):
        i = sizes.index(min(sizes))
        groups[i].append(r)
        sizes[i] += (r.end or r.start) - r.start
    return [sorted(g) for g in groups if g]


@dataclass
class Job:
    """What a job needs: plain data, so that a process of its own can run it."""

    settings: Settings
    selection: Selection
    run: RunInfo
    originals: dict[str, Original]
    with_diff: bool
    samples: int
    dry_run: bool
    seeds: SeedLoader | None = None
    """None: read the live sessions from DuckDB (`seeds.duckdb_seeds`)."""

    async def run_job(self, ranges: list[OffsetRange], advance: Callable[[int], None]) -> Part:
        cpu_started = time.process_time()
        settings = self.settings
        part = Part(diff=Diff(self.originals, max_samples=self.samples) if self.with_diff else None)
        engine = load_engine(settings.engine, **settings.model_dump())
        replayer = Replayer(
            engine,
            debounce.DebounceConfig(
                settings.debounce_quiet_ms, settings.debounce_max_ms, settings.debounce_max_messages
            ),
            self.run,
            {k: v.intent for k, v in self.originals.items()},
            dedupe_horizon_s=settings.dedupe_horizon_s,
            session_ttl_s=settings.session_ttl_s,
        )
        topics = Topics.from_settings(settings)
        publisher = None if self.dry_run else await Publisher.start(settings, topics)
        wanted = {u.encode() for u in self.selection.users}
        skipped = part.skipped
        load_seeds = self.seeds or duckdb_seeds(settings)
        looked_up: set[str] = set()

        def seed(messages: list[MessageReceived]) -> None:
            """Start the users first met in this batch from their live sessions."""
            first: dict[str, datetime] = {}
            for msg in messages:
                if msg.user_id not in looked_up and msg.user_id not in replayer.users:
                    first.setdefault(msg.user_id, msg.received_at)
            if not first or part.seed_error is not None:
                return
            looked_up.update(first)
            try:
                found = load_seeds(first)
            except Exception as exc:  # replay from empty sessions rather than not at all
                part.seed_error = str(exc) or type(exc).__name__
                return
            for user, session in found.items():
                part.seeded += replayer.seed(user, session)

        async def out(replayed: list[Any]) -> None:
            assert publisher is not None
            for r in replayed:
                if part.diff is not None:
                    part.diff.add(r.turn_id, r.user_id, r.intent, r.actions)
                await publisher.send(topics.replay_decisions, r.user_id, r.record)
            part.published += len(replayed)

        try:
            async with KafkaLog(settings, self.selection.topic) as source:
                async for batch in source.read(ranges):
                    part.records += len(batch)
                    advance(len(batch))
                    # (record, tick time) or (record, message), in the batch's order
                    items: list[tuple[Any, datetime | MessageReceived]] = []
                    for rec in batch:
                        value = rec.value
                        key = rec.key or b""
                        if wanted and key not in wanted:
                            skipped["other_users"] += 1
                            continue
                        if not value or is_control(value):
                            skipped["control" if value else "empty"] += 1
                            continue
                        at = tick_time(value)
                        if at is not None:
                            part.ticks += 1
                            items.append((rec, at))
                            continue
                        try:
                            msg = decode(MessageReceived, value)
                        except InvalidPayload:
                            skipped["undecodable"] += 1
                            continue
                        part.messages += 1
                        part.users.add(key)
                        items.append((rec, msg))
                    if self.dry_run:
                        continue
                    seed([m for _, m in items if isinstance(m, MessageReceived)])
                    for rec, item in items:
                        if isinstance(item, MessageReceived):
                            decided = await replayer.message(rec.partition, rec.offset, item)
                        else:
                            user = (rec.key or b"").decode()
                            decided = await replayer.tick(rec.partition, rec.offset, user, item)
                        if decided:
                            await out(decided)
            if publisher is not None:
                await out(await replayer.finish())
                await publisher.drain()
        finally:
            if publisher is not None:
                await publisher.stop()
            await engine.aclose()
        part.turns, part.duplicates = replayer.turns, replayer.duplicates
        part.cpu_s = time.process_time() - cpu_started
        return part


_counter: Any = None


def _init_child(counter: Any) -> None:
    global _counter
    _counter = counter


def _child(job: Job, ranges: list[OffsetRange]) -> Part:
    def advance(n: int) -> None:
        with _counter.get_lock():
            _counter.value += n

    return asyncio.run(job.run_job(ranges, advance))


async def _fan_out(job: Job, groups: list[list[OffsetRange]], bar: Bar) -> Part:
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    merged = Part(diff=Diff(job.originals, max_samples=job.samples) if job.with_diff else None)
    with ProcessPoolExecutor(
        len(groups), mp_context=ctx, initializer=_init_child, initargs=(counter,)
    ) as pool:
        futures = [asyncio.wrap_future(pool.submit(_child, job, g)) for g in groups]
        pending = set(futures)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            bar.update(counter.value)
        for f in futures:
            merged.merge(f.result())
    return merged


def _describe(selection: Selection) -> str:
    asked = {k: v for k, v in selection.request().items() if v}
    return ", ".join(f"{k}={v}" for k, v in asked.items()) or "the whole topic"
