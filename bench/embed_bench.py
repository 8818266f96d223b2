"""Embedding benchmark: texts per second per core, torch against int8 ONNX, side by side.

For each call size (how many texts one `encode` call gets) both backends encode the
same texts on one thread, interleaved; texts/s is counted against wall time and
against the process's CPU time (the per-core figure, steadier on a busy machine).
Then: the cosine agreement of
the two backends, and how the model relates Portuguese to English (translations
against unrelated pairs).

    .venv/bin/python bench/embed_bench.py --texts 512
    .venv/bin/python bench/embed_bench.py --texts 256 --sizes 1,32,128 --model /models/multilingual
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from processors.embeddings import Encoder, make_encoder
from processors.embeddings.encoder import DEFAULT_CACHE_DIR
from tests.support.embedding_texts import TRANSLATIONS, corpus


def timed(encoder: Encoder, texts: list[str], size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to encode `texts` in calls of `size`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), size):
        encoder.encode(texts[start : start + size])
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--sizes", default="1,8,32,64,128,256")
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--model", default=None, help="a local sentence-transformers folder (EMBEDDING_MODEL)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()

    texts = corpus(args.texts)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    names = [b for b in args.backends.split(",") if b]
    versions = ", ".join(
        f"{p} {importlib.metadata.version(p)}" for p in ("torch", "sentence-transformers", "onnxruntime")
    )
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {versions}")
    print(f"{len(texts)} short pt/en texts, one compute thread per backend")

    encoders: dict[str, Encoder] = {}
    for name in names:
        started = time.perf_counter()
        encoder = make_encoder(name, model_path=args.model, cache_dir=args.cache_dir)  # type: ignore[arg-type]
        encoder.warm_up()
        encoder.encode(texts[:8])
        encoders[name] = encoder
        print(f"{name}: ready in {time.perf_counter() - started:.1f} s (import, load{', build or cache' if name != 'torch' else ''})")

    header = f"{'call size':>10} " + " ".join(f"{n + ' /s wall':>18} {n + ' /s cpu':>18}" for n in names)
    if len(names) == 2:
        header += f" {'ratio (cpu)':>12}"
    print()
    print(header)
    for size in sizes:
        cells, per_cpu = [], []
        for name in names:
            wall, cpu = timed(encoders[name], texts, size)
            cells.append(f"{len(texts) / wall:>18.0f} {len(texts) / cpu:>18.0f}")
            per_cpu.append(len(texts) / cpu)
        ratio = f" {per_cpu[1] / per_cpu[0]:>11.2f}x" if len(per_cpu) == 2 else ""
        print(f"{size:>10} " + " ".join(cells) + ratio)

    if len(names) == 2:
        a, b = (encoders[n].encode(texts) for n in names)
        cosine = (a * b).sum(axis=1)
        worst = texts[int(cosine.argmin())]
        print(f"\ncosine {names[1]} vs {names[0]}: min {cosine.min():.4f} mean {cosine.mean():.4f} (worst: {worst!r})")

    reference = encoders[names[0]]
    pt = reference.encode([p for p, _ in TRANSLATIONS])
    en = reference.encode([e for _, e in TRANSLATIONS])
    scores = pt @ en.T
    paired = np.diag(scores)
    unrelated = scores[~np.eye(len(TRANSLATIONS), dtype=bool)]
    print(
        f"pt->en ({names[0]}): translations mean {paired.mean():.3f} (min {paired.min():.3f}, max {paired.max():.3f}),"
        f" unrelated pairs mean {unrelated.mean():.3f}; translation ranked first for"
        f" {int((scores.argmax(axis=1) == np.arange(len(TRANSLATIONS))).sum())}/{len(TRANSLATIONS)}"
    )


if __name__ == "__main__":
    main()
