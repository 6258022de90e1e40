"""Multi-objective search: an Optuna NSGA-II study over per-layer bit-widths and sparsity.

Each trial is a plan ``(Prune(s), MixedQuantize({layer: bits, ...}))`` (or ``(Prune(s), Int8())``)
built and measured by :func:`optim.build.evaluate` like every grid config, so every trial is a
real artifact and its row (test accuracy, size, latency) goes into the run store under the
plan's key: the dashboard's frontier shows search rows like grid rows.

The test split does not steer the search: the objectives are accuracy on the **calib** split
(measured on the artifact, stored in the row as ``calib_accuracy``), ``size_bytes`` and
``latency_p50_ms``; the warm start reads calib measurements only. The test accuracy every row
carries is a report of the result, never an input of the sampler.

The study lives in the run store's database (``optuna.storages.RDBStorage(store.url)``, study
name from the run id). Calling :func:`search` again on the same run resumes it: only the
missing COMPLETE trials run, and a plan whose row is already stored is not built again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd

from optim import build as builder
from optim import measure
from optim import plan as plans
from optim.artifact import weight_initializers
from optim.build import Settings, build
from optim.metrics import predictions
from optim.sources import ModelSource, get_source, source_spec
from optim.store import Store
from optim.techniques import Int8, MixedQuantize, Prune

if TYPE_CHECKING:
    from optim.context import Context, Progress

BITS = (2, 3, 4, 5, 6, 8)
SPARSITIES = (0.0, 0.25, 0.5, 0.75)
QUANT = ("mixed", "int8")  # per-layer bit-packed weights (fp32 execution), or ORT static int8
OBJECTIVES = ("calib_accuracy", "size_bytes", "latency_p50_ms")
TRIAL_OBJECTIVES = ("calib_accuracy", "size_bytes", "trial_latency_ms")  # as the sampler saw them
DIRECTIONS = ("maximize", "minimize", "minimize")


def study_name(run_id: int) -> str:
    """The Optuna study of search run ``run_id`` (unique within the run store's database)."""
    return f"optim-search-run-{run_id}"


def trial_plan(params: Mapping[str, object], layers: list[str]) -> tuple:
    """The plan of a trial's parameters: ``sparsity``, ``quant`` and ``bits:<layer>`` each."""
    s = float(params["sparsity"])
    prune = (Prune(s),) if s else ()
    if params["quant"] == "int8":
        return (*prune, Int8())
    return (*prune, MixedQuantize({n: int(params[f"bits:{n}"]) for n in layers}))


def _suggest(trial: optuna.Trial, layers: list[str]) -> tuple:
    params = {
        "sparsity": trial.suggest_categorical("sparsity", SPARSITIES),
        "quant": trial.suggest_categorical("quant", QUANT),
    }
    if params["quant"] == "mixed":
        params |= {f"bits:{n}": trial.suggest_categorical(f"bits:{n}", BITS) for n in layers}
    return trial_plan(params, layers)


def warm_start(source: ModelSource, layers: list[str], threads: int = 1) -> list[dict]:
    """Trial parameters to start from, chosen from calib-split measurements only.

    The sparsity ``s`` is the largest of 25/50/75 % whose global Prune alone costs no more calib
    accuracy than the split's sampling noise (two standard errors, at least one point). Static int8 (the latency end of the frontier) at ``s``, and the
    mixed precision that :func:`~optim.sensitivity.allocate` finds for the summed output noise
    of uniform 4 and of uniform 3 bits at ``s``; then int8 and the 4-bit budget one sparsity
    step lower.
    """
    from optim.sensitivity import allocate, sensitivity, uniform_noise

    calib = source.splits["calib"]

    def pred(plan: tuple) -> np.ndarray:
        sess = measure.session(build(source, plan)[0].model.SerializeToString(), threads)
        return predictions(measure.predict(sess, calib.x, output=source.output))

    ref = calib.y if calib.y is not None else pred(())
    base = float(np.mean(pred(()) == ref))
    tol = max(0.01, 2 * np.sqrt(base * (1 - base) / len(calib)))  # 2 standard errors
    ok = [x for x in SPARSITIES[1:] if base - np.mean(pred((Prune(x),)) == ref) <= tol]
    s = max(ok, default=0.0)
    lower = SPARSITIES[max(SPARSITIES.index(s) - 1, 0)]
    df = sensitivity(source, bits=(2, 3, 4, 6), sparsities=(), threads=threads)

    def mixed(bits: int, sparsity: float) -> dict:
        alloc = allocate(df, uniform_noise(df, bits))
        return {"sparsity": sparsity, "quant": "mixed"} | {
            f"bits:{n}": alloc.get(n, 8) for n in layers
        }

    starts = [{"sparsity": s, "quant": "int8"}, mixed(4, s), mixed(3, s)]
    starts += [{"sparsity": lower, "quant": "int8"}, mixed(4, lower)]
    return [p for i, p in enumerate(starts) if p not in starts[:i]]


def spec(
    source: ModelSource,
    trials: int = 40,
    seed: int = 0,
    population: int | None = None,
    warm: bool = True,
) -> dict:
    """The search part of a run's spec (see :func:`optim.runs.create`), checked: ``trials``
    COMPLETE trials in all, NSGA-II seeded by ``seed`` with ``population`` (default
    ``trials // 3``, 4-50), starting from :func:`warm_start`'s trials if ``warm``."""
    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    if seed < 0:
        raise ValueError(f"`seed >= 0` must hold, but got seed={seed}")
    if source.metric == "fidelity":
        raise ValueError(
            f"search ranks configs by top-1 on the calibration split, but {source.name!r} is "
            "judged by fidelity (its outputs are not class scores): sweep it instead"
        )
    population = population or min(max(trials // 3, 4), 50)
    if population < 2:
        raise ValueError(f"`population >= 2` must hold, but got population={population}")
    return {
        "plans": [plans.to_json(())],
        "search": {"seed": seed, "population": population, "warm_start": warm, "trials": trials,
                   "objectives": list(OBJECTIVES), "directions": list(DIRECTIONS)},
    }  # fmt: skip


def summary(spec: dict) -> str:
    """``"search, 20 trials"``."""
    return f"search, {spec['search']['trials']} trials"


def search(
    model: str,
    trials: int = 40,
    seed: int = 0,
    store: Store | None = None,
    timeout_s: float | None = None,
    progress: Progress | None = None,
    *,
    run_id: int | None = None,
    settings: Settings | None = None,
    population: int | None = None,
    warm: bool = True,
) -> int:
    """Run (or resume) an NSGA-II search; returns the run id. Every trial is a stored row.

    Args:
        model: A sample name or ``model.onnx:data.npz`` (see :func:`~optim.sources.get_source`).
        trials: The budget of COMPLETE trials in all; a resumed run adds only the missing ones.
        seed: Seeds the NSGA-II sampler (a new run only).
        store: The run store (default :class:`~optim.store.Store`); the study lives there too.
        timeout_s: Stop starting new trials after this many seconds (the run can be resumed).
        progress: ``progress(done, trials, row)`` after each trial.
        run_id: Resume this search run instead of creating one (its settings, seed and
            population are kept; ``model`` must match).
        settings: How rows are measured (a new run only; stored with it); default
            :class:`~optim.build.Settings`.
        population: NSGA-II population size (a new run only); default ``trials // 3``, 4-50.
        warm: Start from :func:`warm_start`'s sensitivity-guided trials (a new run only).

    Example:
        >>> run_id = search("digits_cnn", trials=12)  # doctest: +SKIP
        >>> search("digits_cnn", trials=20, run_id=run_id)  # 8 more trials  # doctest: +SKIP
    """
    from optim import runs

    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"`timeout_s > 0` must hold, but got timeout_s={timeout_s}")
    store = store or Store()
    if run_id is None:
        opts = {"trials": trials, "seed": seed, "population": population, "warm": warm}
        run_id = runs.create(store, model, settings=settings, search=opts)
    check_run(store.run(run_id), model)
    runs.execute(store, run_id, progress, trials=trials, timeout_s=timeout_s)
    return run_id


def check_run(run: dict, model: str | None) -> None:
    """ValueError unless ``run`` is a search (of ``model``, when given)."""
    if "search" not in run["spec"]:
        raise ValueError(f"run {run['id']} must be a search run, but it is a grid sweep")
    if model is not None and run["spec"]["model"] != source_spec(get_source(model)):
        got, want = source_spec(get_source(model)), run["spec"]["model"]
        raise ValueError(f"`model` must match run {run['id']}'s {want!r}, but got {got!r}")


def run(ctx: Context) -> None:
    """The search's part of a run: NSGA-II proposes plans until ``trials`` are COMPLETE (the
    run's budget, or ``ctx.options["trials"]``), each built and measured here, timed against
    the baseline for the sampler, and stored; a proposal stored before is not built again."""
    opts = ctx.spec["search"]
    trials = int(ctx.options.get("trials") or opts["trials"])
    timeout_s = ctx.options.get("timeout_s")
    base = ctx.base_row
    if "calib_accuracy" not in base.extra:  # the sampler compares trials with these
        extra = {"calib_accuracy": ctx.calib_accuracy(ctx.out_dir(base.key))}
        base = builder.time_rows([replace(base, extra=extra)], ctx.settings, ctx.source.example)[0]
        ctx.store.update_rows(ctx.run_id, [base])
        ctx.rows[base.key] = ctx.base_row = base
    study = ctx.study(
        study_name(ctx.run_id), directions=list(DIRECTIONS),
        sampler=optuna.samplers.NSGAIISampler(population_size=opts["population"],
                                              seed=opts["seed"]),
    )  # fmt: skip
    layers = layers_of(ctx.source)
    if not study.trials and opts["warm_start"]:
        for params in warm_start(ctx.source, layers, ctx.settings.threads):
            study.enqueue_trial(params)
    complete = (optuna.trial.TrialState.COMPLETE,)
    done = len(study.get_trials(deepcopy=False, states=complete))
    if trials <= done:
        return
    if getattr(ctx.executor, "distributed", False):  # several workers run the one study
        from optim.search_workers import optimize_on_workers

        optimize_on_workers(ctx, trials, timeout_s)
        return
    study.optimize(objective(ctx, layers, trials, done), n_trials=trials - done,
                   timeout=timeout_s, catch=(RuntimeError,))  # fmt: skip


def objective(ctx: Context, layers: list[str], trials: int, done: int, extra: dict | None = None):
    """The Optuna objective of a search run: the trial's plan built and measured here (unless
    its row is stored already), timed against the baseline for the sampler, and stored; a
    failed config raises RuntimeError (Optuna marks the trial FAIL). ``extra`` goes into every
    row built (e.g. the node that built it)."""

    def measure_trial(trial: optuna.Trial) -> tuple[float, float, float]:
        nonlocal done
        plan = _suggest(trial, layers)
        key = plans.key(plan)
        trial.set_user_attr("key", key)
        row = ctx.rows.get(key)  # built before (a duplicate proposal, or an interrupted trial)
        if ctx.todo(key):
            row = ctx.trial(plan, {"trial": trial.number, **(extra or {})})
            if row.error is None:  # timed against the baseline now, for the sampler; the
                # run's final timing phase times every trial together
                row = builder.time_rows([ctx.base_row, row], ctx.settings, ctx.source.example)[1]
            row = replace(row, extra={**row.extra, "trial_latency_ms": row.latency_p50_ms})
            ctx.record(plans.to_json(plan), row)
        if row.error is not None:
            raise RuntimeError(row.error)
        done += 1
        ctx.report(done, trials, row)
        values = row.to_dict()
        values.setdefault("trial_latency_ms", values["latency_p50_ms"])  # a row stored before
        return tuple(float(values[c]) for c in TRIAL_OBJECTIVES)

    return measure_trial


def layers_of(source: ModelSource) -> list[str]:
    """The weight initializers a search sets a bit-width for."""
    return list(weight_initializers(build(source, ())[0].model))


def reference_point(
    baseline: Mapping, accuracy_drop: float = 0.1, latency_factor: float = 1.5
) -> tuple[float, float, float]:
    """The hypervolume reference point ``(accuracy, size_bytes, latency_p50_ms)`` from a
    baseline row: ``accuracy_drop`` below its accuracy, its size (a config must be smaller to
    count), ``latency_factor`` times its p50 (fp32-executed configs time near the baseline,
    give or take noise, and should still count)."""
    return (
        float(baseline["accuracy"]) - accuracy_drop,
        float(baseline["size_bytes"]),
        latency_factor * float(baseline["latency_p50_ms"]),
    )


def hypervolume(
    df: pd.DataFrame, ref: tuple[float, float, float], accuracy: str = "accuracy"
) -> float:
    """The volume the rows of ``df`` dominate up to ``ref`` (see :func:`reference_point`).

    Objectives, all made lower-is-better: ``-accuracy``, ``log2(size_bytes)``, and
    ``latency_p50_ms / ref latency``; so the unit is (accuracy) x (halvings of size) x (fraction
    of the reference latency). Rows not strictly better than ``ref`` in all three, or with a
    missing figure, add nothing. Computed exactly by Optuna's WFG implementation.

    Example:
        >>> df = pd.DataFrame({"accuracy": [0.9], "size_bytes": [250], "latency_p50_ms": [0.5]})
        >>> round(hypervolume(df, (0.8, 1000, 1.0)), 9)  # 0.1 x 2 halvings x 0.5
        0.1
    """
    if not (0 <= ref[0] <= 1 and ref[1] > 0 and ref[2] > 0):
        raise ValueError(
            f"`0 <= accuracy <= 1`, `size_bytes > 0` and `latency_p50_ms > 0` must hold for "
            f"`ref`, but got ref={ref}"
        )
    cols = [accuracy, "size_bytes", "latency_p50_ms"]
    if missing := [c for c in cols if c not in df.columns]:
        raise ValueError(f"`df` must have columns {cols}, but got missing={missing}")
    acc, size, lat = (df[c].to_numpy(dtype=float, na_value=np.nan) for c in cols)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.column_stack([-acc, np.log2(size), lat / ref[2]])
    r = np.array([-ref[0], np.log2(ref[1]), 1.0])
    keep = np.isfinite(loss).all(axis=1) & (loss < r).all(axis=1)
    if not keep.any():
        return 0.0
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(loss[keep], r))
