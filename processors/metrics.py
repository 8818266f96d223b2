"""Prometheus series of a worker process, served at `GET /metrics` on its Faust web
port (WORKER_WEB_PORT; `zapstream up` gives worker i the port WORKER_WEB_PORT + i - 1).

One registry per process (`REGISTRY`): a worker runs one Faust app, and the modules
that count (`lanes`, `sender`, `agents`, `faust_transport`, the feature agents) reach
the series here without anything threaded through their constructors:

    from processors import metrics
    metrics.dedupe_dropped.inc()

Hot-path cost: a counter increment or a histogram observation per event (~1 µs);
per-topic counters go through `PerLabel` (no `labels()` call per event). Labels are
bounded: topics, stages, outcomes, Graph error codes. Never a user or message id.

Series that features call (their agents own when):
- `handoffs_open.set(n)`: conversations currently with a human, this worker's share
  (Prometheus sums the workers);
- `reengagements_sent.inc()`: one per re-engagement message handed to the low lane;
- `embed_batch(size, seconds)`: one per encoder call of the embedding batcher.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from zapstream.errors import GraphError
from zapstream.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    SIZE_BUCKETS,
    LagCollector,
    PerLabel,
    exposition,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
lag = LagCollector()
"""Bound to the worker's consumer by `expose`."""
REGISTRY.register(lag)


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, labels, registry=REGISTRY)


def _histogram(
    name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
) -> Histogram:
    return Histogram(name, doc, labels, buckets=buckets, registry=REGISTRY)


# --- the stream: consumed, produced, per stage --------------------------------------------
consumed = PerLabel(
    _counter("zapstream_events_consumed_total", "Events handed to an agent, by topic", ("topic",))
)
"""Counted by `faust_transport.mark_received`, which every agent calls per event."""
published = PerLabel(
    _counter(
        "zapstream_events_published_total",
        "Events the broker acknowledged, by topic",
        ("topic",),
    )
)
"""Counted by `agents.publish_all` (through `published_to`)."""


def published_to(topic: Any) -> None:
    """One record acknowledged on a Faust topic (a channel or a multi-topic
    description counts as "other": counting must never fail a publish)."""
    names = getattr(topic, "topics", None)
    published.inc(names[0] if names and len(names) == 1 else "other")
_stage_events = _counter(
    "zapstream_stage_events_total",
    "Events a lane stage finished, by stage and outcome (handled | dead_lettered)",
    ("stage", "outcome"),
)
_stage_retries = _counter(
    "zapstream_stage_retries_total", "Handler attempts that failed and were retried", ("stage",)
)
_stage_latency = _histogram(
    "zapstream_stage_latency_seconds",
    "Handling of one event in a stage, from its turn in the user's lane to done (retries included)",
    LATENCY_BUCKETS,
    ("stage",),
)


class StageMetrics:
    """The series of one lane stage (`converse`, `send-high`, ...), children bound once."""

    def __init__(self, stage: str) -> None:
        self.handled = _stage_events.labels(stage, "handled")
        self.dead_lettered = _stage_events.labels(stage, "dead_lettered")
        self.retries = _stage_retries.labels(stage)
        self.latency = _stage_latency.labels(stage)


# --- converse: dedupe, debounce, engine -----------------------------------------------------
dedupe_dropped = _counter(
    "zapstream_dedupe_dropped_total", "Inbound messages dropped as duplicates (same message id)"
)
turn_messages = _histogram(
    "zapstream_turn_messages",
    "Messages per turn: the debounce batch a burst became",
    (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50),
)
engine_latency = _histogram(
    "zapstream_engine_latency_seconds", "engine.decide per turn", LATENCY_BUCKETS
)


def turn(messages: int, engine_seconds: float) -> None:
    """One turn decided: its size and the engine's time."""
    turn_messages.observe(messages)
    engine_latency.observe(engine_seconds)


# --- send: Graph API --------------------------------------------------------------------------
_sends = _counter(
    "zapstream_sends_total",
    "Outbound messages finished, by outcome (sent | dead_lettered | skipped_duplicate)",
    ("outcome",),
)
sends = PerLabel(_sends)
send_retries = PerLabel(
    _counter(
        "zapstream_send_retries_total",
        "Graph calls that failed and were retried, by Graph error code",
        ("code",),
    )
)
send_dead_letters = PerLabel(
    _counter(
        "zapstream_send_dead_letters_total",
        "Outbound messages dead-lettered, by Graph error code",
        ("code",),
    )
)
_send_latency = _histogram(
    "zapstream_send_latency_seconds",
    "One Graph API call, by result (ok | error)",
    LATENCY_BUCKETS,
    ("result",),
)
send_latency_ok = _send_latency.labels("ok")
send_latency_error = _send_latency.labels("error")
delivery_seconds = _histogram(
    "zapstream_send_delivery_seconds",
    "From the sender taking a message to its outcome: pacing, rate-limit waits, retries",
    LATENCY_BUCKETS,
)


def error_code(err: GraphError | None, fallback: str = "none") -> str:
    """The `code` label: Meta's error code; else `http_<status>`; else the error's
    class (a network error, an invalid payload); `fallback` without an error."""
    if err is None:
        return fallback
    if err.code is not None:
        return str(err.code)
    if err.status_code is not None:
        return f"http_{err.status_code}"
    return type(err).__name__


# --- features: handoff, re-engagement, embeddings ---------------------------------------------
handoffs_open = Gauge(
    "zapstream_handoffs_open",
    "Conversations currently with a human agent (this worker's partitions; sum the workers)",
    registry=REGISTRY,
)
reengagements_sent = _counter(
    "zapstream_reengagements_sent_total",
    "Re-engagement messages handed to the low-priority lane after a quiet period",
)
embed_batch_size = _histogram(
    "zapstream_embedding_batch_size", "Texts per encoder call", SIZE_BUCKETS
)
embed_batch_seconds = _histogram(
    "zapstream_embedding_batch_seconds", "One encoder call (a micro-batch)", LATENCY_BUCKETS
)


def embed_batch(size: int, seconds: float) -> None:
    """One encoder call of `size` texts took `seconds`."""
    embed_batch_size.observe(size)
    embed_batch_seconds.observe(seconds)


# --- the endpoint -----------------------------------------------------------------------------
def expose(app: Any) -> None:
    """Serve `GET /metrics` on the Faust app's web server and read consumer lag from its
    consumer at each scrape (changelog topics left out: a table's changelog is read
    only during recovery)."""
    from faust import web

    def lag_now() -> Any:
        consumer = app.consumer
        changelogs = frozenset(app.tables.changelog_topics)
        return [item for item in consumer.lag() if item[0] not in changelogs]

    lag.source = lag_now

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(self: web.View, request: web.Request) -> web.Response:
        # a header, not content_type=: aiohttp refuses a charset in that argument
        return self.bytes(exposition(REGISTRY), headers={"Content-Type": CONTENT_TYPE})
