"""The re-engagement scan (processors.reengage.timer.Reengager.scan) over a fake
worker: which users it asks for, and when it asks again. The clock is moved, not
waited for."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from processors.reengage.decide import CONTROL_KIND, ReengageConfig, reengage_step
from schemas.control import parse_control
from tests.support.reengage_fakes import T0, FakeClock, FakeWorker, reengager, user_state

CFG = ReengageConfig(after_s=3600, text="oi?", template=None, window_margin_s=60)


def asked(worker: FakeWorker) -> list[tuple[str, str]]:
    out = []
    for topic, user, value in worker.published:
        control = parse_control(value)
        assert topic == "inbound"
        assert control is not None
        assert control.kind == CONTROL_KIND
        out.append((user, control.fields["quiet_since"]))
    worker.published.clear()
    return out


def test_the_scan_asks_for_due_users_of_owned_partitions_only() -> None:
    worker = FakeWorker(partitions=2, owned={0})
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    worker.put("due", user_state("due", T0), partition=0)
    worker.put("elsewhere", user_state("elsewhere", T0), partition=1)
    worker.put("recent", user_state("recent", T0 + timedelta(hours=1, minutes=30)), partition=0)
    worker.put("quit", user_state("quit", T0, opted_out=True), partition=0)
    worker.put("human", user_state("human", T0, handoff_active=True), partition=0)
    r = reengager(worker, clock, CFG)
    assert asyncio.run(r.scan()) == 1
    assert asked(worker) == [("due", T0.isoformat())]


def test_the_scan_does_not_ask_twice_within_the_interval_nor_once_handled() -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    state = user_state("u", T0)
    worker.put("u", state)
    r = reengager(worker, clock, CFG)
    asyncio.run(r.scan())
    [(_, since)] = asked(worker)
    clock.now += 30
    asyncio.run(r.scan())
    assert asked(worker) == []  # asked 30 s ago: the lane has it
    clock.now += 60
    asyncio.run(r.scan())
    assert asked(worker) == [("u", since)]  # not handled yet (a lost ask): again
    # the lane handled it: the value changed, the scan reads the mark
    control = parse_control(
        b'{"zapstream_control":"reengage","at":%f,"quiet_since":"%s"}' % (clock.now, since.encode())
    )
    assert control is not None
    handled = reengage_step("u", state, control, CFG).state
    assert handled is not None
    worker.put("u", handled)
    clock.now += 600
    asyncio.run(r.scan())
    assert asked(worker) == []


def test_a_rebalance_forgets_what_was_asked() -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    worker.put("u", user_state("u", T0))
    r = reengager(worker, clock, CFG)
    asyncio.run(r.scan())
    assert len(asked(worker)) == 1
    r.forget_asked()
    asyncio.run(r.scan())
    assert len(asked(worker)) == 1


def test_past_the_window_without_a_template_the_scan_asks_nothing() -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=30)).timestamp())
    worker.put("u", user_state("u", T0))
    assert asyncio.run(reengager(worker, clock, CFG).scan()) == 0
    with_template = ReengageConfig(after_s=3600, text="oi?", template="volte")
    assert asyncio.run(reengager(worker, clock, with_template).scan()) == 1


def test_no_scan_while_the_flow_is_suspended() -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    worker.put("u", user_state("u", T0))
    worker.active = False
    assert asyncio.run(reengager(worker, clock, CFG).scan()) == 0
    assert worker.published == []


def test_a_new_message_is_a_new_period_for_the_scan() -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    worker.put("u", user_state("u", T0))
    r = reengager(worker, clock, CFG)
    asyncio.run(r.scan())
    assert asked(worker) == [("u", T0.isoformat())]
    later = T0 + timedelta(hours=3)
    worker.put("u", user_state("u", later))
    clock.now = (later + timedelta(hours=2)).timestamp()
    asyncio.run(r.scan())
    assert asked(worker) == [("u", later.isoformat())]


def test_a_failed_scan_is_logged_and_the_next_one_asks_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = FakeWorker()
    clock = FakeClock((T0 + timedelta(hours=2)).timestamp())
    worker.put("5511987654321", user_state("5511987654321", T0))
    r = reengager(worker, clock, CFG)

    async def down(items: list[tuple[Any, str, Any]]) -> None:
        raise KafkaConnectionError("broker down")

    r.publish_all = down
    asyncio.run(r.tick())
    assert "re-engagement scan failed" in caplog.text
    assert "5511987654321" not in caplog.text
    r.publish_all = worker.publish_all
    asyncio.run(r.tick())
    assert len(asked(worker)) == 1  # the failed ask was not remembered
