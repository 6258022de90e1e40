"""How long a run will take, from what this model's earlier runs really took, and on what basis.

:func:`optim.sweep.estimate_seconds` prices each config from the rows' own build times (and a
training prefix from its slowest earlier build), but a run's wall time also holds the driver's
start-up, the baseline, waiting on shared cores and the timing phase; that model ran about 2x
low. So the estimate is calibrated: the median, over this model's finished runs, of wall time
(created -> finished) over what the model predicted for that run's own plans. A sample model
whose weights are not trained yet adds its first-use training. Every estimate says its basis.

Example:
    >>> est = estimate(Store("sqlite:///:memory:"), "digits_cnn", [()])  # doctest: +SKIP
    >>> est.basis  # doctest: +SKIP
    'no finished run of digits_cnn yet: a guess (about 2 s per config, 1 min per training)'
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from optim import plan as plans
from optim.store import Store

FIRST_TRAINING_S = 180.0  # a sample trained on first use (ResNet-18: about 3 min on 2 cores)
HISTORY = 5  # finished runs of the model that calibrate the estimate


@dataclass(frozen=True)
class Estimate:
    """A run's expected wall time and what it rests on."""

    seconds: float
    basis: str
    measured: bool  # calibrated by this model's finished runs (else a labelled guess)


def _first_use(model: str) -> float:
    """Seconds of first-use training before ``model`` can be measured (0 when it is ready)."""
    import sample_models

    if model not in sample_models.SAMPLES or sample_models.weights_path(model).is_file():
        return 0.0
    return 0.0 if sample_models.SAMPLES[model].committed else FIRST_TRAINING_S


def estimate(
    store: Store,
    model: str,
    plan_list: Sequence[Sequence[object]],
    jobs: int = 0,
    timing_s: float = 0.0,
) -> Estimate:
    """The wall time of a run of ``plan_list`` on ``model``, calibrated by its earlier runs."""
    from optim.sweep import estimate_seconds

    raw = estimate_seconds(store, model, plan_list, jobs=jobs, timing_s=timing_s)
    runs = store.runs()
    done = runs[(runs["model"] == model) & (runs["status"] == "done")].head(HISTORY)
    ratios, walls = [], []
    for run in done.to_dict("records"):
        wall = (run["updated"] - run["created"]).total_seconds()
        try:
            past = [plans.from_json(p) for p in (run["spec"] or {}).get("plans", [])]
        except (ValueError, TypeError, KeyError):  # a plan an older version allowed
            continue
        if "plans" not in (run["spec"] or {}) or wall <= 0:  # a search: no plan list to price
            continue
        predicted = estimate_seconds(store, model, past, jobs=jobs, timing_s=timing_s)
        ratios.append(wall / predicted)
        walls.append((wall, len(past)))
    first = _first_use(model)
    extra = f"; plus about {first / 60:.0f} min to train {model} first (its weights are not " \
        "trained yet)" if first else ""  # fmt: skip
    if not ratios:
        basis = (f"no finished sweep of {model} yet: a guess (about 2 s per config, 1 min per "
                 f"student or fine-tune, plus start-up and the timing phase){extra}")  # fmt: skip
        return Estimate(raw + first, basis, False)
    k = statistics.median(ratios)
    wall, n = walls[0]
    runs_txt = f"{len(ratios)} finished sweep{'s' * (len(ratios) > 1)}"
    basis = (f"from {runs_txt} of {model} on this machine (the newest took {wall:.0f} s for {n} "
             f"configs; measured time ran {k:.1f}× the per-config sum){extra}")  # fmt: skip
    return Estimate(raw * k + first, basis, True)
