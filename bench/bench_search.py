"""Grid vs. multi-objective search: frontier hypervolume per evaluation.

Runs the default grid (``optim.sweep.grid()``: 32 configs, the baseline among them) and an NSGA-II
search (``optim.search.search``) with at most a third as many evaluations (the search's baseline
row counts as one), on the same model, into one run store. Prints one table: evaluations
(artifacts built and measured), trials, frontier rows, hypervolume and wall time of each, then
the search's frontier rows with their test accuracy.

Hypervolume (``optim.search.hypervolume``) is computed the same way for both, on test accuracy,
log2 size and latency, with one reference point from the grid's baseline row (10 accuracy points
below it, its size, 1.5x its p50 latency). Latency is first divided by the run's own baseline p50
(times the grid's), so a change in machine load between the two runs does not tilt the
comparison; the raw-latency hypervolume is printed too. The search itself was steered by calib
accuracy only; test accuracy here is the report.

Usage: python bench/bench_search.py [--model resnet18] [--trials N] [--seed 0]
Exits 1 when the search's hypervolume is below the grid's or it used more than a third of the
grid's evaluations. resnet18's weights are trained on first use (minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optim import plan as plans  # noqa: E402
from optim.frontier import fmt_bytes, frontier  # noqa: E402
from optim.search import hypervolume, reference_point, search  # noqa: E402
from optim.store import Store  # noqa: E402
from optim.sweep import Settings, grid, sweep  # noqa: E402


def _rescaled(df: pd.DataFrame, base_latency: float) -> pd.DataFrame:
    """``df`` with latency in units of its own baseline, times ``base_latency``."""
    own = float(df.loc[df["is_baseline"].astype(bool), "latency_p50_ms"].iloc[0])
    return df.assign(latency_p50_ms=df["latency_p50_ms"] * base_latency / own)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument(
        "--trials", type=int, default=None, help="default: a third of the grid - 1"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=0.5, help="latency timing per row")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a temporary SQLite)")
    args = parser.parse_args()

    configs = grid()
    n_grid = len({plans.key(p) for p in [(), *configs]})  # the baseline is in the grid already
    trials = args.trials or n_grid // 3 - 1  # + the search's own baseline row
    tmp = tempfile.mkdtemp(prefix="bench-search-")
    store = Store(args.db or f"sqlite:///{Path(tmp) / 'runs.db'}")
    settings = Settings(min_seconds=args.min_seconds, seed=args.seed)
    print(f"model {args.model}: grid of {n_grid} configs vs search of {trials} trials", flush=True)

    t0 = time.perf_counter()
    grid_id = sweep(args.model, configs, settings, store)
    grid_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    search_id = search(args.model, trials=trials, seed=args.seed, store=store, settings=settings)
    search_s = time.perf_counter() - t0

    runs = {"grid": store.results(grid_id), "search": store.results(search_id)}
    base = runs["grid"][runs["grid"]["is_baseline"].astype(bool)].iloc[0]
    ref = reference_point(base)
    print(f"reference point: accuracy {ref[0]:.4f}, {fmt_bytes(ref[1])}, {ref[2]:.3f} ms p50")
    table = []
    for name, df in runs.items():
        ok = df[df["accuracy"].notna()]
        table.append({
            "method": name,
            "evaluations": len(df),
            "trials": trials if name == "search" else len(ok),
            "errors": len(df) - len(ok),
            "frontier": int(frontier(ok).sum()),
            "hypervolume": hypervolume(_rescaled(ok, float(base["latency_p50_ms"])), ref),
            "hv_raw_latency": hypervolume(ok, ref),
            "best_acc": ok["accuracy"].max(),
            "wall_s": grid_s if name == "grid" else search_s,
        })  # fmt: skip
    out = pd.DataFrame(table)
    print(out.to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    df = runs["search"].query("accuracy == accuracy")
    front = df[frontier(df)].sort_values("size_bytes")
    cols = ["label", "accuracy", "calib_accuracy", "size_bytes", "latency_p50_ms"]
    print("\nsearch frontier (steered by calib accuracy; test accuracy reported):")
    print(front[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    g, s = out.set_index("method").loc["grid"], out.set_index("method").loc["search"]
    met = s["hypervolume"] >= g["hypervolume"] and 3 * s["evaluations"] <= g["evaluations"]
    ratio = s["hypervolume"] / g["hypervolume"] if g["hypervolume"] else np.inf
    print(
        f"\nsearch/grid hypervolume {ratio:.3f} with {s['evaluations']}/{g['evaluations']} "
        f"evaluations: target {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
