"""Real int8 execution: ONNX Runtime static quantization (QDQ), calibrated on the calib split.

Activation type is chosen for the CPU it runs on: with VNNI (AVX512-VNNI or AVX-VNNI) uint8
activations x int8 weights (U8S8) hit the fast VPDPBUSD path; without VNNI, U8S8 can saturate
on AVX2/AVX-512, so weights use ``reduce_range`` (7-bit). The row records what was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from optim.artifact import Graph
from optim.plan import Context, technique
from optim.techniques._ort import ArrayReader, input_name, through_files

CALIBRATIONS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
ACTIVATIONS = ("auto", "uint8", "int8")


@dataclass(frozen=True)
class Int8:
    """Static int8 (weights and activations), ONNX Runtime QDQ format."""

    calibration: str = field(
        default="minmax",
        metadata={
            "help": "activation range from min/max or 99.999th percentile",
            "choices": tuple(CALIBRATIONS),
        },
    )
    activations: str = field(
        default="auto",
        metadata={
            "help": "auto picks uint8 with VNNI (fast U8S8 kernels)",
            "choices": ACTIVATIONS,
        },
    )
    granularity: str = field(
        default="channel", metadata={"help": "weight scales", "choices": ("channel", "tensor")}
    )

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"`calibration` must be one of {tuple(CALIBRATIONS)}, but got {self.calibration!r}"
            )
        if self.activations not in ACTIVATIONS:
            raise ValueError(
                f"`activations` must be one of {ACTIVATIONS}, but got {self.activations!r}"
            )
        if self.granularity not in ("channel", "tensor"):
            raise ValueError(
                f"`granularity` must be channel or tensor, but got {self.granularity!r}"
            )

    @property
    def label(self) -> str:
        cal = "" if self.calibration == "minmax" else f" {self.calibration}"
        act = "" if self.activations == "auto" else f" a{self.activations}"
        return f"int8 static/{self.granularity}{cal}{act}"


def settings(cfg: Int8, cpu: dict) -> dict:
    """The ORT settings for ``cfg`` on ``cpu`` (``cpu["vnni"]``: bool, from measure.cpu_info)."""
    act = cfg.activations
    if act == "auto":
        act = "uint8"  # U8S8: VNNI's native form; S8S8 measured 3x slower on VNNI here
    return {
        "activation_type": QuantType.QUInt8 if act == "uint8" else QuantType.QInt8,
        "weight_type": QuantType.QInt8,
        "reduce_range": act == "uint8" and not cpu.get("vnni", False),
        "per_channel": cfg.granularity == "channel",
    }


@technique(Int8, stage="graph", family="int8", final=True, needs=("weights", "toplevel"))
def int8(graph: Graph, cfg: Int8, ctx: Context) -> Graph:
    opts = settings(cfg, ctx.cpu)
    reader = ArrayReader(input_name(graph.model), ctx.source.splits["calib"].x)

    def run(src, dst):
        pre = dst.with_name("pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(
            pre,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            calibrate_method=CALIBRATIONS[cfg.calibration],
            extra_options={
                "CalibPercentile": 99.999,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },  # see dynamic_int8
            **opts,
        )

    model = through_files(graph.model, run)
    if not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise ValueError(f"{cfg.label} quantized no layer of the graph: it would change nothing")
    a = "u8" if opts["activation_type"] == QuantType.QUInt8 else "s8"
    rr = ", reduce_range" if opts["reduce_range"] else ""
    precision = f"int8 QDQ {a}s8 per-{cfg.granularity}{rr}"
    return Graph(model, {}, precision=precision)
