"""An in-doubt send's status, found on the statuses topic of a real broker
(`processors.status_scan`): the statuses that came while the worker was down, and
those still to come, one consumer for every send in doubt."""

from __future__ import annotations

import asyncio
import time

import pytest

from processors.status_scan import StatusScan
from schemas.codec import encode
from schemas.topics import Topics, all_topic_specs
from tests.support.events import status
from tests.support.sink_process import produce
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import Settings

pytestmark = pytest.mark.broker


def status_of(outbound_id: str, wamid: str, user: str, n: int = 0) -> tuple[bytes, bytes]:
    event = status(n, "sent", user=user).model_copy(
        update={"wamid": wamid, "biz_opaque_callback_data": outbound_id}
    )
    return user.encode(), encode(event)


async def setup(settings: Settings) -> tuple[StatusScan, str]:
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    topic = Topics.from_settings(settings).statuses
    return StatusScan(settings, topic), topic


async def test_a_status_published_while_the_worker_was_down_is_found(
    broker_settings: Settings,
) -> None:
    scan, topic = await setup(broker_settings)
    sending_at = time.time()
    await produce(
        broker_settings,
        topic,
        [
            status_of("out_other", "wamid.OTHER", "5511900000001"),
            status_of("out_wanted", "wamid.WANTED", "5511900000002"),
        ],
    )
    assert await scan.find("out_wanted", sending_at, wait_s=60) == "wamid.WANTED"


async def test_a_status_that_comes_later_is_found_and_two_sends_share_one_scan(
    broker_settings: Settings,
) -> None:
    scan, topic = await setup(broker_settings)
    sending_at = time.time()
    first = asyncio.create_task(scan.find("out_a", sending_at, wait_s=60))
    second = asyncio.create_task(scan.find("out_b", sending_at, wait_s=60))
    await asyncio.sleep(1.0)  # both waiting, the scan running
    assert not first.done()
    assert not second.done()
    await produce(
        broker_settings,
        topic,
        [
            status_of("out_b", "wamid.B", "5511900000003"),
            status_of("out_a", "wamid.A", "5511900000004"),
        ],
    )
    assert await first == "wamid.A"
    assert await second == "wamid.B"
    assert scan._task is None  # no waiter left: the scan stopped


async def test_no_status_within_the_wait_answers_none(broker_settings: Settings) -> None:
    scan, topic = await setup(broker_settings)
    await produce(broker_settings, topic, [status_of("out_x", "wamid.X", "5511900000005")])
    started = time.monotonic()
    assert await scan.find("out_never", time.time(), wait_s=1.5) is None
    assert time.monotonic() - started >= 1.5
    assert scan._task is None
