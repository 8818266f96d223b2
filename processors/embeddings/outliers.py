"""Outlier channels kept in float before int8 quantization (LLM.int8()-style decomposition).

Why: onnxruntime's dynamic quantization scales each activation tensor as a whole, and
a few fixed hidden channels of MiniLM carry values ~4x larger than the rest (channel 99
reaches ~28 where the others stay under ~7, mostly on [CLS]). That one channel sets
the scale for all of them. Measured on short pt/en messages: plain `quantize_dynamic`
(the recipe in ../shared/README.md) gave min cosine 0.956 to torch ("thanks!" is the
worst; the mean is fine), below the 0.98 bar.

What: for every MatMul with a constant weight `W` and input `X`, the `OUTLIER_CHANNELS`
channels of `X` with the largest magnitude on calibration texts go through a small
float MatMul (`X[..., idx] @ W[idx]`); the rest (`X` with those channels zeroed,
`W` with those rows zeroed) goes through the int8 one, and the two are added. Exact in
float (the split model equals the original to 1e-6); after quantization, min cosine
~0.985 at ~the speed of plain int8 (a Mul, a Gather and a [k x n] MatMul per layer input).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OUTLIER_CHANNELS = 4

# Calibration: short messages like the ones the service sees (not the test texts).
CALIBRATION_TEXTS = (
    "Good morning, I would like some information about my account.",
    "Bom dia, gostaria de informações sobre a minha conta.",
    "ok",
    "valeu",
    "Can you help me?",
    "Pode me ajudar com uma dúvida sobre o pagamento?",
    "The package was delivered to the wrong address last Friday.",
    "A encomenda foi entregue no endereço errado na sexta-feira passada.",
    "yes",
    "não sei",
    "Where can I find the nearest store?",
    "Onde fica a loja mais próxima?",
)


def split_outlier_channels(
    source: Path,
    target: Path,
    calibration: Iterable[Mapping[str, npt.NDArray[np.int64]]],
    *,
    channels: int = OUTLIER_CHANNELS,
) -> list[str]:
    """Write the split model to `target`; returns the float MatMuls to keep out of int8."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    users: dict[str, list[Any]] = {}  # activation -> the MatMuls that multiply it by a weight
    targets: set[int] = set()
    original = list(graph.node)  # one Python object per node: ids below stay valid
    for node in original:
        if node.op_type == "MatMul" and len(weights.get(node.input[1], _NO_DIMS).dims) == 2:
            users.setdefault(node.input[0], []).append(node)
            targets.add(id(node))
    peaks = _channel_peaks(source, list(users), calibration)

    nodes: list[Any] = []
    keep_float: list[str] = []
    prepared: dict[str, tuple[str, str, npt.NDArray[np.int64]]] = {}
    for node in original:
        if id(node) not in targets:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in prepared:
            tag = f"outlier_split_{len(prepared)}"
            idx = np.argsort(-peaks[x], kind="stable")[:channels].astype(np.int64)
            mask = np.ones(peaks[x].shape[0], dtype=np.float32)
            mask[idx] = 0.0
            graph.initializer.extend(
                [numpy_helper.from_array(idx, f"{tag}_idx"), numpy_helper.from_array(mask, f"{tag}_mask")]
            )
            nodes.append(helper.make_node("Mul", [x, f"{tag}_mask"], [f"{tag}_inliers"], name=f"{tag}_Mul"))
            nodes.append(
                helper.make_node(
                    "Gather", [x, f"{tag}_idx"], [f"{tag}_outliers"], name=f"{tag}_Gather", axis=-1
                )
            )
            prepared[x] = (f"{tag}_inliers", f"{tag}_outliers", idx)
        inliers, outliers, idx = prepared[x]
        w_init = weights[node.input[1]]
        w = numpy_helper.to_array(w_init).astype(np.float32)
        w_rest = w.copy()
        w_rest[idx, :] = 0.0  # those rows now only widen the int8 weight scales
        w_init.CopyFrom(numpy_helper.from_array(w_rest, w_init.name))
        w_out_name = f"{node.name}_outlier_weight"
        graph.initializer.append(numpy_helper.from_array(w[idx, :], w_out_name))
        y = node.output[0]
        node.input[0] = inliers
        node.output[0] = f"{y}_inliers"
        float_name = f"{node.name}_outliers"
        nodes.append(node)
        nodes.append(helper.make_node("MatMul", [outliers, w_out_name], [f"{y}_outliers"], name=float_name))
        nodes.append(
            helper.make_node("Add", [f"{y}_inliers", f"{y}_outliers"], [y], name=f"{node.name}_outliers_Add")
        )
        keep_float.append(float_name)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return keep_float


class _NoDims:
    dims: tuple[int, ...] = ()


_NO_DIMS = _NoDims()


def _channel_peaks(
    source: Path,
    activations: list[str],
    calibration: Iterable[Mapping[str, npt.NDArray[np.int64]]],
) -> dict[str, npt.NDArray[np.float32]]:
    """Per activation, the largest |value| of each channel over the calibration inputs."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.load(str(source))
    for name in activations:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    peaks: dict[str, npt.NDArray[np.float32]] = {}
    for feeds in calibration:
        values = session.run(activations, dict(feeds))
        for name, value in zip(activations, values, strict=True):
            arr = np.abs(np.asarray(value, dtype=np.float32))
            peak = arr.reshape(-1, arr.shape[-1]).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks
