"""`/metrics` of the webhook API, both workers and the sink: the series move when
messages flow through the stack as `zapstream up` runs it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.samples import Sample

from ingest.samples import dumps, new_wamid, text_webhook
from ingest.signature import sign
from schemas.topics import Topics
from tests.support.prom import scrape, total
from tests.support.stack import APP_SECRET, Sandbox, Stack, new_user
from zapstream.settings import Settings

pytestmark = pytest.mark.e2e

TOPICS = Topics.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"metrics-{broker_kind}"),
        broker=broker_kind,
        WORKERS="2",
        DEBOUNCE_QUIET_MS="300",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def workers(stack: Stack, timeout: float = 90.0) -> list[Sample]:
    """The samples of every worker, together (each owns some of the partitions). A
    worker's web port opens once its tables are recovered: wait for it."""
    samples: list[Sample] = []
    for url in stack.worker_urls():
        deadline = time.monotonic() + timeout
        while True:
            try:
                samples += scrape(f"{url}/metrics")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    return samples


def eventually(check: Callable[[], list[str]], timeout: float = 60.0) -> None:
    """Poll until `check` finds nothing missing; fail with what is still missing."""
    deadline = time.monotonic() + timeout
    missing = check()
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        missing = check()
    assert not missing, missing


def test_the_series_of_the_api_the_workers_and_the_sink_move_with_traffic(stack: Stack) -> None:
    sandbox = Sandbox(stack)
    dead_user = new_user()
    sandbox.configure(permanent_fail_recipients=[dead_user])
    api0 = scrape(f"{stack.url}/metrics")
    workers0 = workers(stack)
    sink0 = scrape(f"{stack.sink_url}/metrics")

    users = [new_user() for _ in range(3)]
    for user in users:
        assert stack.post_text("oi", wa_id=user, message_id=new_wamid()).status_code == 200
    assert stack.post_text("oi", wa_id=dead_user, message_id=new_wamid()).status_code == 200
    repeated = dumps(text_webhook("de novo", wa_id=users[0], message_id=new_wamid()))
    for _ in range(2):  # Meta delivers a message twice: the second is a duplicate
        assert stack.post_raw(repeated, sign(repeated, APP_SECRET)).status_code == 200
    posted = len(users) + 3
    eventually(lambda: [u for u in users if not sandbox.messages(u)])  # each was answered

    def moved(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    def api_missing() -> list[str]:
        api = scrape(f"{stack.url}/metrics")
        checks = {
            "webhook requests": moved(
                api0, api, "zapstream_webhook_requests_total", outcome="accepted"
            )
            >= posted,
            "webhook latency": moved(api0, api, "zapstream_webhook_latency_seconds_count")
            >= posted,
            "published inbound": moved(
                api0, api, "zapstream_events_published_total", topic=TOPICS.inbound
            )
            >= posted,
        }
        return [name for name, ok in checks.items() if not ok]

    def workers_missing() -> list[str]:
        now = workers(stack)
        checks = {
            "consumed inbound": moved(
                workers0, now, "zapstream_events_consumed_total", topic=TOPICS.inbound
            )
            >= posted,
            "published decisions": moved(
                workers0, now, "zapstream_events_published_total", topic=TOPICS.decisions
            )
            >= len(users),
            "converse handled": moved(
                workers0, now, "zapstream_stage_events_total", stage="converse", outcome="handled"
            )
            >= posted,
            "dedupe drop": moved(workers0, now, "zapstream_dedupe_dropped_total") >= 1,
            "turn sizes": moved(workers0, now, "zapstream_turn_messages_count") >= len(users),
            "engine latency": moved(workers0, now, "zapstream_engine_latency_seconds_count")
            >= len(users),
            "sends": moved(workers0, now, "zapstream_sends_total", outcome="sent") >= len(users),
            "send latency": moved(
                workers0, now, "zapstream_send_latency_seconds_count", result="ok"
            )
            >= len(users),
            "dead letter 131026": moved(
                workers0, now, "zapstream_send_dead_letters_total", code="131026"
            )
            >= 1,
            "lag of inbound": any(
                s.name == "zapstream_consumer_lag" and s.labels["topic"] == TOPICS.inbound
                for s in now
            ),
        }
        return [name for name, ok in checks.items() if not ok]

    def sink_missing() -> list[str]:
        sink = scrape(f"{stack.sink_url}/metrics")
        checks = {
            "consumed inbound": moved(
                sink0, sink, "zapstream_events_consumed_total", topic=TOPICS.inbound
            )
            >= posted,
            "message rows": moved(sink0, sink, "zapstream_sink_rows_total", table="messages")
            >= posted - 1,  # the duplicate adds no row
            "batches": moved(sink0, sink, "zapstream_sink_batch_events_count") >= 1,
            "load latency": moved(sink0, sink, "zapstream_sink_load_seconds_count") >= 1,
            "lag of inbound": any(
                s.name == "zapstream_consumer_lag" and s.labels["topic"] == TOPICS.inbound
                for s in sink
            ),
        }
        return [name for name, ok in checks.items() if not ok]

    eventually(api_missing)
    eventually(workers_missing)
    eventually(sink_missing)


def test_each_worker_serves_its_own_metrics_port(stack: Stack) -> None:
    urls = stack.worker_urls()
    assert len(set(urls)) == 2
    workers(stack)  # both up
    for url in urls:
        samples = scrape(f"{url}/metrics")
        assert total(samples, "process_cpu_seconds_total") > 0
        # Faust's own pages (tables hold user state) are not served
        assert httpx.get(f"{url}/table/", timeout=10).status_code == 404
