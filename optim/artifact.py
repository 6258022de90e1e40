"""What ships: a standard ONNX file that stock ONNX Runtime loads, and its compressed download.

Techniques work on a :class:`Graph`: an fp32 ONNX model plus, for the weights they rounded or
pruned, an :class:`Encoding` of how each is stored. :func:`to_onnx` turns it into the file that
ships: N-bit weights become integer initializers behind ``DequantizeLinear`` (INT2/UINT2 at
opset 25, INT4/UINT4 at opset 21, INT8/UINT8 otherwise; 3-bit codes in 4-bit storage, 5-7 bit
codes in 8-bit storage), float16 weights a float16 initializer and a ``Cast``, pruned fp32
weights an ONNX sparse initializer where that is smaller than dense. Its byte length is the
size; ``model.onnx.zst`` (zstd, a standard format) is the download when it is smaller.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optim.rows import Stored, Width

# element type -> (storage bits, name)
_WIDTHS = {
    TensorProto.INT2: (2, "INT2"), TensorProto.UINT2: (2, "UINT2"),
    TensorProto.INT4: (4, "INT4"), TensorProto.UINT4: (4, "UINT4"),
    TensorProto.INT8: (8, "INT8"), TensorProto.UINT8: (8, "UINT8"),
    TensorProto.FLOAT16: (16, "fp16"), TensorProto.FLOAT: (32, "fp32"),
    TensorProto.INT32: (32, "INT32"),
}  # fmt: skip


def stored_of(model: onnx.ModelProto, levels: dict[str, int] | None = None) -> Stored:
    """Read how ``model`` stores its parameters from its initializers (dense and sparse).

    Scales and zero points of (de)quantization nodes and integer shape tensors are not counted;
    a MatMulNBits weight counts as ``K * N`` parameters at its ``bits``. ``levels`` names
    initializers whose codes use fewer levels than their storage (3-bit codes in INT4).
    """
    levels = levels or {}
    aux, nbits = set(), {}
    for node in model.graph.node:
        if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            aux.update(node.input[1:])
        elif node.op_type == "MatMulNBits":
            aux.update(node.input[2:])
            a = {x.name: x.i for x in node.attribute}
            nbits[node.input[1]] = (a.get("bits", 4), a["K"] * a["N"])
    zps = _zero_points(model)
    tensors = [(t, None) for t in model.graph.initializer]
    tensors += [(s.values, tuple(s.dims)) for s in model.graph.sparse_initializer]
    counts: dict[tuple[int, str], int] = {}
    zeros = weights = 0
    for t, sparse_shape in tensors:
        if t.name in aux or t.data_type == TensorProto.INT64:
            continue
        if t.name in nbits:
            bits, n = nbits[t.name]
            counts[bits, "MatMulNBits"] = counts.get((bits, "MatMulNBits"), 0) + n
            weights += n
            continue
        if t.data_type not in _WIDTHS:
            continue
        box, name = _WIDTHS[t.data_type]
        shape = sparse_shape or tuple(t.dims)
        n = int(np.prod(shape, dtype=np.int64))
        key = (levels.get(t.name, box), name)
        counts[key] = counts.get(key, 0) + n
        if len(shape) >= 2:
            values = numpy_helper.to_array(t).astype(np.float64)
            nonzero = np.count_nonzero(values - zps.get(t.name, 0))
            zeros += n - (nonzero if sparse_shape is None else np.count_nonzero(values))
            weights += n
    total = sum(counts.values())
    widths = sorted(
        (Width(b, c, n / total) for (b, c), n in counts.items()), key=lambda w: -w.share
    )
    return Stored(tuple(widths), zeros / weights if weights else 0.0, total)


def _zero_points(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Quantized initializer -> its zero point (broadcast along the node's axis), so that a
    pruned weight stored as its zero point counts as a zero."""
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        zp_name = node.input[2] if len(node.input) > 2 else ""
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and zp_name in inits:
            zp = numpy_helper.to_array(inits[zp_name]).astype(np.float64)
            if zp.ndim == 1:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                rank = len(inits[node.input[0]].dims)
                zp = zp.reshape([-1 if i == axis % rank else 1 for i in range(rank)])
            out[node.input[0]] = zp
    return out


# storage bits -> (signed, unsigned) ONNX element type, and the opset whose DequantizeLinear
# takes it (ONNX Runtime >= 1.20 runs INT4 at opset 21, >= 1.23 INT2 at opset 25)
CONTAINERS = {
    2: ((TensorProto.INT2, TensorProto.UINT2), 25),
    4: ((TensorProto.INT4, TensorProto.UINT4), 21),
    8: ((TensorProto.INT8, TensorProto.UINT8), 13),
}
SCOPES = "pkg.torch.onnx.name_scopes"  # the one exporter record a shipped file keeps
SPARSE_MAX_DENSITY = 0.3  # COO costs 12 bytes per kept fp32 weight (value + int64 index)


def container_bits(bits: int) -> int:
    """Storage width for ``bits``-bit codes: ``container_bits(3)`` is 4, ``container_bits(6)`` 8."""
    return next(c for c in sorted(CONTAINERS) if bits <= c)


@dataclass(frozen=True)
class Encoding:
    """How one float weight is stored: ``w = (codes - zero_point) * scale`` then pruned by ``mask``.

    ``codes`` has the weight's shape (uint8, < 2**bits); ``scale`` and ``zero_point`` broadcast
    against it (per-channel: shape (C, 1, ...) along the channel axis; per-tensor: shape ()).
    ``bits`` of 16 means float16 storage (``codes`` then holds the float16 values and
    scale/zero_point are unused); 32 means float32 storage (used for pruned-only weights).
    ``mask`` (bool, weight's shape) marks the kept entries; None means dense.
    """

    codes: np.ndarray
    bits: int
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    mask: np.ndarray | None = None

    def dequantize(self) -> np.ndarray:
        """The float32 weight (what ``DequantizeLinear`` computes from the shipped codes)."""
        if self.bits >= 16:
            w = self.codes.astype(np.float32)
        else:
            w = (self.codes.astype(np.float32) - self.zero_point.astype(np.float32)) * (
                self.scale.astype(np.float32)
            )
        if self.mask is not None:
            w = np.where(self.mask, w, np.float32(0))
        return w.astype(np.float32)


@dataclass(frozen=True)
class Graph:
    """An fp32 ONNX model plus how its weights are stored, and a label for what executes.

    ``encodings`` maps initializer names to their :class:`Encoding`; the model holds their
    dequantized fp32 values, so the next technique of a plan reads plain weights.
    ``precision`` says what executes (e.g. "fp32", "int8 QDQ u8s8").
    """

    model: onnx.ModelProto
    encodings: dict[str, Encoding]
    precision: str = "fp32"

    def with_weights(self, encodings: dict[str, Encoding], **labels: str) -> Graph:
        """A new Graph whose named initializers are replaced by their dequantized encodings."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        by_name = {t.name: t for t in model.graph.initializer}
        for name, enc in encodings.items():
            by_name[name].CopyFrom(numpy_helper.from_array(enc.dequantize(), name))
        return replace(self, model=model, encodings={**self.encodings, **encodings}, **labels)


def weight_initializers(model: onnx.ModelProto, subgraphs: bool = True) -> dict[str, int]:
    """Float weights of Conv/Gemm/MatMul layers -> their output-channel axis (also of layers
    inside If/Loop branches unless ``subgraphs`` is False).

    Conv weights are (C_out, C_in/g, kH, kW): axis 0. Gemm's B is (N, K) with transB=1 (what
    torch exports), else (K, N). A MatMul's constant right operand is (K, N): axis -1.
    """
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, int] = {}
    nodes = all_nodes(model.graph) if subgraphs else model.graph.node
    for node in nodes:  # layers inside If/Loop branches read the outer graph's weights
        if node.op_type == "Conv" and node.input[1] in inits:
            out[node.input[1]] = 0
        elif node.op_type == "Gemm" and node.input[1] in inits:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            out[node.input[1]] = 0 if trans_b else 1
        elif node.op_type == "MatMul" and node.input[1] in inits:
            out[node.input[1]] = len(inits[node.input[1]].dims) - 1
    return {
        k: v
        for k, v in out.items()
        if inits[k].data_type == onnx.TensorProto.FLOAT and len(inits[k].dims) >= 2
    }


def all_nodes(graph: onnx.GraphProto):
    """Every node of ``graph`` and of its subgraphs (If branches, Loop bodies), depth first."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                yield from all_nodes(sub)


def weights_or_refuse(model: onnx.ModelProto, what: str) -> dict[str, int]:
    """:func:`weight_initializers`, refusing (in one line) a graph where ``what`` would find no
    weight to touch: a config that changes nothing must not pretend it did."""
    found = weight_initializers(model)
    if not found:
        raise ValueError(
            f"{what} found no Conv/Gemm/MatMul weight initializer to change in the graph "
            f"(graph {model.graph.name!r}: {len(model.graph.initializer)} initializers, "
            f"{len(model.graph.node)} nodes)"
        )
    return found


# ---------------------------------------------------------------------------- the shipped file


def _int_tensor(values: np.ndarray, elem_type: int, name: str) -> TensorProto:
    """An integer initializer of ``elem_type`` (INT2/INT4 are packed little-endian, as ONNX
    defines them, through ml_dtypes)."""
    import ml_dtypes

    dtype = {
        TensorProto.INT2: ml_dtypes.int2, TensorProto.UINT2: ml_dtypes.uint2,
        TensorProto.INT4: ml_dtypes.int4, TensorProto.UINT4: ml_dtypes.uint4,
        TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8,
    }[elem_type]  # fmt: skip
    return numpy_helper.from_array(np.asarray(values).astype(dtype), name)


def _storage_bits(model: onnx.ModelProto, name: str, bits: int, shape: tuple[int, ...]) -> int:
    """The container for ``bits``-bit codes of weight ``name``. ONNX Runtime 1.32's default
    optimizations fuse an INT2 DequantizeLinear into the MatMul it feeds and compute it wrongly
    when N (the weight's last dim) is not a multiple of 4 (tests/test_artifact.py pins this):
    such a weight keeps its 2-bit levels in INT4 storage instead."""
    box = container_bits(bits)
    feeds_matmul = any(n.op_type == "MatMul" and n.input[1] == name for n in model.graph.node)
    if box == 2 and feeds_matmul and shape[-1] % 4:
        return 4
    return box


def _dequantize_node(name: str, enc: Encoding, shape: tuple[int, ...], box: int):
    """(initializers, DequantizeLinear node producing ``name``) for N-bit codes stored in
    ``box``-bit integers."""
    (signed, unsigned), _ = CONTAINERS[box]
    codes, zp = enc.codes.astype(np.int16), np.asarray(enc.zero_point).astype(np.int16)
    if enc.mask is not None:
        codes = np.where(enc.mask, codes, zp)  # a pruned weight is the zero point: exactly 0
    scale = np.asarray(enc.scale, np.float32)
    axis = next((i for i, n in enumerate(scale.shape) if n > 1 and n == shape[i]), None)
    squeeze = (lambda a: a.reshape(-1)) if axis is not None else (lambda a: a.reshape(()))
    if axis is None and scale.size > 1:
        raise ValueError(f"scale of {name!r} has shape {scale.shape}: not per tensor or channel")
    inits = [numpy_helper.from_array(squeeze(scale), f"{name}.scale")]
    if np.all(zp == 1 << (enc.bits - 1)):  # symmetric: signed codes, zero point 0 (omitted)
        inits.insert(0, _int_tensor(codes - zp, signed, f"{name}.q"))
        inputs = [f"{name}.q", f"{name}.scale"]
    else:
        inits.insert(0, _int_tensor(codes, unsigned, f"{name}.q"))
        inits.append(_int_tensor(squeeze(zp), unsigned, f"{name}.zero_point"))
        inputs = [f"{name}.q", f"{name}.scale", f"{name}.zero_point"]
    attrs = {"axis": axis} if axis is not None else {}
    node = helper.make_node("DequantizeLinear", inputs, [name], name=f"{name}.dequantize", **attrs)
    return inits, node


def _sparse(name: str, w: np.ndarray) -> onnx.SparseTensorProto | None:
    """``w`` as an ONNX sparse initializer (COO, linear int64 indices) if that is smaller."""
    idx = np.flatnonzero(w).astype(np.int64)
    if idx.size > SPARSE_MAX_DENSITY * w.size:
        return None
    values = numpy_helper.from_array(w.ravel()[idx], name)
    return helper.make_sparse_tensor(values, numpy_helper.from_array(idx, f"{name}.indices"),
                                     list(w.shape))  # fmt: skip


def _upgrade(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` at ai.onnx ``opset`` or newer (the version converter's own passes)."""
    have = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    if have >= opset:
        return model
    from onnx import version_converter

    try:
        out = version_converter.convert_version(model, opset)
    except Exception as e:  # noqa: BLE001 - one line for the row
        raise ValueError(f"cannot upgrade the graph from opset {have} to {opset}: {e}") from None
    out.ir_version = max(out.ir_version, model.ir_version)
    return out


def to_onnx(graph: Graph) -> tuple[onnx.ModelProto, Stored]:
    """The standard ONNX model that ships for ``graph``, and how its weights are stored.

    Example:
        >>> model, stored = to_onnx(graph)  # doctest: +SKIP
        >>> str(stored)  # doctest: +SKIP
        '4-bit (INT4): 97 % of parameters, fp32: 3 %'
    """
    shapes = {t.name: tuple(t.dims) for t in graph.model.graph.initializer}
    boxes = {
        name: _storage_bits(graph.model, name, e.bits, shapes[name])
        for name, e in graph.encodings.items()
        if e.bits < 16
    }
    need = max((CONTAINERS[b][1] for b in boxes.values()), default=0)
    model = _upgrade(graph.model, need) if need else graph.model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if need:
        out.ir_version = max(out.ir_version, 11 if need >= 25 else 10)
    inits = {t.name: t for t in out.graph.initializer}
    new_inits, nodes, levels, sparse = [], [], {}, []
    for name, enc in graph.encodings.items():
        shape = tuple(inits[name].dims)
        if enc.bits < 16:
            more, node = _dequantize_node(name, enc, shape, boxes[name])
            new_inits += more
            nodes.append(node)
            levels[f"{name}.q"] = enc.bits
        elif enc.bits == 16:
            half = np.where(enc.mask, enc.codes, 0) if enc.mask is not None else enc.codes
            new_inits.append(numpy_helper.from_array(half.astype(np.float16), f"{name}.fp16"))
            nodes.append(helper.make_node("Cast", [f"{name}.fp16"], [name],
                                          name=f"{name}.cast", to=TensorProto.FLOAT))  # fmt: skip
        elif (sp := _sparse(name, enc.dequantize())) is not None:
            sparse.append(sp)
        else:
            continue  # stays a dense fp32 initializer (already holds the pruned values)
        del inits[name]
    kept = [t for t in out.graph.initializer if t.name in inits]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + new_inits)
    out.graph.sparse_initializer.extend(sparse)
    graph_nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(toposorted(nodes + graph_nodes))
    return out, stored_of(out, levels)


def toposorted(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` in an order the ONNX checker accepts: each after the producers of its inputs,
    including the outer values its If/Loop branches read (ONNX Runtime's quantizer writes
    graphs with such a branch before its producer). Stable: a sorted graph keeps its order."""
    import heapq

    made = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [
        {made[x] for x in _reads(n) if x in made and made[x] != i} for i, n in enumerate(nodes)
    ]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    left = [len(d) for d in deps]
    ready = [i for i, k in enumerate(left) if k == 0]  # a heap: the lowest index first
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):  # a cycle: leave the rest as it was (the checker will say so)
        seen = set(order)
        order += [i for i in range(len(nodes)) if i not in seen]
    return [nodes[i] for i in order]


def _reads(node: onnx.NodeProto) -> set[str]:
    """Values ``node`` reads: its inputs and what its subgraphs read from outside them."""
    names = {x for x in node.input if x}
    for a in node.attribute:
        for sub in [a.g] if a.HasField("g") else list(a.graphs):
            inner = {t.name for t in sub.initializer} | {i.name for i in sub.input}
            inner |= {o for n in sub.node for o in n.output}
            names |= {x for n in sub.node for x in _reads(n) if x not in inner}
    return names


def write_atomic(path: str | Path, data: bytes) -> int:
    """Write ``data`` to ``path`` via a temporary file and rename; returns the byte length on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return os.path.getsize(path)


@dataclass(frozen=True)
class Written:
    """What :func:`write_artifact` wrote: the bytes of each file and how weights are stored."""

    size_bytes: int  # model.onnx, the file that runs
    download_bytes: int | None  # model.onnx.zst when smaller than model.onnx, else None
    stored: Stored


def compress(data: bytes) -> bytes:
    """zstd frame of ``data`` (``zstd -d`` opens it): level 19 up to 8 MB, 9 above (speed)."""
    import zstandard

    return zstandard.ZstdCompressor(level=19 if len(data) < 8 << 20 else 9).compress(data)


def write_artifact(graph: Graph, out_dir: str | Path) -> Written:
    """Write ``model.onnx`` (what ships and runs) and ``model.onnx.zst`` (its download, only
    when smaller) into ``out_dir``; the same graph always gives the same bytes."""
    out_dir = Path(out_dir)
    model, stored = to_onnx(graph)
    data = model.SerializeToString(deterministic=True)
    size = write_atomic(out_dir / "model.onnx", data)
    packed, download = compress(data), None
    if len(packed) < len(data):
        download = write_atomic(out_dir / "model.onnx.zst", packed)
    else:
        (out_dir / "model.onnx.zst").unlink(missing_ok=True)
    return Written(size, download, stored)


def export_onnx(model, example: np.ndarray) -> onnx.ModelProto:
    """Export a torch module with torch.export (dynamo) to ONNX, batch axis dynamic.

    ``example`` is (1, *input_shape) float32. The graph's input is named ``input`` and its output
    ``logits``; BatchNorm is folded into the preceding convolutions by the exporter's optimizer.
    """
    import contextlib
    import io
    import logging
    import warnings

    import torch

    for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(name).setLevel(logging.WARNING)
    x = torch.from_numpy(np.array(example, np.float32))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval(),
            (x,),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    model = program.model_proto
    for node in model.graph.node:  # drop the exporter's debug records (stack traces, fx nodes:
        keep = [p for p in node.metadata_props if p.key == SCOPES]  # most of a small file's
        del node.metadata_props[:]  # bytes); the module scopes name the profile's layers
        node.metadata_props.extend(keep)
    return model
