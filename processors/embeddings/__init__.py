"""Sentence embeddings of message texts: the model and two backends.

    model.py           the local model folder (EMBEDDING_MODEL), checked up front, loaded offline
    encoder.py         the `Encoder` interface: `encode(texts) -> float32 (n, dim)`, unit rows
    backends.py        `make_encoder(backend, model_path=..., cache_dir=...)`
    torch_backend.py   sentence-transformers on torch (the reference)
    onnx_backend.py    int8 ONNX on onnxruntime (the default: ~2x the texts per core)
    onnx_build.py      exporting and quantizing once, cached under DATA_DIR/models/embeddings
    outliers.py        the outlier channels kept in float, so int8 stays within 0.98 cosine
    tokens.py          the fast tokenizer, as sentence-transformers tokenizes

Importing this package is cheap: torch, sentence-transformers and onnxruntime are
imported on first use.
"""

from processors.embeddings.backends import make_encoder
from processors.embeddings.encoder import (
    BACKENDS,
    DEFAULT_BACKEND,
    Backend,
    Encoder,
    FloatArray,
    default_cache_dir,
)
from processors.embeddings.model import ModelFolder, default_model_path, inspect_model

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Backend",
    "Encoder",
    "FloatArray",
    "ModelFolder",
    "default_cache_dir",
    "default_model_path",
    "inspect_model",
    "make_encoder",
]
