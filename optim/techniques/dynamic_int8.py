"""Dynamic int8 for Linear-heavy models: int8 weights, activations quantized per batch at run time.

Only MatMul/Gemm layers are quantized (ConvInteger is slower than fp32 Conv on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

from optim.artifact import Graph
from optim.plan import Context, technique
from optim.techniques._ort import through_files


@dataclass(frozen=True)
class DynamicInt8:
    """int8 MatMul/Gemm weights with dynamically quantized activations (ONNX Runtime)."""

    @property
    def label(self) -> str:
        return "int8 dynamic"


@technique(DynamicInt8, stage="graph", family="int8", final=True, needs=("linear",))
def dynamic_int8(graph: Graph, cfg: DynamicInt8, ctx: Context) -> Graph:
    def run(src, dst):
        pre = dst.with_name("pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_dynamic(
            pre, dst, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
            # tensors after ops of other domains (ai.onnx.ml: skl2onnx) have no inferred type
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip

    model = through_files(graph.model, run)
    return Graph(model, {}, precision="int8 dynamic (MatMul/Gemm), fp32 elsewhere")
