"""One fp32 ONNX model quantized to static int8 many ways, cheaply: ONNX Runtime's
``quant_pre_process`` runs once, calibration once per method (ORT's calibration cache), and each
variant (settings, nodes left in fp32) is one ``quantize_static`` call on the cached ranges.

Nodes are named as in the pre-processed graph (:attr:`Int8Quantizer.model`), which is what
``nodes_to_exclude`` matches; :func:`groups` sorts its quantizable nodes into groups of one
kind (depthwise / pointwise / spatial Conv at one resolution, the first Conv, the last layer,
each other op type), the unit that :mod:`optim.placement` places in int8 or fp32.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

CALIBRATIONS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
QUANTIZABLE = frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)  # quantize_static's default
LINEAR = ("Conv", "Gemm", "MatMul")
INT8_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "QGemm", "MatMulInteger",
                      "ConvInteger", "QAttention"})  # fmt: skip


def quantizes(path: Path) -> bool:
    """Whether the file at ``path`` runs anything in int8 (ORT may quantize nothing: e.g.
    QOperator Gemm per channel, or only pass-through ops left)."""
    model = onnx.load(path)
    return any(n.op_type in INT8_OPS or n.op_type.startswith("QLinear") for n in model.graph.node)


@dataclass(frozen=True)
class Setting:
    """The ORT settings that decide int8 speed: format, activation type, 7-bit weights, scales.

    Example:
        >>> Setting(reduce_range=True).label
        'QDQ u8s8 per-channel, reduce_range'
    """

    format: str = "qdq"  # "qdq" (QuantizeLinear/DequantizeLinear pairs) or "qoperator"
    activations: str = "uint8"  # "uint8" (U8S8) or "int8" (S8S8)
    reduce_range: bool = False  # 7-bit weights: U8S8 without VNNI saturates otherwise
    per_channel: bool = True

    @property
    def label(self) -> str:
        fmt = "QDQ" if self.format == "qdq" else "QOperator"
        a = "u8" if self.activations == "uint8" else "s8"
        rr = ", reduce_range" if self.reduce_range else ""
        return f"{fmt} {a}s8 per-{'channel' if self.per_channel else 'tensor'}{rr}"

    def kwargs(self) -> dict:
        return {
            "quant_format": QuantFormat.QDQ if self.format == "qdq" else QuantFormat.QOperator,
            "activation_type": QuantType.QUInt8
            if self.activations == "uint8"
            else QuantType.QInt8,
            "weight_type": QuantType.QInt8,
            "reduce_range": self.reduce_range,
            "per_channel": self.per_channel,
        }


class Int8Quantizer:
    """Static int8 variants of ``model``, calibrated on ``calib`` (the calib split's inputs),
    written under ``folder`` (one file per variant, reused when asked again).

    Example:
        >>> q = Int8Quantizer(graph.model, source.splits["calib"].x, Path(d))  # doctest: +SKIP
        >>> path = q.build(Setting(), exclude=q.groups["depthwise Conv @ 16x16"])  # doctest: +SKIP
    """

    def __init__(self, model: onnx.ModelProto, calib, folder: Path) -> None:
        from optim.techniques._ort import input_name, quiet  # the package imports this module

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.calib = calib
        self.fp32 = self.folder / "fp32.onnx"
        onnx.save(model, self.fp32)
        self.pre = self.folder / "pre.onnx"
        with quiet():
            quant_pre_process(self.fp32, self.pre, skip_symbolic_shape=True)
        self.model = onnx.load(self.pre)
        for k, node in enumerate(self.model.graph.node):  # nodes_to_exclude matches names
            node.name = node.name or f"optim_node_{k}"
        onnx.save(self.model, self.pre)
        self.input = input_name(self.model)
        self.groups = groups(self.model)

    def build(
        self,
        setting: Setting,
        exclude: Iterable[str] = (),
        calibration: str = "minmax",
        only: Iterable[str] | None = None,
    ) -> Path:
        """The file of ``setting`` with the nodes ``exclude`` left in fp32 (with ``only``:
        just those nodes quantized)."""
        from optim.techniques._ort import ArrayReader, quiet

        exclude = sorted(set(exclude))
        only = sorted(set(only)) if only is not None else None
        tag = repr((setting, exclude, calibration, only)).encode()
        out = self.folder / f"q-{hashlib.sha1(tag).hexdigest()[:12]}.onnx"
        if out.is_file():
            return out
        cache = self.folder / f"calib-{calibration}.json"

        tmp = out.with_suffix(".part")
        with quiet():
            quantize_static(
                self.pre, tmp, None if cache.is_file() else ArrayReader(self.input, self.calib),
                calibration_cache_path=cache, calibrate_method=CALIBRATIONS[calibration],
                nodes_to_exclude=exclude, nodes_to_quantize=only, **setting.kwargs(),
                extra_options={"CalibPercentile": 99.999,
                               "DefaultTensorType": onnx.TensorProto.FLOAT},  # see dynamic_int8
            )  # fmt: skip
        os.replace(tmp, out)  # complete or absent
        return out


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def kind(node: onnx.NodeProto, inits: dict, shapes: dict, first: bool, last: bool) -> str:
    """A node's group label, e.g. ``"depthwise Conv @ 16x16"``, ``"first Conv"``, ``"Mul"``."""
    if node.op_type not in LINEAR:
        return node.op_type
    if first:
        return f"first {node.op_type}"
    if last:
        return f"last {node.op_type}"
    if node.op_type != "Conv" or node.input[1] not in inits:
        return node.op_type
    w = list(inits[node.input[1]].dims)  # (C_out, C_in / group, kH, kW)
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    sort = "depthwise" if group > 1 and w[1] == 1 else "pointwise" if np.prod(w[2:]) == 1 else ""
    hw = shapes.get(node.input[0], [])[2:]
    if hw and all(d == 1 for d in hw):
        return "Conv on 1x1 maps (squeeze-excite)"
    at = f" @ {'x'.join(str(d) for d in hw)}" if hw and all(hw) else ""
    return f"{sort} Conv{at}".strip()


def groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Quantizable nodes of ``model`` (named) by :func:`kind`, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    shapes = _shapes(model)
    inputs = {i.name for i in model.graph.input} - set(inits)
    outputs = {o.name for o in model.graph.output}
    linear = [n for n in model.graph.node if n.op_type in LINEAR]
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in QUANTIZABLE:
            continue
        first = bool(linear) and node is linear[0] and node.input[0] in inputs
        last = bool(linear) and node is linear[-1] and _feeds_output(model, node, outputs)
        out.setdefault(kind(node, inits, shapes, first, last), []).append(node.name)
    return out


def _feeds_output(model: onnx.ModelProto, node: onnx.NodeProto, outputs: set[str]) -> bool:
    """Whether ``node``'s output reaches a graph output through single-input ops only."""
    names, seen = set(node.output), 0
    while seen != len(names):
        seen = len(names)
        for n in model.graph.node:
            if n.input and n.input[0] in names and len([i for i in n.input if i]) == 1:
                names.update(n.output)
    return bool(names & outputs)
