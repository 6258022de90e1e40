"""Build one config (torch-stage steps, ONNX export, graph-stage steps) and measure the file it
writes: accuracy with its interval and a paired test, size, memory; then time all of a run's
files together (:func:`time_rows`).

Exports are cached per process; in a sweep's workers, the exported torch-stage part of a plan (a
distilled student, a pruned and fine-tuned model) is also shared through the run's folder, so
each is trained once per run whatever graph-stage steps follow (:func:`share_prefixes`). A
longer torch-stage part that starts with it (the student, then QAT) reuses it only within the
same worker process: torch models are not shared between processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from optim import measure, metrics
from optim import plan as plans
from optim.artifact import Graph, all_nodes, export_onnx, write_artifact
from optim.rows import Row, plan_fields
from optim.sources import ModelSource, get_source, source_spec

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Settings:
    """How a sweep measures; stored with the run so a resume measures the same way."""

    threads: int = 1  # intra-op threads for latency; 1 = the embedded/edge worst case
    seed: int = 0
    jobs: int = 0  # worker processes; 0 = one per core, capped by the number of configs
    min_seconds: float = 0.5  # latency: calls per config in all, over the interleaved rounds
    rounds: int = 20  # latency: interleaved rounds (the bootstrap resamples these)
    executor: str = "local"  # where configs are built: "local" processes or a "ray" cluster
    # latency scenarios after the timing phase: (threads, batch[, level]) each, threads 0 = all
    # cores (optim.scenarios); empty = the timing phase only (``threads``, batch 1)
    scenarios: tuple = ()

    @classmethod
    def from_json(cls, d: dict) -> Settings:
        """Settings stored with a run (fields an older version stored and this one dropped,
        such as ``compress``, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in d.items() if k in names}
        if kept.get("executor", "local") == "local":  # another machine's cores
            kept["jobs"] = min(int(kept.get("jobs", 0)), os.cpu_count() or 1)
        return cls(**kept)

    def __post_init__(self) -> None:
        from optim.scenarios import check_axes

        object.__setattr__(self, "scenarios", check_axes(self.scenarios))  # JSON lists too
        cores = os.cpu_count() or 1  # more threads or workers than cores only add noise
        if not 1 <= self.threads <= cores:
            raise ValueError(
                f"`1 <= threads <= {cores}` (this machine's cores) must hold, but got "
                f"threads={self.threads}"
            )
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"`executor` must be one of {EXECUTORS}, but got executor={self.executor!r}"
            )
        if self.executor == "ray" and self.jobs < 0:  # a cluster's CPUs are not known here
            raise ValueError(f"`jobs >= 0` must hold, but got jobs={self.jobs}")
        if self.executor == "local" and not 0 <= self.jobs <= cores:
            raise ValueError(
                f"`0 <= jobs <= {cores}` (this machine's cores) must hold, but got jobs={self.jobs}"
            )
        if self.seed < 0:
            raise ValueError(f"`seed >= 0` must hold, but got seed={self.seed}")
        if self.rounds < 2:
            raise ValueError(f"`rounds >= 2` must hold, but got rounds={self.rounds}")
        if not self.min_seconds > 0:
            raise ValueError(
                f"`min_seconds > 0` must hold, but got min_seconds={self.min_seconds}"
            )


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
    if torch_steps and source.build is None:
        raise ValueError(
            f"{plans.label(torch_steps)!r} needs a torch model, but {source.name!r} is an "
            "ONNX file: only graph-stage steps (quantize, prune, int8) apply to it"
        )


def _export(spec: str, torch_key: str) -> tuple[Graph, float | None]:
    source = get_source(spec)
    torch_steps = plans.from_json(json.loads(torch_key))
    check_torch_steps(source, torch_steps)
    if source.onnx_path is not None and not torch_steps:  # the intake's normalized file
        return Graph(onnx.load(source.onnx_path), {}), source.meta.get("intake", {}).get("flops")
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


# ops that quantize activations: fused integer kernels round differently from the unfused ops
INT8_ACTIVATIONS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger"})


def nbits_fused(model: onnx.ModelProto) -> int:
    """MatMuls whose weight is a 2- or 4-bit initializer behind DequantizeLinear: ONNX Runtime's
    default optimizations fuse them into MatMulNBits, which by default (accuracy level 4)
    quantizes the activations to int8, so their outputs move by a few quantization steps."""
    low = {t.name for t in model.graph.initializer if t.data_type in _LOW_BIT}
    dq = {n.output[0] for n in model.graph.node
          if n.op_type == "DequantizeLinear" and n.input[0] in low}  # fmt: skip
    return sum(n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in dq
               for n in model.graph.node)  # fmt: skip


_LOW_BIT = frozenset({onnx.TensorProto.INT4, onnx.TensorProto.UINT4, onnx.TensorProto.INT2,
                      onnx.TensorProto.UINT2})  # fmt: skip


def evaluate(
    source: ModelSource,
    plan: Sequence[object],
    out_dir: Path,
    settings: Settings,
    baseline_out: np.ndarray | None,
) -> tuple[Row, np.ndarray]:
    """Build and write one config, and measure the written file: its source's metric
    (:func:`optim.metrics.score`) with its interval and a paired comparison against
    ``baseline_out`` (the baseline's test outputs; None for the baseline itself), size,
    download size, peak memory and the fingerprint of the graph ONNX Runtime executes. Latency
    comes later, from :func:`time_rows`, with every config of the run timed together. Returns
    (row, the file's outputs on the test split)."""
    t0 = time.perf_counter()
    graph, flops = build(source, plan, settings.seed)
    written = write_artifact(graph, out_dir)
    shipped = out_dir / "model.onnx"
    sess = measure.session(shipped, settings.threads)  # the written file only
    test = source.splits["test"]
    outputs = measure.predict(sess, test.x, output=source.output)
    fused = nbits_fused(onnx.load(shipped))  # the file as written: low-bit initializers
    qdq = fused > 0 or any(  # subgraphs too: an If branch may hold the quantized nodes
        n.op_type in INT8_ACTIVATIONS for n in all_nodes(graph.model.graph)
    )
    if fused:  # what really executes, with stock ONNX Runtime's default session options
        graph = replace(
            graph,
            precision=f"{graph.precision}; {fused} MatMul(s) fused by ONNX "
            "Runtime into MatMulNBits (int4 weights, int8 activations)",
        )
    measure.check_optimizations(
        shipped, test.x, outputs, int8_activations=qdq, output=source.output,
        reference=baseline_out,
    )  # fmt: skip
    scores = metrics.score(outputs, baseline_out, test.y, source.metric, settings.seed)
    rss, _ = measure.run_alone(shipped, source.example)
    row = Row(
        key=plans.key(plan), label=plans.label(plan), family=plans.family(plan),
        is_baseline=len(plan) == 0, **plan_fields(plan), **scores,
        size_bytes=written.size_bytes, download_bytes=written.download_bytes,
        peak_rss_bytes=rss, stored=str(written.stored), storage=written.stored.to_json(),
        backend=measure.BACKEND, precision=graph.precision,
        graph_id=measure.graph_id(shipped, settings.threads), params=written.stored.params,
        flops=flops, threads=settings.threads, seconds=time.perf_counter() - t0,
        artifact=str(out_dir),
    )  # fmt: skip
    return row, outputs


def time_rows(
    rows: Sequence[Row], settings: Settings, example: np.ndarray, progress=None
) -> list[Row]:
    """Time the shipped files of ``rows`` (the baseline among them) together, interleaved
    (:func:`optim.measure.time_interleaved`), and return the rows with their latency."""
    ok = [r for r in rows if r.error is None and r.artifact]
    ok = [r for r in ok if (Path(r.artifact) / "model.onnx").is_file()]  # a deleted file: untimed
    base = next((r for r in ok if r.is_baseline), None)
    if base is None:
        raise ValueError(
            "timing needs the baseline's measured row and its model.onnx, but "
            f"{'it failed: ' + next((r.error for r in rows if r.is_baseline), '') if any(r.is_baseline for r in rows) else 'no baseline row is among the rows'}"
        )
    timings = measure.time_interleaved(
        {r.key: Path(r.artifact) / "model.onnx" for r in ok}, example, base.key,
        threads=settings.threads, rounds=settings.rounds, min_seconds=settings.min_seconds,
        seed=settings.seed, graph_ids={r.key: r.graph_id for r in ok}, progress=progress,
    )  # fmt: skip
    here = measure.machine("timed")  # every latency of the run comes from this one machine
    what = measure.session_text(settings.threads)  # the session settings that timed them
    return [replace(r, **latency_fields(timings[r.key]), session=what,
                    extra={**r.extra, **here}) if r.key in timings else r
            for r in rows]  # fmt: skip


def latency_fields(t: measure.Timing) -> dict:
    """A :class:`~optim.measure.Timing` as the row's latency columns."""
    return {
        "latency_p50_ms": t.p50_ms, "latency_p90_ms": t.p90_ms, "p50_low": t.p50_low,
        "p50_high": t.p50_high, "latency_cv": t.cv, "latency_rounds": t.rounds,
        "speedup": t.speedup, "speedup_low": t.speedup_low, "speedup_high": t.speedup_high,
        "speed_verdict": t.verdict,
    }  # fmt: skip
