"""One small interface over the backends: `encode(texts) -> float32 (n, dim)`, L2-normalized.

    torch       sentence-transformers on torch, batch_size 8, one thread: the reference
    onnx-int8   the same weights exported to ONNX and quantized to int8 (`onnx_build`),
                run by onnxruntime on one thread: ~2x the texts per core, cosine to torch
                >= 0.98 on short pt/en messages (tests/integration/test_embeddings.py)

`backends.make_encoder` picks one. Both load lazily: constructing one only checks
the model folder (an `InvalidEmbeddingModel` at once for a wrong path); the first
`encode` (or `warm_up`) loads the model. `encode` is blocking CPU work: call it from one worker thread (the
micro-batcher in `batcher.py` does), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, TypeAlias, get_args

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float32]
Backend = Literal["torch", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
DEFAULT_BACKEND: Backend = "onnx-int8"


class Encoder(Protocol):
    backend: Backend

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """Unit vectors, one row per text, in the order given."""
        ...

    def warm_up(self) -> None:
        """Load the model now rather than on the first `encode`."""
        ...


def default_cache_dir(data_dir: Path) -> Path:
    """Where the exported ONNX files live: `<DATA_DIR>/models/embeddings`."""
    return data_dir / "models" / "embeddings"


DEFAULT_CACHE_DIR = default_cache_dir(Path(".zapstream"))  # DATA_DIR's default


def l2_normalize(vectors: npt.NDArray[np.floating]) -> FloatArray:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.asarray(out / np.maximum(norms, 1e-12), dtype=np.float32)
