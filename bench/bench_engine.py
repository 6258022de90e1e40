"""Engine benchmarks (issue: the optim engine). Prints three tables:

(a) ResNet-18 sample at batch 1, 1 thread: the int8 artifact vs ORT fp32 vs torch eager fp32
    (target: int8 >= 3.0x faster than ORT fp32);
(b) for each sample model, the smallest artifact within 99 % of baseline accuracy and its
    compression vs the fp32 ONNX file (target: >= 10x on the CNN samples);
(c) wall time of the default CLI sweep (>= 30 configs) on the small CNN (target: <= 60 s).

Usage: python bench/bench_engine.py [--models digits_cnn,resnet18,...] [--skip-a] [--skip-c]
Runs in a temporary OPTIM_HOME for the run store (weights caches are reused).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_a(threads: int = 1) -> pd.DataFrame:
    import torch

    from optim.build import Settings, evaluate, time_rows
    from optim.sources import sample_source
    from optim.techniques import Int8

    source = sample_source("resnet18")
    settings = Settings(threads=threads, min_seconds=3.0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        fp32, pred = evaluate(source, (), Path(d) / "fp32", settings, None)
        for cal in ("minmax", "percentile"):
            q, _ = evaluate(source, (Int8(calibration=cal),), Path(d) / cal, settings, pred)
            rows.append(q)
        fp32, *rows = (r.to_dict() for r in time_rows([fp32, *rows], settings, source.example))
    torch.set_num_threads(threads)
    model = source.build()
    x = torch.from_numpy(source.example.copy())
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        times = []
        start = time.perf_counter()
        while len(times) < 50 or time.perf_counter() - start < 3.0:
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    eager = float(np.percentile(times, 50))
    table = [{"runtime": "torch eager fp32", "p50 ms": eager, "p90 ms": float(np.percentile(times, 90)),
              "accuracy": fp32["accuracy"], "size": "-"}]  # fmt: skip
    for r in [fp32, *rows]:
        table.append({"runtime": f"ORT {r['precision']} ({r['label']})", "p50 ms": r["latency_p50_ms"],
                      "p90 ms": r["latency_p90_ms"], "accuracy": r["accuracy"], "size": r["size_bytes"]})  # fmt: skip
    df = pd.DataFrame(table)
    df["x vs ORT fp32 (paired)"] = [np.nan] + [1.0] + [r["speedup"] for r in rows]
    df["x vs torch eager"] = eager / df["p50 ms"]
    return df


def bench_b(models: list[str]) -> pd.DataFrame:
    from optim import frontier as fr
    from optim.store import Store
    from optim.sweep import Settings, grid, sweep

    rows = []
    for name in models:
        t0 = time.perf_counter()
        plans = grid(bits=(2, 3, 4, 5, 6, 8, 16, 32), sparsity=(0.0, 0.5, 0.75, 0.9))
        plans += grid(bits=(4, 8), sparsity=(0.25, 0.5), structured=True)
        store = Store()
        run_id = sweep(name, plans, Settings(min_seconds=0.3), store)
        df = store.results(run_id)
        df = df[df["accuracy"].notna()].astype(
            {"accuracy": float, "size_bytes": float, "latency_p50_ms": float}
        )
        base = df[df["is_baseline"]].iloc[0]
        rec = fr.recommend(df.reset_index(drop=True), fr.Constraints(floor=0.99, relative=True))
        best = df[df["key"] == rec.key].iloc[0]
        rows.append({
            "model": name, "configs": len(df), "baseline acc": base["accuracy"],
            "fp32 .onnx bytes": int(base["size_bytes"]), "smallest >= 99% config": best["label"],
            "acc": best["accuracy"], "bytes": int(best["size_bytes"]),
            "x smaller vs fp32 file": base["size_bytes"] / best["size_bytes"],
            "sweep s": time.perf_counter() - t0,
        })  # fmt: skip
    return pd.DataFrame(rows)


def bench_c() -> pd.DataFrame:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "optim", "sweep", "--model", "digits_cnn"],
                         cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())  # fmt: skip
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    n = sum(1 for line in out.stdout.splitlines()[1:] if line.strip())
    return pd.DataFrame([{"sweep": "default grid, digits_cnn, CLI", "configs": n,
                          "wall s (incl. python start-up)": wall, "cores": os.cpu_count()}])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_cnn,cancer_mlp,digits_vit,mobilenet_v3,resnet18")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-c", action="store_true")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="optim-bench-")
    os.environ["OPTIM_DB_URL"] = f"sqlite:///{home}/runs.db"
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    if not args.skip_c:
        print("\n(c) default sweep wall time (target <= 60 s on 2 cores)")
        print(bench_c().to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if not args.skip_a:
        print("\n(a) ResNet-18, batch 1, 1 thread (target int8 >= 3.0x vs ORT fp32)")
        print(bench_a().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n(b) smallest artifact within 99 % of baseline accuracy (target >= 10x on CNNs)")
    print(
        bench_b(args.models.split(",")).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )


if __name__ == "__main__":
    main()
