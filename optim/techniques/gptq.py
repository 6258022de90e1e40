"""GPTQ: 2-8-bit weights rounded to minimize each layer's output error on the calib split.

Layer by layer in graph order, each Conv/Gemm/MatMul weight is rounded one input row at a time
by GPTQ (Frantar et al., 2022, Algorithm 1): the rounding error of each row is compensated on
the rows not yet rounded, through the inverse Hessian ``H = 2 X X^T`` of the layer's inputs
``X`` on the calib split, taken from the graph whose earlier layers are already rounded. Conv
layers use their unfolded input patches, one Hessian per group (a depthwise conv: one per
channel). The result is stored exactly as :class:`~optim.techniques.Quantize` stores it (one
scale ``max|w| / qmax`` per output channel, codes in ``[-qmax, qmax]``): only the rounding
differs, so the file has the same bytes.

Why not ONNX Runtime's GPTQ (``MatMulNBitsQuantizer`` with ``GPTQWeightOnlyQuantConfig``,
code in ``onnxruntime.quantization.neural_compressor.weight_only.gptq``): in ONNX Runtime 1.32 it
propagates each row's error through a *column* of the upper Cholesky factor (all zeros below
the diagonal), so its result is plain round-to-nearest on its own grid (tests/test_ptq.py pins
this); it also handles MatMul only and writes 4/8-bit MatMulNBits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from optim.artifact import Encoding, Graph, weights_or_refuse
from optim.plan import Context, technique
from optim.techniques._calib import (
    Layer,
    calib_inputs,
    initializers,
    layers,
    set_initializers_,
    source_graph,
    tensors,
)
from optim.techniques.quantize import quantize_array


@dataclass(frozen=True)
class GPTQ:
    """Round weights to ``bits`` bits with GPTQ's Hessian-weighted error compensation.

    Example:
        >>> GPTQ(3).label
        'int3 w/channel GPTQ'
    """

    bits: int = field(default=4, metadata={"help": "bits per weight", "range": (2, 8)})
    # 1 %: GPTQ's default; the damping keeps H invertible where inputs are (near) constant
    percdamp: float = field(
        default=0.01,
        metadata={"help": "damping: share of H's mean diagonal added to it", "range": (0.0, 1.0)},
    )
    actorder: bool = field(
        default=True, metadata={"help": "round inputs with the largest Hessian diagonal first"}
    )

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"`2 <= bits <= 8` must hold, but got bits={self.bits}")
        if not 0 <= self.percdamp <= 1:
            raise ValueError(f"`0 <= percdamp <= 1` must hold, but got percdamp={self.percdamp}")

    @property
    def label(self) -> str:
        order = "" if self.actorder else " (no act-order)"
        damp = "" if self.percdamp == 0.01 else f" (damp {self.percdamp:g})"
        return f"int{self.bits} w/channel GPTQ{order}{damp}"


def gptq_round(
    w: np.ndarray, h: np.ndarray, bits: int, percdamp: float = 0.01, actorder: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ of ``G`` stacked (K, N) weights given their (K, K) input Hessians (G, K, N) and
    (G, K, K): (signed codes (G, K, N) in ``[-qmax, qmax]``, scale (G, N)) on Quantize's grid,
    ``qmax = 2**(bits-1) - 1``, ``scale = max|w| / qmax`` per column. Rows are rounded in turn
    (largest Hessian diagonal first with ``actorder``); each row's error, divided by the
    diagonal of the upper Cholesky factor ``U`` of ``H^-1``, is taken off the rows after it
    through ``U``'s row (Frantar et al., Algorithm 1, blocks of 128 rows)."""
    qmax = (1 << (bits - 1)) - 1
    w, h = w.astype(np.float64).copy(), h.astype(np.float64).copy()
    g, k, _ = w.shape
    absmax = np.abs(w).max(axis=1)  # (G, N)
    scale = np.where(absmax > 0, absmax / qmax, 1.0)
    eye = np.eye(k, dtype=bool)
    dead = np.diagonal(h, axis1=1, axis2=2) == 0  # (G, K): inputs always 0 on the calib split
    h[dead[:, :, None] & eye] = 1.0
    w[dead] = 0.0
    perm = np.argsort(-np.diagonal(h, axis1=1, axis2=2), axis=1, kind="stable") if actorder \
        else np.broadcast_to(np.arange(k), (g, k))  # fmt: skip
    w = np.take_along_axis(w, perm[:, :, None], axis=1)
    h = np.take_along_axis(np.take_along_axis(h, perm[:, :, None], 1), perm[:, None, :], 2)
    h[:, eye] += percdamp * np.diagonal(h, axis1=1, axis2=2).mean(axis=1, keepdims=True)
    u = np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), 1, 2)  # upper: H^-1 = U^T U
    codes = np.zeros_like(w)
    for i1 in range(0, k, 128):
        i2 = min(i1 + 128, k)
        err = np.zeros((g, i2 - i1, w.shape[2]))
        for i in range(i1, i2):
            q = np.clip(np.rint(w[:, i] / scale), -qmax, qmax)  # (G, N)
            codes[:, i] = q
            e = (w[:, i] - q * scale) / u[:, i, i, None]
            w[:, i:i2] -= u[:, i, i:i2, None] * e[:, None, :]
            err[:, i - i1] = e
        w[:, i2:] -= np.einsum("gij,gin->gjn", u[:, i1:i2, i2:], err)
    codes = np.take_along_axis(codes, np.argsort(perm, axis=1)[:, :, None], axis=1)
    return codes.astype(np.int8), scale.astype(np.float32)


def gptq_codes(w: np.ndarray, h: np.ndarray, cfg: GPTQ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gptq_round`, kept per output channel only where it has a lower Hessian-weighted
    error ``tr(d^T H d)`` (``d = w - w_q``) than plain rounding: GPTQ is greedy, and on a layer
    with few inputs (a depthwise 3x3 has 9) it can lose to it."""
    codes, scale = gptq_round(w, h, cfg.bits, cfg.percdamp, cfg.actorder)
    qmax = (1 << (cfg.bits - 1)) - 1
    plain = np.clip(np.rint(w / scale[:, None]), -qmax, qmax)

    def err(c: np.ndarray) -> np.ndarray:  # (G, N)
        d = w - c * scale[:, None]
        return np.einsum("gkn,gkj,gjn->gn", d, h, d, optimize=True)

    better = (err(codes) <= err(plain))[:, None, :]
    return np.where(better, codes, plain).astype(np.int8), scale


def _hessian(layer: Layer, w: np.ndarray, batches) -> np.ndarray:  # noqa: ANN001
    """Per group, ``2/n sum x x^T`` over the layer's input rows (Conv: unfolded patches)."""
    import torch
    import torch.nn.functional as F

    groups = layer.attr("group", 1) if layer.node.op_type == "Conv" else 1
    hs, n = 0, 0
    for x in batches:
        if layer.node.op_type == "Conv":
            pads = list(layer.attr("pads", [0] * 4))
            t = F.pad(torch.from_numpy(x), (pads[1], pads[3], pads[0], pads[2]))
            stride = tuple(layer.attr("strides", [1, 1]))
            if w.shape[2:] == (1, 1):  # a 1x1 conv reads one pixel: no patches to unfold
                cols = t[:, :, :: stride[0], :: stride[1]].flatten(2)
            else:
                cols = F.unfold(t, tuple(w.shape[2:]), stride=stride,
                                dilation=tuple(layer.attr("dilations", [1, 1])))  # fmt: skip
            b, _, positions = cols.shape  # (B, G*K, L) -> (G, K, B*L), one batched matmul
            cols = (
                cols.reshape(b, groups, -1, positions)
                .permute(1, 2, 0, 3)
                .reshape(groups, -1, b * positions)
            )
            hs = hs + torch.bmm(cols, cols.transpose(1, 2)).double().numpy()
            n += b * positions
        else:
            rows = x.reshape(-1, x.shape[-1])  # (B*T, K)
            hs = hs + (rows.T @ rows).astype(np.float64)[None]
            n += len(rows)
    return 2 * np.asarray(hs) / max(n, 1)  # (G, K, K)


def _supported(layer: Layer, w: np.ndarray) -> bool:
    if layer.node.op_type == "Conv":
        return w.ndim == 4 and layer.attr("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
    return w.ndim == 2 and (layer.node.op_type == "MatMul" or not layer.attr("transA", 0))


def _round_layer(layer: Layer, w: np.ndarray, hs: np.ndarray, cfg: GPTQ) -> Encoding:
    """The layer's weight in its own layout, GPTQ-rounded (per group for a grouped Conv)."""
    zp = 1 << (cfg.bits - 1)
    if layer.node.op_type == "Conv":  # (Cout, Cin/g, kh, kw): group j's rows are contiguous
        g = len(hs)
        stacked = w.reshape(g, w.shape[0] // g, -1).transpose(0, 2, 1)  # (G, Cin/g*kh*kw, n)
        codes, scale = gptq_codes(stacked, hs, cfg)
        codes = codes.transpose(0, 2, 1).reshape(w.shape)
        scale = scale.reshape(-1, 1, 1, 1)
    elif layer.axis == 0:  # Gemm transB: (N, K)
        codes, scale = gptq_codes(w.T[None], hs, cfg)
        codes, scale = codes[0].T, scale.reshape(-1, 1)
    else:  # (K, N)
        codes, scale = gptq_codes(w[None], hs, cfg)
        codes, scale = codes[0], scale.reshape(1, -1)
    return Encoding(
        (codes + zp).astype(np.uint8), cfg.bits, scale, np.full(scale.shape, zp, np.uint8)
    )


def _roundable(model: onnx.ModelProto) -> list[Layer]:
    inits = initializers(model)
    return [la for la in layers(model) if _supported(la, inits[la.weight])]


def _check(cfg: GPTQ, source) -> str | None:  # noqa: ANN001 - an optim ModelSource
    graph = source_graph(source)
    if graph is not None and not _roundable(graph):
        return (
            "a top-level 2-D Conv, Gemm or MatMul layer with its own weight (the graph has none)"
        )
    return None


@technique(GPTQ, stage="graph", family="gptq", check=_check)
def gptq(graph: Graph, cfg: GPTQ, ctx: Context) -> Graph:
    x = calib_inputs(ctx, cfg.label)
    axes = weights_or_refuse(graph.model, cfg.label)
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    encodings, done = {}, 0
    for layer in layers(model):
        w = inits[layer.weight].astype(np.float32)
        if not _supported(layer, w):
            continue
        batches = (b[layer.input] for b in tensors(model, [layer.input], x))
        enc = _round_layer(layer, w, _hessian(layer, w, batches), cfg)
        old = graph.encodings.get(layer.weight)
        if old is not None and old.mask is not None:  # pruned weights stay exactly zero
            enc = Encoding(enc.codes, enc.bits, enc.scale, enc.zero_point, old.mask)
        encodings[layer.weight] = enc
        set_initializers_(model, {layer.weight: enc.dequantize()})  # later layers see it
        done += 1
    for name, axis in axes.items():  # shared weights, If branches, other Convs: plain rounding
        if name not in encodings:
            old = graph.encodings.get(name)
            encodings[name] = quantize_array(inits[name], cfg.bits, axis, True,
                                             old.mask if old else None)  # fmt: skip
    if not done:
        raise ValueError(f"{cfg.label} found no Conv (2-D)/Gemm/MatMul layer it can round")
    return graph.with_weights(encodings)
