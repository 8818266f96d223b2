"""Versioned records of the embedding chain: a text to embed, and its vector.

    converse ──EmbeddingRequested──▶ embeddings.requested.v1 ──embedder──▶
             ──EmbeddingComputed──▶ embeddings.vectors.v1 ──sink──▶ DuckDB `embeddings`

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused. Both are keyed by
`user_id`. `message_id` is the idempotence key all the way down: a request that is
repeated (redelivered, replayed) makes the same vector row, which the sink ignores.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from schemas.events import Event


class EmbeddingRequested(Event):
    """One inbound text to embed (a text body, a caption, a button or list title)."""

    KIND: ClassVar[str] = "embedding_requested"
    schema_version: Literal[1] = 1
    message_id: str
    user_id: str
    text: str
    at: datetime
    """The message's time (the user's send time, as Meta reports it)."""
    message_type: str | None = None
    turn_id: str | None = None

    @property
    def key(self) -> str:
        return self.user_id


class EmbeddingComputed(Event):
    """The unit vector of one message's text, from one model."""

    KIND: ClassVar[str] = "embedding_computed"
    schema_version: Literal[1] = 1
    message_id: str
    user_id: str
    model: str
    """The model's name (`processors.embeddings.model.model_name`): vectors of different
    models are not comparable, so search only ranks the current model's."""
    dim: int
    vector_b64: str
    """The vector as little-endian float32 bytes, base64 (a quarter of the size of a
    JSON list of numbers, and exact). `vector_of` / `encode_vector`."""
    text: str
    at: datetime
    embedded_at: datetime

    @property
    def key(self) -> str:
        return self.user_id

    @property
    def vector(self) -> npt.NDArray[np.float32]:
        return vector_of(self.vector_b64)


def encode_vector(vector: npt.ArrayLike) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def vector_of(vector_b64: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(vector_b64), dtype="<f4")
