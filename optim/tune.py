"""Hyper-parameter optimization of recovery training (learning rate, epochs, temperature).

An Optuna study (grid, random or TPE sampler) varies the training fields of the first recovery
step of a plan (FineTune, QAT or Distill), builds and measures the whole plan for every trial
(a row of the run, like a sweep's) and scores it by accuracy on the *calibration* split (the
held-out test split never steers the choice; it is only reported). Training itself stops early on its validation carve-out (``optim.train``);
the study stops at its trial budget or time budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
import pandas as pd

from optim import plan as plans
from optim.build import Settings
from optim.sources import ModelSource
from optim.store import Store
from optim.sweep import checked_plans

if TYPE_CHECKING:
    from optim.context import Context

SAMPLERS = ("grid", "random", "tpe")
TUNABLE = ("lr", "epochs", "temperature")
# log-uniform lr, a few epochs (early stopping trims them), the usual KD temperatures
SPACE = {"lr": (1e-4, 1e-2), "epochs": (1, 8), "temperature": (1.0, 8.0)}
GRID = {"lr": [3e-4, 1e-3, 3e-3], "epochs": [2, 5], "temperature": [2.0, 4.0]}


@dataclass(frozen=True)
class TuneResult:
    plan: tuple  # the best plan found
    accuracy: float  # its calibration-split accuracy
    trials: pd.DataFrame  # one row per trial: its parameters and calib accuracy
    run_id: int | None = None  # the run whose rows are the trials


def _step(plan: Sequence[object]) -> int:
    for i, cfg in enumerate(plan):
        if any(f.name in TUNABLE for f in dataclasses.fields(cfg)):
            return i
    raise ValueError(
        f"the plan must contain a training step (FineTune, QAT or Distill), but got "
        f"{plans.label(plan)!r}"
    )


def _sampler(name: str, seed: int, names: list[str]) -> optuna.samplers.BaseSampler:
    if name == "grid":
        return optuna.samplers.GridSampler({n: GRID[n] for n in names}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def spec(
    source: ModelSource,
    plan: Sequence[object] | list,
    trials: int = 10,
    sampler: str = "tpe",
    seed: int = 0,
) -> dict:
    """The tuning part of a run's spec (see :func:`optim.runs.create`), checked."""
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {SAMPLERS}, but got sampler={sampler!r}")
    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    if seed < 0:
        raise ValueError(f"`seed >= 0` must hold, but got seed={seed}")
    plan = plans.validate(plans.from_json(plan) if plan and isinstance(plan[0], dict) else plan)
    _step(plan)
    if source.splits["calib"].y is None:
        raise ValueError(f"tuning needs calibration labels, but {source.name!r} has none")
    checked_plans(source, [plan])  # can it run on this source at all
    return {
        "plans": [plans.to_json(())],
        "tune": {"plan": plans.to_json(plan), "trials": trials, "sampler": sampler, "seed": seed},
    }


def study_name(run_id: int) -> str:
    """The Optuna study of tuning run ``run_id``."""
    return f"optim-tune-run-{run_id}"


def summary(spec: dict) -> str:
    """``"tune prune 50% + fine-tune ... , 10 trials (tpe)"``."""
    t = spec["tune"]
    return f"tune {plans.label(plans.from_json(t['plan']))}, {t['trials']} trials ({t['sampler']})"


def run(ctx: Context) -> None:
    """The tuning's part of a run: the sampler varies the training step's fields; each trial's
    plan is built, measured and stored as a row (its calib accuracy is the objective). On a
    distributed executor (Ray) the study runs on the workers (:mod:`optim.search_workers`)."""
    opts = ctx.spec["tune"]
    study = ctx.study(study_name(ctx.run_id), direction="maximize", sampler=sampler(opts))
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if opts["trials"] <= done:
        return
    if getattr(ctx.executor, "distributed", False):  # several workers run the one study
        from optim.search_workers import optimize_on_workers

        optimize_on_workers(ctx, opts["trials"], ctx.options.get("timeout_s"))
        return
    study.optimize(objective(ctx, opts["trials"], done), n_trials=opts["trials"] - done,
                   catch=(RuntimeError,), timeout=ctx.options.get("timeout_s"))  # fmt: skip


def sampler(opts: dict, part: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of a tuning (``spec["tune"]``); ``part`` > 0 gives each of several workers its
    own stream of proposals."""
    return _sampler(opts["sampler"], opts["seed"] + part, _names(plans.from_json(opts["plan"])))


def _names(plan: Sequence[object]) -> list[str]:
    return [f.name for f in dataclasses.fields(plan[_step(plan)]) if f.name in TUNABLE]


def objective(ctx: Context, trials: int, done: int, extra: dict | None = None):
    """The Optuna objective of tuning run ``ctx``: the trial's training settings in the plan,
    built and measured here (unless its row is stored already) and stored; its calib accuracy
    is the value. A failed config raises RuntimeError (Optuna marks the trial FAIL). ``extra``
    goes into every row built (e.g. the node that built it)."""
    plan = plans.from_json(ctx.spec["tune"]["plan"])
    i, names = _step(plan), _names(plan)

    def measure_trial(trial: optuna.Trial) -> float:
        nonlocal done
        values = {}
        for n in names:
            low, high = SPACE[n]
            if n == "lr":
                values[n] = trial.suggest_float(n, low, high, log=True)
            elif n == "epochs":
                values[n] = trial.suggest_int(n, low, high)
            else:
                values[n] = trial.suggest_float(n, low, high)
        candidate = plan[:i] + (dataclasses.replace(plan[i], **values),) + plan[i + 1 :]
        trial.set_user_attr("plan", plans.to_json(candidate))
        key = plans.key(candidate)
        row = ctx.rows.get(key)  # built before (a duplicate proposal, or an interrupted trial)
        if ctx.todo(key):
            row = ctx.trial(candidate, {"trial": trial.number, **(extra or {})})
            ctx.record(plans.to_json(candidate), row)  # False: another worker stored it first
        if row.error is not None:
            raise RuntimeError(row.error)
        done += 1
        ctx.report(done, trials, row)
        return float(row.extra["calib_accuracy"])

    return measure_trial


def result(store: Store, run_id: int) -> TuneResult:
    """The best plan of tuning run ``run_id`` and its trials."""
    study = optuna.load_study(study_name=study_name(run_id), storage=store.url)
    table = study.trials_dataframe(attrs=("number", "params", "value", "duration", "state"))
    best = study.best_trial
    return TuneResult(plans.from_json(best.user_attrs["plan"]), float(best.value), table, run_id)


def tune(
    model: str,
    plan: Sequence[object],
    trials: int = 10,
    sampler: str = "tpe",
    seed: int = 0,
    timeout_s: float | None = None,
    store: Store | None = None,
) -> TuneResult:
    """Find the recovery-training settings that give ``plan`` its best calibration accuracy;
    every trial is a stored row of a new run (:mod:`optim.runs`).

    Args:
        model: A sample name or ``model.onnx:data.npz``.
        plan: A plan with a training step, e.g. ``(StructuredPrune(0.5), FineTune(), Quantize(4))``.
        trials: Trial budget (the grid sampler stops earlier when its grid is exhausted).
        sampler: ``"grid"``, ``"random"`` or ``"tpe"``.
        seed: Seeds the sampler (and the training, through the run's settings).
        timeout_s: Stop starting trials after this many seconds.
        store: The run store (default :class:`~optim.store.Store`).

    Example:
        >>> best = tune("digits_cnn", (StructuredPrune(0.5), FineTune(), Quantize(4)), trials=6)  # doctest: +SKIP
        >>> best.plan[1]  # doctest: +SKIP
        FineTune(epochs=5, lr=0.0021...)
    """
    from optim import runs

    store = store or Store()
    opts = {"plan": plan, "trials": trials, "sampler": sampler, "seed": seed}
    run_id = runs.create(store, model, settings=Settings(seed=seed), tune=opts)
    runs.execute(store, run_id, timeout_s=timeout_s)
    return result(store, run_id)
