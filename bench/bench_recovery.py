"""Recovery benchmarks (issue: beyond two knobs). Prints two tables:

(a) for the CNN samples, the smallest artifact within 99 % of baseline accuracy when plans may
    recover accuracy by training (QAT, gradual pruning + fine-tuning, structured pruning +
    fine-tuning, distillation), and its compression vs the fp32 ONNX file (target >= 25x);
(b) on the ResNet-18 sample, the fastest artifact within 99 % of baseline accuracy, vs ORT fp32 at
    1 thread (target >= 4x: int8 alone tops out near 4x, so structure must shrink too).

Usage: python bench/bench_recovery.py [--models digits_cnn,mobilenet_v3,resnet18] [--skip-b]
(about 25 minutes on 2 cores; students of the 64x64 CNNs train for minutes each)
Every row is a real artifact measured like any sweep row (test split never used for training).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optim import frontier as fr  # noqa: E402
from optim.store import Store  # noqa: E402
from optim.sweep import Settings, sweep  # noqa: E402
from optim.techniques import (  # noqa: E402
    QAT,
    Distill,
    FineTune,
    GradualPrune,
    Int8,
    Prune,
    Quantize,
    StructuredPrune,
)


def small_plans(name: str) -> list[tuple]:
    """Candidates for the smallest artifact: recovery-trained sub-8-bit weights, pruning, and
    students of the model's own architecture."""
    plans: list[tuple] = [()]
    if name in ("mobilenet_v3", "resnet18"):  # 64x64 inputs: training is minutes, keep it lean
        for w in (0.5, 0.35, 0.25):
            plans += [(Distill(w), QAT(4), Quantize(4)), (Distill(w), QAT(3), Quantize(3))]
        for s in (0.5, 0.75):
            plans.append((StructuredPrune(s), FineTune(5), QAT(4), Quantize(4)))
        return plans
    for bits in (2, 3, 4):
        plans.append((QAT(bits), Quantize(bits)))
        for s in (0.5, 0.75, 0.9):
            # the graph-stage Prune(s) marks exactly the zeros GradualPrune left (idempotent)
            plans.append((GradualPrune(s), Prune(s), Quantize(bits)))
    for s in (0.5, 0.75):
        plans.append((StructuredPrune(s), FineTune(5), QAT(3), Quantize(3)))
    for w in (0.5, 0.25):
        plans.append((Distill(w), QAT(3), Quantize(3)))
    return plans


def fast_plans() -> list[tuple]:
    plans: list[tuple] = [(), (Int8(),)]
    for s in (0.25, 0.5, 0.75):
        plans.append((StructuredPrune(s), FineTune(3), Int8()))
    for w in (0.5, 0.25):
        plans.append((Distill(w), Int8()))
    return plans


def best(name: str, plans: list[tuple], prefer: str) -> tuple[pd.Series, pd.Series, float, int]:
    t0 = time.perf_counter()
    store = Store()
    run_id = sweep(name, plans, Settings(min_seconds=1.0), store)
    df = store.results(run_id)
    failed = int(df["accuracy"].isna().sum())
    df = df[df["accuracy"].notna()].reset_index(drop=True)
    df = df.astype({"accuracy": float, "size_bytes": float, "latency_p50_ms": float})
    rec = fr.recommend(df, fr.Constraints(floor=0.99, relative=True, prefer=prefer))
    return (df[df["is_baseline"]].iloc[0], df[df["key"] == rec.key].iloc[0],
            time.perf_counter() - t0, failed)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_cnn,mobilenet_v3,resnet18")
    ap.add_argument("--skip-b", action="store_true")
    args = ap.parse_args()
    os.environ["OPTIM_DB_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='optim-bench-')}/runs.db"
    pd.set_option("display.width", 220)
    pd.set_option("display.max_colwidth", 70)
    rows = []
    for name in args.models.split(","):
        base, pick, secs, failed = best(name, small_plans(name), "size")
        rows.append({"model": name, "baseline acc": base["accuracy"], "smallest >= 99 %": pick["label"],
                     "acc": pick["accuracy"], "bytes": int(pick["size_bytes"]),
                     "x smaller vs fp32 .onnx": base["size_bytes"] / pick["size_bytes"],
                     "failed configs": failed, "wall s": secs})  # fmt: skip
    print(
        "\n(a) smallest artifact within 99 % of baseline, with recovery training (target >= 25x)"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not args.skip_b:
        base, pick, secs, failed = best("resnet18", fast_plans(), "latency")
        print("\n(b) ResNet-18: fastest artifact within 99 % of baseline, 1 thread (target >= 4x)")
        print(pd.DataFrame([{"baseline p50 ms": base["latency_p50_ms"], "fastest >= 99 %": pick["label"],
                             "acc": pick["accuracy"], "p50 ms": pick["latency_p50_ms"],
                             "x faster vs ORT fp32": base["latency_p50_ms"] / pick["latency_p50_ms"],
                             "failed configs": failed, "wall s": secs}]).to_string(index=False))  # fmt: skip


if __name__ == "__main__":
    main()
