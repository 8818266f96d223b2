"""The model folder checks, the ONNX cache key and pooling: no model is loaded here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.embeddings import default_model_path, inspect_model, make_encoder
from processors.embeddings.onnx_backend import pool
from processors.embeddings.onnx_build import cache_key, int8_path
from zapstream.errors import ConfigurationError, InvalidEmbeddingModel


def fake_model(root: Path, *, pooling: dict[str, bool] | None = None, tokenizer: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    (root / "model.safetensors").write_bytes(b"not really weights")
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling or {"pooling_mode_mean_tokens": True})
    )
    if tokenizer:
        (root / "tokenizer.json").write_text("{}")
    return root


def test_the_packaged_default_model_passes_the_checks() -> None:
    model = inspect_model(None)
    assert model.path == default_model_path().resolve()
    assert model.pooling == "mean"
    assert model.max_seq_length == 256
    assert model.weights.name == "model.safetensors"
    assert model.onnx_unsupported() is None


def test_a_missing_folder_is_one_configuration_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InvalidEmbeddingModel) as caught:
        make_encoder("torch", model_path=missing)
    assert isinstance(caught.value, ConfigurationError)
    assert not caught.value.retryable
    assert str(caught.value) == f"EMBEDDING_MODEL: {missing}: no such directory"


@pytest.mark.parametrize(
    ("remove", "reason"),
    [("config.json", "config.json is missing"), ("model.safetensors", "no weights")],
)
def test_a_folder_without_its_files_says_which_is_missing(
    tmp_path: Path, remove: str, reason: str
) -> None:
    folder = fake_model(tmp_path / "m")
    (folder / remove).unlink()
    with pytest.raises(InvalidEmbeddingModel, match=reason):
        inspect_model(folder)


def test_building_an_encoder_loads_nothing(tmp_path: Path) -> None:
    before = set(sys.modules)
    encoder = make_encoder("onnx-int8", model_path=fake_model(tmp_path / "m"), cache_dir=tmp_path)
    assert encoder.backend == "onnx-int8"
    loaded = set(sys.modules) - before
    assert not {m for m in loaded if m.split(".")[0] in {"torch", "sentence_transformers", "onnxruntime"}}


def test_the_onnx_backend_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    no_tokenizer = fake_model(tmp_path / "a", tokenizer=False)
    with pytest.raises(InvalidEmbeddingModel, match=r"tokenizer\.json is missing.*torch backend"):
        make_encoder("onnx-int8", model_path=no_tokenizer, cache_dir=tmp_path)
    sqrt_len = fake_model(tmp_path / "b", pooling={"pooling_mode_mean_sqrt_len_tokens": True})
    with pytest.raises(InvalidEmbeddingModel, match="pooling mode"):
        make_encoder("onnx-int8", model_path=sqrt_len, cache_dir=tmp_path)
    make_encoder("torch", model_path=sqrt_len)  # torch runs any sentence-transformers model


def test_pooling_and_truncation_are_read_from_the_folder(tmp_path: Path) -> None:
    model = inspect_model(fake_model(tmp_path / "m", pooling={"pooling_mode_cls_token": True}))
    assert model.pooling == "cls"
    assert model.max_seq_length == 128


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding backend"):
        make_encoder("tensorflow")  # type: ignore[arg-type]


def test_the_onnx_cache_key_follows_the_model_files(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "m")
    first = cache_key(inspect_model(folder))
    assert cache_key(inspect_model(folder)) == first
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert cache_key(inspect_model(folder)) != first
    path = int8_path(inspect_model(folder), tmp_path / "cache")
    assert path.parent.parent == tmp_path / "cache"
    assert path.parent.name.startswith("m-")


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token() -> None:
    hidden = np.array(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]],
        dtype=np.float32,
    )
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.int64)
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0], [7.0, 8.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0], [9.0, 10.0]]
