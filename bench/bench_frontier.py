"""Frontier / recommendation / chart benchmarks on 10,000 synthetic result rows.

Prints one table: median and p90 wall time, and median CPU time (steadier on a busy machine), of
``--repeats`` (default 20) timed runs for ``pareto_mask`` (3 objectives: a synthetic sweep and a
worst case with every row on the frontier), ``frontier``, ``recommend``, ``tradeoff_figure`` and
the whole "floor slider moved" recompute (``recommend`` + ``frontier`` + ``tradeoff_figure``;
target <= 200 ms server-side). The figure's JSON serialization, which the UI pays on top when it
ships the figure, is timed separately.

Usage: python bench/bench_frontier.py [--rows 10000] [--repeats 20]
Exits 1 when the slider recompute (median wall time) misses its target.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optim.charts import tradeoff_figure  # noqa: E402
from optim.frontier import Constraints, frontier, pareto_mask, recommend  # noqa: E402

SLIDER_TARGET_MS = 200.0
FAMILIES = ["quantize", "int8", "prune", "structured", "distill"]


def synthetic_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` result rows shaped like a real sweep: smaller configs lose accuracy, noisily."""
    rng = np.random.default_rng(seed)
    base_size, base_acc, base_lat = 44_700_000, 0.982, 10.0
    shrink = 10 ** rng.uniform(0, 1.3, n)  # 1x .. 20x smaller
    shrink[0] = 1.0
    acc = base_acc - 0.004 * np.log2(shrink) ** 1.6 * rng.uniform(0.2, 1.5, n)
    acc[0] = base_acc
    acc = np.clip(acc, 0.0, 1.0)
    lat = base_lat * shrink ** -rng.uniform(0.1, 0.6, n) * rng.uniform(0.8, 1.3, n)
    lat[0] = base_lat
    half = 1.96 * np.sqrt(acc * (1 - acc) / 2000)
    return pd.DataFrame(
        {
            "key": [f"cfg-{i:05d}" for i in range(n)],
            "label": ["fp32 baseline"] + [f"config {i}" for i in range(1, n)],
            "family": ["baseline"] + list(rng.choice(FAMILIES, n - 1)),
            "is_baseline": np.arange(n) == 0,
            "accuracy": acc,
            "acc_low": acc - half,
            "acc_high": np.minimum(acc + half, 1.0),
            "agreement": acc,
            "size_bytes": (base_size / shrink).astype(np.int64),
            "latency_p50_ms": lat,
            "latency_p90_ms": lat * rng.uniform(1.02, 1.3, n),
            "latency_cv": rng.uniform(0.01, 0.1, n),
            "backend": "onnxruntime 1.32 CPU",
            "precision": rng.choice(["int8 QDQ u8s8", "fp32, weights stored 4-bit", "fp32"], n),
            "stored": "int8",
        }
    )


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Median and p90 wall time, and median CPU time (steadier on a busy machine), in ms."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return float(np.median(wall)), float(np.percentile(wall, 90)), float(np.median(cpu))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    df = synthetic_rows(args.rows)
    values = df[["accuracy", "size_bytes", "latency_p50_ms"]].to_numpy(dtype=float)
    xy = np.random.default_rng(1).random((args.rows, 2))
    all_front = np.column_stack([xy, -xy.sum(axis=1)])  # every row non-dominated
    floors = iter(np.tile(np.linspace(0.95, 1.0, 50), 100))  # the slider keeps moving

    def slider_moved() -> None:
        rec = recommend(df, Constraints(floor=next(floors), relative=True, max_size_bytes=8e6))
        frontier(df)
        tradeoff_figure(df, "size_bytes", rec=rec, selected=["cfg-00003"])

    rec = recommend(df, Constraints(floor=0.99, relative=True, max_size_bytes=8e6))
    fig = tradeoff_figure(df, "size_bytes", rec=rec)
    cases = [
        ("pareto_mask (3 obj, synthetic sweep)", lambda: pareto_mask(values, [False, True, True])),
        ("pareto_mask (3 obj, all on frontier)", lambda: pareto_mask(all_front, [True] * 3)),
        ("frontier (3-D)", lambda: frontier(df)),
        ("frontier (2-D, accuracy vs size)", lambda: frontier(df, ("accuracy", "size_bytes"))),
        ("recommend", lambda: recommend(df, Constraints(floor=0.99, relative=True))),
        ("tradeoff_figure (size axis)", lambda: tradeoff_figure(df, "size_bytes", rec=rec)),
        ("tradeoff_figure (latency axis)", lambda: tradeoff_figure(df, "latency_p50_ms", rec=rec)),
        ("slider moved: recommend+frontier+figure", slider_moved),
        ("  + fig.to_json() (UI serialization)", fig.to_json),
    ]
    table = pd.DataFrame(
        [(name, *timed(fn, args.repeats)) for name, fn in cases],
        columns=["step", "median_ms", "p90_ms", "cpu_median_ms"],
    )
    print(
        f"{args.rows} rows, {int(rec.feasible.sum())} feasible, front sizes: 3-D "
        f"{int(frontier(df).sum())}, 2-D {int(frontier(df, ('accuracy', 'size_bytes')).sum())}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:8.1f}"))
    slider = float(table.loc[table.step.str.startswith("slider"), "median_ms"].iloc[0])
    ok = slider <= SLIDER_TARGET_MS
    print(
        f"slider recompute {slider:.1f} ms (target <= {SLIDER_TARGET_MS:.0f} ms): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
