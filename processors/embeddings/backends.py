"""`make_encoder`: the backend by name, over a checked model folder (imports nothing heavy)."""

from __future__ import annotations

from pathlib import Path

from processors.embeddings.encoder import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_CACHE_DIR,
    Backend,
    Encoder,
)
from processors.embeddings.model import inspect_model


def make_encoder(
    backend: Backend = DEFAULT_BACKEND,
    *,
    model_path: Path | str | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    threads: int = 1,
) -> Encoder:
    """The encoder for `backend` over the model at `model_path` (None: the packaged default)."""
    model = inspect_model(model_path)
    if backend == "torch":
        from processors.embeddings.torch_backend import TorchEncoder

        return TorchEncoder(model, threads=threads)
    if backend == "onnx-int8":
        from processors.embeddings.onnx_backend import OnnxInt8Encoder

        return OnnxInt8Encoder(model, cache_dir=cache_dir, threads=threads)
    raise ValueError(f"unknown embedding backend {backend!r}; one of {', '.join(BACKENDS)}")
