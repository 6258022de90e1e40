"""What ships, measured: the bytes of each sample's shipped ``.onnx`` at fp32, fp16, int8, int4,
3-bit and int2, against the fp32 file (targets for models with >= 50k parameters: int4 >= 6x,
int2 >= 10x smaller), its zstd download, the peak memory of a fresh process running it, and
proof that it loads in a Python that cannot import optim and reproduces the measured outputs
exactly on the whole test split.

Usage: python bench/bench_artifact.py [--models digits_cnn,resnet18,...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALONE = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
y = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 128]})[0]
                    for i in range(0, len(x), 128)])
np.save(sys.argv[3], y)
print("optim" in sys.modules)
"""


def alone(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of ``path`` in ``python -I`` from ``/`` (optim is not importable there)."""
    np.save(path.with_name("x.npy"), x)
    out = subprocess.run(
        [sys.executable, "-I", "-c", ALONE, str(path), str(path.with_name("x.npy")),
         str(path.with_name("y.npy"))], capture_output=True, text=True, cwd="/", check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "False"
    return np.load(path.with_name("y.npy"))


def main() -> None:
    from optim import measure
    from optim.artifact import write_artifact
    from optim.build import build
    from optim.sources import sample_source
    from optim.techniques import Int8, Quantize

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits_cnn,digits_vit,mobilenet_v3,resnet18,cancer_mlp")
    args = ap.parse_args()
    configs = {"fp32": (), "fp16": (Quantize(16),), "int8 static": (Int8(),),
               "int8 w": (Quantize(8),), "int4 w": (Quantize(4),), "3-bit w": (Quantize(3),),
               "int2 w": (Quantize(2),)}  # fmt: skip
    rows = []
    for name in args.models.split(","):
        source = sample_source(name)
        x = source.splits["test"].x
        with tempfile.TemporaryDirectory() as d:
            fp32 = None
            for label, plan in configs.items():
                graph, _ = build(source, plan)
                w = write_artifact(graph, Path(d) / label)
                path = Path(d) / label / "model.onnx"
                measured = measure.predict(measure.session(path), x)
                same = np.array_equal(alone(path, x), measured)
                rss, _ = measure.run_alone(path, source.example)
                fp32 = fp32 or w
                rows.append({
                    "model": name, "params": w.stored.params, "config": label,
                    ".onnx bytes": w.size_bytes, "x smaller": fp32.size_bytes / w.size_bytes,
                    ".zst bytes": w.download_bytes or w.size_bytes,
                    "peak RSS MB": rss / 1e6, "no-optim run == measured": same,
                    "stored": str(w.stored),
                })  # fmt: skip
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 70)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\ntargets (>= 50k parameters): int4 >= 6x, int2 >= 10x smaller than the fp32 .onnx")
    for name, g in df.groupby("model", sort=False):
        r = g.set_index("config")["x smaller"]
        big = g["params"].iloc[0] >= 50_000
        overhead = g.set_index("config").loc["int2 w", ".onnx bytes"] - g["params"].iloc[0] / 4
        verdict = ("met" if r["int4 w"] >= 6 and r["int2 w"] >= 10 else "MISSED") if big else (
            f"n/a (< 50k parameters; int2 file is {overhead:,.0f} B above 2 bits/parameter: "
            "graph, scales, biases)")  # fmt: skip
        print(f"  {name}: int4 {r['int4 w']:.1f}x, int2 {r['int2 w']:.1f}x -> {verdict}")


if __name__ == "__main__":
    main()
