"""Build the int8 ONNX form of a model folder once, and find it again.

The recipe (../shared/README.md, measured): `torch.onnx.export` of the model's
transformer, wrapped in a module whose `forward(input_ids, attention_mask,
token_type_ids)` calls it by keyword (transformers 5 changed the positional order);
the outlier channels split off (`outliers.py`); then
`onnxruntime.quantization.quantize_dynamic` with per-channel int8 weights. Weights use
7 bits (`reduce_range`): on AVX2 without VNNI the u8 x s8 kernel (VPMADDUBSW) saturates
its int16 pair sums, which after the split cost more accuracy than the lost bit
(min cosine 0.957 with 8 bits, 0.985 with 7). Pooling and the L2 norm stay outside
the graph (`onnx_backend.py`).

The file lives at `<cache_dir>/<model folder name>-<key>/model.int8.onnx`. The key
hashes the recipe, the model's path, the size and mtime of its files, and the
versions of torch, transformers, sentence-transformers, onnx and onnxruntime: any
change builds a new file. Building takes a few seconds plus the torch import; it is
written to a temporary name and renamed, so two processes that build at once both
end with a whole file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from processors.embeddings.model import ModelFolder, load_sentence_transformer, offline
from processors.embeddings.outliers import (
    CALIBRATION_TEXTS,
    OUTLIER_CHANNELS,
    split_outlier_channels,
)
from processors.embeddings.tokens import INPUT_NAMES, Tokens

log = logging.getLogger("zapstream.embeddings")

RECIPE = f"onnx-opset17/outliers{OUTLIER_CHANNELS}/dynamic-qint8-per-channel-reduce-range/v1"
OPSET = 17
FILE_NAME = "model.int8.onnx"
_VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")
_KEYED_FILES = (
    "config.json",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


def cache_key(model: ModelFolder) -> str:
    files = {}
    for path in [model.weights, *(model.path / name for name in _KEYED_FILES)]:
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(model.path))] = [stat.st_size, stat.st_mtime_ns]
    facts = {
        "recipe": RECIPE,
        "model": str(model.path),
        "files": files,
        "versions": {name: _version(name) for name in _VERSIONED},
    }
    blob = json.dumps(facts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def int8_path(model: ModelFolder, cache_dir: Path) -> Path:
    return cache_dir / f"{model.path.name}-{cache_key(model)}" / FILE_NAME


def ensure_int8(model: ModelFolder, cache_dir: Path) -> Path:
    """The cached int8 file for `model`, built first if it is not there."""
    target = int8_path(model, cache_dir)
    if not target.is_file():
        build_int8(model, target)
    return target


def build_int8(model: ModelFolder, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the int8 ONNX embedding model", extra={"path": str(target)})
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        tokens = Tokens(model)
        names = export_fp32(model, work / "fp32.onnx", tokens)
        calibration = (tokens.feeds(tokens.encode([text]), names) for text in CALIBRATION_TEXTS)
        keep_float = split_outlier_channels(work / "fp32.onnx", work / "split.onnx", calibration)
        with _quiet():
            quantize_dynamic(
                work / "split.onnx",
                work / FILE_NAME,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=keep_float,
            )
        meta = {
            "recipe": RECIPE,
            "model": str(model.path),
            "inputs": names,
            "versions": {name: _version(name) for name in _VERSIONED},
        }
        (work / FILE_NAME).with_suffix(".json").write_text(json.dumps(meta, indent=2))
        os.replace((work / FILE_NAME).with_suffix(".json"), target.with_suffix(".json"))
        os.replace(work / FILE_NAME, target)  # last: its presence means "built"


def export_fp32(model: ModelFolder, target: Path, tokens: Tokens) -> list[str]:
    """Export the transformer (float32) to `target`; returns its input names."""
    offline()
    import torch

    transformer = _transformer_of(load_sentence_transformer(model)).eval()
    accepted = inspect.signature(transformer.forward).parameters
    names = [n for n in INPUT_NAMES if n in accepted or n != "token_type_ids"]

    class ByKeyword(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            out = self.inner(**dict(zip(names, inputs, strict=True)))
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    # Two texts of different lengths, so the traced graph holds the padding path.
    sample = tokens.feeds(tokens.encode(["a short one", CALIBRATION_TEXTS[0]]), names)
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            ByKeyword(transformer),
            args,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
        )
    return names


def _transformer_of(st: Any) -> Any:
    first = st[0]
    for attribute in ("auto_model", "model"):
        inner = getattr(first, attribute, None)
        if inner is not None:
            return inner
    raise TypeError(f"cannot find the transformer inside {type(first).__name__}")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


class _DropRootNoise(logging.Filter):
    """The quantizer logs a line per tensor on the root logger (`logging.info`): only
    its warnings pass, and not its advice to pre-process."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's tracer warnings and the quantizer's advice are expected: hide them."""
    root = logging.getLogger()
    noise = _DropRootNoise()
    root.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(noise)

