"""The worker's Prometheus series move when the instrumented code runs: lanes, the
sender (Graph as an httpx MockTransport), publish_all, mark_received, the lag reader
and the hooks the feature agents call."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from processors import metrics
from processors.agents import publish_all
from processors.faust_transport import mark_received
from processors.graph_client import GraphClient
from processors.lanes import KeyedLanes, RetryPlan
from processors.sender import Sender
from schemas.outbound import OutboundMessage, outbound_id_for
from tests.support.graph_stub import GraphStub
from tests.support.prom import read, total
from zapstream.errors import GraphPermanentError, GraphTransientError, InvalidPayload
from zapstream.metrics import LagCollector, aiokafka_lag, partition_lag
from zapstream.settings import Settings

PHONE = "5511987654321"


class Delta:
    """Sample values of the worker registry now, and how much they moved since."""

    def __init__(self) -> None:
        self.before = read(metrics.REGISTRY)

    def __call__(self, name: str, **labels: str) -> float:
        return total(read(metrics.REGISTRY), name, **labels) - total(self.before, name, **labels)


async def _ack(token: Any) -> None:
    return None


async def test_a_lane_stage_counts_handled_events_and_their_latency() -> None:
    delta = Delta()
    lanes = KeyedLanes(_ack, name="t-ok")

    async def handler() -> None:
        return None

    for i in range(3):
        await lanes.submit(f"user{i}", 0, i, handler)
    await lanes.drain()
    assert delta("zapstream_stage_events_total", stage="t-ok", outcome="handled") == 3
    assert delta("zapstream_stage_latency_seconds_count", stage="t-ok") == 3
    assert delta("zapstream_stage_events_total", stage="t-ok", outcome="dead_lettered") == 0


async def test_a_lane_stage_counts_retries_and_dead_letters() -> None:
    delta = Delta()
    letters: list[Any] = []

    async def dead_letter(token: Any, exc: BaseException, attempts: int) -> None:
        letters.append(token)

    lanes = KeyedLanes(
        _ack, name="t-fail", dead_letter=dead_letter, retry=RetryPlan(3, 10.0, 0.001, 0.001)
    )
    failures = iter([RuntimeError("flaky")])

    async def flaky() -> None:
        for exc in failures:
            raise exc

    async def bad() -> None:
        raise InvalidPayload("not an event")

    await lanes.submit("a", 0, "flaky", flaky)
    await lanes.submit("b", 0, "bad", bad)
    await lanes.drain()
    assert letters == ["bad"]
    assert delta("zapstream_stage_retries_total", stage="t-fail") == 1
    assert delta("zapstream_stage_events_total", stage="t-fail", outcome="handled") == 1
    assert delta("zapstream_stage_events_total", stage="t-fail", outcome="dead_lettered") == 1
    assert delta("zapstream_stage_latency_seconds_count", stage="t-fail") == 2


def _settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        graph_api_base_url="https://graph.test/",
        send_backoff_base_s=0.001,
        send_backoff_cap_s=0.001,
        send_max_attempts=3,
    )


def _message(**kw: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "outbound_id": outbound_id_for(f"turn-{random.random()}"),
        "user_id": PHONE,
        "to": PHONE,
        "phone_number_id": "123456789012345",
        "kind": "text",
        "payload": {"text": {"body": "hello"}},
        "turn_id": "turn-1",
        "created_at": datetime.now(UTC),
    }
    return OutboundMessage(**(fields | kw))


def _graph(answers: list[tuple[int, int | None]]) -> Callable[[httpx.Request], httpx.Response]:
    """Answers in turn: (status, Graph error code or None for success)."""
    queue = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        status, code = next(queue)
        if code is None:
            return httpx.Response(status, json={"messages": [{"id": "wamid.X"}]})
        return httpx.Response(status, json={"error": {"message": "e", "code": code}})

    return handler


async def _deliver(
    answers: list[tuple[int, int | None]], msg: OutboundMessage | None = None
) -> str:
    async with GraphStub(_graph(answers)) as graph:
        settings = _settings().model_copy(update={"graph_api_base_url": graph.url})
        async with GraphClient(settings) as client:
            sender = Sender(client, settings, rng=random.Random(1))
            delivery = await sender.deliver(msg or _message())
    return delivery.result.outcome


async def test_a_send_counts_its_outcome_and_the_graph_call_latency() -> None:
    delta = Delta()
    assert await _deliver([(200, None)]) == "sent"
    assert delta("zapstream_sends_total", outcome="sent") == 1
    assert delta("zapstream_send_latency_seconds_count", result="ok") == 1
    assert delta("zapstream_send_delivery_seconds_count") == 1


async def test_a_retried_send_counts_the_retry_by_graph_error_code() -> None:
    delta = Delta()
    assert await _deliver([(500, 131000), (200, None)]) == "sent"
    assert delta("zapstream_send_retries_total", code="131000") == 1
    assert delta("zapstream_send_latency_seconds_count", result="error") == 1
    assert delta("zapstream_send_latency_seconds_count", result="ok") == 1
    assert delta("zapstream_sends_total", outcome="sent") == 1


async def test_a_dead_lettered_send_counts_its_graph_error_code() -> None:
    delta = Delta()
    assert await _deliver([(400, 131026)]) == "dead_lettered"
    assert delta("zapstream_send_dead_letters_total", code="131026") == 1
    assert delta("zapstream_sends_total", outcome="dead_lettered") == 1
    assert delta("zapstream_send_retries_total") == 0


async def test_a_stale_message_is_a_dead_letter_without_a_graph_call() -> None:
    delta = Delta()
    stale = _message(not_after=datetime.now(UTC) - timedelta(seconds=1))
    assert await _deliver([], stale) == "dead_lettered"
    assert delta("zapstream_send_dead_letters_total", code="stale") == 1


def test_the_code_label_is_metas_code_else_the_status_else_the_error_kind() -> None:
    assert metrics.error_code(GraphPermanentError("x", code=131047, status_code=400)) == "131047"
    assert metrics.error_code(GraphTransientError("x", status_code=502)) == "http_502"
    assert metrics.error_code(GraphTransientError("timeout")) == "GraphTransientError"
    assert metrics.error_code(None) == "none"


class _Message:
    def __init__(self, topic: str) -> None:
        self.topic = topic


def _event(topic: str) -> Any:
    consumer = SimpleNamespace(received={})
    return SimpleNamespace(message=_Message(topic), app=SimpleNamespace(consumer=consumer))


def test_every_event_an_agent_receives_counts_as_consumed_from_its_topic() -> None:
    delta = Delta()
    for _ in range(2):
        mark_received(_event("t.metrics.a"))
    mark_received(_event("t.metrics.b"))
    assert delta("zapstream_events_consumed_total", topic="t.metrics.a") == 2
    assert delta("zapstream_events_consumed_total", topic="t.metrics.b") == 1


class _Topic:
    def __init__(self, name: str) -> None:
        self.topics = (name,)
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> Any:
        self.sent.append(value)
        future: Any = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_publish_all_counts_each_acknowledged_record_by_topic() -> None:
    delta = Delta()
    a, b = _Topic("t.metrics.out-a"), _Topic("t.metrics.out-b")
    await publish_all([(a, "u1", b"1"), (a, "u2", b"2"), (b, "u1", b"3")])
    assert delta("zapstream_events_published_total", topic="t.metrics.out-a") == 2
    assert delta("zapstream_events_published_total", topic="t.metrics.out-b") == 1


async def test_nothing_counts_as_published_when_the_broker_refuses() -> None:
    delta = Delta()

    class Refusing(_Topic):
        async def send(self, key: bytes, value: bytes) -> Any:
            raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        await publish_all([(Refusing("t.metrics.refused"), "u", b"1")])
    assert delta("zapstream_events_published_total", topic="t.metrics.refused") == 0


def test_the_feature_hooks_move_their_series() -> None:
    delta = Delta()
    metrics.handoffs_open.set(3)
    metrics.reengagements_sent.inc()
    metrics.embed_batch(64, 0.2)
    metrics.turn(3, 0.004)
    metrics.dedupe_dropped.inc()
    samples = read(metrics.REGISTRY)
    assert total(samples, "zapstream_handoffs_open") == 3
    assert delta("zapstream_reengagements_sent_total") == 1
    assert delta("zapstream_embedding_batch_size_count") == 1
    assert delta("zapstream_embedding_batch_size_sum") == 64
    assert delta("zapstream_embedding_batch_seconds_count") == 1
    assert delta("zapstream_turn_messages_sum") == 3
    assert delta("zapstream_engine_latency_seconds_count") == 1
    assert delta("zapstream_dedupe_dropped_total") == 1


TP = SimpleNamespace


def test_lag_is_highwater_minus_position_per_partition() -> None:
    tps = [TP(topic="in", partition=1), TP(topic="in", partition=0), TP(topic="x", partition=0)]
    high = {("in", 0): 10, ("in", 1): 5, ("x", 0): None}
    pos = {("in", 0): 4, ("in", 1): 7, ("x", 0): 0}
    lag = partition_lag(
        tps, lambda tp: high[tp.topic, tp.partition], lambda tp: pos[tp.topic, tp.partition]
    )
    # partition 1: the position was read after a newer fetch than the highwater
    assert lag == [("in", 0, 6), ("in", 1, 0)]


def test_lag_reads_aiokafkas_bookkeeping_and_skips_partitions_it_no_longer_has() -> None:
    def state(high: int | None, pos: int | None) -> Any:
        return SimpleNamespace(highwater=high, position=pos, has_valid_position=pos is not None)

    states = {("in", 0): state(9, 2), ("in", 1): state(3, None)}

    def state_value(tp: Any) -> Any:
        return states[tp.topic, tp.partition]  # KeyError: revoked meanwhile

    assignment = SimpleNamespace(state_value=state_value)
    consumer = SimpleNamespace(
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
    )
    tps = [TP(topic="in", partition=0), TP(topic="in", partition=1), TP(topic="in", partition=2)]
    assert aiokafka_lag(consumer, tps) == [("in", 0, 7)]


def test_a_failing_lag_source_gives_an_empty_series_not_a_failed_scrape() -> None:
    def broken() -> Any:
        raise RuntimeError("rebalancing")

    families = list(LagCollector(broken).collect())
    assert [f.name for f in families] == ["zapstream_consumer_lag"]
    assert families[0].samples == []
    families = list(LagCollector(lambda: [("in", 3, 12)]).collect())
    assert [(s.labels, s.value) for s in families[0].samples] == [
        ({"topic": "in", "partition": "3"}, 12)
    ]


def test_each_worker_of_zapstream_up_gets_its_own_web_port_beside_the_others() -> None:
    from zapstream.supervisor.supervisor import worker_web_ports

    def ports(**kw: Any) -> list[int]:
        return worker_web_ports(Settings(_env_file=None, **kw))  # type: ignore[call-arg]

    assert ports() == [6066]
    assert ports(workers=3) == [6066, 6068, 6069]  # 6067 is the sink's
    assert ports(workers=2, worker_web_port=7999, webhook_port=8000) == [7999, 8001]


def test_a_worker_whose_web_port_is_taken_says_so_in_one_line() -> None:
    import socket

    from zapstream.errors import ConfigurationError
    from zapstream.supervisor.runners import require_free_port

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=f"WORKER_WEB_PORT: 127.0.0.1:{port} is in use"
        ):
            require_free_port("WORKER_WEB_PORT", port)
    require_free_port("WORKER_WEB_PORT", port)  # free again
