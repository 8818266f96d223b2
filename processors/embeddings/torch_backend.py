"""The reference backend: sentence-transformers on torch, one thread, batches of 8.

Big padded batches are slower on a CPU than batches of 8 of similar length
(sentence-transformers sorts by length within a call), and one thread per process
beats two on a busy machine (measured: ../shared/README.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from processors.embeddings.encoder import Backend, FloatArray, l2_normalize
from processors.embeddings.model import ModelFolder, load_sentence_transformer

INNER_BATCH = 8


class TorchEncoder:
    backend: Backend = "torch"

    def __init__(self, model: ModelFolder, *, threads: int = 1) -> None:
        self.model = model
        self.threads = threads
        self._st: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self._sentence_transformer()

    def _sentence_transformer(self) -> Any:
        with self._lock:
            if self._st is None:
                import torch

                torch.set_num_threads(self.threads)
                self._st = load_sentence_transformer(self.model)
            return self._st

    @property
    def dim(self) -> int:
        st = self._sentence_transformer()
        # sentence-transformers 6 renamed it; 3-5 only have the old name.
        size = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(size())

    def encode(self, texts: Sequence[str]) -> FloatArray:
        st = self._sentence_transformer()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = st.encode(
            list(texts),
            batch_size=INNER_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalize(vectors)
