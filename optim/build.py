"""Build one config (torch-stage steps, ONNX export, graph-stage steps) and measure the
artifact it writes: accuracy with its interval, size, latency.

Exports are cached per process; in a sweep's workers, the exported torch-stage part of a plan (a
distilled student, a pruned and fine-tuned model) is also shared through the run's folder, so
each is trained once per run whatever graph-stage steps follow (:func:`share_prefixes`). A
longer torch-stage part that starts with it (the student, then QAT) reuses it only within the
same worker process: torch models are not shared between processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from optim import measure
from optim import plan as plans
from optim.artifact import Graph, export_onnx, write_artifact
from optim.sources import ModelSource, get_source, source_spec


@dataclass(frozen=True)
class Settings:
    """How a sweep measures; stored with the run so a resume measures the same way."""

    threads: int = 1  # intra-op threads for latency; 1 = the embedded/edge worst case
    seed: int = 0
    jobs: int = 0  # worker processes; 0 = one per core, capped by the number of configs
    compress: bool = True  # zstd over the packed artifact (entropy coding)
    min_seconds: float = 0.5  # latency: time at least this long (and >= 50 runs)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"`threads >= 1` must hold, but got threads={self.threads}")
        if self.jobs < 0:
            raise ValueError(f"`jobs >= 0` must hold, but got jobs={self.jobs}")


_GRAPHS: dict[tuple[str, str], tuple[Graph, float | None]] = {}  # per-process export cache


_SHARED: list[Path | None] = [None]  # the run's torch-prefix folder, in a sweep's workers


def share_prefixes(folder: Path | None) -> None:
    """Share built torch-stage prefixes with other processes through ``folder`` (None: don't)."""
    _SHARED[0] = folder


def seed_graph(spec: str, graph: Graph, flops: float | None) -> None:
    """Put an export made elsewhere (the parent's baseline) into this process's cache."""
    _GRAPHS[spec, plans.key(())] = (graph, flops)


def torch_graph(spec: str, torch_key: str) -> tuple[Graph, float | None]:
    """The exported graph (and FLOPs) for the source after the torch-stage steps of a plan."""
    if (spec, torch_key) not in _GRAPHS:
        if len(_GRAPHS) >= 8:
            _GRAPHS.pop(next(iter(_GRAPHS)))
        _GRAPHS[spec, torch_key] = _shared_export(spec, torch_key, _SHARED[0])
    return _GRAPHS[spec, torch_key]


def _shared_export(spec: str, torch_key: str, cache: Path | None) -> tuple[Graph, float | None]:
    """:func:`_export`, once per run: the first worker that needs a torch-stage prefix (a
    distilled student, a pruned and fine-tuned model) builds it under a file lock and writes its
    ONNX to ``cache``; the other workers, and a resumed run, load it instead of training again."""
    if cache is None or torch_key == plans.key(()):
        return _export(spec, torch_key)
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    stem = cache / hashlib.sha1(torch_key.encode()).hexdigest()[:12]
    onnx_file, flops_file = stem.with_suffix(".onnx"), stem.with_suffix(".flops.json")
    with open(stem.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if onnx_file.is_file():
            return Graph(onnx.load(onnx_file), {}), json.loads(flops_file.read_text())
        graph, flops = _export(spec, torch_key)
        flops_file.write_text(json.dumps(flops))
        tmp = stem.with_suffix(".onnx.tmp")
        onnx.save(graph.model, tmp)
        os.replace(tmp, onnx_file)  # complete or absent, never half-written
        return graph, flops


_MODELS: dict[tuple[str, str], object] = {}  # per-process: torch models after a plan prefix


def _torch_model(spec: str, torch_steps: tuple):
    """The source's model after ``torch_steps``, reusing the longest prefix this process built
    (two plans that distill the same student and then differ train the student once here)."""
    key = (spec, plans.key(torch_steps))
    if key in _MODELS:
        return _MODELS[key]
    if not torch_steps:
        return get_source(spec).build()
    source = get_source(spec)
    ctx = plans.Context(source, cpu=measure.cpu_info())
    model = plans.apply(_torch_model(spec, torch_steps[:-1]), torch_steps[-1:], ctx)
    if len(_MODELS) >= 4:  # students and fine-tunes of the big samples are 5-45 MB each
        _MODELS.pop(next(iter(_MODELS)))
    _MODELS[key] = model
    return model


def check_torch_steps(source: ModelSource, torch_steps: Sequence[object]) -> None:
    """Torch-stage steps (training, channel pruning, distillation) need a torch model: refuse
    them for an ONNX-file source, in one line."""
    if torch_steps and source.onnx_path is not None:
        raise ValueError(
            f"{plans.label(torch_steps)!r} needs a torch model, but {source.name!r} is an "
            "ONNX file: only graph-stage steps (quantize, prune, int8) apply to it"
        )


def _export(spec: str, torch_key: str) -> tuple[Graph, float | None]:
    source = get_source(spec)
    torch_steps = plans.from_json(json.loads(torch_key))
    check_torch_steps(source, torch_steps)
    if source.onnx_path is not None:
        return Graph(onnx.load(source.onnx_path), {}), None
    model = _torch_model(spec, torch_steps)
    return Graph(export_onnx(model, source.example), {}), _flops(model, source.example)


def _flops(model, example: np.ndarray) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.from_numpy(np.array(example, np.float32)))
    return float(counter.get_total_flops())


def build(
    source: ModelSource, plan: Sequence[object], seed: int = 0
) -> tuple[Graph, float | None]:
    """Apply ``plan`` to ``source``: torch-stage steps, ONNX export, then graph-stage steps."""
    torch_steps, graph_steps = plans.split(plan)
    base, flops = torch_graph(source_spec(source), plans.key(torch_steps))
    ctx = plans.Context(source, seed=seed, cpu=measure.cpu_info())
    return plans.apply(base, graph_steps, ctx), flops


def evaluate(
    source: ModelSource,
    plan: Sequence[object],
    out_dir: Path,
    settings: Settings,
    baseline_pred: np.ndarray | None,
    lock=None,
) -> tuple[dict, np.ndarray]:
    """Build, write and measure one config; returns (row, predictions on the test split)."""
    t0 = time.perf_counter()
    graph, flops = build(source, plan, settings.seed)
    sizes = write_artifact(graph, out_dir, compress=settings.compress)
    sess = measure.session(out_dir / "model.onnx", settings.threads)  # the written artifact only
    test = source.splits["test"]
    pred = measure.predict(sess, test.x).argmax(axis=1)
    agree = None if baseline_pred is None else float(np.mean(pred == baseline_pred))
    if source.metric == "top1":
        acc, lo, hi = measure.accuracy_ci(pred == test.y, seed=settings.seed)
    else:
        ref = pred if baseline_pred is None else baseline_pred
        acc, lo, hi = measure.accuracy_ci(pred == ref, seed=settings.seed)
    with lock if lock is not None else _nolock():
        lat = measure.latency(sess, source.example, min_seconds=settings.min_seconds)
    params = sum(
        int(np.prod(t.dims))
        for t in graph.model.graph.initializer
        if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    )  # not shapes
    row = {
        "key": plans.key(plan),
        "label": plans.label(plan),
        "family": plans.family(plan),
        "is_baseline": len(plan) == 0,
        "accuracy": acc,
        "acc_low": lo,
        "acc_high": hi,
        "agreement": agree if agree is not None else 1.0,
        **sizes,
        "latency_p50_ms": lat.p50_ms,
        "latency_p90_ms": lat.p90_ms,
        "latency_cv": lat.cv,
        "latency_runs": lat.runs,
        "backend": measure.BACKEND,
        "precision": graph.precision,
        "stored": graph.stored + (" + zstd" if settings.compress else ""),
        "params": params,
        "flops": flops,
        "threads": settings.threads,
        "seconds": time.perf_counter() - t0,
        "measured": "accuracy, size, latency measured on the artifact; flops counted on the torch model",
        "artifact": str(out_dir),
    }
    return row, pred


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
