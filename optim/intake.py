"""The ONNX intake: every ONNX file a user brings passes here once, before anything else reads it.

1. Safety, before any parsing that could hurt: a size limit, external data only as plain files
   inside the model's own folder (no ``..``, no absolute path, no symlink or hard link, no range
   past the file's end), declared tensor sizes checked against the bytes that hold them.
2. ``onnx.checker`` (full check).
3. Normalization by well-kept tools, not hand-written passes: ``onnx.version_converter`` up to
   the opset the techniques need (13: per-channel ``DequantizeLinear``), then ONNX Runtime's
   basic graph optimizations, which turn ``Constant`` weights into initializers and fold
   constants and BatchNorm into the preceding Conv where exact, then ONNX shape inference with
   the data's shape bound to the dynamic dims (the batch stays dynamic).
4. Proof: the normalized graph must reproduce the original's outputs on the test split (the
   largest difference is recorded and shown; above :data:`TOLERANCE` the file is refused).

The normalized file is the baseline every config is measured against; the :class:`Report` says
what changed. Results are cached by the original file's hash under ``$OPTIM_HOME/intake``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from optim.measure import Fixed, Inputs, batch_of, count, feed, take

TOLERANCE = 1e-4  # max |normalized - original| / max(1, max |original|) on the test split
MIN_OPSET = 13  # per-channel DequantizeLinear (axis) and QDQ need ai.onnx >= 13
MAX_ELEMENTS = 1 << 31  # a constant or shape that asks for more elements is refused


def max_bytes() -> int:
    """Largest ONNX file (with its external data) accepted: ``OPTIM_MAX_MODEL_MB``, default 4096."""
    raw = os.environ.get("OPTIM_MAX_MODEL_MB", "4096")
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not mb > 0:
        raise ValueError(f"`OPTIM_MAX_MODEL_MB > 0` must hold, but got {raw!r}")
    return int(mb * 1e6)


@dataclass(frozen=True)
class Report:
    """What the intake did to a file, for the user to read."""

    original: str
    original_sha256: str
    normalized_sha256: str
    opset_before: int
    opset_after: int
    nodes_before: int
    nodes_after: int
    constants_to_initializers: int  # Constant nodes whose tensors became initializers
    batchnorms_folded: int  # BatchNormalization nodes folded away
    max_abs_diff: float  # normalized vs original outputs on the test split
    max_rel_diff: float
    params: int  # elements of the float initializers of the normalized graph
    flops: float  # per example, from shapes (Conv, Gemm, MatMul: 2 per multiply-add)

    def lines(self) -> list[str]:
        """The report as sentences."""
        return [
            f"original {Path(self.original).name} (sha256 {self.original_sha256[:12]}), "
            f"normalized sha256 {self.normalized_sha256[:12]}",
            f"opset {self.opset_before} -> {self.opset_after}; nodes {self.nodes_before} -> "
            f"{self.nodes_after}",
            f"{self.constants_to_initializers} Constant weights -> initializers, "
            f"{self.batchnorms_folded} BatchNormalization folded",
            f"outputs reproduced to max |diff| {self.max_abs_diff:.2g} "
            f"(relative {self.max_rel_diff:.2g}, tolerance {TOLERANCE:g})",
            f"{self.params:,} parameters, {self.flops / 1e6:,.2f} MFLOPs per example",
        ]


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _safe_external(path: Path, model: onnx.ModelProto) -> int:
    """Check every external-data reference; returns the external bytes referenced."""
    from onnx.external_data_helper import _get_all_tensors

    folder, total = path.parent.resolve(), 0
    # every tensor: initializers, sparse ones, attributes, subgraphs (If/Loop/Scan), functions
    for t in _get_all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = (folder / loc).resolve()
        if (
            not loc
            or Path(loc).is_absolute()
            or ".." in Path(loc).parts
            or target.parent != folder
            and folder not in target.parents
        ):
            raise ValueError(
                f"tensor {t.name!r} keeps its data at {loc!r}: external data must be a file "
                "inside the model's own folder"
            )
        raw = folder / loc
        if raw.is_symlink() or not raw.is_file() or raw.stat().st_nlink > 1:
            raise ValueError(
                f"tensor {t.name!r} keeps its data at {loc!r}: it must be a plain file (no "
                "symlink, no hard link) inside the model's folder"
            )
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise ValueError(
                f"tensor {t.name!r} has a non-integer external offset/length: "
                f"{info.get('offset')!r}/{info.get('length')!r}"
            ) from None
        size = raw.stat().st_size
        if length < 0:
            length = size - offset
        if offset < 0 or offset + length > size:
            raise ValueError(
                f"tensor {t.name!r} reads bytes {offset}..{offset + length} of {loc!r}, "
                f"which has {size}"
            )
        total += length
    return total


def _check_sizes(model: onnx.ModelProto) -> None:
    """Declared sizes must fit their bytes, and no constant shape may ask for absurd memory."""
    inits = {t.name: t for t in model.graph.initializer}
    for t in model.graph.initializer:
        n = int(np.prod(t.dims, dtype=np.float64)) if t.dims else 1
        if n > MAX_ELEMENTS:
            raise ValueError(
                f"initializer {t.name!r} declares {n:,} elements (limit {MAX_ELEMENTS:,})"
            )
        if t.data_location != onnx.TensorProto.EXTERNAL and t.HasField("raw_data"):
            try:
                width = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"initializer {t.name!r} has unknown data type {t.data_type}"
                ) from None
            bits = (
                4 if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) else 8 * width
            )
            if t.data_type in (onnx.TensorProto.INT2, onnx.TensorProto.UINT2):
                bits = 2
            if len(t.raw_data) < -(-n * bits // 8):
                raise ValueError(
                    f"initializer {t.name!r} declares {n:,} elements but holds "
                    f"{len(t.raw_data):,} bytes"
                )
    for node in model.graph.node:
        if node.op_type in ("ConstantOfShape", "Expand", "Tile") and node.input[-1] in inits:
            shape = onnx.numpy_helper.to_array(inits[node.input[-1]])
            n = float(np.prod(np.maximum(shape.astype(np.float64), 1)))
            if node.op_type == "ConstantOfShape" and n > MAX_ELEMENTS:
                raise ValueError(
                    f"node {node.name or node.op_type!r} ({node.op_type}) would allocate "
                    f"{n:,.0f} elements (limit {MAX_ELEMENTS:,})"
                )


def safety_check(path: Path) -> onnx.ModelProto:
    """Refuse a hostile or broken file before anything allocates from it; returns the model
    parsed without its external data."""
    if not path.is_file() or path.is_symlink():
        raise ValueError(f"{str(path)!r} must be a plain ONNX file")
    limit = max_bytes()
    if path.stat().st_size > limit:
        raise ValueError(
            f"{path.name} is {path.stat().st_size:,} bytes; the limit is {limit:,} "
            "(OPTIM_MAX_MODEL_MB)"
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is one user error
        raise ValueError(f"{path.name} is not an ONNX model ({type(e).__name__})") from None
    if path.stat().st_size + _safe_external(path, model) > limit:
        raise ValueError(f"{path.name} with its external data exceeds {limit:,} bytes")
    _check_sizes(model)
    return model


def _run(model_or_path, x: Inputs) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model_or_path if isinstance(model_or_path, bytes) else str(model_or_path)
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    given = sorted(x) if isinstance(x, Mapping) else None
    if given is not None and given != sorted(inputs):
        raise ValueError(
            f"the data must give the graph's inputs {sorted(inputs)}, but gives {given}"
        )
    if given is None and len(inputs) > 1:
        raise ValueError(
            f"the model has {len(inputs)} inputs {sorted(inputs)}: the data must name one "
            "array per input (x_test.<input>, x_calib.<input>)"
        )
    try:
        step = batch_of(x, 64)
        outs = [
            sess.run(None, feed(sess, take(x, slice(i, i + step))))
            for i in range(0, count(x), step)
        ]
    except Exception as e:  # noqa: BLE001 - a data/model mismatch is one user error
        reason = " ".join(str(e).split())[:160]
        shapes = {k: tuple(v.shape) for k, v in (x.items() if given else [("x", x)])}
        raise ValueError(
            f"the test data {shapes} does not run through the inputs {inputs}: {reason}"
        ) from None
    if not all(isinstance(o, np.ndarray) for o in outs[0]):
        raise ValueError(
            "every output must be a tensor, but one is a sequence or map (a skl2onnx ZipMap? "
            "convert with options={'zipmap': False})"
        )
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def normalize(path: Path, x: Inputs, out: Path) -> Report:
    """Normalize the ONNX file at ``path`` into ``out`` and prove it on ``x``; see the module."""
    import onnxruntime as ort

    original = safety_check(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"{path.name} fails the ONNX checker: {reason}") from None
    model = onnx.load(str(path))  # with its (checked) external data
    before = _opset(model)
    if before < MIN_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"{path.name} is opset {before}; converting it to {MIN_OPSET} failed: {e}"
            ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(out)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        reason = " ".join(str(e).split())[:200]
        raise ValueError(f"ONNX Runtime cannot load {path.name}: {reason}") from None
    normalized = _bind_shapes(onnx.load(str(out)), x)
    data = normalized.SerializeToString(deterministic=True)
    out.write_bytes(data)
    want, got = _run(str(path), x), _run(data, x)
    want = [a.astype(np.float64) for a in want]
    abs_diff = max(
        float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(want, got, strict=True)
    )
    scale = max(1.0, max(float(np.max(np.abs(a))) if a.size else 0.0 for a in want))
    rel = abs_diff / scale
    if not rel <= TOLERANCE:
        out.unlink(missing_ok=True)
        raise ValueError(
            f"the normalized {path.name} differs from the original by {abs_diff:.3g} "
            f"(relative {rel:.3g}) on the test split; the tolerance is {TOLERANCE:g}"
        )
    from optim.profile import onnx_layers

    layers = onnx_layers(normalized)
    return Report(
        original=str(path), original_sha256=_sha(path), normalized_sha256=hashlib.sha256(data).hexdigest(),
        opset_before=before, opset_after=_opset(normalized), nodes_before=len(original.graph.node),
        nodes_after=len(normalized.graph.node),
        constants_to_initializers=sum(n.op_type == "Constant" for n in original.graph.node)
        - sum(n.op_type == "Constant" for n in normalized.graph.node),
        batchnorms_folded=sum(n.op_type == "BatchNormalization" for n in original.graph.node)
        - sum(n.op_type == "BatchNormalization" for n in normalized.graph.node),
        max_abs_diff=abs_diff, max_rel_diff=rel, params=int(layers["params"].sum()),
        flops=float(layers["flops"].sum()),
    )  # fmt: skip


def _bind_shapes(model: onnx.ModelProto, x: Inputs) -> onnx.ModelProto:
    """Shape inference with the data's per-example shapes bound to the graph inputs' dynamic
    dims (the batch axis stays dynamic)."""
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    arrays = x if isinstance(x, Mapping) else {graph_inputs[0].name: x}
    for inp in graph_inputs:
        if inp.name not in arrays or isinstance(arrays[inp.name], Fixed):
            continue
        dims = inp.type.tensor_type.shape.dim
        for d, n in zip(list(dims)[1:], arrays[inp.name].shape[1:], strict=False):
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = int(n)
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def intake(path: str | Path, x: Inputs) -> tuple[Path, Report]:
    """The normalized file for ``path`` (made once, cached by the original's hash and the
    data's shape) and its report.

    Example:
        >>> normalized, report = intake("model.onnx", x_test)  # doctest: +SKIP
        >>> report.lines()[1]  # doctest: +SKIP
        'opset 11 -> 13; nodes 212 -> 141'
    """
    from optim.store import home

    path = Path(path)
    model = safety_check(path)  # parsed once, without its external data
    from onnx.external_data_helper import _get_all_tensors

    files = sorted({e.value for t in _get_all_tensors(model) for e in t.external_data
                    if t.data_location == onnx.TensorProto.EXTERNAL and e.key == "location"})  # fmt: skip
    shapes = {k: v.shape[1:] for k, v in x.items()} if isinstance(x, Mapping) else x.shape[1:]
    parts = [_sha(path), *(_sha(path.parent / f) for f in files), str(shapes)]
    key = hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]  # its data files count too
    folder = home() / "intake" / key
    out, meta = folder / "model.onnx", folder / "report.json"
    if out.is_file() and meta.is_file():
        return out, Report(**json.loads(meta.read_text()))
    tmp = folder / f".model.{os.getpid()}.onnx"
    report = normalize(path, x, tmp)
    report = dataclasses.replace(report, original=str(path))
    meta.write_text(json.dumps(dataclasses.asdict(report)))
    os.replace(tmp, out)  # complete or absent
    return out, report
