"""Accuracy-aware fallback: int8 nodes back to fp32, most harmful first, until the floor holds.

Starting from int8 auto's measured placement (:mod:`optim.placement`), every node it runs in
int8 that computes (Conv, Gemm, MatMul, Add, Mul, ...; not Relu or reshapes, which reuse their
input's scale) is ranked by what it costs on the **calib** split when it alone is int8: the
same columns and the same order as the sub-8-bit sensitivity (:func:`optim.sensitivity.order`:
accuracy drop, then output noise, then size). Step ``k`` reverts the ``k`` most harmful to
fp32; steps are taken one at a time, on the calib split, and the curve stops at the first step
whose calib accuracy meets the floor (a share of the fp32 baseline's calib accuracy).

Each step is its own config, ``Int8Fallback(floor, step=k)``: built into its own file and
measured on the test split like every other row, so the whole curve is on the frontier
(:func:`fallback_plans`). The test split is never read here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace

import numpy as np
import onnx
import pandas as pd

from optim import measure, metrics
from optim import placement as placements
from optim import sensitivity as sens  # a module: it imports the techniques, hence this one
from optim.quantizer import LINEAR, Int8Quantizer

# ops that pass int8 through with their input's scale: reverting one alone changes nothing
PASS_THROUGH = frozenset({
    "Relu", "Clip", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "MaxPool",
    "Slice", "Split", "Gather", "GatherElements", "Pad", "TopK", "ArgMax",
})  # fmt: skip


@dataclass(frozen=True)
class Curve:
    """The fallback's steps on the calib split: ``accuracy[k]`` after reverting
    ``ranking[:k]``; ``met`` is the first step that meets ``floor`` (None: none did)."""

    floor: float  # share of the baseline's calib accuracy
    base_accuracy: float  # the fp32 graph's calib accuracy
    ranking: tuple[str, ...]  # int8 nodes, most harmful first
    accuracy: tuple[float, ...]  # calib accuracy at steps 0, 1, ...
    met: int | None

    @property
    def target(self) -> float:
        return self.floor * self.base_accuracy


def stop(accuracies, target: float) -> int | None:
    """The first step whose accuracy meets ``target`` (the curve ends there), else None.

    Example:
        >>> stop([0.90, 0.93, 0.95, 0.97], 0.95)
        2
    """
    return next((k for k, a in enumerate(accuracies) if a >= target), None)


def ranking(placement: placements.Placement, q: Int8Quantizer, calib, metric: str) -> pd.DataFrame:
    """One row per int8 node of ``placement`` (sensitivity's columns; ``kind`` "int8"): the
    calib-split accuracy drop and output noise when only that node is int8."""
    z0, ref = _reference(q, calib)
    base = sens.calib_score(z0, z0, ref, metric)
    scale = float(np.var(z0.astype(np.float64))) or 1.0
    excluded = set(placement.excluded)
    inits = {t.name: int(np.prod(t.dims)) for t in q.model.graph.initializer}
    rows = []
    for node in q.model.graph.node:
        if node.name in excluded or node.op_type in PASS_THROUGH:
            continue
        if not any(node.name in names for names in q.groups.values()):
            continue
        path = q.build(placement.setting, (), placement.calibration, only=[node.name])
        z = _outputs(path, calib)
        acc = sens.calib_score(z, z0, ref, metric)
        params = inits.get(node.input[1], 0) if node.op_type in LINEAR else 0
        rows.append({
            "layer": node.name, "op": node.op_type, "kind": "int8", "setting": 8,
            "accuracy": acc, "accuracy_drop": base - acc,
            "output_noise": float(np.mean((z - z0) ** 2)) / scale, "params": params,
            "params_share": np.nan, "latency_share": np.nan,
        })  # fmt: skip
    df = pd.DataFrame(rows, columns=list(sens.COLUMNS))
    df.attrs["baseline_accuracy"] = base
    return df


def curve(
    placement: placements.Placement, q: Int8Quantizer, calib, metric: str, floor: float
) -> Curve:
    """Revert the most harmful int8 node to fp32, one at a time, until the calib accuracy meets
    ``floor`` x the baseline's (the first step that does ends the curve)."""
    df = ranking(placement, q, calib, metric)
    ranked = tuple(sens.order(df))
    z0, ref = _reference(q, calib)
    base = sens.calib_score(z0, z0, ref, metric)
    accs: list[float] = []
    for k in range(len(ranked)):  # the last node stays int8: all-fp32 is the baseline
        path = q.build(
            placement.setting, (*placement.excluded, *ranked[:k]), placement.calibration
        )
        accs.append(sens.calib_score(_outputs(path, calib), z0, ref, metric))
        if stop(accs, floor * base) is not None:
            break
    return Curve(floor, base, ranked, tuple(accs), stop(accs, floor * base))


def measured(
    graph, ctx, floor: float, budget: placements.Budget = placements.DEFAULT_BUDGET,
    steps: bool = True,
):  # fmt: skip
    """The cached or measured (placement, quantizer, curve) of ``graph`` for ``floor``; with
    ``steps=False`` and no curve measured yet, only step 0 (no ranking: the placement itself)."""
    placement, q = placements.measured(graph, ctx, budget)
    calib = ctx.source.splits["calib"]
    saved = q.folder.parent / f"fallback-{floor:.6g}.json"
    with placements.locked(q.folder.parent):
        if not steps and not saved.is_file():
            z0, ref = _reference(q, calib)
            base = sens.calib_score(z0, z0, ref, ctx.source.metric)
            path = q.build(placement.setting, placement.excluded, placement.calibration)
            acc = sens.calib_score(_outputs(path, calib), z0, ref, ctx.source.metric)
            return placement, q, Curve(floor, base, (), (acc,), stop([acc], floor * base))
        if saved.is_file():
            d = json.loads(saved.read_text())
            got = Curve(**{**d, "ranking": tuple(d["ranking"]), "accuracy": tuple(d["accuracy"])})
        else:
            got = curve(placement, q, calib, ctx.source.metric, floor)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(got)))
            os.replace(tmp, saved)
    return placement, q, got


def fallback_plans(
    source, floor: float = 0.99, budget: placements.Budget = placements.DEFAULT_BUDGET
) -> list[tuple]:
    """The plans of the fallback's steps, ``[(Int8Fallback(floor, step=0),), ...]`` up to the
    first step that meets ``floor`` on the calib split (all steps when none does), for a sweep.

    Example:
        >>> sweep("mobilenet_v3", fallback_plans(get_source("mobilenet_v3")))  # doctest: +SKIP
    """
    from optim.build import build
    from optim.plan import Context
    from optim.sources import get_source
    from optim.techniques import Int8Fallback

    source = get_source(source) if isinstance(source, str) else source
    graph, _ = build(source, ())
    cfg = Int8Fallback(floor=floor, rounds=budget.rounds, seconds=budget.seconds,
                       passes=budget.passes)  # fmt: skip
    _, _, got = measured(graph, Context(source, cpu=measure.cpu_info()), floor, budget)
    return [(replace(cfg, step=k),) for k in range(len(got.accuracy))]


def _reference(q: Int8Quantizer, calib) -> tuple[np.ndarray, np.ndarray]:
    z0 = _outputs(q.fp32, calib)
    return z0, calib.y if calib.y is not None else metrics.predictions(z0)


def _outputs(path, calib) -> np.ndarray:
    return measure.predict(measure.session(path), calib.x)


def model_of(placement, q: Int8Quantizer, got: Curve, step: int) -> onnx.ModelProto:
    """The file of fallback step ``step``."""
    excluded = (*placement.excluded, *got.ranking[:step])
    return onnx.load(q.build(placement.setting, excluded, placement.calibration))
