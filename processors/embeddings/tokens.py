"""Tokenizing for the ONNX backend: the model folder's `tokenizer.json`, as sentence-transformers does.

Truncation at the model's `max_seq_length`; padding is ours, per inner batch, to that
batch's longest text (texts are sorted by token count first, so there is little of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.embeddings.model import ModelFolder, offline
from zapstream.errors import InvalidEmbeddingModel

IntArray = npt.NDArray[np.int64]
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class Tokens:
    def __init__(self, model: ModelFolder) -> None:
        offline()  # TOKENIZERS_PARALLELISM=false before the first batch
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(model.tokenizer_file))
        except Exception as exc:
            raise InvalidEmbeddingModel(
                str(model.path), f"tokenizer.json cannot be loaded: {exc}"
            ) from exc
        self.pad_id = _pad_id(tokenizer)
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=model.max_seq_length)
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> list[Any]:
        """One `tokenizers.Encoding` per text (ids with the special tokens, truncated)."""
        return list(self._tokenizer.encode_batch(list(texts)))

    def feeds(self, encodings: Sequence[Any], names: Sequence[str]) -> dict[str, IntArray]:
        """The model inputs named `names` for these encodings, padded to the longest."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in names}


def _pad_id(tokenizer: Any) -> int:
    padding = tokenizer.padding
    if padding and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0
