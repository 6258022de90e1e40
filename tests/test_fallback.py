"""Accuracy-aware int8 fallback: nodes ranked on the calib split with sensitivity's order,
reverted one at a time, stopping at the first step that meets the floor; every step is its own
config, file and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from optim import fallback as fallbacks
from optim import measure, metrics
from optim import placement as placements
from optim import plan as plans
from optim.build import Settings, build
from optim.sensitivity import order
from optim.sources import sample_source
from optim.sweep import sweep
from optim.techniques import Int8Fallback

QUICK = placements.Budget(rounds=2, seconds=0.02)


def test_stop_is_the_first_step_that_meets_the_target():
    assert fallbacks.stop([0.90, 0.93, 0.95, 0.97], 0.95) == 2
    assert fallbacks.stop([0.96], 0.95) == 0
    assert fallbacks.stop([0.90, 0.91], 0.95) is None


def test_fallback_stops_at_the_first_step_that_meets_the_floor_on_calib():
    source = sample_source("digits_cnn")
    graph, _ = build(source, ())
    ctx = plans.Context(source, cpu=measure.cpu_info())
    placement, q, curve = fallbacks.measured(graph, ctx, 0.999, QUICK)
    calib = source.splits["calib"]
    # the ranking is sensitivity's order over the int8 nodes, each measured alone on calib
    df = fallbacks.ranking(placement, q, calib, source.metric)
    assert curve.ranking == tuple(order(df)) and set(curve.ranking) <= {
        n for names in q.groups.values() for n in names
    }
    assert not set(curve.ranking) & set(placement.excluded)
    # each step, recomputed by hand from its own file on the calib split
    z0 = measure.predict(measure.session(q.fp32), calib.x)
    assert curve.base_accuracy == pytest.approx(np.mean(metrics.predictions(z0) == calib.y))
    for k, acc in enumerate(curve.accuracy):
        model = fallbacks.model_of(placement, q, curve, k)
        z = measure.predict(measure.session(model.SerializeToString()), calib.x)
        assert acc == pytest.approx(np.mean(metrics.predictions(z) == calib.y))
    target = 0.999 * curve.base_accuracy
    below = [a < target for a in curve.accuracy]
    if curve.met is None:  # never met: every step but the last node's is on the curve
        assert all(below) and len(curve.accuracy) == len(curve.ranking)
    else:  # the first step that meets the floor ends the curve
        assert below == [True] * curve.met + [False] and len(curve.accuracy) == curve.met + 1


def test_every_step_is_its_own_file_and_row(fresh_store):
    source = sample_source("digits_cnn")
    steps = fallbacks.fallback_plans(source, 1.0, QUICK)  # strict: likely several steps
    assert steps[0] == (Int8Fallback(1.0, 0, QUICK.rounds, QUICK.seconds),)
    assert [p[0].step for p in steps] == list(range(len(steps)))
    run_id = sweep("digits_cnn", steps[:2], Settings(min_seconds=0.02, rounds=2, jobs=1),
                   fresh_store)  # fmt: skip
    rows = [r for r in fresh_store.rows(run_id) if not r.is_baseline]
    assert len(rows) == min(2, len(steps)) and all(r.error is None for r in rows)
    assert len({r.artifact for r in rows}) == len(rows)
    for r in rows:  # measured on the test split, like every row; the file says what ran
        assert r.n_test == len(source.splits["test"]) and r.latency_p50_ms
        assert "fallback step" in r.precision and "calib accuracy" in r.precision
        onnx.checker.check_model(onnx.load(Path(r.artifact) / "model.onnx"))
    with pytest.raises(ValueError, match=r"`0.5 <= floor <= 1` must hold, but got floor=1.2"):
        Int8Fallback(1.2)
