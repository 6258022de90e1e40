"""Profile a model: parameters, FLOPs (torch.utils.flop_counter) and a per-layer table with each
layer's share of measured ONNX Runtime time (from ORT's own profiler on the fp32 artifact)."""

from __future__ import annotations

import ast
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optim.sources import ModelSource, get_source


@dataclass(frozen=True)
class Profile:
    summary: dict  # params, flops, baseline accuracy / size / latency
    layers: pd.DataFrame  # layer, type, params, flops, latency_share


def _group(scopes: list[str]) -> str:
    """Module path at table depth: ['', 'layer1', 'layer1.0', 'layer1.0.conv1', op] -> 'layer1.0'.

    Top-level modules are rows, except containers of numbered blocks, whose blocks are rows.
    """
    names = [s for s in scopes[1:-1] if s]  # drop the root '' and the op itself
    if not names:
        return "(other)"
    if len(names) > 1 and names[1].removeprefix(names[0] + ".").isdigit():
        return names[1]
    return names[0]


def _torch_layers(model, example: np.ndarray) -> pd.DataFrame:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.from_numpy(np.array(example, np.float32)))
    flops = {
        k.split(".", 1)[1]: sum(v.values())
        for k, v in counter.get_flop_counts().items()
        if "." in k
    }
    rows = []
    for name, mod in model.named_modules():
        if (
            not name
            or name.count(".") > 1
            or (name.count(".") == 1 and not name.split(".")[1].isdigit())
        ):
            continue
        children = list(mod.children())
        if name.count(".") == 0 and children and all(n.isdigit() for n, _ in mod.named_children()):
            continue  # a Sequential of blocks: list its blocks instead
        rows.append({
            "layer": name,
            "type": type(mod).__name__,
            "params": sum(p.numel() for p in mod.parameters()),
            "flops": float(flops.get(name, 0.0)),
        })  # fmt: skip
    return pd.DataFrame(rows)


def onnx_layers(model) -> pd.DataFrame:
    """Per node of an ONNX graph with inferred shapes: ``layer`` (node name), ``type``, ``params``
    (float initializer elements it reads first) and ``flops`` per example (2 per multiply-add
    for Conv, ConvTranspose, Gemm and MatMul, as ``torch.utils.flop_counter`` counts; batch 1)."""
    from onnx import TensorProto

    g = model.graph
    inits = {t.name: tuple(t.dims) for t in g.initializer if t.data_type == TensorProto.FLOAT}
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    for v in (*g.input, *g.value_info, *g.output):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
    seen, rows = set(), []
    for i, node in enumerate(g.node):
        own = [n for n in node.input if n in inits and n not in seen]
        seen.update(own)
        rows.append({
            "layer": node.name or f"{node.op_type}_{i}", "type": node.op_type,
            "params": sum(int(np.prod(inits[n], dtype=np.int64)) for n in own),
            "flops": _node_flops(node, shapes),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["layer", "type", "params", "flops"])


def _node_flops(node, shapes: dict) -> float:
    """2 x multiply-adds of one node at batch 1 (0 where shapes are unknown)."""
    out = shapes.get(node.output[0]) if node.output else None
    if not out:
        return 0.0
    per_example = float(np.prod(out[1:])) if len(out) > 1 else float(np.prod(out))
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
        w = shapes.get(node.input[1])
        if not w:
            return 0.0
        if node.op_type == "Conv":  # out (N, C_out, *spatial), w (C_out, C_in/g, *k)
            return 2.0 * per_example * float(np.prod(w[1:]))
        return 2.0 * float(np.prod(shapes.get(node.input[0], (1,))[1:])) * float(np.prod(w[1:]))
    if node.op_type in ("Gemm", "MatMul") and len(node.input) > 1:
        a = shapes.get(node.input[0])
        if not a:
            return 0.0
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = a[-2] if node.op_type == "Gemm" and trans_a else a[-1]
        return 2.0 * per_example * float(k)
    return 0.0


def _ort_times(
    onnx_path: Path, example: np.ndarray, threads: int, runs: int = 30, by_scope: bool = True
) -> dict[str, float]:
    """Share of ORT kernel time per torch module scope (``by_scope``) or per node name."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(onnx_path)
    scopes = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        raw = meta.get("pkg.torch.onnx.name_scopes")
        scopes[node.name] = _group(ast.literal_eval(raw)) if raw and by_scope else node.name
    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(d) / "prof")
        opts.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        )  # keep node names
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        from optim.measure import feed as feed_of

        feed = feed_of(sess, example)
        for _ in range(runs):
            sess.run(None, feed)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    times: dict[str, float] = defaultdict(float)
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            node = ev["name"].removesuffix("_kernel_time")
            times[scopes.get(node, "(other)")] += ev.get("dur", 0)
    total = sum(times.values()) or 1.0
    return {k: v / total for k, v in times.items()}


def profile(model: str | ModelSource, threads: int = 1) -> Profile:
    """Params, FLOPs, baseline figures and the per-layer table of a model.

    Example:
        >>> p = profile("digits_cnn")  # doctest: +SKIP
        >>> p.layers.columns.tolist()  # doctest: +SKIP
        ['layer', 'type', 'params', 'flops', 'latency_share']
    """
    from optim.build import Settings, evaluate, time_rows

    source = model if isinstance(model, ModelSource) else get_source(model)
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(threads=threads)
        row, _ = evaluate(source, (), Path(d), settings, None)
        row = time_rows([row], settings, source.example)[0].to_dict()
        shares = _ort_times(Path(d) / "model.onnx", source.example, threads,
                            by_scope=source.onnx_path is None)  # fmt: skip
    if source.onnx_path is None:
        layers = _torch_layers(source.build(), source.example)
        layers["latency_share"] = layers["layer"].map(shares).astype(float)
    else:  # the intake's normalized graph: per node, from its inferred shapes
        import onnx

        from optim.intake import _bind_shapes

        graph = _bind_shapes(onnx.load(source.onnx_path), source.example)
        layers = onnx_layers(graph)
        layers["latency_share"] = layers["layer"].map(shares).astype(float)
    summary = {
        "model": source.name,
        "params": row["params"],
        "flops": row["flops"],
        "accuracy": row["accuracy"],
        "acc_low": row["acc_low"],
        "acc_high": row["acc_high"],
        "size_bytes": row["size_bytes"],
        "download_bytes": row["download_bytes"],
        "peak_rss_bytes": row["peak_rss_bytes"],
        "latency_p50_ms": row["latency_p50_ms"],
        "latency_p90_ms": row["latency_p90_ms"],
        "p50_low": row["p50_low"],
        "p50_high": row["p50_high"],
        "backend": row["backend"],
        "threads": threads,
    }
    if "intake" in source.meta:  # what the ONNX intake did to the file, in sentences
        from optim.intake import Report

        summary["intake"] = "; ".join(Report(**source.meta["intake"]).lines())
    return Profile(summary, layers[["layer", "type", "params", "flops", "latency_share"]])
