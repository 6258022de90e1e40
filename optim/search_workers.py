"""Several workers run one search or tuning: each runs Optuna's ``study.optimize`` on the same
study in the run store's database (``optuna.storages.RDBStorage``), building and storing its
trials' rows itself, until the run's budget of COMPLETE trials is met (``MaxTrialsCallback``).

The driver only starts the workers (one task each, on the run's executor, e.g. Ray) and waits;
then it times every trial's file itself, as for any run. The workers need the database
(PostgreSQL, or a SQLite file on a disk they share) and ``OPTIM_HOME`` shared with the driver:
a trial's artifact is written where the driver will time it.

Example:
    >>> optimize_on_workers(ctx, trials=40, timeout_s=None)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import optuna

from optim import pool

if TYPE_CHECKING:
    from optim.context import Context


def optimize_on_workers(ctx: Context, trials: int, timeout_s: float | None) -> None:
    """Run search or tuning ``ctx`` on the executor's workers until ``trials`` trials are
    COMPLETE."""
    from optim.ray_executor import SHARED_ENV

    if not ctx.executor.shares_home():
        raise ValueError(
            "a search or tuning on several nodes needs OPTIM_HOME shared by every node "
            f"({SHARED_ENV}=1) and a run store they all reach (OPTIM_DB_URL), but "
            f"{SHARED_ENV} is not set: sweep instead, or share the folder"
        )
    capacity = ctx.executor.capacity() or os.cpu_count() or 1
    n = max(1, min(ctx.settings.jobs or capacity, trials))
    jobs = [(ctx.store.url, ctx.run_id, trials, timeout_s, part) for part in range(n)]
    errors = []
    for _, result in pool.run_all(ctx.executor, n, _init, (), optimize_part, jobs):
        if isinstance(result, BaseException):
            errors.append(result)
    ctx.rows = {r.key: r for r in ctx.store.rows(ctx.run_id)}
    done = sum(r.error is None for r in ctx.rows.values()) - 1  # the baseline is no trial
    ctx.report(done, trials, ctx.rows[ctx.base_row.key])
    if errors:
        raise errors[0]


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def optimize_part(url: str, run_id: int, trials: int, timeout_s: float | None, part: int) -> int:
    """One worker's part of search or tuning run ``run_id`` (in store ``url``): trials of the
    shared study until ``trials`` are COMPLETE in all; returns how many this worker completed."""
    from optim import search, tune
    from optim.context import Context
    from optim.ray_worker import node_info
    from optim.store import Store

    store = Store(url)
    spec = store.run(run_id)["spec"]
    ctx = Context.start(store, run_id, spec, None, pool.local, {})  # baseline read back
    kwargs = (
        {"engine_kwargs": {"connect_args": {"timeout": 60}}} if url.startswith("sqlite") else {}
    )
    storage = optuna.storages.RDBStorage(url, **kwargs)
    complete = (optuna.trial.TrialState.COMPLETE,)
    if "tune" in spec:
        name, sampler = tune.study_name(run_id), tune.sampler(spec["tune"], part=1 + part)
        objective_from = functools.partial(tune.objective, ctx, trials)
    else:  # each worker its own stream of proposals; NSGA-II's generations come from storage
        opts = spec["search"]
        name = search.study_name(run_id)
        sampler = optuna.samplers.NSGAIISampler(population_size=opts["population"],
                                                seed=opts["seed"] + 1 + part)  # fmt: skip
        objective_from = functools.partial(search.objective, ctx, search.layers_of(ctx.source),
                                           trials)  # fmt: skip
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    before = len(study.get_trials(deepcopy=False, states=complete))
    objective = objective_from(before, node_info())
    study.optimize(
        objective, n_trials=max(trials - before, 0), timeout=timeout_s, catch=(RuntimeError,),
        callbacks=[optuna.study.MaxTrialsCallback(trials, states=complete)],
    )  # fmt: skip
    return len(study.get_trials(deepcopy=False, states=complete)) - before
