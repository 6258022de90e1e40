"""int8 side by side on the same fp32 ONNX and data: our int8 auto vs ONNX Runtime's
``quantize_static`` defaults vs NNCF's ``nncf.quantize`` defaults, then the accuracy-aware
fallback curve of mobilenet_v3 to a floor.

NNCF runs in a scratch venv the bench creates (``--nncf-venv``, default /tmp/nncf-venv: python -m
venv + pip install nncf and this project's onnx / onnxruntime versions), never in the project's;
it writes its quantized .onnx there, through a subprocess. All files of a model are then timed
interleaved in this process (optim.measure.time_interleaved, the fp32 file in every round), and
scored on the test split (never used for calibration).

Usage: PYTHONPATH=. python bench/bench_int8.py [--models resnet18,mobilenet_v3,corpus-mobilenet,
    corpus-shufflenet] [--floor 0.99] [--rounds 20] [--seconds 2]
(resnet18 trains ~3 min on first use if not in ~/.optim/weights; the placement search takes a
couple of minutes per model on 2 busy cores and is cached under OPTIM_HOME.)
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
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optim import measure, metrics, scenarios  # noqa: E402
from optim.build import build  # noqa: E402
from optim.fallback import fallback_plans  # noqa: E402
from optim.sources import get_source  # noqa: E402
from optim.techniques import Int8Auto  # noqa: E402
from optim.techniques._ort import ArrayReader, input_name, quiet  # noqa: E402

CORPUS = {
    "corpus-mobilenet": "mobilenet_v3 opset 11, Constant weights, BN unfolded",
    "corpus-shufflenet": "shufflenet_v2 opset 13, dynamic batch/H/W",
    "corpus-cnn": "CNN with external data",
    "corpus-transformer": "transformer encoder",
}

NNCF_SCRIPT = """
import sys, numpy as np, onnx, nncf
model = onnx.load(sys.argv[1])
with np.load(sys.argv[2]) as z:
    x = z["x"]
name = sys.argv[4]
data = nncf.Dataset([{name: x[i:i + 1]} for i in range(len(x))])
onnx.save(nncf.quantize(model, data), sys.argv[3])
print(nncf.__version__)
"""


def nncf_python(venv: Path) -> Path:
    """The scratch venv's python, created with NNCF on first use (never the project's venv)."""
    py = venv / "bin" / "python"
    if not (py.is_file() and subprocess.run([py, "-c", "import nncf"]).returncode == 0):
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pins = [f"onnx=={onnx.__version__}", f"onnxruntime=={ort.__version__}"]
        subprocess.run([py, "-m", "pip", "install", "-q", "nncf", *pins], check=True)
    return py


def source_of(name: str, work: Path):
    if name not in CORPUS:
        return get_source(name)
    from tests.corpus import CORPUS as BUILDERS

    builder, _ = BUILDERS[CORPUS[name]]
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "data.npz", **builder(d))
    return get_source(f"{d}/model.onnx:{d}/data.npz")


def ort_defaults(fp32: Path, out: Path, source) -> None:
    """``quantize_static`` with every option at its default (QDQ, S8S8, per-tensor, MinMax)."""
    from onnxruntime.quantization import quantize_static

    model = onnx.load(fp32)
    with quiet():
        quantize_static(fp32, out, ArrayReader(input_name(model), source.splits["calib"].x))


def nncf_defaults(py: Path, fp32: Path, out: Path, source) -> str:
    x = source.splits["calib"].x
    npz = out.with_suffix(".calib.npz")
    np.savez(npz, x=x)
    name = input_name(onnx.load(fp32))
    done = subprocess.run([py, "-c", NNCF_SCRIPT, fp32, npz, out, name], capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"nncf failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip().splitlines()[-1]


def score(path: Path, source, base_out):
    sess = measure.session(path)
    test = source.splits["test"]
    out = measure.predict(sess, test.x, output=source.output)
    return metrics.score(out, base_out, test.y, source.metric), out


def compare(name: str, work: Path, py: Path, args) -> list[dict]:
    source = source_of(name, work)
    d = work / f"files-{name}"
    d.mkdir(parents=True, exist_ok=True)
    graph, _ = build(source, ())
    files = {"fp32": d / "fp32.onnx"}
    onnx.save(graph.model, files["fp32"])
    t0 = time.perf_counter()
    ours = build(source, (Int8Auto(),))[0]
    search_s = time.perf_counter() - t0
    files["int8 auto (ours)"] = d / "auto.onnx"
    onnx.save(ours.model, files["int8 auto (ours)"])
    files["ORT quantize_static defaults"] = d / "ort.onnx"
    ort_defaults(files["fp32"], files["ORT quantize_static defaults"], source)
    files["NNCF nncf.quantize defaults"] = d / "nncf.onnx"
    version = nncf_defaults(py, files["fp32"], files["NNCF nncf.quantize defaults"], source)
    steps = []
    if name in args.fallback.split(",") and args.floor:
        for (cfg,) in fallback_plans(source, args.floor):
            key = f"fallback {100 * args.floor:g}% step {cfg.step}"
            step = build(source, (cfg,))[0]
            steps.append((key, step.precision))
            onnx.save(step.model, d / f"step{cfg.step}.onnx")
            files[key] = d / f"step{cfg.step}.onnx"
    base_scores, base_out = score(files["fp32"], source, None)
    times = measure.time_interleaved(files, source.example, "fp32", threads=1,
                                     rounds=args.rounds, min_seconds=args.seconds)  # fmt: skip
    rows = []
    for key, path in files.items():
        s = base_scores if key == "fp32" else score(path, source, base_out)[0]
        t = times[key]
        rows.append({"model": name, "config": key, "speedup": t.speedup, "low": t.speedup_low,
                     "high": t.speedup_high, "verdict": t.verdict, "p50": t.p50_ms,
                     "acc": s["accuracy"], "acc_low": s["acc_low"], "acc_high": s["acc_high"],
                     "metric": s["metric"], "size": os.path.getsize(path)})  # fmt: skip
    if args.scenarios:
        scenario_table(name, {k: v for k, v in files.items() if "fallback" not in k}, source, args)
    print(f"\n## {name}  (search {search_s:.0f} s; NNCF {version}; load {_load()})")
    print(f"int8 auto: {ours.precision}")
    for key, note in steps:
        print(f"{key}: {note}")
    return rows


def scenario_table(name: str, files: dict, source, args) -> None:
    """The same files timed per (threads, batch) scenario: speed-up, throughput, flips."""
    grid = scenarios.grid(threads=(1, 0), batches=(1, 8, 32))
    df = scenarios.time_scenarios(files, source.splits["test"].x, "fp32", grid,
                                  rounds=args.scenario_rounds, min_seconds=args.seconds / 2)  # fmt: skip
    print(f"\n### {name}: latency scenarios (each file built once, timed per scenario; load "
          f"{_load()})\n")  # fmt: skip
    print("| scenario | config | speed-up vs fp32 [95 % CI] | verdict | p50 ms | items/s |")
    print("|---|---|---|---|---|---|")
    for r in df.itertuples():
        print(f"| {r.scenario} | {r.key} | {r.speedup:.2f}x [{r.speedup_low:.2f}, "
              f"{r.speedup_high:.2f}] | {r.speed_verdict} | {r.p50_ms:.3f} | "
              f"{r.items_per_s:,.0f} |")  # fmt: skip
    flipped = scenarios.flips(df)
    print(f"\nverdict flips between scenarios: {flipped or 'none'}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(rows: list[dict]) -> None:
    print("\n| model | config | speed-up vs fp32 [95 % CI] | verdict | p50 ms | accuracy [95 % CI] "
          "| size |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['config']} | {r['speedup']:.2f}x [{r['low']:.2f}, "
              f"{r['high']:.2f}] | {r['verdict']} | {r['p50']:.3f} | {100 * r['acc']:.1f} % "
              f"[{100 * r['acc_low']:.1f}, {100 * r['acc_high']:.1f}] ({r['metric']}) | "
              f"{r['size'] / 1e6:.2f} MB |")  # fmt: skip


def print_floor(rows: list[dict], floor: float, model: str) -> None:
    mb = [r for r in rows if r["model"] == model]
    if not mb:
        return
    base = next(r for r in mb if r["config"] == "fp32")
    ok = [r for r in mb if r["acc"] >= floor * base["acc"]]
    # "faster" only beyond noise: a config within noise of fp32 counts as fp32's speed
    speed = {id(r): r["speedup"] if r["verdict"] in ("faster", "slower") else 1.0 for r in ok}
    best = max(ok, key=lambda r: (speed[id(r)], r["acc"]))
    print(f"\n{model}, floor {100 * floor:g} % of fp32's test accuracy "
          f"({100 * floor * base['acc']:.1f} %): fastest config meeting it: {best['config']} "
          f"({best['speedup']:.2f}x [{best['low']:.2f}, {best['high']:.2f}], {best['verdict']}; "
          f"{100 * best['acc']:.1f} %)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,mobilenet_v3,corpus-mobilenet,corpus-shufflenet")
    p.add_argument("--floor", type=float, default=0.99)
    p.add_argument("--fallback", default="mobilenet_v3", help="models whose fallback curve runs")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per file in all")
    p.add_argument(
        "--scenarios",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time threads (1, all) x batch (1, 8, 32)",
    )
    p.add_argument("--scenario-rounds", type=int, default=6)
    p.add_argument("--nncf-venv", type=Path, default=Path("/tmp/nncf-venv"))
    args = p.parse_args()
    py = nncf_python(args.nncf_venv)
    cpu = measure.cpu_info()
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores, flags {cpu['flags']}); "
          f"{measure.BACKEND}; 1 intra-op thread; load at start {_load()}")  # fmt: skip
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as work:
        for name in args.models.split(","):
            rows += compare(name, Path(work), py, args)
            print_table([r for r in rows if r["model"] == name])
    print("\n# all models")
    print_table(rows)
    for model in args.fallback.split(","):
        print_floor(rows, args.floor, model)
    print(f"\nload at end {_load()}")


if __name__ == "__main__":
    main()
