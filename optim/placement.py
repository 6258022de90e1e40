"""Where int8 pays on this machine: settings and placement of static int8 chosen by measurement.

1. *Settings*: the full int8 graph under each candidate setting (QDQ / QOperator, U8S8 / S8S8,
   reduce_range, per-channel / per-tensor) is timed interleaved against fp32; the fastest one
   whose calib-split accuracy is within :data:`ACCURACY_SLACK` of the best wins.
2. *Placement*: greedy backward elimination over groups of nodes
   (:func:`optim.quantizer.groups`): each round times the current placement against itself
   with each remaining group reverted to fp32, all interleaved; groups whose reversal ran faster
   beyond noise (the 95 % interval of the paired speed-up above 1, the rule of every "faster"
   here) go back to fp32 (one per round in the first two rounds, then all at once), until a
   round reverts none. So no kept group measured slower in int8 in the last round
   (:attr:`Placement.records`); deciding on point estimates instead let a busy machine's noise
   revert groups that pay (resnet18 dropped from 2.8x to 2.0x on 2 cores at load 12).
   2b. If that placement is not faster than fp32 in the confirmation (step 3), elimination goes
   on from it on point estimates (a group whose reversal ran faster at all goes back), and the
   result replaces it when it confirms faster: where int8 pays nowhere beyond noise, many
   small losses add up (mobilenet_v3-style graphs: Q/DQ around every HardSwish).
3. *Confirmation*: fp32, the full int8 graph and the placement, interleaved again: the row's
   claim ("faster" only when the interval excludes 1) comes from here.
4. *Calibration*: MinMax / Percentile / Entropy ranges for the placement, chosen by calib-split
   accuracy (the graph, hence the speed, is the same).

ORT profiling of the fp32, full int8 and placed graphs (kernel time per op type) goes into the
record, to say why. A placement is cached under ``OPTIM_HOME/int8-placement`` by the model's
bytes, the calib data, the CPU, the threads and the search budget; the test split is never read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from optim import measure, metrics
from optim.quantizer import CALIBRATIONS, LINEAR, Int8Quantizer, Setting, quantizes

SEARCH_VERSION = 3  # in the cache key: a changed search measures again
ACCURACY_SLACK = 0.01  # a setting may lose this much calib accuracy to the best one for speed


def candidate_settings(cpu: dict) -> tuple[Setting, ...]:
    """The settings worth timing on ``cpu`` (``cpu["vnni"]``): U8S8 (reduce_range without VNNI,
    where U8S8 saturates), U8S8 without it, S8S8, QOperator and per-tensor scales."""
    base = Setting(reduce_range=not cpu.get("vnni", False))
    return (
        base,
        dataclasses.replace(base, reduce_range=not base.reduce_range),
        Setting(activations="int8"),
        dataclasses.replace(base, format="qoperator"),
        dataclasses.replace(base, per_channel=False),
    )


@dataclass(frozen=True)
class Placement:
    """A measured int8 placement: what runs in int8, what stayed fp32 and why, the timings."""

    setting: Setting
    calibration: str
    int8: tuple[str, ...]  # groups kept in int8
    fp32: dict[str, str]  # group -> why it stayed fp32
    excluded: tuple[str, ...]  # node names left in fp32 (quantize_static's nodes_to_exclude)
    counts: dict[str, list[int]]  # op type -> [in int8, in all] (Conv, Gemm, MatMul)
    speedup: float  # confirmation: fp32 time / placement time, with its 95 % interval
    speedup_low: float
    speedup_high: float
    verdict: str  # "faster", "same" or "slower" than fp32
    full_speedup: float  # the full int8 graph of the same setting, same timing
    converged: bool  # the last search round reverted no group (False: none paid, see note)
    threads: int
    records: list[dict] = field(default_factory=list)  # the search's timings, one per group
    settings_timed: list[dict] = field(default_factory=list)
    calibrations: dict[str, float] = field(default_factory=dict)  # method -> calib accuracy
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # graph -> op -> us

    @property
    def faster(self) -> bool:
        return self.verdict == "faster"

    def note(self) -> str:
        """What runs in int8 and what stayed fp32 and why, e.g. ``"int8: 41 of 53 Conv;
        fp32: depthwise Conv @ 4x4 (1.08x faster in fp32)"``."""
        ran = ", ".join(f"{a} of {b} {op}" for op, (a, b) in self.counts.items() if b)
        text = f"int8 ({self.setting.label}, {self.calibration}): {ran or 'no Conv/Gemm/MatMul'}"
        if self.fp32:
            text += "; fp32: " + ", ".join(f"{g} ({why})" for g, why in self.fp32.items())
        ratio = f"{self.speedup:.2f}x [{self.speedup_low:.2f}, {self.speedup_high:.2f}]"
        if not self.faster:
            text += (f"; no int8 placement was faster than fp32 on this CPU: the fastest ran at "
                     f"{ratio} of fp32's speed (full int8 {self.full_speedup:.2f}x)")  # fmt: skip
        else:
            text += f"; {ratio} vs fp32 in the placement's timing"
        return text

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Placement:
        return cls(**{**d, "setting": Setting(**d["setting"]), "int8": tuple(d["int8"]),
                      "excluded": tuple(d["excluded"])})  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """How long the search times each candidate: ``rounds`` interleaved rounds, ``seconds`` of
    calls per file in all (the confirmation uses twice both); and how far it goes: at most
    ``passes`` of backward elimination (each builds one file per int8 group left)."""

    rounds: int = 6
    seconds: float = 0.3
    passes: int = 64

    def __post_init__(self) -> None:
        if not 2 <= self.rounds <= 50:
            raise ValueError(f"`2 <= rounds <= 50` must hold, but got rounds={self.rounds}")
        if not 0 < self.seconds <= 10:
            raise ValueError(f"`0 < seconds <= 10` must hold, but got seconds={self.seconds}")
        if not 1 <= self.passes <= 1000:
            raise ValueError(f"`1 <= passes <= 1000` must hold, but got passes={self.passes}")


def rounds_field():
    """The ``rounds`` field of a config that runs the search (Int8Auto, Int8Fallback): 6 rounds
    x 0.3 s per file place mobilenet_v3 in about two minutes on 2 cores."""
    return field(default=Budget.rounds, metadata={
        "help": "int8 placement: interleaved timing rounds per search step", "range": (2, 50)})  # fmt: skip


def seconds_field():
    """The ``seconds`` field of a config that runs the search (see :func:`rounds_field`)."""
    return field(default=Budget.seconds, metadata={
        "help": "int8 placement: seconds of calls per file per step", "range": (0.01, 10.0)})  # fmt: skip


def passes_field():
    """The ``passes`` field of a config that runs the search (see :func:`rounds_field`)."""
    return field(default=Budget.passes, metadata={
        "help": "int8 placement: at most this many elimination passes (each builds one file "
                "per int8 group left)", "range": (1, 1000)})  # fmt: skip


DEFAULT_BUDGET = Budget()


def place(
    model: onnx.ModelProto,
    calib,
    example,
    cpu: dict,
    folder: Path,
    metric: str = "top1",
    threads: int = 1,
    budget: Budget = DEFAULT_BUDGET,
    calibration: str = "auto",
) -> tuple[Placement, Int8Quantizer]:
    """Measure where int8 pays for ``model`` on this machine (see the module docstring), cached
    in ``folder`` (under a lock: parallel workers wait for one search).

    Args:
        model: The fp32 graph.
        calib: The calib :class:`~optim.sources.Split` (inputs, labels or None).
        example: One batch-1 input, timed.
        cpu: :func:`optim.measure.cpu_info`.
        folder: The cache folder of this (model, data, machine, budget).
        calibration: ``"auto"`` (by calib accuracy) or one of :data:`CALIBRATIONS`.

    Returns:
        The placement and a quantizer that builds its file (:meth:`build`).
    """
    with locked(folder):
        quantizer = Int8Quantizer(model, calib.x, folder / "work")
        saved = folder / "placement.json"
        if saved.is_file():
            return Placement.from_json(json.loads(saved.read_text())), quantizer
        placement = _Search(quantizer, calib, example, cpu, metric, threads, budget).run(
            calibration
        )
        for f in (folder / "work").glob("q-*.onnx"):  # variants: tens of files, large
            f.unlink()
        tmp = saved.with_suffix(".tmp")
        tmp.write_text(json.dumps(placement.to_json(), indent=1))
        os.replace(tmp, saved)
        return placement, quantizer


def measured(
    graph, ctx, budget: Budget = DEFAULT_BUDGET, calibration: str = "auto", threads: int = 1
):
    """:func:`place` for ``graph`` (an :class:`~optim.artifact.Graph`) of ``ctx.source`` (a
    :class:`~optim.plan.Context`), cached under :func:`cache_folder`."""
    calib = ctx.source.splits["calib"]
    folder = cache_folder(graph.model, calib.x, ctx.cpu, threads, budget)
    folder = folder.with_name(f"{folder.name}-{calibration}")
    return place(graph.model, calib, ctx.source.example, ctx.cpu, folder, ctx.source.metric,
                 threads, budget, calibration)  # fmt: skip


@contextlib.contextmanager
def locked(folder: Path):
    """Hold ``folder``'s lock: parallel workers wait for one search instead of racing."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def build(placement: Placement, quantizer: Int8Quantizer) -> onnx.ModelProto:
    """The placement's int8 model."""
    path = quantizer.build(placement.setting, placement.excluded, placement.calibration)
    return onnx.load(path)


def cache_folder(model: onnx.ModelProto, calib_x, cpu: dict, threads: int, budget: Budget) -> Path:
    """``OPTIM_HOME/int8-placement/<hash>``: one per model bytes, calib data, CPU (model, flags),
    threads, ONNX Runtime version and search budget."""
    from optim.store import home

    h = hashlib.sha1(model.SerializeToString())
    arrays = calib_x.values() if isinstance(calib_x, dict) else [calib_x]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((SEARCH_VERSION, cpu.get("model"), cpu.get("flags"), threads, ort.__version__,
                   dataclasses.astuple(budget))).encode())  # fmt: skip
    return home() / "int8-placement" / h.hexdigest()[:16]


class _Search:
    def __init__(self, q: Int8Quantizer, calib, example, cpu, metric, threads, budget) -> None:
        self.q, self.example, self.cpu, self.metric = q, example, cpu, metric
        self.threads, self.budget, self.calib = threads, budget, calib
        self.z0 = self._outputs(q.fp32)
        self.ref = calib.y if calib.y is not None else metrics.predictions(self.z0)

    def _outputs(self, path: Path) -> np.ndarray:
        return measure.predict(measure.session(path, self.threads), self.calib.x)

    def accuracy(self, path: Path) -> float:
        from optim.sensitivity import calib_score

        return calib_score(self._outputs(path), self.z0, self.ref, self.metric)

    def time(self, files: dict[str, Path], baseline: str, scale: int = 1) -> dict:
        return measure.time_interleaved(
            files, self.example, baseline, threads=self.threads,
            rounds=self.budget.rounds * scale, min_seconds=self.budget.seconds * scale,
        )  # fmt: skip

    def run(self, calibration: str) -> Placement:
        setting, settings_timed = self.pick_setting()
        all_groups = dict(self.q.groups)
        kept, fp32, records, converged = self.eliminate(setting, all_groups)
        excluded = tuple(n for g in all_groups if g not in kept for n in all_groups[g])
        full, placed = self.q.build(setting), self.q.build(setting, excluded)
        t = self.time({"fp32": self.q.fp32, "full": full, "placed": placed}, "fp32", 2)
        if t["placed"].verdict != "faster" and kept:  # step 2b: no win beyond noise yet
            more = self.eliminate(setting, all_groups, kept, dict(fp32), beyond_noise=False)
            excl2 = tuple(n for g in all_groups if g not in more[0] for n in all_groups[g])
            if excl2 != excluded and self.q_quantizes(setting, excl2):
                t2 = self.time({"fp32": self.q.fp32, "full": full,
                                "placed": self.q.build(setting, excl2)}, "fp32", 2)  # fmt: skip
                if t2["placed"].speedup > t["placed"].speedup:  # the records of what ships
                    kept, fp32, converged, excluded, t = more[0], more[1], more[3], excl2, t2
                    placed = self.q.build(setting, excluded)
                    records += [{**rec, "round": f"2b-{rec['round']}"} for rec in more[2]]
        if excluded and t["full"].speedup > t["placed"].speedup:  # noise misled the search:
            ratio = t["placed"].speedup / t["full"].speedup  # the longer timing overrules it
            records += [{"round": "confirmation", "group": g, "nodes": len(all_groups[g]),
                         "int8_ms": t["full"].p50_ms, "fp32_ms": t["placed"].p50_ms,
                         "fp32_speedup": ratio, "verdict": "slower" if ratio < 1 else "same"}
                        for g in fp32]  # fmt: skip
            kept, excluded, placed, fp32 = list(all_groups), (), full, {}
            t["placed"] = t["full"]
        cals = {}
        methods = CALIBRATIONS if calibration == "auto" else (calibration,)
        for c in methods:
            cals[c] = self.accuracy(self.q.build(setting, excluded, c))
        best = max(cals, key=lambda c: (cals[c], c == "minmax"))
        profile = {k: op_times(p, self.example, self.threads)
                   for k, p in (("fp32", self.q.fp32), ("full int8", full), ("placed", placed))}  # fmt: skip
        return Placement(
            setting=setting, calibration=best, int8=tuple(kept), fp32=fp32, excluded=excluded,
            counts=counts(self.q.model, set(excluded)), speedup=t["placed"].speedup,
            speedup_low=t["placed"].speedup_low, speedup_high=t["placed"].speedup_high,
            verdict=t["placed"].verdict, full_speedup=t["full"].speedup, converged=converged,
            threads=self.threads, records=records, settings_timed=settings_timed,
            calibrations=cals, profile=profile,
        )  # fmt: skip

    def _builds(self, s: Setting) -> bool:
        """Whether ONNX Runtime's quantizer writes setting ``s`` for this graph, the file
        quantizes something and ORT loads it (ORT 1.32's QOperator MatMul raises on some graphs
        and writes an int32 bias into QLinearAdd on others: such settings are out)."""
        import onnxruntime as ort

        try:
            path = self.q.build(s)
            if not quantizes(path):
                return False
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # it loads
        except Exception:  # noqa: BLE001 - ORT's quantizer or loader refused: not a candidate
            return False
        return True

    def pick_setting(self) -> tuple[Setting, list[dict]]:
        cands = [s for s in candidate_settings(self.cpu) if self._builds(s)]
        if not cands:
            raise ValueError("int8 auto: ONNX Runtime quantized no node of the graph")
        files = {s.label: self.q.build(s) for s in cands}
        t = self.time({"fp32": self.q.fp32, **files}, "fp32")
        acc = {s.label: self.accuracy(files[s.label]) for s in cands}
        top = max(acc.values())
        ok = [s for s in cands if acc[s.label] >= top - ACCURACY_SLACK]
        best = max(ok, key=lambda s: t[s.label].speedup)
        timed = [{"setting": s.label, "speedup": t[s.label].speedup, "low": t[s.label].speedup_low,
                  "high": t[s.label].speedup_high, "calib_accuracy": acc[s.label],
                  "chosen": s == best} for s in cands]  # fmt: skip
        return best, timed

    def q_quantizes(self, setting: Setting, excluded) -> bool:
        return quantizes(self.q.build(setting, excluded))

    def eliminate(self, setting, groups, kept=None, fp32=None, beyond_noise: bool = True):
        """Greedy backward elimination (module docstring, step 2; ``beyond_noise=False``:
        step 2b, on point estimates, from ``kept``)."""
        kept, fp32, records = list(kept or groups), fp32 or {}, []
        best: tuple[float, list[str]] | None = None  # fastest placement with any int8 in it
        for r in range(min(len(groups), self.budget.passes)):
            excl = [n for g in groups if g not in kept for n in groups[g]]
            files = {"current": self.q.build(setting, excl), "fp32": self.q.fp32}
            if not quantizes(files["current"]):  # only groups ORT leaves in fp32 alone remain
                return self._restore(best, fp32, records)
            files |= {g: self.q.build(setting, excl + groups[g]) for g in kept}
            t = self.time(files, "current")
            vs_fp32 = 1 / t["fp32"].speedup  # the current placement's speed-up over fp32
            if best is None or vs_fp32 > best[0]:
                best = (vs_fp32, list(kept))
            gain = {g: t[g].speedup for g in kept}  # > 1: faster with g in fp32
            for g in kept:
                records.append({"round": r, "group": g, "nodes": len(groups[g]),
                                "int8_ms": t["current"].p50_ms, "fp32_ms": t[g].p50_ms,
                                "fp32_speedup": gain[g], "low": t[g].speedup_low,
                                "high": t[g].speedup_high, "verdict": t[g].verdict})  # fmt: skip
            # slower in int8 beyond noise: reverting g ran faster, its interval above 1
            slower = [
                g for g in kept if (t[g].verdict == "faster" if beyond_noise else gain[g] > 1)
            ]
            slower.sort(key=lambda g: -gain[g])
            if not slower:
                return kept, fp32, records, True
            for g in slower[:1] if r < 2 else slower:
                fp32[g] = (
                    f"{gain[g]:.2f}x [{t[g].speedup_low:.2f}, {t[g].speedup_high:.2f}] faster in fp32"
                )
                kept.remove(g)
            if not kept:
                return self._restore(best, fp32, records)
        return kept, fp32, records, True

    @staticmethod
    def _restore(best, fp32: dict, records: list):
        """No group pays: keep the fastest measured placement that has int8 in it."""
        for g in best[1]:
            fp32.pop(g, None)
        return best[1], fp32, records, False


def counts(model: onnx.ModelProto, excluded: set[str]) -> dict[str, list[int]]:
    """Op type -> [nodes in int8, nodes in all] of ``model``'s Conv, Gemm and MatMul nodes."""
    total = Counter(n.op_type for n in model.graph.node if n.op_type in LINEAR)
    fp = Counter(n.op_type for n in model.graph.node if n.op_type in LINEAR and n.name in excluded)
    return {op: [total[op] - fp[op], total[op]] for op in LINEAR if total[op]}


def op_times(path: Path, example, threads: int = 1, runs: int = 30) -> dict[str, float]:
    """Kernel time per op type (median µs per run) of the file as ORT runs it (all
    optimizations), from ORT's profiler."""
    by: dict[str, float] = {}
    for op, us in measure.node_times(path, example, threads, runs).values():
        by[op] = by.get(op, 0.0) + us
    return dict(sorted(by.items(), key=lambda kv: -kv[1]))


def clear(folder: Path) -> None:
    """Forget a cached placement (the next :func:`place` measures again)."""
    shutil.rmtree(folder, ignore_errors=True)
