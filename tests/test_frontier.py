from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import optim.frontier as fr
import optim.pareto as pareto
from optim.frontier import (
    Constraints,
    compared_latency,
    fmt_bytes,
    fmt_pct,
    frontier,
    pareto_mask,
    recommend,
)


def brute_force(values: np.ndarray, minimize: list[bool]) -> np.ndarray:
    v = np.where(minimize, values, -values)
    no_worse = (v[None, :, :] <= v[:, None, :]).all(axis=2)  # [i, j]: j no worse than i
    better = (v[None, :, :] < v[:, None, :]).any(axis=2)
    return ~(no_worse & better).any(axis=1)


def rows(**overrides: list) -> pd.DataFrame:
    data = {
        "key": ["base", "int8", "int4", "prune"],
        "label": ["fp32", "int8 QDQ", "int4 w/channel + prune 50%", "prune 50%"],
        "family": ["baseline", "int8", "quantize", "prune"],
        "is_baseline": [True, False, False, False],
        "accuracy": [0.982, 0.980, 0.975, 0.960],
        "acc_low": [0.974, 0.971, 0.960, 0.950],
        "acc_high": [0.989, 0.988, 0.988, 0.970],
        "size_bytes": [44_700_000, 11_200_000, 3_950_000, 22_000_000],
        "latency_p50_ms": [10.0, 4.0, 3.4, 7.0],
        # the paired speed-ups of an interleaved timing phase, each beyond noise
        "speedup": [1.0, 2.5, 10.0 / 3.4, 10.0 / 7.0],
        "speed_verdict": ["baseline", "faster", "faster", "faster"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_pareto_mask_2d_mixed_directions() -> None:
    values = np.array([[0.9, 10.0], [0.8, 20.0], [0.95, 30.0], [0.95, 40.0]])
    assert pareto_mask(values, [False, True]).tolist() == [True, False, True, False]


def test_pareto_mask_identical_points_are_all_non_dominated() -> None:
    values = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [2.0, 3.0, 4.0]])
    assert pareto_mask(values, [True, True, True]).tolist() == [True, True, False, False]
    assert pareto_mask(values[:, :2], [True, True]).tolist() == [True, True, False, False]


def test_pareto_mask_single_point_and_empty() -> None:
    assert pareto_mask(np.array([[0.5, 1.0, 2.0]]), [False, True, True]).tolist() == [True]
    assert pareto_mask(np.empty((0, 3)), [True, True, True]).shape == (0,)


def test_pareto_mask_all_dominated_by_one() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(1, 2, size=(50, 3))
    values[17] = 0.0
    expected = np.zeros(50, dtype=bool)
    expected[17] = True
    assert (pareto_mask(values, [True, True, True]) == expected).all()


def test_pareto_mask_rejects_nan_naming_row_and_column() -> None:
    values = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, np.nan]])
    with pytest.raises(ValueError, match="row 1, column 2"):
        pareto_mask(values, [True, True, True])


def test_pareto_mask_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="len\\(minimize\\)"):
        pareto_mask(np.ones((3, 2)), [True])


@pytest.mark.parametrize("n_obj", [1, 2, 3, 4])
@pytest.mark.parametrize("chunk", [1, 3, 128])
def test_pareto_mask_matches_brute_force(
    n_obj: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pareto, "_CHUNK", chunk)  # small blocks exercise the large-front sweep
    rng = np.random.default_rng(n_obj * 100 + chunk)
    for _ in range(40):
        values = rng.integers(0, 6, size=(int(rng.integers(1, 90)), n_obj)).astype(float)
        if n_obj >= 3 and rng.random() < 0.5:  # anti-correlated: large fronts
            values[:, 2] = 10 - values[:, 0] - values[:, 1]
        values[rng.random(values.shape) < 0.03] = np.inf
        minimize = list(rng.random(n_obj) < 0.5)
        assert (pareto_mask(values, minimize) == brute_force(values, minimize)).all()


def test_pareto_mask_large_front_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    xy = rng.random((1500, 2))
    values = np.column_stack([xy, -xy.sum(axis=1) + 0.01 * rng.random(1500)])
    assert (pareto_mask(values, [True] * 3) == brute_force(values, [True] * 3)).all()


def test_frontier_3d_and_2d_projections() -> None:
    df = rows()
    # prune is dominated by int8 in every objective; the others trade off
    assert frontier(df).tolist() == [True, True, True, False]
    assert frontier(df, ("accuracy", "size_bytes")).tolist() == [True, True, True, False]
    assert frontier(df, ("accuracy", "latency_p50_ms")).tolist() == [True, True, True, False]
    faster = rows(latency_p50_ms=[10.0, 2.0, 3.4, 7.0], speedup=[1.0, 5.0, 10.0 / 3.4, 10.0 / 7.0])
    assert frontier(faster, ("accuracy", "latency_p50_ms")).tolist() == [True, True, False, False]


def test_frontier_skips_nan_rows_and_checks_columns() -> None:
    df = rows(latency_p50_ms=[10.0, np.nan, 3.4, 7.0])
    assert frontier(df).tolist() == [True, False, True, False]  # int8 was optimal
    with pytest.raises(ValueError, match="missing"):
        frontier(df, ("accuracy", "flops"))
    assert frontier(df.iloc[:0]).shape == (0,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"floor": 1.2}, "0 <= floor <= 1"),
        ({"floor": -0.1}, "0 <= floor <= 1"),
        ({"floor": float("nan")}, "0 <= floor <= 1"),
        ({"floor": 0.0, "relative": True}, "0 < floor <= 1.5"),
        ({"floor": 1.6, "relative": True}, "0 < floor <= 1.5"),
        ({"floor": 0.9, "max_size_bytes": 0}, "max_size_bytes > 0"),
        ({"floor": 0.9, "max_latency_ms": -1.0}, "max_latency_ms > 0"),
        ({"floor": 0.9, "prefer": "accuracy"}, "prefer in"),
    ],
)
def test_constraints_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Constraints(**kwargs)


def test_relative_floor_uses_the_baseline() -> None:
    rec = recommend(rows(), Constraints(floor=0.99, relative=True))
    assert rec.floor_value == pytest.approx(0.99 * 0.982)
    assert rec.key == "int4"
    assert rec.feasible.tolist() == [True, True, True, False]
    assert rec.size_ratio == pytest.approx(44_700_000 / 3_950_000)
    assert rec.speedup == pytest.approx(10.0 / 3.4)
    assert "97.2 % (99 % of baseline)" in rec.message
    assert "int4 w/channel + prune 50%" in rec.message and "11.3× smaller" in rec.message
    assert "2.9× faster" in rec.message and "95 % CI 96.0–98.8 %" in rec.message
    with pytest.raises(ValueError):
        rec.feasible[0] = False  # read-only


def test_relative_floor_without_baseline_raises() -> None:
    with pytest.raises(ValueError, match="baseline"):
        recommend(rows(is_baseline=[False] * 4), Constraints(floor=0.99, relative=True))
    with pytest.raises(ValueError, match="baseline"):
        recommend(rows().drop(columns="is_baseline"), Constraints(floor=0.99, relative=True))


def test_budgets_filter_and_prefer() -> None:
    df = rows()
    by_size = recommend(df, Constraints(floor=0.95))
    by_latency = recommend(df, Constraints(floor=0.95, prefer="latency"))
    assert by_size.key == "int4" and by_latency.key == "int4"
    df = rows(latency_p50_ms=[10.0, 2.0, 3.4, 7.0], speedup=[1.0, 5.0, 10.0 / 3.4, 10.0 / 7.0])
    assert recommend(df, Constraints(floor=0.95)).key == "int4"
    assert recommend(df, Constraints(floor=0.95, prefer="latency")).key == "int8"
    assert "the fastest" in recommend(df, Constraints(floor=0.95, prefer="latency")).message
    capped = recommend(df, Constraints(floor=0.95, max_latency_ms=3.0))
    assert capped.key == "int8" and capped.feasible.tolist() == [False, True, False, False]
    assert "3.0 ms latency budget" in capped.message


def test_ties_break_by_accuracy_then_key() -> None:
    df = rows(size_bytes=[44_700_000, 3_950_000, 3_950_000, 3_950_000])
    assert recommend(df, Constraints(floor=0.9)).key == "int8"  # same size, most accurate
    df = rows(size_bytes=[44_700_000, 3_950_000, 3_950_000, 3_950_000], accuracy=[0.99] * 4)
    assert recommend(df, Constraints(floor=0.9)).key == "int4"  # then by key


def test_nothing_feasible_names_the_closest_and_the_shortfall() -> None:
    rec = recommend(rows(), Constraints(floor=0.995))
    assert rec.key is None and not rec.feasible.any()
    assert rec.closest_key == "base" and rec.size_ratio is None
    assert "No config reaches 99.5 %" in rec.message and "1.3 points short" in rec.message


def test_budgets_that_rule_everything_out_are_named() -> None:
    rec = recommend(rows(), Constraints(floor=0.97, max_size_bytes=3_000_000))
    assert rec.key is None and rec.closest_key == "int4"
    assert "3 of 4 configs reach 97.0 %" in rec.message
    assert "3.0 MB size budget" in rec.message and "950.0 KB over the size budget" in rec.message


def test_baseline_only_recommendation_says_keep_it() -> None:
    rec = recommend(rows(), Constraints(floor=0.982))
    assert rec.key == "base" and "keep `fp32`" in rec.message


def test_empty_results() -> None:
    rec = recommend(rows().iloc[:0], Constraints(floor=0.99, relative=True))
    assert rec.key is None and rec.closest_key is None and rec.feasible.shape == (0,)
    assert "no results yet" in rec.message.lower()


def test_formatters() -> None:
    assert fmt_bytes(58_200) == "58.2 KB" and fmt_bytes(44_700_000) == "44.7 MB"
    assert fmt_bytes(512) == "512 B" and fmt_bytes(float("nan")) == "n/a"
    assert fmt_pct(0.9725) == "97.2 %" and fmt_pct(0.99, digits=0) == "99 %"


def test_the_floor_can_apply_to_the_worst_class() -> None:
    # int4 has the best mean after the baseline but breaks one class (a screening model's
    # positives); int8 keeps every class above 95 %
    df = rows(worst_class_acc=[0.97, 0.96, 0.80, 0.90])
    mean = recommend(df, Constraints(floor=0.97))
    assert mean.key == "int4" and mean.feasible.tolist() == [True, True, True, False]
    worst = recommend(df, Constraints(floor=0.95, on="worst_class_acc"))
    assert worst.key == "int8" and worst.feasible.tolist() == [True, True, False, False]
    assert "worst class's accuracy" in worst.message
    relative = recommend(df, Constraints(floor=0.98, relative=True, on="worst_class_acc"))
    assert relative.floor_value == pytest.approx(0.98 * 0.97) and relative.key == "int8"
    with pytest.raises(ValueError, match="on in"):
        Constraints(floor=0.9, on="median")


def test_latency_within_noise_never_wins_or_loses() -> None:
    # prune is 30 % faster by its raw p50 but its speed-up interval includes 1: it ties the
    # baseline on latency, so it is neither the fastest nor on the frontier for speed
    df = rows(latency_p50_ms=[10.0, 11.0, 12.0, 7.0],
              speed_verdict=["baseline", "slower", "slower", "same"],
              speedup=[1.0, 10 / 11, 10 / 12, 10 / 7])  # fmt: skip
    assert fr.compared_latency(df).tolist() == [10.0, 11.0, 12.0, 10.0]
    rec = recommend(df, Constraints(floor=0.9, prefer="latency"))
    assert rec.key == "base"  # ties with prune on latency, wins on accuracy
    assert not frontier(df, ("accuracy", "latency_p50_ms"))[3]
    pick = recommend(df, Constraints(floor=0.9, max_size_bytes=30e6, prefer="latency"))
    assert pick.key == "prune" and pick.speedup == 1.0
    assert "same speed as baseline (within noise)" in pick.message


def test_latency_is_compared_by_the_paired_speedup_the_verdict_uses() -> None:
    """A config "faster" by its per-round ratios compares below the baseline even when its p50
    over all calls came out higher (other work on the machine during some rounds)."""
    df = rows(latency_p50_ms=[10.0, 11.0, 3.4, 7.0], speedup=[1.0, 1.06, 10.0 / 3.4, 10.0 / 7.0],
              speed_verdict=["baseline", "faster", "faster", "faster"])  # fmt: skip
    assert compared_latency(df)[1] == pytest.approx(10.0 / 1.06)
    assert frontier(df, ("accuracy", "latency_p50_ms"))[1]  # not dominated by the baseline
