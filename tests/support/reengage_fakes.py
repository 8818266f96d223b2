"""A stand-in for `processors.agents.Worker` as the re-engagement scan sees it: the
`users` table's data, the partitions owned, the flow, and a recording publish_all.
For unit tests of the scan and for bench/reengage_scan_bench.py (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from processors.reengage.decide import ReengageConfig
from processors.reengage.timer import Reengager
from processors.tables import wrap
from processors.user_state import UserState
from schemas.conversation import Session
from schemas.topics import Topics
from zapstream.settings import Settings


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeWorker:
    def __init__(self, partitions: int = 4, owned: set[int] | None = None) -> None:
        self.topics = Topics.from_settings(Settings())
        self.partitions = partitions
        self.own = set(range(partitions)) if owned is None else owned
        self.active = True
        self.app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: self.active))
        self.tables: dict[str, Any] = {"users": SimpleNamespace(data={})}
        self.out: dict[str, Any] = {
            "inbound": "inbound",
            "outbound_low": "low",
            "reengagements": "r",
        }
        self.published: list[tuple[Any, str, Any]] = []

    def owned(self, topic: str) -> set[int]:
        return set(self.own)

    async def publish_all(self, items: list[tuple[Any, str, Any]]) -> None:
        self.published.extend(items)

    def put(self, user: str, state: UserState, partition: int | None = None) -> None:
        part = hash(user) % self.partitions if partition is None else partition
        self.tables["users"].data[user] = wrap(state.touched_at + 1e7, part, state.encode())


def user_state(user: str, last_inbound: datetime, **session: Any) -> UserState:
    s = Session(
        user_id=user,
        wa_id=user,
        phone_number_id="100000000000001",
        first_inbound_at=last_inbound - timedelta(days=3),
        last_inbound_at=last_inbound,
        turn_count=4,
        last_intent="greeting",
        language="pt",
        last_turn_id="turn_" + "0" * 32,
        updated_at=last_inbound,
        **session,
    )
    return UserState(session=s, applied=(0, 123456), touched_at=last_inbound.timestamp())


def reengager(worker: FakeWorker, clock: FakeClock, cfg: ReengageConfig) -> Reengager:
    return Reengager(worker, worker.publish_all, cfg, clock, republish_after_s=60.0)


T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
