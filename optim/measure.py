"""Measurements on an artifact: accuracy with a bootstrap interval, latency, CPU facts.

Everything here reads an executable ONNX graph (bytes or a path) and runs it in ONNX Runtime;
nothing touches the in-memory model that produced it.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

BACKEND = f"onnxruntime {ort.__version__} CPU"


def cpu_info() -> dict:
    """CPU model and the SIMD flags that decide int8 speed (VNNI, AVX-512, AVX2)."""
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
        "avx512": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "flags": sorted(
            flags & {"avx512_vnni", "avx_vnni", "avx512f", "avx512bw", "avx2", "amx_int8"}
        ),
    }


def session(model: bytes | str | Path, threads: int = 1) -> ort.InferenceSession:
    """An ORT CPU session with ``threads`` intra-op threads (1 inter-op thread, sequential)."""
    if threads < 1:
        raise ValueError(f"`threads >= 1` must hold, but got threads={threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def predict(sess: ort.InferenceSession, x: np.ndarray, batch: int = 128) -> np.ndarray:
    """Logits for every row of ``x``, run in batches."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def accuracy_ci(
    correct: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``correct`` (bools) and its percentile bootstrap interval.

    Example:
        >>> acc, lo, hi = accuracy_ci(np.array([1, 1, 1, 0] * 25, bool))
        >>> acc, lo < 0.75 < hi
        (0.75, True)
    """
    correct = np.asarray(correct, np.float64)
    if correct.size == 0:
        raise ValueError("`len(correct) > 0` must hold, but got an empty array")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, correct.size, size=(n_boot, correct.size))
    means = correct[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(correct.mean()), float(lo), float(hi)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    cv: float  # robust coefficient of variation: 1.4826 * MAD / median (outlier stalls ignored)
    runs: int


def latency(
    sess: ort.InferenceSession,
    example: np.ndarray,
    min_runs: int = 50,
    min_seconds: float = 0.5,
    max_runs: int = 5000,
    warmup: int = 10,
) -> Latency:
    """Time single calls on ``example`` (batch 1 by default): warm-up, then at least ``min_runs``
    calls and at least ``min_seconds`` (whichever takes longer, capped at ``max_runs``)."""
    feed = {sess.get_inputs()[0].name: example}
    for _ in range(warmup):
        sess.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (
        len(times) < min_runs or time.perf_counter() - start < min_seconds
    ):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return Latency(
        p50_ms=float(np.percentile(t, 50)),
        p90_ms=float(np.percentile(t, 90)),
        cv=float(1.4826 * np.median(np.abs(t - np.median(t))) / np.median(t)),
        runs=len(t),
    )
