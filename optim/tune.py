"""Hyper-parameter optimization of recovery training (learning rate, epochs, temperature).

An Optuna study (grid, random or TPE sampler) varies the training fields of the first recovery
step of a plan (FineTune, QAT or Distill), builds the whole plan into an artifact for every
trial and scores it by accuracy on the *calibration* split (the held-out test split never
steers the choice). Training itself stops early on its validation carve-out (``optim.train``);
the study stops at its trial budget or time budget.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from optim import measure
from optim import plan as plans
from optim.artifact import write_artifact
from optim.build import build
from optim.metrics import predictions
from optim.sources import get_source

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


def tune(
    model: str,
    plan: Sequence[object],
    trials: int = 10,
    sampler: str = "tpe",
    seed: int = 0,
    timeout_s: float | None = None,
) -> TuneResult:
    """Find the recovery-training settings that give ``plan`` its best calibration accuracy.

    Args:
        model: A sample name or ``model.onnx:data.npz``.
        plan: A plan with a training step, e.g. ``(StructuredPrune(0.5), FineTune(), Quantize(4))``.
        trials: Trial budget (the grid sampler stops earlier when its grid is exhausted).
        sampler: ``"grid"``, ``"random"`` or ``"tpe"``.
        seed: Seeds the sampler (and the training, through the plan's context).
        timeout_s: Stop starting trials after this many seconds.

    Example:
        >>> best = tune("digits_cnn", (StructuredPrune(0.5), FineTune(), Quantize(4)), trials=6)  # doctest: +SKIP
        >>> best.plan[1]  # doctest: +SKIP
        FineTune(epochs=5, lr=0.0021...)
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {SAMPLERS}, but got sampler={sampler!r}")
    if trials < 1:
        raise ValueError(f"`trials >= 1` must hold, but got trials={trials}")
    plan = plans.validate(plan)
    i = _step(plan)
    names = [f.name for f in dataclasses.fields(plan[i]) if f.name in TUNABLE]
    source = get_source(model)
    calib = source.splits["calib"]
    if calib.y is None:
        raise ValueError(f"tuning needs calibration labels, but {source.name!r} has none")

    def objective(trial: optuna.Trial) -> float:
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
        graph, _ = build(source, candidate, seed)
        with tempfile.TemporaryDirectory() as d:
            write_artifact(graph, Path(d))  # score the artifact that would ship
            sess = measure.session(Path(d) / "model.onnx")
            pred = predictions(measure.predict(sess, calib.x, output=source.output))
        trial.set_user_attr("plan", plans.to_json(candidate))
        return float(np.mean(pred == calib.y))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=_sampler(sampler, seed, names))
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    table = study.trials_dataframe(attrs=("number", "params", "value", "duration"))
    best = study.best_trial
    return TuneResult(plans.from_json(best.user_attrs["plan"]), float(best.value), table)
