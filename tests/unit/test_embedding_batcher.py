"""EmbeddingBatcher with a fake encoder: batching, linger, ordering, errors, backpressure."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from processors.embeddings.batcher import EmbeddingBatcher
from processors.embeddings.encoder import FloatArray
from zapstream.errors import EmbedderClosed, EmbeddingFailed, InvalidEmbeddingModel


class FakeEncoder:
    """Vector of a text: [len(text), code of its first character]; records every call."""

    def __init__(self, fail_on: str | None = None, raises: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on
        self.raises = raises
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: Sequence[str]) -> FloatArray:
        self.gate.wait(5)
        self.calls.append(list(texts))
        self.threads.add(threading.get_ident())
        if self.raises is not None:
            raise self.raises
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return np.array([[len(t), ord(t[0]) if t else 0] for t in texts], dtype=np.float32)


def expected(text: str) -> list[float]:
    return [float(len(text)), float(ord(text[0]))]


async def test_concurrent_texts_are_encoded_in_batches_of_at_most_max_batch() -> None:
    fake = FakeEncoder()
    async with EmbeddingBatcher(fake, max_batch=4, linger_ms=20) as batcher:
        texts = [f"text {i}" for i in range(10)]
        vectors = await asyncio.gather(*(batcher.embed(str(i), t) for i, t in enumerate(texts)))
    assert [len(call) for call in fake.calls] == [4, 4, 2]
    assert batcher.batches == 3
    assert batcher.encoded == 10
    assert [v.tolist() for v in vectors] == [expected(t) for t in texts]


async def test_a_lone_text_waits_for_the_linger_time_then_goes_alone() -> None:
    fake = FakeEncoder()
    async with EmbeddingBatcher(fake, max_batch=64, linger_ms=80) as batcher:
        started = time.monotonic()
        vector = await batcher.embed("m1", "olá")
        waited = time.monotonic() - started
    assert vector.tolist() == expected("olá")
    assert fake.calls == [["olá"]]
    assert waited >= 0.07


async def test_a_full_batch_does_not_wait_for_the_linger_time() -> None:
    fake = FakeEncoder()
    async with EmbeddingBatcher(fake, max_batch=2, linger_ms=10_000) as batcher:
        started = time.monotonic()
        await asyncio.gather(batcher.embed("a", "one"), batcher.embed("b", "two"))
        assert time.monotonic() - started < 2.0
    assert fake.calls == [["one", "two"]]


async def test_texts_arriving_during_the_linger_join_the_same_batch() -> None:
    fake = FakeEncoder()
    async with EmbeddingBatcher(fake, max_batch=64, linger_ms=200) as batcher:
        first = asyncio.create_task(batcher.embed("a", "first"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.embed("b", "second"))
        await asyncio.gather(first, second)
    assert fake.calls == [["first", "second"]]


async def test_inner_batches_are_sorted_by_length_and_each_caller_gets_its_own_row() -> None:
    fake = FakeEncoder()
    texts = ["a" * n + chr(ord("b") + n) for n in (9, 1, 14, 3, 7, 2, 12, 5, 0, 11)]
    async with EmbeddingBatcher(fake, max_batch=64, linger_ms=20, inner_batch=3) as batcher:
        vectors = await asyncio.gather(*(batcher.embed(str(i), t) for i, t in enumerate(texts)))
    assert [v.tolist() for v in vectors] == [expected(t) for t in texts]
    assert [len(call) for call in fake.calls] == [3, 3, 3, 1]
    lengths = [len(t) for call in fake.calls for t in call]
    assert lengths == sorted(lengths)


async def test_by_default_a_batch_goes_to_the_encoder_in_one_call_sorted_by_length() -> None:
    fake = FakeEncoder()
    texts = ["a much longer text", "hi", "medium one"]
    async with EmbeddingBatcher(fake, max_batch=64, linger_ms=20) as batcher:
        vectors = await asyncio.gather(*(batcher.embed(str(i), t) for i, t in enumerate(texts)))
    assert fake.calls == [["hi", "medium one", "a much longer text"]]
    assert [v.tolist() for v in vectors] == [expected(t) for t in texts]


async def test_the_encoder_runs_in_one_worker_thread_off_the_event_loop() -> None:
    fake = FakeEncoder()
    async with EmbeddingBatcher(fake, max_batch=2, linger_ms=1) as batcher:
        for i in range(3):
            await asyncio.gather(*(batcher.embed(f"{i}-{j}", f"text {j}") for j in range(4)))
    assert len(fake.calls) == 6
    assert len(fake.threads) == 1
    assert threading.get_ident() not in fake.threads


async def test_an_encoder_error_fails_only_the_futures_of_its_batch() -> None:
    fake = FakeEncoder(fail_on="boom")
    async with EmbeddingBatcher(fake, max_batch=2, linger_ms=5) as batcher:
        results = await asyncio.gather(
            batcher.embed("m1", "boom"),
            batcher.embed("m2", "fine"),
            batcher.embed("m3", "also fine"),
            return_exceptions=True,
        )
        after = await batcher.embed("m4", "later")
    first, second, third = results
    assert isinstance(first, EmbeddingFailed)
    assert first is second
    assert first.retryable
    assert first.item_ids == ("m1", "m2")
    assert "boom" not in str(first)  # ids only, never the texts
    assert "RuntimeError: model exploded" in str(first)
    assert isinstance(first.__cause__, RuntimeError)
    assert isinstance(third, np.ndarray)
    assert third.tolist() == expected("also fine")
    assert after.tolist() == expected("later")


async def test_a_typed_error_from_the_encoder_reaches_the_callers_as_it_is() -> None:
    fake = FakeEncoder(raises=InvalidEmbeddingModel("/models/x", "no such directory"))
    async with EmbeddingBatcher(fake, linger_ms=1) as batcher:
        with pytest.raises(InvalidEmbeddingModel, match="EMBEDDING_MODEL: /models/x"):
            await batcher.embed("m1", "oi")


async def test_an_encoder_returning_the_wrong_shape_is_an_embedding_failure() -> None:
    def short(texts: Sequence[str]) -> FloatArray:
        return np.zeros((len(texts) - 1, 3), dtype=np.float32)

    async with EmbeddingBatcher(short, linger_ms=1) as batcher:
        with pytest.raises(EmbeddingFailed, match="shape"):
            await asyncio.gather(batcher.embed("a", "x"), batcher.embed("b", "y"))


async def test_embed_waits_for_room_once_max_pending_texts_are_in_flight() -> None:
    fake = FakeEncoder()
    fake.gate.clear()  # the encoder blocks until the gate opens
    batcher = EmbeddingBatcher(fake, max_batch=1, linger_ms=0, max_pending=2)
    tasks = [asyncio.create_task(batcher.embed(str(i), f"text {i}")) for i in range(3)]
    await asyncio.sleep(0.1)
    assert batcher.in_flight == 2  # one being encoded, one queued
    assert batcher.queued == 1
    assert not any(t.done() for t in tasks)  # the third waits for room, not in the queue
    fake.gate.set()
    vectors = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [v.tolist() for v in vectors] == [expected(f"text {i}") for i in range(3)]
    assert batcher.in_flight == 0
    await batcher.close()


async def test_a_cancelled_caller_is_left_out_and_frees_its_room() -> None:
    fake = FakeEncoder()
    batcher = EmbeddingBatcher(fake, max_batch=8, linger_ms=100, max_pending=2)
    gone = asyncio.create_task(batcher.embed("gone", "cancelled text"))
    kept = asyncio.create_task(batcher.embed("kept", "kept text"))
    await asyncio.sleep(0.01)
    gone.cancel()
    vector = await kept
    assert vector.tolist() == expected("kept text")
    assert fake.calls == [["kept text"]]
    assert batcher.in_flight == 0
    await asyncio.wait_for(batcher.embed("again", "room again"), 5)
    await batcher.close()


async def test_close_encodes_what_is_queued_then_refuses_new_texts() -> None:
    fake = FakeEncoder()
    batcher = EmbeddingBatcher(fake, max_batch=64, linger_ms=10_000)
    pending = asyncio.create_task(batcher.embed("m1", "queued"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.close(), 5)
    assert (await pending).tolist() == expected("queued")
    with pytest.raises(EmbedderClosed):
        await batcher.embed("m2", "too late")


async def test_close_without_drain_fails_what_is_queued() -> None:
    fake = FakeEncoder()
    batcher = EmbeddingBatcher(fake, max_batch=64, linger_ms=10_000)
    pending = asyncio.create_task(batcher.embed("m1", "queued"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.close(drain=False), 5)
    with pytest.raises(EmbedderClosed) as caught:
        await pending
    assert caught.value.retryable
    assert fake.calls == []


def test_nonsense_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        EmbeddingBatcher(FakeEncoder(), max_batch=0)
