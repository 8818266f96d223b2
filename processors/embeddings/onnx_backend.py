"""The int8 ONNX backend: onnxruntime on one thread, length-sorted inner batches of 8.

A process that finds the cached file imports neither torch nor sentence-transformers
(start-up: the tokenizer and the session, well under a second); one that does not
builds it first (`onnx_build.ensure_int8`: the torch import plus a few seconds).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.embeddings.encoder import Backend, FloatArray, l2_normalize
from processors.embeddings.model import ModelFolder
from processors.embeddings.onnx_build import ensure_int8
from processors.embeddings.tokens import Tokens
from zapstream.errors import InvalidEmbeddingModel

INNER_BATCH = 8


class OnnxInt8Encoder:
    backend: Backend = "onnx-int8"

    def __init__(self, model: ModelFolder, *, cache_dir: Path, threads: int = 1) -> None:
        unsupported = model.onnx_unsupported()
        if unsupported is not None:
            raise InvalidEmbeddingModel(str(model.path), f"{unsupported}; use the torch backend")
        self.model = model
        self.cache_dir = cache_dir
        self.threads = threads
        self._loaded: tuple[Any, Tokens, list[str]] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self._load()

    @property
    def path(self) -> Path:
        """The int8 file (built if it is not cached yet)."""
        return ensure_int8(self.model, self.cache_dir)

    def _load(self) -> tuple[Any, Tokens, list[str]]:
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                session = ort.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
                names = [i.name for i in session.get_inputs()]
                self._loaded = (session, Tokens(self.model), names)
            return self._loaded

    @property
    def dim(self) -> int:
        return int(self.encode([""]).shape[1])

    def encode(self, texts: Sequence[str]) -> FloatArray:
        session, tokens, names = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = tokens.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        pooled: npt.NDArray[np.float32] | None = None
        for start in range(0, len(order), INNER_BATCH):
            rows = order[start : start + INNER_BATCH]
            feeds = tokens.feeds([encodings[i] for i in rows], names)
            hidden = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
            vectors = pool(hidden, feeds["attention_mask"], self.model.pooling)
            if pooled is None:
                pooled = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            pooled[rows] = vectors
        assert pooled is not None
        return l2_normalize(pooled)


def pool(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], mode: str
) -> npt.NDArray[np.float32]:
    """Token vectors (batch, tokens, dim) to one vector per text, as sentence-transformers pools."""
    if mode == "cls":
        return np.asarray(hidden[:, 0, :], dtype=np.float32)
    weights = mask[:, :, None].astype(np.float32)
    if mode == "max":
        masked = np.where(weights > 0, hidden, np.float32(-1e9))
        return np.asarray(masked.max(axis=1), dtype=np.float32)
    summed = (hidden * weights).sum(axis=1)
    return np.asarray(summed / np.maximum(weights.sum(axis=1), 1e-9), dtype=np.float32)
