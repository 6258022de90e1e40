"""Cross-layer equalization: rescale channels between consecutive layers joined by ReLU so
both weights have equal per-channel ranges; the fp32 function is unchanged.

For two layers ``y = W2 relu(W1 x + b1)`` and any ``s > 0`` per channel,
``relu(x / s) = relu(x) / s``, so dividing row ``i`` of ``W1`` (and ``b1``) by ``s_i`` and
multiplying ``W2``'s input channel ``i`` by ``s_i`` computes the same function. With
``r1_i = max|W1[i]|`` and ``r2_i = max|W2[:, i]|``, ``s_i = sqrt(r1_i / r2_i)`` makes both ranges
``sqrt(r1_i r2_i)`` (Nagel et al., "Data-Free Quantization", 2019, Sec. 4.1); chains are
equalized pair by pair, repeatedly, until the scales settle. It helps depthwise-heavy nets
(MobileNet), whose depthwise channels differ widely in range, and helps most when one scale
covers a tensor. Joins through ReLU, LeakyReLU and MaxPool (all commute with a positive scale)
are equalized; HardSwish, GELU and SiLU do not commute with a scale and are left alone (in
MobileNetV3 only its ReLU blocks and squeeze-excite pairs are reached). It runs on the graph,
so ONNX and torch sources alike; it must precede weight rounding. ONNX Runtime has no such pass
(AIMET's ``equalize_model`` is for torch and is not installed here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from optim.artifact import Graph
from optim.plan import Context, technique
from optim.techniques._calib import (
    Layer,
    initializers,
    layers,
    refuse_stored,
    set_initializers_,
    source_graph,
)

PASS_THROUGH = ("Relu", "LeakyRelu", "MaxPool")  # f(x * s) == f(x) * s for s > 0, per channel


@dataclass(frozen=True)
class Equalize:
    """Equalize weight ranges of layer pairs joined by ReLU (fp32-exact; precedes rounding).

    Example:
        >>> Equalize().label
        'cross-layer equalization'
    """

    # 20 sweeps: scales change by < 0.1 % after ~10 on MobileNetV3's chains
    iterations: int = field(
        default=20, metadata={"help": "sweeps over the chain of pairs", "range": (1, 100)}
    )

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= 100:
            raise ValueError(
                f"`1 <= iterations <= 100` must hold, but got iterations={self.iterations}"
            )

    @property
    def label(self) -> str:
        more = "" if self.iterations == 20 else f" ({self.iterations} sweeps)"
        return f"cross-layer equalization{more}"


@dataclass(frozen=True)
class Pair:
    """Two layers joined by scale-commuting ops; ``bias`` is the first layer's bias (or None)."""

    first: Layer
    second: Layer
    bias: str | None


def _bias(
    model: onnx.ModelProto, layer: Layer, users: dict, inits: dict
) -> tuple[str | None, str]:
    """(the first layer's bias initializer, the value after it) or (None, "") if unusable."""
    if layer.node.op_type in ("Conv", "Gemm"):
        b = layer.node.input[2] if len(layer.node.input) > 2 and layer.node.input[2] else None
        if b is None:
            return None, layer.output
        ok = b in inits and len(users.get(b, [])) == 1 and inits[b].ndim == 1
        return (b, layer.output) if ok else (None, "")
    nxt = users.get(layer.output, [])  # MatMul -> Add(bias)?
    if len(nxt) == 1 and nxt[0].op_type == "Add":
        other = [x for x in nxt[0].input if x != layer.output]
        if len(other) == 1 and other[0] in inits and inits[other[0]].ndim == 1:
            if len(users.get(other[0], [])) == 1:
                return other[0], nxt[0].output[0]
        return None, ""
    return None, layer.output


def pairs(model: onnx.ModelProto) -> list[Pair]:
    """The layer pairs of ``model`` that equalization rescales: the first layer's output reaches
    the second through :data:`PASS_THROUGH` ops only, each value used once, and the second
    reads its channels one to one (a plain Conv/Gemm/MatMul, or a depthwise Conv)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    inits = initializers(model)
    graph_outputs = {o.name for o in model.graph.output}
    by_input = {la.input: la for la in layers(model)}
    found = []
    for first in layers(model):
        bias, value = _bias(model, first, users, inits)
        if not value:
            continue
        while value not in graph_outputs and len(users.get(value, [])) == 1:
            node = users[value][0]
            if node.op_type not in PASS_THROUGH or node.input[0] != value:
                break
            value = node.output[0]
        second = by_input.get(value)
        if second is None or len(users.get(value, [])) != 1 or value in graph_outputs:
            continue
        if _channels(first, inits) == _in_channels(second, inits):
            found.append(Pair(first, second, bias))
    return found


def _channels(layer: Layer, inits: dict) -> int:
    return inits[layer.weight].shape[layer.axis]


def _in_channels(layer: Layer, inits: dict) -> int | None:
    """Input channels ``layer`` reads one to one, or None (a grouped Conv other than depthwise)."""
    w = inits[layer.weight]
    if layer.node.op_type != "Conv":
        return w.shape[1 - layer.axis]
    group = layer.attr("group", 1)
    if group == 1:
        return w.shape[1]
    return group if group == w.shape[0] and w.shape[1] == 1 else None


def _in_axis(layer: Layer) -> int:
    """The weight axis holding the second layer's input channels."""
    if layer.node.op_type == "Conv":
        return 0 if layer.attr("group", 1) > 1 else 1  # depthwise: channel i is W[i]
    return 1 - layer.axis


def _range(w: np.ndarray, axis: int) -> np.ndarray:
    return np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)


def _scale(w: np.ndarray, axis: int, s: np.ndarray) -> np.ndarray:
    shape = [1] * w.ndim
    shape[axis] = -1
    return (w * s.reshape(shape)).astype(np.float32)


def equalize_pair_(arrays: dict[str, np.ndarray], pair: Pair) -> np.ndarray:
    """Equalize one pair in ``arrays`` (initializers by name) in place; returns the scales."""
    w1, w2 = arrays[pair.first.weight], arrays[pair.second.weight]
    a1, a2 = pair.first.axis, _in_axis(pair.second)
    r1, r2 = _range(w1, a1), _range(w2, a2)
    s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1)), 1.0)
    arrays[pair.first.weight] = _scale(w1, a1, 1 / s)
    arrays[pair.second.weight] = _scale(w2, a2, s)
    if pair.bias is not None:
        arrays[pair.bias] = (arrays[pair.bias] / s).astype(np.float32)
    return s


def _check(cfg: Equalize, source) -> str | None:  # noqa: ANN001 - an optim ModelSource
    graph = source_graph(source)
    if graph is not None and not pairs(graph):
        return "two Conv/Gemm/MatMul layers joined by ReLU/LeakyReLU/MaxPool (the graph has none)"
    return None


@technique(Equalize, stage="graph", family="equalize", check=_check)
def equalize(graph: Graph, cfg: Equalize, ctx: Context) -> Graph:
    found = pairs(graph.model)
    if not found:
        raise ValueError(
            f"{cfg.label} found no two layers joined by ReLU/LeakyReLU/MaxPool to equalize"
        )
    touched = {n for p in found for n in (p.first.weight, p.second.weight)}
    refuse_stored(graph.encodings, touched, cfg.label)
    arrays = initializers(graph.model)
    for _ in range(cfg.iterations):
        moved = max(float(np.max(np.abs(np.log(equalize_pair_(arrays, p))))) for p in found)
        if moved < 1e-4:
            break
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    names = touched | {p.bias for p in found if p.bias}
    set_initializers_(model, {n: arrays[n] for n in names})
    precision = f"{graph.precision} ({len(found)} layer pairs equalized)"
    return Graph(model, dict(graph.encodings), precision)
