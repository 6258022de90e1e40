"""Measurement statistics on hand-built cases: McNemar's exact test, the paired interval,
per-class accuracy, and the interleaved timing phase on real ONNX Runtime sessions."""

from __future__ import annotations

import numpy as np
import pytest

from optim import measure
from optim.artifact import write_artifact
from optim.build import build
from optim.sources import sample_source
from optim.techniques import Prune, Quantize


def test_mcnemar_exact_p_value_hand_computed():
    # 12 discordant pairs, 10 to 2: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    a = np.array([1] * 10 + [0] * 2 + [1] * 80 + [0] * 8, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 80 + [0] * 8, bool)
    assert measure.mcnemar_p(a, b) == pytest.approx(158 / 4096)
    assert measure.mcnemar_p(b, a) == pytest.approx(158 / 4096)  # symmetric
    assert measure.mcnemar_p(a, a) == 1.0  # no discordant pair
    # 5 to 0: 2 / 32 = 0.0625, not significant; 6 to 0: 2 / 64, significant
    assert measure.mcnemar_p(np.ones(5, bool), np.zeros(5, bool)) == pytest.approx(0.0625)
    assert measure.mcnemar_p(np.ones(6, bool), np.zeros(6, bool)) == pytest.approx(1 / 32)
    with pytest.raises(ValueError, match="shape"):
        measure.mcnemar_p(np.ones(3, bool), np.ones(4, bool))


def test_paired_verdict_needs_significance_not_just_a_difference():
    base = np.array([1] * 90 + [0] * 10, bool)
    slightly = base.copy()
    slightly[90:93] = True  # +3 points, 3 to 0 discordant: p = 0.25
    verdict = measure.paired(slightly, base)
    assert verdict.delta == pytest.approx(0.03) and verdict.verdict == "same"
    assert verdict.low <= 0.0 <= verdict.high or verdict.low > 0  # a paired interval
    clearly = base.copy()
    clearly[:12] = False  # -12 points, 0 to 12: p = 2 / 4096
    worse = measure.paired(clearly, base)
    assert worse.verdict == "worse" and worse.p == pytest.approx(2 / 4096)
    assert worse.high < 0


def test_class_accuracy_and_resolution():
    correct = np.array([1, 1, 0, 1, 0, 0], bool)
    classes = np.array([0, 0, 0, 1, 1, 3])
    acc = measure.class_accuracy(correct, classes)
    assert acc[:2] == pytest.approx([2 / 3, 1 / 2]) and np.isnan(acc[2]) and acc[3] == 0.0
    # 95 % half-width at 98 % accuracy on 360 examples: 1.96 * sqrt(.98 * .02 / 360)
    assert measure.resolution(360, 0.98) == pytest.approx(0.01446, abs=1e-4)


def test_every_round_times_every_config_with_the_baseline_in_each():
    keys = ["base", "a", "b", "c"]
    orders = measure.schedule(keys, 30, np.random.default_rng(0))
    assert len(orders) == 30 and all(sorted(o) == sorted(keys) for o in orders)
    assert len({tuple(o) for o in orders}) > 10  # shuffled afresh, not one fixed order


def test_rounds_are_timed_in_blocks_of_fresh_sessions():
    assert [measure.block_count(r) for r in (20, 5, 6, 3, 2, 7)] == [4, 1, 3, 3, 2, 1]


def test_interleaved_timing_on_real_files(tmp_path):
    source = sample_source("digits_cnn")
    files, ids = {}, {}
    plans = {"base": (), "pruned": (Prune(0.5),), "sparse": (Prune(0.9),), "int4": (Quantize(4),)}
    for name, plan in plans.items():
        write_artifact(build(source, plan)[0], tmp_path / name)
        files[name] = tmp_path / name / "model.onnx"
        ids[name] = measure.graph_id(files[name])
    # dense zeros, or a sparse initializer ORT densifies at load: the baseline's kernels
    assert ids["pruned"] == ids["sparse"] == ids["base"] != ids["int4"]
    seen = []
    t = measure.time_interleaved(files, source.example, "base", rounds=4, min_seconds=0.02,
                                 graph_ids=ids, progress=lambda r, n: seen.append((r, n)))  # fmt: skip
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert t["base"].verdict == "baseline" and t["pruned"].verdict == "same graph"
    assert t["sparse"].verdict == "same graph"
    assert t["int4"].verdict in ("faster", "slower", "same")
    for k, v in t.items():
        assert v.rounds == 4 and v.p50_low <= v.p50_ms <= v.p50_high and v.p90_ms >= v.p50_ms, k
        assert v.speedup_low <= v.speedup <= v.speedup_high, k
    with pytest.raises(ValueError, match="baseline"):
        measure.time_interleaved(files, source.example, "nope")
    with pytest.raises(ValueError, match="rounds >= 2"):
        measure.time_interleaved(files, source.example, "base", rounds=1)


def test_a_file_the_optimizer_would_change_is_refused(tmp_path):
    source = sample_source("digits_cnn")
    write_artifact(build(source, ())[0], tmp_path)
    path = tmp_path / "model.onnx"
    x = source.splits["test"].x[:16]
    good = measure.predict(measure.session(path), x)
    measure.check_optimizations(path, x, good)  # agrees with itself unoptimized
    with pytest.raises(ValueError, match="default optimizations change the outputs"):
        measure.check_optimizations(path, x, good + 1.0)
    # int8 activations: a difference below the file's own distance from the fp32 reference
    # is quantization, not a broken fusion; one far beyond it is refused
    scale = float(np.ptp(good))
    off = good + 0.2 * scale
    measure.check_optimizations(path, x, off, int8_activations=True, reference=good + 0.3 * scale)
    with pytest.raises(ValueError, match="default optimizations change the outputs"):
        measure.check_optimizations(path, x, off, int8_activations=True, reference=good)


def test_missing_graph_ids_never_count_as_the_baselines_graph(tmp_path):
    source = sample_source("digits_cnn")
    write_artifact(build(source, ())[0], tmp_path / "a")
    files = {k: tmp_path / "a" / "model.onnx" for k in ("base", "old")}
    t = measure.time_interleaved(files, source.example, "base", rounds=2, min_seconds=0.01,
                                 graph_ids={"base": None, "old": None})  # fmt: skip
    assert t["old"].verdict != "same graph"  # a row stored without an id proves nothing


def test_missing_figures_are_stored_as_null_not_nan(tmp_path):
    from optim.rows import Row
    from optim.store import Store

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    run = store.create_run("digits_cnn", {"plans": []})
    row = Row(key="k", label="l", family="f", class_acc=[0.5, float("nan")], accuracy=float("nan"))
    assert store.add_result(run, [], row) and not store.add_result(run, [], row)  # duplicate
    (back,) = store.rows(run)
    assert back.class_acc == [0.5, None] and back.accuracy is None
