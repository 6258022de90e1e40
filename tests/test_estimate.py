"""The run-time estimate: calibrated by what this model's finished runs really took, with
first-use training, and always saying its basis."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from optim import plan as plans
from optim.estimate import FIRST_TRAINING_S, estimate
from optim.rows import Row
from optim.store import Run, Store
from optim.techniques import Prune, Quantize

GRID = [(), (Quantize(4),), (Prune(0.5),), (Prune(0.5), Quantize(4))]


def finished_run(store: Store, wall_s: float, row_s: float) -> int:
    """A done digits_cnn run of GRID whose rows took ``row_s`` each and the run ``wall_s``."""
    run_id = store.create_run("digits_cnn", {"plans": [plans.to_json(p) for p in GRID]})
    for p in GRID:
        store.add_result(run_id, plans.to_json(p), Row(key=plans.key(p), label=plans.label(p),
                                                       family="quantize", seconds=row_s))  # fmt: skip
    store.set_status(run_id, "done")
    start = dt.datetime(2026, 1, 1)
    with store.engine.begin() as c:
        c.execute(update(Run).where(Run.id == run_id).values(
            created=start, updated=start + dt.timedelta(seconds=wall_s)))  # fmt: skip
    return run_id


def test_without_history_the_estimate_is_a_labelled_guess(tmp_path):
    est = estimate(Store(f"sqlite:///{tmp_path / 'r.db'}"), "digits_cnn", GRID)
    assert not est.measured and "a guess" in est.basis and est.seconds > 0


def test_the_estimate_is_calibrated_by_what_earlier_runs_really_took(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    finished_run(store, wall_s=10.0, row_s=1.0)
    short = estimate(store, "digits_cnn", GRID)
    store2 = Store(f"sqlite:///{tmp_path / 'r2.db'}")
    finished_run(store2, wall_s=100.0, row_s=1.0)  # same rows, the run took 10x longer
    long = estimate(store2, "digits_cnn", GRID)
    assert short.measured and long.measured
    assert abs(short.seconds - 10.0) < 0.5 and abs(long.seconds - 100.0) < 5  # its own grid
    assert "took 100 s for 4 configs" in long.basis


def test_an_untrained_sample_adds_its_first_training(tmp_path, monkeypatch):
    import sample_models

    monkeypatch.setattr(sample_models, "weights_path", lambda name: tmp_path / "none")
    est = estimate(Store(f"sqlite:///{tmp_path / 'r.db'}"), "resnet18", GRID)
    assert est.seconds >= FIRST_TRAINING_S and "train resnet18 first" in est.basis
