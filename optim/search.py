"""Multi-objective search: an Optuna NSGA-II study over per-layer bit-widths and sparsity.

Each trial is a plan ``(Prune(s), MixedQuantize({layer: bits, ...}))`` (or ``(Prune(s), Int8())``)
built and measured by :func:`optim.sweep.evaluate` like every grid config, so every trial is a
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

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from optim import build as builder
from optim import measure
from optim import plan as plans
from optim.artifact import weight_initializers
from optim.build import Settings, build, evaluate
from optim.metrics import predictions
from optim.rows import Row
from optim.sources import ModelSource, check, data_record, get_source, source_spec
from optim.store import Store
from optim.sweep import artifact_dir, state
from optim.techniques import Int8, MixedQuantize, Prune

BITS = (2, 3, 4, 5, 6, 8)
SPARSITIES = (0.0, 0.25, 0.5, 0.75)
QUANT = ("mixed", "int8")  # per-layer bit-packed weights (fp32 execution), or ORT static int8
OBJECTIVES = ("calib_accuracy", "size_bytes", "latency_p50_ms")
TRIAL_OBJECTIVES = ("calib_accuracy", "size_bytes", "trial_latency_ms")  # as the sampler saw them
DIRECTIONS = ("maximize", "minimize", "minimize")
Progress = Callable[[int, int, dict], None]  # (trials done, trials in all, the trial's row)


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


def create_search(
    store: Store,
    model: str,
    trials: int = 40,
    seed: int = 0,
    settings: Settings | None = None,
    population: int | None = None,
    warm: bool = True,
) -> int:
    """Register a search run without running it (the dashboard then launches it in the
    background with :func:`optim.sweep.launch`; ``python -m optim sweep --resume`` runs it)."""
    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    source = get_source(model)
    if source.metric == "fidelity":
        raise ValueError(
            f"search ranks configs by top-1 on the calibration split, but {source.name!r} is "
            "judged by fidelity (its outputs are not class scores): sweep it instead"
        )
    population = population or min(max(trials // 3, 4), 50)
    if population < 2:
        raise ValueError(f"`population >= 2` must hold, but got population={population}")
    check(source)
    spec = {
        "model": source_spec(source), "plans": [plans.to_json(())],
        "data": data_record(source),
        "settings": (settings or Settings()).__dict__,
        "search": {"seed": seed, "population": population, "warm_start": warm, "trials": trials,
                   "objectives": list(OBJECTIVES), "directions": list(DIRECTIONS)},
    }  # fmt: skip
    env = {"cpu": measure.cpu_info(), "backend": measure.BACKEND, "optuna": optuna.__version__}
    run_id = store.create_run(source.name, spec, env)
    return run_id


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
            :class:`~optim.sweep.Settings`.
        population: NSGA-II population size (a new run only); default ``trials // 3``, 4-50.
        warm: Start from :func:`warm_start`'s sensitivity-guided trials (a new run only).

    Example:
        >>> run_id = search("digits_cnn", trials=12)  # doctest: +SKIP
        >>> search("digits_cnn", trials=20, run_id=run_id)  # 8 more trials  # doctest: +SKIP
    """
    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"`timeout_s > 0` must hold, but got timeout_s={timeout_s}")
    store = store or Store()
    source = get_source(model)
    if run_id is None:
        run_id = create_search(store, model, trials, seed, settings, population, warm)
    run = store.run(run_id)
    spec = run["spec"]
    if "search" not in spec:
        raise ValueError(f"run {run_id} must be a search run, but it is a grid sweep")
    if spec["model"] != source_spec(source):
        got, want = source_spec(source), spec["model"]
        raise ValueError(f"`model` must match run {run_id}'s {want!r}, but got {got!r}")
    if state(run) == "running" and run["pid"] != os.getpid():
        raise ValueError(f"run {run_id} is running in process {run['pid']}; wait or cancel it")
    store.set_status(run_id, "running", pid=os.getpid())
    try:
        _run(store, run_id, source, trials, timeout_s, progress)
        store.set_status(run_id, "done")
    except BaseException as e:
        store.set_status(run_id, "failed" if isinstance(e, Exception) else "cancelled",
                         error=f"{type(e).__name__}: {e}".splitlines()[0])  # fmt: skip
        raise
    return run_id


def _run(store: Store, run_id: int, source: ModelSource, trials: int,
         timeout_s: float | None, progress: Progress | None) -> None:  # fmt: skip
    spec = store.run(run_id)["spec"]
    settings, opts = Settings.from_json(spec["settings"]), spec["search"]
    base_dir = artifact_dir(store.url, run_id, plans.key(()))
    rows = {r.key: r for r in store.rows(run_id)}
    base_row = rows.get(plans.key(()))
    if base_row is not None and (base_dir / "pred.npy").is_file():
        base_pred = np.load(base_dir / "pred.npy")
    else:  # like a sweep, the baseline first: every trial is compared with its predictions
        base_row, base_pred = evaluate(source, (), base_dir, settings, None)
        np.save(base_dir / "pred.npy", base_pred)
    calib = source.splits["calib"]
    calib_ref = calib.y if calib.y is not None else _calib_pred(base_dir, source, settings)
    if plans.key(()) not in rows:
        base_pred_calib = _calib_pred(base_dir, source, settings)
        extra = {"calib_accuracy": float(np.mean(base_pred_calib == calib_ref))}
        base_row = builder.time_rows([replace(base_row, extra=extra)], settings, source.example)[0]
        store.add_result(run_id, [], base_row)
        rows[base_row.key] = base_row

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url=store.url)
    study = optuna.create_study(
        storage=storage, study_name=study_name(run_id), directions=list(DIRECTIONS),
        sampler=optuna.samplers.NSGAIISampler(population_size=opts["population"],
                                              seed=opts["seed"]),
        load_if_exists=True,
    )  # fmt: skip
    layers = list(weight_initializers(build(source, ())[0].model))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # a trial left RUNNING by a killed process (we hold the run): fail it, queue it again
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if "fixed_params" in t.system_attrs:  # it came from the warm start's queue
            study.enqueue_trial(t.system_attrs["fixed_params"])
    if not study.trials and opts["warm_start"]:
        for params in warm_start(source, layers, settings.threads):
            study.enqueue_trial(params)
    complete = (optuna.trial.TrialState.COMPLETE,)
    done = len(study.get_trials(deepcopy=False, states=complete))

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        nonlocal done
        plan = _suggest(trial, layers)
        key = plans.key(plan)
        trial.set_user_attr("key", key)
        row = rows.get(key)  # built before (a duplicate proposal, or an interrupted trial)
        if row is None:
            out_dir = artifact_dir(store.url, run_id, key)
            try:
                row, _ = evaluate(source, plan, out_dir, settings, base_pred)
                pred = _calib_pred(out_dir, source, settings)
                row = replace(row, extra={"calib_accuracy": float(np.mean(pred == calib_ref))})
                # timed against the baseline now for the objective; the run's final timing
                # phase times every trial together
                row = builder.time_rows([rows[plans.key(())], row], settings, source.example)[1]
            except Exception as e:  # noqa: BLE001 - stored as a row that says why, then FAIL
                row = Row.failed(plan, e)
            # the latency the sampler saw (the final timing phase re-times every trial together)
            extra = {"trial": trial.number, "trial_latency_ms": row.latency_p50_ms}
            row = replace(row, extra={**row.extra, **extra})
            store.add_result(run_id, plans.to_json(plan), row)
            rows[key] = row
        if row.error is not None:
            raise RuntimeError(row.error)
        done += 1
        if progress:
            progress(done, trials, row.to_dict())
        values = row.to_dict()
        values.setdefault("trial_latency_ms", values["latency_p50_ms"])  # a row stored before
        return tuple(float(values[c]) for c in TRIAL_OBJECTIVES)

    if trials > done:
        study.optimize(objective, n_trials=trials - done, timeout=timeout_s, catch=(RuntimeError,))
    store.update_rows(run_id, builder.time_rows(store.rows(run_id), settings, source.example))


def _calib_pred(out_dir: Path, source: ModelSource, settings: Settings) -> np.ndarray:
    """The artifact's top-1 predictions on the calib split (the search's accuracy objective)."""
    sess = measure.session(out_dir / "model.onnx", settings.threads)
    return predictions(measure.predict(sess, source.splits["calib"].x, output=source.output))


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
