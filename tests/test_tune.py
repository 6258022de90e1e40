"""Optuna tuning of recovery training."""

from __future__ import annotations

import pytest

from optim.techniques import FineTune, Quantize, StructuredPrune
from optim.tune import tune

PLAN = (StructuredPrune(0.5), FineTune(), Quantize(4))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "grid"])
def test_tune_returns_the_best_trial_plan(sampler):
    res = tune("cancer_mlp", PLAN, trials=3, sampler=sampler, seed=0)
    assert len(res.trials) == 3
    assert res.accuracy == res.trials["value"].max()
    assert isinstance(res.plan[1], FineTune) and res.plan[0] == PLAN[0] and res.plan[2] == PLAN[2]
    assert res.plan[1] != FineTune() or sampler == "grid"


def test_tune_is_deterministic_with_a_seed():
    a = tune("cancer_mlp", PLAN, trials=2, sampler="random", seed=1)
    b = tune("cancer_mlp", PLAN, trials=2, sampler="random", seed=1)
    assert a.plan == b.plan and a.accuracy == b.accuracy


def test_tune_rejects_bad_input():
    with pytest.raises(ValueError, match="must contain a training step"):
        tune("cancer_mlp", (Quantize(4),))
    with pytest.raises(ValueError, match=r"`sampler` must be one of"):
        tune("cancer_mlp", PLAN, sampler="cmaes")


def test_cli_tune_bad_plan_is_one_line(capsys):
    from optim.cli import main

    assert main(["tune", "--model", "cancer_mlp", "--plan", "{not json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optim: error: `--plan` must be JSON") and len(err.splitlines()) == 1
