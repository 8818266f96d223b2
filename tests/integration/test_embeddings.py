"""The real model, both backends: agreement, ranking, the ONNX cache, the batcher on top.

One model load per backend for the whole session (the torch import alone takes seconds),
and one int8 build into a temporary cache folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.embeddings import BACKENDS, Encoder, make_encoder
from processors.embeddings.onnx_backend import OnnxInt8Encoder
from tests.support.embedding_texts import ALL

ROOT = Path(__file__).resolve().parents[2]

ENGLISH = [
    "I want to cancel my order.",
    "What time does the store open on Saturday?",
    "My credit card was charged twice for the same purchase.",
    "The package arrived damaged and I would like a refund.",
    "How do I reset my password?",
    "Do you deliver to Lisbon?",
    "I would like to speak with a human agent.",
    "The weather is sunny and warm today.",
    "Can I change the delivery address of my order?",
    "Your support team was very helpful, thank you.",
]
ENGLISH_PARAPHRASES = {
    0: "Please cancel the order I placed.",
    2: "I was billed two times for one purchase.",
    3: "My parcel came broken, I want my money back.",
    4: "I forgot my password, how can I change it?",
    6: "Can I talk to a real person instead of a bot?",
}
PORTUGUESE = [
    "Quero cancelar o meu pedido.",
    "Que horas a loja abre no sábado?",
    "Meu cartão de crédito foi cobrado duas vezes.",
    "Como faço para redefinir minha senha?",
    "Vocês entregam em Lisboa?",
    "O dia está ensolarado e quente.",
]
PORTUGUESE_PARAPHRASES = {
    0: "Por favor, cancelem o pedido que eu fiz.",
    2: "Fui cobrado duas vezes no cartão pela mesma compra.",
    3: "Esqueci a senha, como faço para trocar?",
}


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-models")


@pytest.fixture(scope="session")
def encoders(onnx_cache: Path) -> dict[str, Encoder]:
    built = {"torch": make_encoder("torch"), "onnx-int8": make_encoder("onnx-int8", cache_dir=onnx_cache)}
    for encoder in built.values():
        encoder.warm_up()
    return built


@pytest.fixture(params=BACKENDS)
def encoder(request: pytest.FixtureRequest, encoders: dict[str, Encoder]) -> Encoder:
    return encoders[request.param]


def test_int8_vectors_agree_with_torch_on_short_pt_and_en_messages(
    encoders: dict[str, Encoder],
) -> None:
    reference = encoders["torch"].encode(ALL)
    int8 = encoders["onnx-int8"].encode(ALL)
    cosine = (reference * int8).sum(axis=1)
    worst = ALL[int(cosine.argmin())]
    assert cosine.min() >= 0.98, f"min cosine {cosine.min():.4f} on {worst!r}"
    assert cosine.mean() >= 0.99


def test_vectors_are_unit_float32_rows_in_the_order_given(encoder: Encoder) -> None:
    texts = ["uma mensagem bem mais longa do que a outra, com várias palavras", "oi", "ok"]
    together = encoder.encode(texts)
    assert together.dtype == np.float32
    assert together.shape == (3, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    # int8 activations are scaled per batch, so a row moves a little with its company
    assert (together * alone).sum(axis=1).min() > 0.99
    assert encoder.encode([]).shape == (0, 384)


def test_a_paraphrase_ranks_its_source_first_among_english_sentences(encoder: Encoder) -> None:
    sources = encoder.encode(ENGLISH)
    queries = encoder.encode(list(ENGLISH_PARAPHRASES.values()))
    best = (queries @ sources.T).argmax(axis=1)
    assert best.tolist() == list(ENGLISH_PARAPHRASES)


def test_a_portuguese_paraphrase_matches_its_source_better_than_unrelated_sentences(
    encoder: Encoder,
) -> None:
    sources = encoder.encode(PORTUGUESE)
    queries = encoder.encode(list(PORTUGUESE_PARAPHRASES.values()))
    scores = queries @ sources.T
    for row, source in enumerate(PORTUGUESE_PARAPHRASES):
        others = np.delete(scores[row], source)
        assert scores[row, source] > others.max(), (row, scores[row].round(3).tolist())


def test_the_int8_file_is_built_once_then_loaded_without_torch(
    encoders: dict[str, Encoder], onnx_cache: Path
) -> None:
    built = encoders["onnx-int8"]
    assert isinstance(built, OnnxInt8Encoder)
    path = built.path
    stamp = path.stat().st_mtime_ns
    again = make_encoder("onnx-int8", cache_dir=onnx_cache)
    assert isinstance(again, OnnxInt8Encoder)
    again.warm_up()
    assert again.path == path
    assert path.stat().st_mtime_ns == stamp
    assert {p.name for p in path.parent.iterdir()} == {"model.int8.onnx", "model.int8.json"}
    # A process that finds the file never imports torch or sentence-transformers.
    probe = (
        "import sys; from pathlib import Path; from processors.embeddings import make_encoder; "
        f"e = make_encoder('onnx-int8', cache_dir=Path({str(onnx_cache)!r})); "
        "v = e.encode(['oi']); assert v.shape == (1, 384), v.shape; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
