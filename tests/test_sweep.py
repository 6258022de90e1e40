"""Sweeps end to end: rows in the store, determinism, resume."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from optim import plan as plans
from optim.runs import create, execute
from optim.sweep import (
    ORDERS,
    TRAINING_GUESS_S,
    Settings,
    estimate_seconds,
    grid,
    run_dir,
    sweep,
)
from optim.techniques import Distill, Int8, Int8Auto, Prune, Quantize, StructuredPrune

ROOT = Path(__file__).resolve().parents[1]
FAST = Settings(min_seconds=0.02, jobs=1, rounds=5)


def test_grid_is_the_cross_product_with_prune_first():
    g = grid(bits=(4, 8, 32), sparsity=(0.0, 0.5))
    assert len(g) == 6
    assert (Prune(0.5), Quantize(4)) in g and (Int8Auto(),) in g and () in g and (Prune(0.5),) in g


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bits": (1,)}, r"`2 <= bits <= 8 or bits in \(16, 32\)` must hold, but got bits=1"),
        ({"bits": (33,)}, r"but got bits=33"),
        ({"sparsity": (1.0,)}, r"`0 <= sparsity < 1` must hold, but got sparsity=1.0"),
        ({"sparsity": (-0.1,)}, r"but got sparsity=-0.1"),
        ({"bits": ()}, r"the grid is empty"),
        ({"students": (1.0,)}, r"`0 < student width < 1` must hold, but got width=1.0"),
        ({"orders": ("random",)}, r"`order` must be one of .*, but got order='random'"),
    ],
)
def test_grid_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grid(**kwargs)


def test_grid_sweeps_each_distilled_student_like_the_model():
    g = grid(bits=(4, 32), sparsity=(0.0, 0.5), students=(0.5, 0.25))
    assert len(g) == 12  # (model, two students) x 2 sparsities x 2 bit-widths
    for start in ((), (Distill(0.5),), (Distill(0.25),)):
        assert (
            start in g and start + (Quantize(4),) in g and start + (Prune(0.5), Quantize(4)) in g
        )


def test_order_is_a_grid_axis():
    g = grid(bits=(4, 8, 32), sparsity=(0.0, 0.5), orders=("prune-first", "quantize-first"))
    assert (Prune(0.5), Quantize(4)) in g and (Quantize(4), Prune(0.5)) in g
    assert (Prune(0.5), Int8Auto()) in g and (Int8Auto(), Prune(0.5)) not in g  # int8 ends a plan
    assert len(g) == 7  # the order only matters for pruned, N-bit rounded weights
    structured = grid(bits=(4,), sparsity=(0.5,), structured=True, orders=ORDERS)
    assert structured == [(StructuredPrune(0.5), Quantize(4))]  # channels go in torch first


@pytest.mark.slow
def test_parallel_workers_train_each_student_once(fresh_store):
    """Two workers, one student shared by three plans: it is trained and exported once, into the
    run's torch-stage cache, and every student row is built from that file."""
    plan_list = [(Distill(0.5, epochs=3),) + q for q in ((), (Quantize(4),), (Int8(),))]
    run_id = sweep("digits_cnn", plan_list, Settings(min_seconds=0.02, jobs=2), fresh_store)
    df = fresh_store.results(run_id)
    assert len(df) == 4 and df["accuracy"].notna().all()  # no failed config
    (cached,) = (run_dir(fresh_store.url, run_id) / "torch-cache").glob("*.onnx")
    student = df[df["label"] == Distill(0.5, epochs=3).label].iloc[0]
    assert (Path(student["artifact"]) / "model.onnx").read_bytes() == cached.read_bytes()
    assert df.loc[~df["is_baseline"], "flops"].nunique() == 1  # the same student everywhere

    # the time estimate: the student costs what it took here (and the configs built on it wait
    # for it); one never trained costs the 60 s guess
    seen, new = (Distill(0.5, epochs=3), Quantize(3)), (Distill(0.25), Quantize(3))
    per = df.loc[df["is_baseline"], "seconds"].iloc[0]
    trained = df.loc[~df["is_baseline"], "seconds"].max()
    cores = os.cpu_count() or 1
    got = estimate_seconds(fresh_store, "digits_cnn", [seen])
    assert got == pytest.approx(15 + max((2 * per + trained) / min(cores, 2), trained + per))
    got = estimate_seconds(fresh_store, "digits_cnn", [seen, new])
    costs = trained + TRAINING_GUESS_S
    want = 15 + max((3 * per + costs) / min(cores, 3), max(trained, TRAINING_GUESS_S) + per)
    assert got == pytest.approx(want)
    # structured pruning alone reshapes without training: no training guess
    assert estimate_seconds(fresh_store, "digits_cnn", [(StructuredPrune(0.5),)]) == pytest.approx(
        15 + max(2 * per / min(cores, 2), per)
    )
    # the timing phase runs alone after the builds: its seconds per config add up
    timed = estimate_seconds(fresh_store, "digits_cnn", [(StructuredPrune(0.5),)], timing_s=0.7)
    assert timed == pytest.approx(15 + max(2 * per / min(cores, 2), per) + 2 * 0.7)


def test_small_sweep_end_to_end(fresh_store):
    rows = []
    run_id = sweep("digits_cnn", grid(bits=(4, 8, 32), sparsity=(0.0, 0.5)), FAST, fresh_store,
                   progress=lambda done, total, row: rows.append((done, total)))  # fmt: skip
    df = fresh_store.results(run_id)
    assert len(df) == 6 and df["key"].is_unique and rows[-1] == (6, 6)
    assert df["is_baseline"].sum() == 1
    base = df[df["is_baseline"]].iloc[0]
    assert base["accuracy"] > 0.95 and base["agreement"] == 1.0
    assert (df["acc_low"] <= df["accuracy"]).all() and (df["accuracy"] <= df["acc_high"]).all()
    for _, row in df.iterrows():
        art = Path(row["artifact"])
        assert (art / "model.onnx").stat().st_size == row["size_bytes"]
        assert (
            row["latency_p90_ms"] >= row["latency_p50_ms"] > 0
            and row["latency_rounds"] == FAST.rounds
        )
        assert row["p50_low"] <= row["latency_p50_ms"] <= row["p50_high"]
        assert row["speedup_low"] <= row["speedup"] <= row["speedup_high"]
        assert row["speed_verdict"] in ("baseline", "same graph", "same", "faster", "slower")
        assert row["acc_verdict"] in ("baseline", "same", "better", "worse")
    # executes the baseline's graph (dense fp32 with zeros): never called faster or slower
    assert df.set_index("label").loc["prune 50%", "speed_verdict"] == "same graph"
    int8 = df[df["label"] == "int8 auto"].iloc[0]  # the grid's default 8-bit config
    assert int8["precision"].startswith("int8 (") and " of 3 Conv" in int8["precision"]
    assert int8["size_bytes"] < base["size_bytes"]
    assert fresh_store.run(run_id)["status"] == "done"
    assert fresh_store.run(run_id)["env"]["cpu"]["flags"] is not None


def test_sweep_is_deterministic_given_a_seed(fresh_store):
    plan_list = [(Prune(0.5), Quantize(3)), (Int8(calibration="percentile"),)]
    a = fresh_store.results(sweep("digits_cnn", plan_list, FAST, fresh_store))
    b = fresh_store.results(sweep("digits_cnn", plan_list, FAST, fresh_store))
    cols = ["key", "accuracy", "acc_low", "acc_high", "agreement", "size_bytes"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_resume_computes_only_missing_configs(fresh_store):
    plan_list = grid(bits=(3, 4, 32), sparsity=(0.0,))
    run_id = create(fresh_store, "digits_cnn", plan_list, FAST)
    first = plans.key(plan_list[0])
    execute(fresh_store, run_id)
    created = fresh_store.results(run_id).set_index("key")["seconds"]
    execute(fresh_store, run_id)  # nothing missing: nothing new
    again = fresh_store.results(run_id).set_index("key")["seconds"]
    assert len(again) == 3 and again[first] == created[first]


# kill -9 of a sweep, then resume: tests/test_faults.py (the driver alone, its workers die too)
