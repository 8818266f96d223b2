"""An async micro-batcher: callers await one vector each; texts are encoded in batches.

    vector = await batcher.embed(message_id, text)

A batch closes when `max_batch` texts wait or when the oldest has waited `linger_ms`
(whichever comes first; a batch that waits for the encoder to finish the previous one
goes at once). Its texts are sorted by length and encoded in ONE worker thread, so the
event loop never runs model code and the process never encodes two batches at once.
Each caller's future gets its own row, whatever the sort did.

Inner batches: both encoders already cut what they get into length-sorted inner
batches of 8 by token count, so by default (`inner_batch=None`) the sorted batch goes
to the encoder in one call; measured with the int8 encoder, cutting it here into
calls of 8 (by characters) cost 10-15 % more CPU. Give `inner_batch` for an encoder
that pads whatever it gets into one batch.

Backpressure: at most `max_pending` texts are queued or being encoded; `embed` waits
for room beyond that. Errors fail the futures of their batch only: an encoder
exception becomes `EmbeddingFailed` (retryable: in another batch the text may pass;
it names the item ids, never the texts), a `ZapstreamError` (say `InvalidEmbeddingModel`
from the first, lazy model load) is passed on as it is. A caller that is cancelled
leaves its text out of the next batch.

`close()` stops new work, encodes what is queued (or, with `drain=False`, fails it
with `EmbedderClosed`) and waits for the batch in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from processors.embeddings.encoder import FloatArray
from zapstream.errors import EmbedderClosed, EmbeddingFailed, ZapstreamError

log = logging.getLogger("zapstream.embeddings")

EncodeFn = Callable[[Sequence[str]], FloatArray]


@dataclass
class _Item:
    item_id: str
    text: str
    future: asyncio.Future[FloatArray]
    enqueued_at: float = field(default=0.0)


class EmbeddingBatcher:
    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch: int = 64,
        linger_ms: float = 5.0,
        max_pending: int = 1024,
        inner_batch: int | None = None,
    ) -> None:
        small = inner_batch is not None and inner_batch < 1
        if max_batch < 1 or small or max_pending < 1 or linger_ms < 0:
            raise ValueError("max_batch, inner_batch and max_pending must be >= 1, linger_ms >= 0")
        self._encode = encode
        self.max_batch = max_batch
        self.linger_s = linger_ms / 1000.0
        self.max_pending = max_pending
        self.inner_batch = max_batch if inner_batch is None else inner_batch
        self._queue: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Semaphore(max_pending)
        self._held = 0  # texts holding room: queued or being encoded
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._drain = True
        self.batches = 0
        self.encoded = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Texts queued or being encoded (at most max_pending)."""
        return self._held

    async def embed(self, item_id: str, text: str) -> FloatArray:
        """The unit vector of `text`; waits for room when max_pending texts are in flight."""
        if self._closed:
            raise EmbedderClosed()
        await self._room.acquire()
        if self._closed:
            self._room.release()
            raise EmbedderClosed()
        self._held += 1
        loop = asyncio.get_running_loop()
        item = _Item(item_id, text, loop.create_future(), loop.time())
        self._queue.append(item)
        self._arrived.set()
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="embedding-batcher")
        return await item.future

    async def close(self, *, drain: bool = True) -> None:
        self._closed = True
        self._drain = drain
        self._arrived.set()
        if self._runner is not None:
            await asyncio.wait({self._runner})  # its own failure was logged where it happened
        self._fail_queued(EmbedderClosed())
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> EmbeddingBatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self._queue:
                    if self._closed:
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                deadline = self._queue[0].enqueued_at + self.linger_s
                while len(self._queue) < self.max_batch and not self._closed:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), remaining)
                if self._closed and not self._drain:
                    return
                take = min(self.max_batch, len(self._queue))
                await self._encode_batch([self._queue.popleft() for _ in range(take)])
        except Exception:
            log.exception("the embedding batcher stopped")
            self._closed = True
            self._fail_queued(EmbedderClosed())
            raise

    async def _encode_batch(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]  # cancelled callers drop out
        try:
            if live:
                loop = asyncio.get_running_loop()
                texts = [item.text for item in live]
                vectors = await loop.run_in_executor(self._executor, self._encode_sorted, texts)
                for row, item in enumerate(live):
                    if not item.future.done():
                        item.future.set_result(vectors[row].copy())
                self.encoded += len(live)
        except asyncio.CancelledError:
            self._fail(live, EmbedderClosed())
            raise
        except ZapstreamError as exc:
            self._fail(live, exc)
        except Exception as exc:
            failed = EmbeddingFailed(
                f"{type(exc).__name__}: {exc}", item_ids=tuple(i.item_id for i in live)
            )
            failed.__cause__ = exc
            log.warning("embedding batch failed", extra={"batch": len(live), "error": str(failed)})
            self._fail(live, failed)
        finally:
            self.batches += 1
            self._release(len(batch))

    def _encode_sorted(self, texts: list[str]) -> FloatArray:
        """In the worker thread: length-sorted (inner) batches, rows back in caller order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: FloatArray | None = None
        for start in range(0, len(order), self.inner_batch):
            rows = order[start : start + self.inner_batch]
            vectors = np.asarray(self._encode([texts[i] for i in rows]), dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[0] != len(rows):
                raise ValueError(f"encoder returned shape {vectors.shape} for {len(rows)} texts")
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return out

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        items = list(self._queue)
        self._queue.clear()
        self._fail(items, exc)
        self._release(len(items))

    def _release(self, count: int) -> None:
        self._held -= count
        for _ in range(count):
            self._room.release()
