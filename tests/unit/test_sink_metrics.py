"""The sink's series move per fetch and per batch, and its web port serves them."""

from __future__ import annotations

from typing import cast

from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from sinks.loader import Loader
from sinks.metrics import SinkMetrics
from sinks.web import web_app
from tests.support.prom import parse, read, total


def _tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_fetched_records_count_per_topic_and_a_batch_counts_its_rows() -> None:
    m = SinkMetrics()
    m.fetched({_tp("in", 0): [1, 2, 3], _tp("in", 1): [4], _tp("st", 0): [5], _tp("x", 0): []})
    m.loaded(5, {"messages": 4, "statuses": 1}, rejected=1, dead_lettered=0, load_s=0.02, total_s=0.05)
    samples = read(m.registry)
    assert total(samples, "zapstream_events_consumed_total", topic="in") == 4
    assert total(samples, "zapstream_events_consumed_total", topic="st") == 1
    assert total(samples, "zapstream_events_consumed_total", topic="x") == 0
    assert total(samples, "zapstream_sink_batch_events_count") == 1
    assert total(samples, "zapstream_sink_batch_events_sum") == 5
    assert total(samples, "zapstream_sink_load_seconds_count") == 1
    assert total(samples, "zapstream_sink_batch_seconds_count") == 1
    assert total(samples, "zapstream_sink_rows_total", table="messages") == 4
    assert total(samples, "zapstream_sink_rejected_total") == 1
    assert total(samples, "zapstream_sink_dead_lettered_total") == 0


async def test_the_sink_web_port_serves_its_registry_with_lag_read_at_scrape() -> None:
    lag = [("in", 0, 7)]
    m = SinkMetrics(lambda: lag)
    m.fetched({_tp("in", 0): [1, 2]})
    app = web_app(cast(Loader, None), lambda: (True, 1), m.registry)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        samples = parse(await resp.text())
        assert total(samples, "zapstream_events_consumed_total", topic="in") == 2
        assert total(samples, "zapstream_consumer_lag", topic="in", partition="0") == 7
        lag[0] = ("in", 0, 0)
        samples = parse(await (await client.get("/metrics")).text())
        assert total(samples, "zapstream_consumer_lag", topic="in", partition="0") == 0
        assert total(samples, "process_cpu_seconds_total") > 0
