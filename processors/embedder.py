"""`zapstream embedder`: embedding requests in, vectors out, in micro-batches.

    embeddings.requested.v1 ──embed (EMBEDDING_BATCH_SIZE within EMBEDDING_LINGER_MS)──▶
        one encode call in the compute thread ──▶ embeddings.vectors.v1 ──▶ ack

A Faust app of its own (`<APP_ID>-embedder`: its own consumer group, no tables; a web
port for `/metrics` only when EMBEDDING_WEB_PORT is set), so an embedding backlog never sits in front of a reply: the worker only
publishes requests, and scaling is by processes (`EMBEDDING_WORKERS`). Each process
encodes on ONE thread (a single-thread executor; torch and onnxruntime on one intra-op
thread): measured, two threads on two busy cores are slower than one. The process also
runs at the lowest CPU priority (`lower_priority`: Linux's SCHED_IDLE, else nice 19, and
its session's autogroup at nice 19),
so that on a busy machine the worker, the API and the broker go first.

Delivery is at least once: a batch (`stream.noack_take`) is acked only after its
vectors are acknowledged by the broker; a crash or a shutdown in between leaves it
unacked, so it is read and published again, and the sink keeps one row per
`message_id`. A request that does not decode, or whose text the model refuses on its
own, goes to the processing dead-letter topic (stage `embed`); a batch that fails as a
whole is encoded again text by text to find it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import faust

from processors import metrics
from processors.embeddings.backends import make_encoder
from processors.embeddings.encoder import Backend, Encoder, FloatArray
from processors.embeddings.model import ModelFolder, inspect_model
from processors.faust_transport import FastFetchApp, mark_received
from schemas.codec import decode, encode
from schemas.embeddings import EmbeddingComputed, EmbeddingRequested, encode_vector
from schemas.processing import ProcessingDeadLetter
from schemas.topics import Topics
from zapstream import cpu_priority
from zapstream.errors import InvalidPayload, ZapstreamError
from zapstream.settings import Settings

log = logging.getLogger("zapstream.embedder")

NICE = 19
"""The embedder's niceness where SCHED_IDLE is not available: replies first."""
PUBLISH_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
EMBEDDER_IDLE_WAIT_MS = 2000
"""The embedder's shortest fetch wait once idle, on any broker."""


def backend_of(settings: Settings) -> Backend:
    return "torch" if settings.embedding_backend == "torch" else "onnx-int8"


def check_model(settings: Settings) -> ModelFolder:
    """The model folder, checked (a few small file reads); InvalidEmbeddingModel if unusable."""
    model = inspect_model(settings.embedding_model)
    if backend_of(settings) == "onnx-int8":
        unsupported = model.onnx_unsupported()
        if unsupported is not None:
            from zapstream.errors import InvalidEmbeddingModel

            raise InvalidEmbeddingModel(str(model.path), f"{unsupported}; use the torch backend")
    return model


def build_encoder(settings: Settings) -> Encoder:
    return make_encoder(
        backend_of(settings),
        model_path=settings.embedding_model,
        cache_dir=settings.resolved_embedding_cache_dir,
        threads=1,
    )


def vector_events(
    requests: Sequence[EmbeddingRequested], vectors: FloatArray, model: str, now: datetime
) -> list[EmbeddingComputed]:
    """Pure: one vector record per request, row i for request i."""
    if vectors.ndim != 2 or vectors.shape[0] != len(requests):
        raise ValueError(f"encoder returned shape {vectors.shape} for {len(requests)} texts")
    return [
        EmbeddingComputed(
            message_id=r.message_id,
            user_id=r.user_id,
            model=model,
            dim=int(vectors.shape[1]),
            vector_b64=encode_vector(vectors[i]),
            text=r.text,
            at=r.at,
            embedded_at=now,
        )
        for i, r in enumerate(requests)
    ]


class Embedder:
    """The encoder on its one compute thread, loaded once, lazily (or by `warm_up`)."""

    def __init__(self, encoder: Encoder, model: ModelFolder) -> None:
        self.encoder = encoder
        self.model = model
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self.batches = 0
        self.encoded = 0

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.encoder.warm_up)

    async def encode(self, texts: list[str]) -> FloatArray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.encoder.encode, texts)


def create_embedder_app(settings: Settings) -> FastFetchApp:
    from processors.app import create_faust_app

    port = settings.embedding_web_port
    app = create_faust_app(
        settings,
        app_id=f"{settings.app_id}-embedder",
        web_port=port or settings.worker_web_port,
        web=port is not None,
    )
    # A batch waits EMBEDDING_LINGER_MS to fill anyway: fetching more often than that
    # only costs the broker and this process requests (on Tansu, which holds each
    # fetch for the whole wait, 100 a second at the workers' 10 ms).
    app.zapstream_fetch_max_wait_ms = max(
        settings.consumer_fetch_max_wait_ms, settings.embedding_linger_ms
    )
    # Idle, no reply waits on an embedding: the first request after a quiet spell may
    # wait EMBEDDER_IDLE_WAIT_MS on Tansu (which holds each fetch for the whole wait).
    app.zapstream_fetch_idle_wait_ms = max(settings.fetch_idle_wait_ms, EMBEDDER_IDLE_WAIT_MS)
    return app


def register_embedder(app: faust.App, settings: Settings, embedder: Embedder) -> None:
    topics = Topics.from_settings(settings)
    source = app.topic(topics.embeddings, key_serializer="raw", value_serializer="raw")
    vectors_topic = app.topic(
        topics.embedding_vectors, key_serializer="raw", value_serializer="raw"
    )
    dead_topic = app.topic(
        topics.processing_dead_letters, key_serializer="raw", value_serializer="raw"
    )
    within = max(settings.embedding_linger_ms, 1) / 1000.0

    async def publish(items: list[tuple[Any, str, bytes]]) -> None:
        """Send all, wait for every acknowledgement; retried while the broker is away.
        Still failing after the last retry: exit code 1 at once, the batch unacked
        (`zapstream up` starts the embedder again; it reads the batch again)."""
        for attempt, pause in enumerate((*PUBLISH_RETRY_S, None)):
            try:
                pending = [await t.send(key=k.encode(), value=v) for t, k, v in items]
                await asyncio.gather(*pending)
                for topic, _, _ in items:
                    metrics.published_to(topic)
                return
            except Exception as exc:
                if pause is None:
                    log.error("publishing vectors keeps failing (%r): exiting, unacked", exc)
                    os._exit(1)
                log.warning("publishing vectors failed (attempt %d): %r", attempt + 1, exc)
                await asyncio.sleep(pause)

    def dead_letter(event: Any, exc: BaseException) -> tuple[Any, str, bytes]:
        letter = ProcessingDeadLetter.for_event(
            "embed",
            event,
            exc,
            attempts=1,
            failed_at=datetime.now(UTC),
            retryable=bool(getattr(exc, "retryable", False)),
        )
        user = letter.user_id
        log.warning("embedding request dead-lettered", extra={"reason": letter.reason[:200]})
        return (dead_topic, user or "", encode(letter))

    async def encode_each(
        good: list[tuple[Any, EmbeddingRequested]], now: datetime
    ) -> list[tuple[Any, str, bytes]]:
        """After a batch failed: text by text, to find the one(s) the model refuses."""
        items: list[tuple[Any, str, bytes]] = []
        for event, request in good:
            try:
                vector = await embedder.encode([request.text])
                (computed,) = vector_events([request], vector, embedder.model.name, now)
                items.append((vectors_topic, computed.user_id, encode(computed)))
            except ZapstreamError as exc:
                if not exc.retryable:
                    fatal(exc)
                items.append(dead_letter(event, exc))
            except Exception as exc:
                items.append(dead_letter(event, exc))
        return items

    @app.agent(source, name="embed")
    async def embed(stream: Any) -> None:
        try:
            await embedder.warm_up()  # the model loads here, once, on the compute thread
        except ZapstreamError as exc:
            fatal(exc)
        log.info(
            "embedder ready",
            extra={"model": embedder.model.name, "backend": embedder.encoder.backend},
        )
        # noack_take: the batch is acked below, only once its vectors are acknowledged.
        # (`take_events` acks its batch in a `finally`, even when the body was cancelled
        # at a shutdown or failed: those requests would be committed unembedded.)
        batches = stream.noack_take(settings.embedding_batch_size, within=within)
        async for events in batches:
            started = time.perf_counter()
            good: list[tuple[Any, EmbeddingRequested]] = []
            items: list[tuple[Any, str, bytes]] = []
            for event in events:
                mark_received(event)
                try:
                    good.append((event, decode(EmbeddingRequested, event.value)))
                except InvalidPayload as exc:
                    items.append(dead_letter(event, exc))
            now = datetime.now(UTC)
            if good:
                requests = [r for _, r in good]
                try:
                    encode_started = time.perf_counter()
                    vectors = await embedder.encode([r.text for r in requests])
                    metrics.embed_batch(len(requests), time.perf_counter() - encode_started)
                    computed = vector_events(requests, vectors, embedder.model.name, now)
                    items += [(vectors_topic, c.user_id, encode(c)) for c in computed]
                except ZapstreamError as exc:
                    if not exc.retryable:
                        fatal(exc)
                    items += await encode_each(good, now)
                except Exception:
                    log.exception("an embedding batch failed; encoding its texts one by one")
                    items += await encode_each(good, now)
            if items:
                await publish(items)
            for event in events:
                await stream.ack(event)
            embedder.batches += 1
            embedder.encoded += len(good)
            log.debug(
                "embedding batch",
                extra={
                    "batch": len(events),
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


def fatal(exc: BaseException) -> None:
    """A configuration error met while running (the model failed to load): one line and
    exit code 2 at once, the batch in hand unacked (`zapstream up` does not restart
    a configuration error)."""
    import sys

    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    os._exit(2)


def lower_priority() -> str:
    """Run only on CPU time nothing else wants: SCHED_IDLE (Linux; any runnable task of
    normal priority preempts it at once), else nice 19, and the session's autogroup at
    nice 19 (`zapstream.cpu_priority`). Called first thing in the main thread: threads
    started later inherit it. Measured with nice 10, a 5,000-request backlog still added
    ~140 ms to the reply p95 on a busy 2-core box (bench/embed_backlog_bench.py).
    Returns what it set."""
    return cpu_priority.lower_priority(NICE, idle=True)
