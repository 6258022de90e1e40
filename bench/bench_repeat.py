"""Repeatability of latency claims: the same grid run twice (two runs, each with its own
interleaved timing phase) on digits_cnn and mobilenet_v3, side by side. For every config the two
speed-up intervals must overlap, and no config that executes the baseline's graph may ever be
called faster or slower. Then the old headline case (digits_cnn, bits 4,8,32 x sparsity 0,0.5):
no speed-up claimed for a config that executes in fp32, and the headline's "x smaller" is the
ratio of the files a user downloads.

Usage: python bench/bench_repeat.py [--models digits_cnn,mobilenet_v3] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_twice(name: str, plans: list, settings) -> pd.DataFrame:
    from optim.store import Store
    from optim.sweep import sweep

    store = Store()
    runs = [store.results(sweep(name, plans, settings, store)) for _ in range(2)]
    cols = ["label", "precision", "speedup", "speedup_low", "speedup_high", "speed_verdict"]
    a, b = (r[r["accuracy"].notna()][["key", *cols]].set_index("key") for r in runs)
    both = a.join(b[cols[2:]].add_suffix(" (run 2)"))
    lo = both[["speedup_low", "speedup_low (run 2)"]].max(axis=1)
    hi = both[["speedup_high", "speedup_high (run 2)"]].min(axis=1)
    both["overlap"] = lo <= hi
    same_graph = (both["speed_verdict"] == "same graph") | (
        both["speed_verdict (run 2)"] == "same graph"
    )
    claims = both[["speed_verdict", "speed_verdict (run 2)"]].isin(["faster", "slower"])
    both["same-graph claim"] = same_graph & claims.any(axis=1)
    both.insert(0, "model", name)
    return both.reset_index(drop=True)


def headline_case(settings) -> pd.DataFrame:
    from optim import frontier as fr
    from optim import tables, view_state
    from optim.store import Store
    from optim.sweep import grid, sweep

    store = Store()
    run_id = sweep("digits_cnn", grid(bits=(4, 8, 32), sparsity=(0.0, 0.5)), settings, store)
    ok, _ = tables.split_rows(store.results(run_id))
    rec = fr.recommend(ok, view_state.constraints({}, ok))
    head = rec.headline
    base = ok[ok["is_baseline"]].iloc[0]
    rows = []
    for _, r in ok.iterrows():
        shipped = Path(r["artifact"]) / "model.onnx"
        fp32_exec = str(r["precision"]).startswith("fp32")
        rows.append({
            "config": r["label"], "executed": r["precision"], "speed": fr.speed_text(r),
            "fp32 claims a speed-up": fp32_exec and r["speed_verdict"] == "faster",
            "x smaller (row)": base["size_bytes"] / r["size_bytes"],
            "x smaller (files)": os.path.getsize(Path(base["artifact"]) / "model.onnx")
            / os.path.getsize(shipped),
            "recommended": r["key"] == rec.key,
        })  # fmt: skip
    print(f"\nheadline: {head.text}\n          {head.detail}")
    return pd.DataFrame(rows)


def main() -> None:
    from optim.build import Settings
    from optim.sweep import grid

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_cnn,mobilenet_v3")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    os.environ["OPTIM_DB_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='optim-bench-')}/runs.db"
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 44)
    settings = Settings(rounds=args.rounds)
    plans = grid(bits=(2, 4, 8, 16, 32), sparsity=(0.0, 0.5, 0.9))
    for name in args.models.split(","):
        df = run_twice(name, plans, settings)
        print(
            f"\n{name}: the same {len(df)}-config grid, run twice (speed-up = baseline / config)"
        )
        print(df.drop(columns=["model"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"  intervals overlap: {int(df['overlap'].sum())} of {len(df)}; configs running "
              f"the baseline's graph called faster/slower: {int(df['same-graph claim'].sum())}")  # fmt: skip
    print("\nthe old headline case: digits_cnn, bits 4,8,32 x sparsity 0,0.5")
    print(headline_case(settings).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
