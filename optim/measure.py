"""Measurements on an artifact: accuracy with its interval and a paired test against the
baseline, per-class accuracy, peak memory, interleaved latency with intervals, CPU facts.

Everything here reads the shipped ONNX file (a path or bytes) and runs it in ONNX Runtime;
nothing touches the in-memory model that produced it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from optim.session import LEVEL_NAMES, check_level, session_text  # noqa: F401 (re-exported)

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


def machine(role: str) -> dict[str, str]:
    """Where this process runs, as a row records it: ``{role}_on`` (the host) and
    ``{role}_cpu`` (CPU model and its int8-relevant SIMD flags), e.g. ``role="timed"``.

    Example:
        >>> sorted(machine("timed"))
        ['timed_cpu', 'timed_on']
    """
    import socket

    cpu = cpu_info()
    flags = ", ".join(cpu["flags"]) or "no AVX2/AVX-512/VNNI"
    return {f"{role}_on": socket.gethostname(), f"{role}_cpu": f"{cpu['model']} ({flags})"}


# ORT's graph optimization levels by the name a row records ("all": what every figure uses)
LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
assert tuple(LEVELS) == LEVEL_NAMES


def session(
    model: bytes | str | Path, threads: int = 1, level: str = "all"
) -> ort.InferenceSession:
    """An ORT CPU session with ``threads`` intra-op threads (1 inter-op thread, sequential) and
    graph optimizations at ``level`` (:data:`LEVELS`)."""
    if threads < 1:
        raise ValueError(f"`threads >= 1` must hold, but got threads={threads}")
    check_level(level)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = LEVELS[level]
    opts.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


Inputs = np.ndarray | Mapping[str, np.ndarray]  # one array, or one per named graph input


class Fixed(np.ndarray):
    """An input fed as it is to every call, never split into batches: a stateful model's
    initial state (e.g. Silero VAD's (2, 1, 128) ``state``) or a scalar setting (its ``sr``).
    Inputs with a fixed one run one example per call."""


def fixed(a: np.ndarray) -> Fixed:
    """``a`` marked as a :class:`Fixed` input."""
    return np.asarray(a).view(Fixed)


def feed(sess: ort.InferenceSession, x: Inputs) -> dict[str, np.ndarray]:
    """The session's input feed for ``x``: one array goes to the first input, a mapping by name."""
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    return {sess.get_inputs()[0].name: x}


def take(x: Inputs, rows: slice) -> Inputs:
    """Rows ``rows`` of every input array (a :class:`Fixed` input whole)."""
    if isinstance(x, Mapping):
        return {k: v if isinstance(v, Fixed) else v[rows] for k, v in x.items()}
    return x[rows]


def count(x: Inputs) -> int:
    """Examples in ``x`` (the batch axis)."""
    if isinstance(x, Mapping):
        return len(next(v for v in x.values() if not isinstance(v, Fixed)))
    return len(x)


def batch_of(x: Inputs, batch: int) -> int:
    """``batch``, or 1 when a :class:`Fixed` input (a state with its own batch axis) is fed."""
    fixed_ = isinstance(x, Mapping) and any(isinstance(v, Fixed) for v in x.values())
    return 1 if fixed_ else batch


def predict(
    sess: ort.InferenceSession, x: Inputs, batch: int = 128, output: str | None = None
) -> np.ndarray:
    """The output ``output`` (default: the first) for every example of ``x``, run in batches;
    float outputs as float32, integer outputs (labels) as they are."""
    names = [o.name for o in sess.get_outputs()]
    want = [output or names[0]]
    if want[0] not in names:
        raise ValueError(f"output {want[0]!r} must be one of the model's outputs {names}")
    batch = batch_of(x, batch)
    outs = [
        sess.run(want, feed(sess, take(x, slice(i, i + batch))))[0]
        for i in range(0, count(x), batch)
    ]
    if not all(isinstance(o, np.ndarray) for o in outs):
        raise ValueError(
            f"output {want[0]!r} must be a tensor, but is a {type(outs[0]).__name__} (a "
            "skl2onnx ZipMap? convert with options={'zipmap': False})"
        )
    out = np.concatenate(outs)
    return out.astype(np.float32) if out.dtype.kind == "f" else out


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
    example: Inputs,
    min_runs: int = 50,
    min_seconds: float = 0.5,
    max_runs: int = 5000,
    warmup: int = 10,
) -> Latency:
    """Time single calls on ``example`` (batch 1 by default): warm-up, then at least ``min_runs``
    calls and at least ``min_seconds`` (whichever takes longer, capped at ``max_runs``)."""
    inputs = feed(sess, example)
    for _ in range(warmup):
        sess.run(None, inputs)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (
        len(times) < min_runs or time.perf_counter() - start < min_seconds
    ):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return Latency(
        p50_ms=float(np.percentile(t, 50)),
        p90_ms=float(np.percentile(t, 90)),
        cv=float(1.4826 * np.median(np.abs(t - np.median(t))) / np.median(t)),
        runs=len(t),
    )


def node_times(
    model: onnx.ModelProto | Path,
    example: Inputs,
    threads: int = 1,
    runs: int = 30,
    level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
) -> dict[str, tuple[str, float]]:
    """ORT's profiler on ``runs`` calls: node name (after ORT's optimizations at ``level``) ->
    (op type, median kernel time in µs; the median, so one preempted call does not count)."""
    import json
    import tempfile
    from collections import defaultdict

    with tempfile.TemporaryDirectory() as d:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(d) / "prof")
        opts.graph_optimization_level = level
        opts.log_severity_level = 3
        src = str(model) if isinstance(model, Path) else model.SerializeToString()
        sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        inputs = feed(sess, example)
        for _ in range(runs):
            sess.run(None, inputs)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    durations: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            name = ev["name"].removesuffix("_kernel_time")
            durations[name].append(ev.get("dur", 0))
            ops[name] = ev.get("args", {}).get("op_name", "")
    return {k: (ops[k], float(np.median(v))) for k, v in durations.items()}


# ---------------------------------------------------------------------------- paired accuracy


@dataclass(frozen=True)
class Paired:
    """A config's accuracy against the baseline's on the same test examples."""

    delta: float  # accuracy - baseline accuracy
    low: float  # 95 % paired bootstrap interval of delta
    high: float
    p: float  # McNemar's exact test (two-sided binomial test on the discordant pairs)
    verdict: str  # "better" / "worse" when p < 0.05, else "same"


def mcnemar_p(correct: np.ndarray, base_correct: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: of the examples exactly one of the two gets right, is the
    split compatible with 50:50?

    Example:
        >>> a = np.array([1] * 10 + [0] * 2 + [1] * 88, bool)  # 10 fixed, 2 broken
        >>> b = np.array([0] * 10 + [1] * 2 + [1] * 88, bool)
        >>> round(mcnemar_p(a, b), 4)
        0.0386
    """
    from scipy.stats import binomtest

    a, b = np.asarray(correct, bool), np.asarray(base_correct, bool)
    if a.shape != b.shape:
        raise ValueError(
            f"`correct.shape == base_correct.shape` must hold, but got {a.shape}, {b.shape}"
        )
    wins, losses = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5).pvalue)


def paired(
    correct: np.ndarray, base_correct: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> Paired:
    """Paired comparison of two correctness vectors over the same examples."""
    a, b = np.asarray(correct, np.float64), np.asarray(base_correct, np.float64)
    p = mcnemar_p(a.astype(bool), b.astype(bool))
    diff = a - b
    idx = np.random.default_rng(seed).integers(0, diff.size, size=(n_boot, diff.size))
    lo, hi = np.quantile(diff[idx].mean(axis=1), [0.025, 0.975])
    delta = float(diff.mean())
    verdict = "same" if p >= 0.05 else ("better" if delta > 0 else "worse")
    return Paired(delta, float(lo), float(hi), p, verdict)


def class_accuracy(correct: np.ndarray, classes: np.ndarray) -> list[float]:
    """Accuracy within each class ``0 .. max(classes)`` (NaN for a class with no example)."""
    correct, classes = np.asarray(correct, bool), np.asarray(classes, np.int64)
    out = []
    for k in range(int(classes.max()) + 1 if classes.size else 0):
        hit = correct[classes == k]
        out.append(float(hit.mean()) if hit.size else float("nan"))
    return out


def resolution(n: int, accuracy: float) -> float:
    """Half-width of the 95 % interval of an accuracy measured on ``n`` examples (normal
    approximation): differences smaller than this cannot be told apart from noise."""
    p = min(max(accuracy, 1 / n), 1 - 1 / n)
    return float(1.96 * np.sqrt(p * (1 - p) / n))


# ---------------------------------------------------------------------------- the file itself

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent across exec
_RSS_SCRIPT = """
import hashlib, resource, sys
import numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
with np.load(sys.argv[2], allow_pickle=False) as z:
    x = {k: z[k] for k in z.files}
y = s.run(None, x if len(x) > 1 else {s.get_inputs()[0].name: next(iter(x.values()))})[0]
try:
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
except (OSError, StopIteration):
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(hwm * 1024, hashlib.sha1(np.ascontiguousarray(y).tobytes()).hexdigest())
"""


def run_alone(model: Path, x: Inputs) -> tuple[int, str]:
    """Load and run ``model`` on ``x`` in a fresh Python (isolated: ``optim`` is not importable
    there): its peak resident memory in bytes and the SHA-1 of its first output."""
    npy = model.with_name(".input.npz")
    np.savez(npy, **(dict(x) if isinstance(x, Mapping) else {"x": x}))
    try:
        out = subprocess.run([sys.executable, "-I", "-c", _RSS_SCRIPT, str(model), str(npy)],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        npy.unlink(missing_ok=True)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{model.name} does not run in a fresh ONNX Runtime: {last}")
    rss, digest = out.stdout.split()
    return int(rss), digest


def graph_id(model: Path, threads: int = 1) -> str:
    """Fingerprint of the graph ONNX Runtime executes for ``model`` after its optimizations
    (operators, attributes, wiring, weight shapes and types; not names or weight values): two
    files with the same id run the same kernels, so any latency difference is noise."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="optim-graph-") as d:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(d) / "opt.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        opt = onnx.load(str(Path(d) / "opt.onnx"), load_external_data=False)
    g = opt.graph
    inits = {t.name: f"w{t.data_type}:{list(t.dims)}" for t in g.initializer}
    inits |= {s.values.name: f"w{s.values.data_type}:{list(s.dims)}" for s in g.sparse_initializer}
    names = {i.name: f"in{k}" for k, i in enumerate(g.input) if i.name not in inits}
    h = hashlib.sha1()
    for k, node in enumerate(g.node):
        ins = [inits.get(i) or names.get(i, "?") if i else "" for i in node.input]
        attrs = sorted((a.name, onnx.helper.get_attribute_value(a)) for a in node.attribute)
        h.update(repr((node.domain, node.op_type, ins, [str(a) for a in attrs])).encode())
        names.update({o: f"n{k}.{j}" for j, o in enumerate(node.output)})
    return h.hexdigest()[:16]


def check_optimizations(
    model: Path,
    x: Inputs,
    outputs: np.ndarray,
    n: int = 16,
    int8_activations: bool = False,
    output: str | None = None,
    reference: np.ndarray | None = None,
) -> None:
    """Refuse a file whose outputs ONNX Runtime's graph optimizations change (a fusion that
    miscomputes it): the first ``n`` rows of ``x`` run unoptimized must give ``outputs[:n]``
    (the optimized session's) within float rounding (0.1 %), or for a graph with int8
    activations within 10 % of the outputs' scale or within the unoptimized file's own
    distance from ``reference`` (the fp32 baseline's outputs on ``x``), whichever is larger:
    a fusion that differs by less than quantization itself does is no miscomputation."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    plain = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    want = predict(plain, take(x, slice(0, n)), output=output).astype(np.float64)
    diff = float(np.max(np.abs(want - outputs[:n]))) if want.size else 0.0
    tolerance = 1e-3 * (1 + float(np.max(np.abs(want)))) if want.size else 0.0
    if int8_activations:
        # int8 activations: fused integer kernels round differently from the unfused QDQ
        # emulation, by up to a few quantization steps; a broken fusion is off by far more
        # (AVX2 without VNNI also saturates u8s8 sums in the fused kernels); 10 % of the
        # outputs' scale
        tolerance = max(tolerance, 0.1 * max(float(np.ptp(want)), float(np.max(np.abs(want)))))
        if reference is not None and want.size:
            tolerance = max(tolerance, float(np.max(np.abs(want - reference[:n]))))
    if diff > tolerance:
        raise ValueError(
            f"ONNX Runtime {ort.__version__}'s default optimizations change the outputs of "
            f"{model.name} (max |difference| {diff:.3g} on {len(want)} test inputs): not shipped"
        )


# ---------------------------------------------------------------------------- interleaved timing


@dataclass(frozen=True)
class Timing:
    """One config's latency from :func:`time_interleaved` (ms; speed-up = baseline / this)."""

    p50_ms: float
    p90_ms: float
    p50_low: float  # 95 % interval on the p50, bootstrap over rounds
    p50_high: float
    cv: float  # robust CV of single calls: 1.4826 * MAD / median
    rounds: int
    speedup: float  # 1 / median over rounds of (this round's median / baseline's)
    speedup_low: float
    speedup_high: float
    verdict: str  # "baseline", "same graph", "faster", "slower" or "same"


def time_interleaved(
    files: Mapping[str, Path],
    example: Inputs,
    baseline: str,
    threads: int = 1,
    rounds: int = 20,
    min_seconds: float = 0.5,
    seed: int = 0,
    graph_ids: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    level: str = "all",
) -> dict[str, Timing]:
    """Time every file in ``files`` against the others under the same conditions.

    Each of ``rounds`` rounds runs every config (the baseline included) in a freshly shuffled
    order, each for a burst of single calls, so drift of the machine hits all configs alike;
    each config gets at least ``min_seconds`` of calls overall. Speed-ups are paired per round.
    A config is called faster or slower only when the 95 % interval of its speed-up excludes 1,
    and never when it executes the baseline's graph (same ``graph_ids``). Sessions optimize
    the graphs at ``level`` (:data:`LEVELS`; ``"all"``, as every row's figures).

    Example:
        >>> t = time_interleaved({"base": a, "int8": b}, x, baseline="base")  # doctest: +SKIP
        >>> t["int8"].verdict  # doctest: +SKIP
        'faster'
    """
    if baseline not in files:
        raise ValueError(f"the baseline {baseline!r} must be one of the timed files")
    if rounds < 2:
        raise ValueError(f"`rounds >= 2` must hold, but got rounds={rounds}")
    sessions = {k: session(Path(f), threads, level) for k, f in files.items()}
    feeds = {k: feed(s, example) for k, s in sessions.items()}
    calls = {}
    for k, s in sessions.items():  # warm up, then size each burst from a rough call time
        for _ in range(5):
            s.run(None, feeds[k])
        t0 = time.perf_counter()
        for _ in range(5):
            s.run(None, feeds[k])
        est = max((time.perf_counter() - t0) / 5, 1e-6)
        calls[k] = int(np.clip(np.ceil(min_seconds / rounds / est), 3, 200))
    times = {k: np.empty((rounds, calls[k])) for k in sessions}
    rng = np.random.default_rng(seed)
    keys = list(sessions)
    blocks = block_count(rounds)
    for r, order in enumerate(schedule(keys, rounds, rng)):
        if r and r % (rounds // blocks) == 0:  # a new block: every config gets a new session
            sessions = {k: session(Path(f), threads, level) for k, f in files.items()}
            for k in keys:
                for _ in range(3):
                    sessions[k].run(None, feeds[k])
        for k in order:
            s, inputs, row = sessions[k], feeds[k], times[k][r]
            for i in range(calls[k]):
                t0 = time.perf_counter()
                s.run(None, inputs)
                row[i] = time.perf_counter() - t0
        if progress:
            progress(r + 1, rounds)
    ids = graph_ids or {}
    same = {k: ids.get(k) is not None and ids.get(k) == ids.get(baseline) for k in keys}
    return {k: _timing(times[k] * 1e3, times[baseline] * 1e3, k == baseline, same[k], rng,
                       blocks) for k in keys}  # fmt: skip


def block_count(rounds: int) -> int:
    """Rounds are timed in blocks (up to 4), each with freshly created sessions: how a session
    happened to be laid out in memory then varies in the data, so the intervals cover it (two
    runs of the same grid differ by that too, not only by per-call noise)."""
    return next(d for d in (4, 3, 2, 1) if rounds % d == 0)


def schedule(keys: list[str], rounds: int, rng: np.random.Generator) -> list[list[str]]:
    """The timing order: every key (the baseline among them) once per round, each round
    shuffled afresh, so no config always runs right after another or always first."""
    return [list(rng.permutation(keys)) for _ in range(rounds)]


def _timing(
    t: np.ndarray, base: np.ndarray, is_base: bool, same: bool, rng, blocks: int = 1
) -> Timing:
    """Statistics of one config's (rounds, calls) times against the baseline's; the bootstrap
    resamples blocks (sessions), then rounds within each drawn block."""
    n_boot, (rounds, _) = 1000, t.shape
    k = rounds // blocks
    picked = rng.integers(0, blocks, size=(n_boot, blocks)) * k  # first round of each block
    idx = (picked[:, :, None] + rng.integers(0, k, size=(n_boot, blocks, k))).reshape(n_boot, -1)
    flat = t.ravel()
    p50 = float(np.median(flat))
    boot = np.median(t[idx].reshape(n_boot, -1), axis=1)
    p50_lo, p50_hi = np.quantile(boot, [0.025, 0.975])
    ratio = np.median(t, axis=1) / np.median(base, axis=1)  # this / baseline, per round
    r_lo, r_hi = np.quantile(np.median(ratio[idx], axis=1), [0.025, 0.975])
    speed = 1 / float(np.median(ratio))
    if is_base:
        verdict = "baseline"
    elif same:
        verdict = "same graph"
    else:
        verdict = "faster" if r_hi < 1 else "slower" if r_lo > 1 else "same"
    return Timing(
        p50_ms=p50, p90_ms=float(np.percentile(flat, 90)), p50_low=float(p50_lo),
        p50_high=float(p50_hi), cv=float(1.4826 * np.median(np.abs(flat - p50)) / p50),
        rounds=rounds, speedup=speed, speedup_low=float(1 / r_hi), speedup_high=float(1 / r_lo),
        verdict=verdict,
    )  # fmt: skip
