"""4-bit weight-only MatMul (ONNX Runtime's MatMulNBits, blockwise scales).

ORT's quantizer only rewrites MatMul, so Gemm nodes with a constant weight (what torch exports
for 2-D Linear layers) are first rewritten as MatMul + Add. Convolutions stay fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

from optim.artifact import Graph
from optim.plan import Context, technique


@dataclass(frozen=True)
class Int4MatMul:
    """4-bit MatMul weights with one scale per ``block_size`` inputs (MatMulNBits)."""

    block_size: int = field(
        default=32, metadata={"help": "weights sharing one scale", "choices": (16, 32, 64, 128)}
    )

    def __post_init__(self) -> None:
        if self.block_size not in (16, 32, 64, 128):
            raise ValueError(
                f"`block_size in (16, 32, 64, 128)` must hold, but got block_size={self.block_size}"
            )

    @property
    def label(self) -> str:
        return f"int4 MatMulNBits/b{self.block_size}"


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite ``Gemm(A, B, C)`` with constant B (alpha=beta=1, transA=0) as MatMul + Add."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    nodes = []
    for node in out.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if (
            node.op_type != "Gemm"
            or node.input[1] not in inits
            or attrs.get("transA", 0)
            or not plain
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            w = w.T.copy()  # (N, K) -> (K, N)
        w_name = node.input[1] + "_kn"
        out.graph.initializer.append(numpy_helper.from_array(w, w_name))
        mm_out = node.output[0] + "_mm" if len(node.input) > 2 else node.output[0]
        nodes.append(
            helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=node.name + "_mm")
        )
        if len(node.input) > 2:
            nodes.append(
                helper.make_node(
                    "Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_add"
                )
            )
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {i for n in out.graph.node for i in n.input}
    keep = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


@technique(Int4MatMul, stage="graph", family="int4", final=True, needs=("linear",))
def int4_matmul(graph: Graph, cfg: Int4MatMul, ctx: Context) -> Graph:
    model = gemm_to_matmul(graph.model)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=cfg.block_size, is_symmetric=True)
    quantizer.process()
    model = quantizer.model.model
    n = sum(1 for node in model.graph.node if node.op_type == "MatMulNBits")
    if n == 0:
        raise ValueError(
            f"Int4MatMul found no MatMul/Gemm weights to quantize in {ctx.source.name!r}"
        )
    return Graph(model, {}, precision=f"int4 MatMulNBits ({n} layers), fp32 elsewhere")
