"""Shared by the PTQ algorithms: the graph's weight layers, and their tensors on the calib split.

A *layer* is a top-level Conv/Gemm/MatMul node with a constant float weight (the ones
:func:`optim.artifact.weight_initializers` lists). :func:`tensors` runs a graph in ONNX Runtime
on calibration inputs and yields, batch by batch, any intermediate values it is asked for (added
as graph outputs), so statistics (channel means, Hessians) accumulate without holding a whole
split's activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from optim import measure
from optim.artifact import weight_initializers


@dataclass(frozen=True)
class Layer:
    """One weight layer: its node, weight initializer and output-channel axis of the weight."""

    node: onnx.NodeProto
    weight: str
    axis: int  # output-channel axis of the weight (Conv/Gemm-transB: 0, MatMul/Gemm: 1)

    @property
    def input(self) -> str:
        return self.node.input[0]

    @property
    def output(self) -> str:
        return self.node.output[0]

    def attr(self, name: str, default):  # noqa: ANN001, ANN201 - an ONNX attribute's value
        found = [helper.get_attribute_value(a) for a in self.node.attribute if a.name == name]
        return found[0] if found else default


def layers(model: onnx.ModelProto) -> list[Layer]:
    """The top-level weight layers of ``model`` in graph order (weights shared by two nodes,
    and layers inside If/Loop branches, are left out: one change would act twice)."""
    axes = weight_initializers(model, subgraphs=False)
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    return [
        Layer(node, node.input[1], axes[node.input[1]])
        for node in model.graph.node
        if node.op_type in ("Conv", "Gemm", "MatMul")
        and len(node.input) > 1
        and node.input[1] in axes
        and uses[node.input[1]] == 1
    ]


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer of ``model`` as a numpy array (copies)."""
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def set_initializers_(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> None:
    """Replace (or add) the named initializers of ``model`` in place."""
    by_name = {t.name: t for t in model.graph.initializer}
    for name, a in arrays.items():
        t = numpy_helper.from_array(np.asarray(a), name)
        if name in by_name:
            by_name[name].CopyFrom(t)
        else:
            model.graph.initializer.append(t)


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose only outputs are the values ``names`` (ONNX Runtime infers
    their types)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    return out


def tensors(
    model: onnx.ModelProto, names: Sequence[str], x: measure.Inputs, batch: int = 50
) -> Iterator[dict[str, np.ndarray]]:
    """The values ``names`` of ``model`` on ``x``, one dict per batch of inputs."""
    sess = measure.session(with_outputs(model, names).SerializeToString())
    batch = measure.batch_of(x, batch)
    for i in range(0, measure.count(x), batch):
        outs = sess.run(list(names), measure.feed(sess, measure.take(x, slice(i, i + batch))))
        yield dict(zip(names, outs, strict=True))


def channel_axis(op: str) -> int:
    """The channel axis of a layer's output: Conv (N, C, ...) 1, Gemm/MatMul (..., C) -1."""
    return 1 if op == "Conv" else -1


def channel_means(
    model: onnx.ModelProto, chosen: Sequence[Layer], x: measure.Inputs
) -> dict[str, np.ndarray]:
    """Mean of each layer's output per output channel over ``x`` (and every spatial or token
    position): output name -> (C,) float64."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    ops = {layer.output: layer.node.op_type for layer in chosen}
    for outs in tensors(model, list(ops), x):
        for name, y in outs.items():
            y = np.moveaxis(y.astype(np.float64), channel_axis(ops[name]), -1)
            y = y.reshape(-1, y.shape[-1])
            sums[name] = sums.get(name, 0) + y.sum(axis=0)
            counts[name] = counts.get(name, 0) + len(y)
    return {name: sums[name] / counts[name] for name in sums}


def calib_inputs(ctx, what: str) -> measure.Inputs:  # noqa: ANN001 - an optim.plan.Context
    """The calibration split's inputs, refusing (one line) a source without any."""
    calib = ctx.source.splits.get("calib")
    if calib is None or measure.count(calib.x) == 0:
        raise ValueError(f"{what} needs a calibration split, but {ctx.source.name!r} has none")
    return calib.x


def source_graph(source) -> onnx.ModelProto | None:  # noqa: ANN001 - an optim ModelSource
    """An ONNX source's normalized graph, for a technique's up-front check (None for a torch
    source: its export is known only once built, and the technique's apply says why then)."""
    return onnx.load(str(source.onnx_path)) if source.onnx_path is not None else None


def refuse_stored(encodings: dict, names: set[str], what: str) -> None:
    """Refuse (one line) an fp32-exact rescaling of weights an earlier step already rounded
    or pruned: their stored codes would no longer match."""
    if stored := sorted(names & set(encodings)):
        raise ValueError(
            f"{what} must come before the steps that round or prune weights, but "
            f"{stored[0]!r} is already stored as an encoding"
        )
