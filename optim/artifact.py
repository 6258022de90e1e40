"""What ships: an ONNX graph plus its weights, packed.

The packed artifact (``.optim``) is a safetensors file whose tensors are the ONNX graph with its
weights removed (``__graph__``) and one byte blob (``__blob__``); the metadata says how each
weight is stored: sub-8-bit codes bit-packed, pruned tensors as a bitmask plus their non-zero
entries, optionally zstd on top. :func:`unpack` rebuilds the executable ONNX graph, bit for bit
the one that was measured, because the executed weights are computed from the stored codes by the
same numpy expression (:func:`Encoding.dequantize`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

MAGIC_ZSTD = b"\x28\xb5\x2f\xfd"  # zstd frame magic: the file is compressed as a whole
SPARSE_MIN = 0.5  # below half zeros a bitmask costs more than it saves


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned integer codes (each < 2**bits) into a little-endian bit stream (uint8).

    Example:
        >>> pack_bits(np.array([1, 2, 3]), 2).tolist()  # 01 10 11 -> 0b00111001
        [57]
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"`1 <= bits <= 8` must hold, but got bits={bits}")
    codes = np.asarray(codes).astype(np.uint8).ravel()
    if codes.size and int(codes.max()) >= 1 << bits:
        raise ValueError(f"codes must be < 2**bits={1 << bits}, but got max={int(codes.max())}")
    # (N, bits) little-endian bit planes -> one flat bit stream -> bytes
    planes = np.unpackbits(codes[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as uint8."""
    stream = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    return np.packbits(stream, axis=1, bitorder="little").ravel()


@dataclass(frozen=True)
class Encoding:
    """How one float weight is stored: ``w = (codes - zero_point) * scale`` then pruned by ``mask``.

    ``codes`` has the weight's shape (uint8, < 2**bits); ``scale`` and ``zero_point`` broadcast
    against it (per-channel: shape (C, 1, ...) along ``axis``; per-tensor: shape ()). ``bits`` of
    16 means float16 storage (``codes`` then holds the float16 values and scale/zero_point are
    unused); 32 means float32 storage (used for pruned-only weights). ``mask`` (bool, weight's
    shape) marks the kept entries; None means dense.
    """

    codes: np.ndarray
    bits: int
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    mask: np.ndarray | None = None

    def dequantize(self) -> np.ndarray:
        """The float32 weight the executable graph holds (the only place this is computed)."""
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
    """An executable ONNX model plus how its weights are stored, and labels for what runs.

    ``encodings`` maps initializer names to their :class:`Encoding`; initializers not named there
    are stored as they are (sparse-encoded when mostly zeros). ``precision`` says what executes
    (e.g. "fp32", "int8 QDQ u8s8"); ``stored`` says how weights are stored (e.g. "4-bit").
    """

    model: onnx.ModelProto
    encodings: dict[str, Encoding]
    precision: str = "fp32"
    stored: str = "fp32"

    def with_weights(self, encodings: dict[str, Encoding], **labels: str) -> Graph:
        """A new Graph whose named initializers are replaced by their dequantized encodings."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        by_name = {t.name: t for t in model.graph.initializer}
        for name, enc in encodings.items():
            by_name[name].CopyFrom(numpy_helper.from_array(enc.dequantize(), name))
        return replace(self, model=model, encodings={**self.encodings, **encodings}, **labels)


def weight_initializers(model: onnx.ModelProto) -> dict[str, int]:
    """Float weights of Conv/Gemm/MatMul layers -> their output-channel axis.

    Conv weights are (C_out, C_in/g, kH, kW): axis 0. Gemm's B is (N, K) with transB=1 (what
    torch exports), else (K, N). A MatMul's constant right operand is (K, N): axis -1.
    """
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, int] = {}
    for node in model.graph.node:
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


# ---------------------------------------------------------------------------- packing


class _Blob:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> list[int]:
        data = np.ascontiguousarray(arr).tobytes()
        self.parts.append(data)
        self.size += len(data)
        return [self.size - len(data), len(data)]


def _pack_tensor(
    name: str, arr: np.ndarray, enc: Encoding | None, blob: _Blob, compress: bool
) -> dict:
    spec: dict = {"shape": list(arr.shape), "dtype": arr.dtype.str}
    mask = enc.mask if enc is not None else None
    if enc is None and arr.size >= 64 and np.mean(arr == 0) >= SPARSE_MIN:
        mask = arr != 0
    keep = (lambda a: a[mask]) if mask is not None else (lambda a: a.ravel())
    if mask is not None:
        spec["mask"] = blob.add(np.packbits(mask.ravel(), bitorder="little"))
    if enc is None:
        spec["kind"] = "raw"
        spec["values"] = blob.add(keep(arr))
    elif enc.bits >= 16:
        spec["kind"], spec["bits"] = "float", enc.bits
        spec["values"] = blob.add(keep(enc.codes).astype(np.float16 if enc.bits == 16 else "<f4"))
    else:
        spec["kind"], spec["bits"] = "quant", enc.bits
        # Under zstd, 2-3 bit codes kept one per byte entropy-code better (zstd's Huffman stage
        # sees their skewed distribution) than bit-packed; from 4 bits on packing is as good.
        spec["packed"] = not (compress and enc.bits <= 3)
        codes = keep(enc.codes)
        spec["codes"] = blob.add(pack_bits(codes, enc.bits) if spec["packed"] else codes)
        spec["qshape"] = list(np.shape(enc.scale))
        spec["scale"] = blob.add(np.asarray(enc.scale, "<f4"))
        spec["zero_point"] = blob.add(np.asarray(enc.zero_point, np.uint8))
    return spec


def _unpack_tensor(spec: dict, blob: bytes) -> np.ndarray:
    def get(field: str, dtype: str) -> np.ndarray:
        start, length = spec[field]
        return np.frombuffer(
            blob, dtype=dtype, count=length // np.dtype(dtype).itemsize, offset=start
        )

    shape = tuple(spec["shape"])
    n = int(np.prod(shape))
    mask = None
    if "mask" in spec:
        mask = np.unpackbits(get("mask", "u1"), bitorder="little")[:n].astype(bool).reshape(shape)
    count = int(mask.sum()) if mask is not None else n

    def place(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if mask is None:
            return values.reshape(shape)
        out = np.zeros(shape, dtype)
        out[mask] = values
        return out

    if spec["kind"] == "raw":
        return place(get("values", spec["dtype"]), np.dtype(spec["dtype"])).astype(spec["dtype"])
    if spec["kind"] == "float":
        vals = get("values", "<f2" if spec["bits"] == 16 else "<f4")
        return Encoding(place(vals, vals.dtype), spec["bits"], mask=mask).dequantize()
    codes = get("codes", "u1")
    if spec.get("packed", True):
        codes = unpack_bits(codes, spec["bits"], count)
    qshape = tuple(spec["qshape"])
    enc = Encoding(
        codes=place(codes, np.uint8),
        bits=spec["bits"],
        scale=get("scale", "<f4").reshape(qshape),
        zero_point=get("zero_point", "u1").reshape(qshape),
        mask=mask,
    )
    return enc.dequantize()


def pack(graph: Graph, compress: bool = True) -> bytes:
    """Serialize ``graph`` into the packed artifact format (see the module docstring)."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(graph.model)
    blob, layout = _Blob(), {}
    for t in skeleton.graph.initializer:
        arr = numpy_helper.to_array(t)
        layout[t.name] = _pack_tensor(t.name, arr, graph.encodings.get(t.name), blob, compress)
        t.ClearField("raw_data")
        for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            t.ClearField(f)
    # one metadata key: safetensors writes a multi-key header in hash order (not reproducible)
    meta = {
        "optim": json.dumps(
            {"format": "optim-packed/1", "precision": graph.precision, "stored": graph.stored,
             "layout": layout},
            separators=(",", ":"),
        )
    }  # fmt: skip
    tensors = {
        "__graph__": np.frombuffer(skeleton.SerializeToString(), np.uint8),
        "__blob__": np.frombuffer(b"".join(blob.parts), np.uint8),
    }
    data = st_save(tensors, metadata=meta)
    if compress:
        import zstandard

        # level 19 is slow (~2 MB/s): keep it for small artifacts, level 9 for large ones
        level = 19 if len(data) < 8 << 20 else 9
        data = zstandard.ZstdCompressor(level=level).compress(data)
    return data


def unpack(data: bytes) -> Graph:
    """Rebuild the executable :class:`Graph` from packed bytes (never unpickles anything).

    Raises:
        ValueError: if ``data`` is not a packed artifact.
    """
    try:
        if data[:4] == MAGIC_ZSTD:
            import zstandard

            data = zstandard.ZstdDecompressor().decompress(data)
        header_len = int.from_bytes(data[:8], "little")
        meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["optim"])
        tensors = st_load(data)
        layout = meta["layout"]
        model = onnx.load_from_string(tensors["__graph__"].tobytes())
    except Exception as e:  # noqa: BLE001 - any parse failure is one user-facing error
        raise ValueError(f"not a packed optim artifact ({type(e).__name__}: {e})") from None
    blob = tensors["__blob__"].tobytes()
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(_unpack_tensor(layout[t.name], blob), t.name))
    return Graph(model, {}, precision=meta.get("precision", ""), stored=meta.get("stored", ""))


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


def write_artifact(graph: Graph, out_dir: str | Path, compress: bool = True) -> dict[str, int]:
    """Write ``model.optim`` (packed) and ``model.onnx`` (its unpacked executable form).

    ``model.onnx`` is written from ``unpack(pack(graph))``, so what is measured is exactly what
    the packed file holds. Returns the byte length of each file on disk.
    """
    out_dir = Path(out_dir)
    packed = pack(graph, compress=compress)
    executable = unpack(packed).model.SerializeToString()
    return {
        "size_bytes": write_atomic(out_dir / "model.optim", packed),
        "onnx_bytes": write_atomic(out_dir / "model.onnx", executable),
    }


def fp32_bytes(model: onnx.ModelProto) -> int:
    """Length of the serialized fp32 ONNX model (the baseline file size)."""
    return model.ByteSize()


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
    return program.model_proto
