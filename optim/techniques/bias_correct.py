"""Empirical bias correction: weight rounding (as :class:`~optim.techniques.Quantize` rounds)
followed by a per-channel correction of each layer's bias, measured on the calib split.

Rounding a weight shifts the mean of the layer's output: ``E[W_q x] != E[W x]``. For each
Conv/Gemm/MatMul layer, in graph order, the mean of its output per output channel (over every
calibration example and position) is measured in the fp32 graph and in the rounded graph whose
earlier layers are already corrected; the difference is subtracted from the layer's bias (a
Conv/Gemm bias, the Add after a MatMul, or a new one). This is the *empirical* bias correction of
Nagel et al., "Data-Free Quantization" (2019, Sec. 4.2) and of AIMET; ONNX Runtime has no such
pass. Only fp32 biases change, so the file stores the same integer codes as Quantize's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from optim.artifact import Graph
from optim.plan import Context, technique
from optim.techniques._calib import (
    calib_inputs,
    channel_means,
    initializers,
    layers,
    set_initializers_,
)
from optim.techniques.quantize import Quantize, check_granularity, granularity_field, quantize


@dataclass(frozen=True)
class BiasCorrect:
    """Round weights to ``bits`` bits, then correct each layer's output mean on the calib split.

    Example:
        >>> BiasCorrect(3).label
        'int3 w/channel + bias corr'
    """

    bits: int = field(default=4, metadata={"help": "bits per weight", "range": (2, 8)})
    granularity: str = granularity_field()
    symmetric: bool = field(
        default=True, metadata={"help": "zero point fixed at 0 (else fitted to min/max)"}
    )

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"`2 <= bits <= 8` must hold, but got bits={self.bits}")
        check_granularity(self.granularity)

    @property
    def rounding(self) -> Quantize:
        return Quantize(self.bits, self.granularity, self.symmetric)

    @property
    def label(self) -> str:
        return f"{self.rounding.label} + bias corr"


def with_biases(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, tuple[str, float]]]:
    """A copy of ``model`` where every weight layer has a bias initializer of its own, shape
    (C,): a zero one added where it had none (a Conv/Gemm input, an Add after a MatMul). Also
    returns layer output -> (bias name, factor): the output moves by ``factor`` times a change
    of the bias (Gemm's ``beta``; 1 otherwise)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = initializers(out)
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in out.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    nodes, biases, new = [], {}, {}
    by_output = {la.output: la for la in layers(model)}
    for node in out.graph.node:
        nodes.append(node)
        layer = by_output.get(node.output[0])
        if layer is None:
            continue
        c = inits[layer.weight].shape[layer.axis]
        name = f"{layer.output}.bias"
        if node.op_type in ("Conv", "Gemm"):
            have = node.input[2] if len(node.input) > 2 and node.input[2] else None
            beta = layer.attr("beta", 1.0) if node.op_type == "Gemm" else 1.0
            if have in inits and len(users[have]) == 1 and inits[have].size in (1, c):
                new[have] = np.broadcast_to(inits[have].reshape(-1), (c,)).astype(np.float32)
                biases[layer.output] = (have, beta)
            elif have is None:
                del node.input[2:]
                node.input.append(name)
                new[name] = np.zeros(c, np.float32)
                biases[layer.output] = (name, beta)
            continue
        add = users.get(layer.output, [])
        other = [x for x in add[0].input if x != layer.output] if len(add) == 1 else []
        if add and add[0].op_type == "Add" and len(other) == 1 and other[0] in inits:
            b = inits[other[0]]
            if b.shape[-1:] == (c,) and b.size == c and len(users[other[0]]) == 1:
                new[other[0]] = b  # (C,) or (1, .., C): kept as it is
                biases[layer.output] = (other[0], 1.0)
                continue
        node.output[0] = f"{layer.output}.pre_bias"  # MatMul -> Add(bias) -> the old name
        nodes.append(helper.make_node("Add", [node.output[0], name], [layer.output],
                                      name=f"{layer.output}.bias_add"))  # fmt: skip
        new[name] = np.zeros(c, np.float32)
        biases[node.output[0]] = (name, 1.0)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    set_initializers_(out, new)
    return out, biases


def correct_biases(reference: onnx.ModelProto, rounded: onnx.ModelProto, x) -> onnx.ModelProto:  # noqa: ANN001 - calibration inputs (optim.measure.Inputs)
    """``rounded`` (the same graph as ``reference`` with rounded weights) with every layer's
    bias corrected, layer by layer in graph order, so its output means on ``x`` equal the
    reference's."""
    model, biases = with_biases(rounded)
    ref_model, _ = with_biases(reference)  # the same names, so the same outputs
    chosen = [la for la in layers(model) if la.output in biases]
    if not chosen:  # no top-level layer (weights only inside If branches): nothing to correct
        return model
    target = channel_means(ref_model, chosen, x)
    for layer in chosen:
        shift = channel_means(model, [layer], x)[layer.output] - target[layer.output]
        name, factor = biases[layer.output]
        b = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))
        fixed = b - (shift / factor).reshape(b.shape)
        set_initializers_(model, {name: fixed.astype(np.float32)})
    return model


@technique(BiasCorrect, stage="graph", family="bias-correct")
def bias_correct(graph: Graph, cfg: BiasCorrect, ctx: Context) -> Graph:
    x = calib_inputs(ctx, cfg.label)
    rounded = quantize(graph, cfg.rounding, ctx)
    model = correct_biases(graph.model, rounded.model, x)
    return replace(rounded, model=model)
