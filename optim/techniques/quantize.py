"""Weight quantization to 2-8 bits (or float16 storage); the graph still executes in fp32.

Each weight of a Conv/Gemm/MatMul is rounded to ``2**bits`` levels per output channel (or per
tensor); the shipped file stores the integer codes behind ``DequantizeLinear``
(:func:`optim.artifact.to_onnx`). The compute stays fp32: rows say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import numpy_helper

from optim.artifact import Encoding, Graph, weights_or_refuse
from optim.plan import Context, technique

GRANULARITIES = ("channel", "tensor")


def granularity_field():  # noqa: ANN201 - a dataclasses.field
    """The ``granularity`` field of every config that rounds weights (one definition)."""
    return field(
        default="channel",
        metadata={
            "help": "one scale per output channel, or one per tensor",
            "choices": GRANULARITIES,
        },
    )


def check_granularity(value: str) -> None:
    if value not in GRANULARITIES:
        raise ValueError(f"`granularity` must be one of {GRANULARITIES}, but got {value!r}")


@dataclass(frozen=True)
class Quantize:
    """Store weights with ``bits`` bits (2-8 integer codes, or 16 for float16)."""

    bits: int = field(
        default=4, metadata={"help": "bits per weight (16 = float16)", "range": (2, 16)}
    )
    granularity: str = granularity_field()
    symmetric: bool = field(
        default=True, metadata={"help": "zero point fixed at 0 (else fitted to min/max)"}
    )

    def __post_init__(self) -> None:
        if not (2 <= self.bits <= 8 or self.bits == 16):
            raise ValueError(f"`2 <= bits <= 8 or bits == 16` must hold, but got bits={self.bits}")
        check_granularity(self.granularity)

    @property
    def label(self) -> str:
        if self.bits == 16:
            return "fp16 w"
        kind = "" if self.symmetric else " asym"
        return f"int{self.bits} w/{self.granularity}{kind}"


def quantize_array(
    w: np.ndarray, bits: int, axis: int | None, symmetric: bool, mask: np.ndarray | None = None
) -> Encoding:
    """Round ``w`` to ``bits``-bit codes with one scale per slice along ``axis`` (None: one scale).

    Symmetric: ``scale = max|w| / (2**(bits-1) - 1)``, zero point ``2**(bits-1)``. Asymmetric:
    the range [min(w, 0), max(w, 0)] over ``2**bits - 1`` steps, zero point rounded so 0 is exact.

    Example:
        >>> quantize_array(np.array([[-1.0, 0.5, 1.0]], np.float32), 2, 0, True).dequantize()
        array([[-1.,  0.,  1.]], dtype=float32)
    """
    w = np.asarray(w, np.float32)
    reduce = tuple(i for i in range(w.ndim) if axis is None or i != axis % w.ndim)
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        scale = np.max(np.abs(w), axis=reduce, keepdims=True) / np.float32(qmax)
        scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
        zp = np.full_like(scale, 1 << (bits - 1), dtype=np.uint8)
        codes = np.clip(np.rint(w / scale), -qmax, qmax) + (1 << (bits - 1))
    else:
        levels = (1 << bits) - 1
        lo = np.minimum(np.min(w, axis=reduce, keepdims=True), 0)
        hi = np.maximum(np.max(w, axis=reduce, keepdims=True), 0)
        scale = ((hi - lo) / np.float32(levels)).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
        zp = np.clip(np.rint(-lo / scale), 0, levels).astype(np.uint8)
        codes = np.clip(np.rint(w / scale) + zp, 0, levels)
    if axis is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    return Encoding(codes.astype(np.uint8), bits, scale.astype(np.float32), zp, mask)


@technique(Quantize, stage="graph", family="quantize")
def quantize(graph: Graph, cfg: Quantize, ctx: Context) -> Graph:
    inits = {t.name: t for t in graph.model.graph.initializer}
    encodings = {}
    for name, axis in weights_or_refuse(graph.model, cfg.label).items():
        old = graph.encodings.get(name)
        mask = old.mask if old is not None else None
        w = numpy_helper.to_array(inits[name])
        if cfg.bits == 16:
            encodings[name] = Encoding(w.astype(np.float16), 16, mask=mask)
        else:
            ax = axis if cfg.granularity == "channel" else None
            encodings[name] = quantize_array(w, cfg.bits, ax, cfg.symmetric, mask)
    return graph.with_weights(encodings)
