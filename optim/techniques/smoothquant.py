"""SmoothQuant: move activation outliers of transformer Linear layers into their weights.

For a Linear layer ``y = x W`` (W (K, N)) fed by a LayerNormalization, each input channel ``j``
is divided by ``s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)`` (folded into the LayerNorm's
scale and bias) and row ``j`` of ``W`` multiplied by it: the fp32 function is unchanged, while
the activations' per-channel ranges, measured on the calib split, flatten out so int8 (per-tensor)
activations lose less (Xiao et al., 2023). Layers sharing one LayerNorm (query, key, value) share
its ``s``, with ``max|W_j|`` taken over all of them. Layers not fed by a LayerNorm are left as
they are (a scale there would need an extra Mul at run time).

Written here: ONNX Runtime's ``quantize_static(extra_options={"SmoothQuant": True})`` calls
Intel Neural Compressor 2.x, whose install would downgrade this project's numpy (2.x to 1.26)
and pandas; the migration itself is the formula above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from optim.artifact import Graph
from optim.plan import Context, technique
from optim.techniques._calib import (
    Layer,
    calib_inputs,
    initializers,
    layers,
    refuse_stored,
    set_initializers_,
    source_graph,
    tensors,
)


@dataclass(frozen=True)
class SmoothQuant:
    """Migrate activation ranges into LayerNorm-fed Linear weights (fp32-exact).

    Example:
        >>> SmoothQuant().label
        'SmoothQuant a=0.5'
    """

    # 0.5: the paper's default, balancing activation and weight ranges
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "share of the activation range moved into the weights",
            "range": (0.0, 1.0),
        },
    )

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"`0 <= alpha <= 1` must hold, but got alpha={self.alpha}")

    @property
    def label(self) -> str:
        return f"SmoothQuant a={self.alpha:g}"


def smoothing_scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = x_max_j**alpha / w_max_j**(1 - alpha)``; 1 where either range is 0.

    Example:
        >>> smoothing_scales(np.array([16.0, 1.0]), np.array([1.0, 4.0]), 0.5)
        array([4. , 0.5])
    """
    ok = (x_max > 0) & (w_max > 0)
    s = np.power(np.where(ok, x_max, 1.0), alpha) / np.power(np.where(ok, w_max, 1.0), 1 - alpha)
    return np.where(ok, s, 1.0)


def groups(model: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, list[Layer]]]:
    """LayerNorm output -> (the LayerNorm, the Linear layers reading it), where every reader of
    that output is a MatMul/Gemm layer and the LayerNorm's scale and bias are initializers."""
    inits = {t.name for t in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    linear = {la.node.output[0]: la for la in layers(model) if la.node.op_type != "Conv"}
    outputs = {o.name for o in model.graph.output}
    uses = [x for n in model.graph.node for x in n.input]
    found = {}
    for node in model.graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 3:
            continue
        if any(a.name == "axis" and a.i != -1 for a in node.attribute):
            continue  # normalized over more than the channel axis: its scale is not per channel
        if not all(n in inits and uses.count(n) == 1 for n in node.input[1:3]):
            continue
        out = node.output[0]
        users = readers.get(out, [])
        chosen = [linear.get(u.output[0]) for u in users]
        ok = users and all(la is not None and la.input == out for la in chosen)
        if ok and out not in outputs:
            found[out] = (node, chosen)
    return found


def _rows(w: np.ndarray, layer: Layer) -> np.ndarray:
    """The weight as (K, N): input channels first."""
    return w if layer.axis == w.ndim - 1 else w.T


def _check(cfg: SmoothQuant, source) -> str | None:  # noqa: ANN001 - an optim ModelSource
    graph = source_graph(source)
    if graph is not None and not groups(graph):
        return "a LayerNormalization feeding only MatMul/Gemm layers (the graph has none)"
    return None


@technique(SmoothQuant, stage="graph", family="smoothquant", needs=("linear",), check=_check)
def smoothquant(graph: Graph, cfg: SmoothQuant, ctx: Context) -> Graph:
    found = groups(graph.model)
    if not found:
        raise ValueError(
            f"{cfg.label} found no LayerNormalization feeding only MatMul/Gemm layers"
        )
    touched = {la.weight for _, chosen in found.values() for la in chosen}
    refuse_stored(graph.encodings, touched, cfg.label)
    x_max: dict[str, np.ndarray] = {}
    for outs in tensors(graph.model, list(found), calib_inputs(ctx, cfg.label)):
        for name, y in outs.items():
            m = np.abs(y.reshape(-1, y.shape[-1])).max(axis=0)
            x_max[name] = np.maximum(x_max.get(name, 0), m)
    arrays = initializers(graph.model)
    new = {}
    for out, (ln, chosen) in found.items():
        w_max = np.max([np.abs(_rows(arrays[la.weight], la)).max(axis=1) for la in chosen], 0)
        s = smoothing_scales(x_max[out], w_max, cfg.alpha).astype(np.float32)
        for name in ln.input[1:3]:
            new[name] = (arrays[name] / s).astype(np.float32)
        for la in chosen:
            w = arrays[la.weight]
            new[la.weight] = (w * s[:, None] if la.axis == w.ndim - 1 else w * s[None]).astype(
                np.float32
            )
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    set_initializers_(model, new)
    n = sum(len(chosen) for _, chosen in found.values())
    return Graph(model, dict(graph.encodings), f"{graph.precision} (SmoothQuant: {n} layers)")
