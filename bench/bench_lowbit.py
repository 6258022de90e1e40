"""Low-bit accuracy (issue #10, "Must show"): int3 and int4 weights on digits_cnn, mobilenet_v3
and digits_vit, plain round-to-nearest vs each PTQ algorithm that recovers accuracy without
training, side by side at the same file size.

Every config is built into the standard ``model.onnx`` that ships (:func:`optim.build.evaluate`)
and measured from that file on the held-out test split: top-1 with its 95 % bootstrap interval,
the file's bytes, and the paired difference to plain rounding at the same bits (McNemar's p).
Calibration (bias means, GPTQ Hessians, SmoothQuant ranges) reads the calib split only. A second
table puts SmoothQuant where it acts, before int8 static (weights and activations) on the ViT.

Usage: python bench/bench_lowbit.py [--models digits_cnn,mobilenet_v3,digits_vit] [--bits 3,4]
(about 10 minutes on 2 busy cores; GPTQ on mobilenet_v3 is most of it)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optim import applicable, metrics  # noqa: E402
from optim import plan as plans  # noqa: E402
from optim.build import Settings, evaluate, torch_graph  # noqa: E402
from optim.sources import sample_source, source_spec  # noqa: E402
from optim.techniques import (  # noqa: E402
    GPTQ,
    BiasCorrect,
    Equalize,
    Int8,
    Quantize,
    SmoothQuant,
)
from optim.techniques.equalize import pairs  # noqa: E402
from optim.techniques.smoothquant import groups  # noqa: E402

METHODS = {  # column -> plan at ``bits``
    "plain rounding": lambda b: (Quantize(b),),
    "bias corr": lambda b: (BiasCorrect(b),),
    "GPTQ": lambda b: (GPTQ(b),),
    "CLE + rounding": lambda b: (Equalize(), Quantize(b)),
    "CLE + bias corr": lambda b: (Equalize(), BiasCorrect(b)),
    "SmoothQuant + rounding": lambda b: (SmoothQuant(), Quantize(b)),
}


def cell(row, outputs, plain_out, y, ref: str = "plain") -> str:
    """``acc [low, high] bytes``, and the paired change vs ``ref`` (plain rounding) with
    McNemar's p."""
    text = f"{row.accuracy:.1%} [{row.acc_low:.1%}, {row.acc_high:.1%}] {row.size_bytes:,} B"
    if plain_out is not None:
        s = metrics.score(outputs, plain_out, y, "top1")
        text += f"; {100 * s['acc_delta']:+.1f} pt vs {ref}, p={s['acc_p']:.2g}"
    return text


def refusal(source, plan: tuple) -> str | None:
    """Why ``plan`` cannot run on ``source``: the up-front check, and for a torch source (whose
    graph is known once exported) whether Equalize/SmoothQuant find anything to rescale."""
    why = applicable.reason(plan, source)
    graph, _ = torch_graph(source_spec(source), plans.key(()))
    if why is None and isinstance(plan[0], Equalize) and not pairs(graph.model):
        why = "no ReLU-joined layer pair"
    if why is None and isinstance(plan[0], SmoothQuant) and not groups(graph.model):
        why = "no LayerNorm-fed Linear layers"
    return why


def lowbit(name: str, bits: list[int], out: Path, settings: Settings) -> dict:
    source = sample_source(name)
    y = source.splits["test"].y
    base, base_out = evaluate(source, (), out / name / "fp32", settings, None)
    print(f"\n## {name}: fp32 {base.accuracy:.1%} [{base.acc_low:.1%}, {base.acc_high:.1%}], "
          f"{base.size_bytes:,} B, test n={base.n_test}", flush=True)  # fmt: skip
    table = {}
    for b in bits:
        plain_out = None
        for col, make in METHODS.items():
            plan = make(b)
            why = refusal(source, plan)
            if why is not None:
                table[b, col] = f"n/a ({why.split(': it needs ')[-1]})"
                continue
            t0 = time.perf_counter()
            row, outputs = evaluate(source, plan, out / name / f"{b}-{col}", settings, base_out)
            table[b, col] = cell(row, outputs, plain_out, y)
            table[b, col, "acc"] = row.accuracy
            table[b, col, "precision"] = row.precision
            if col == "plain rounding":
                plain_out = outputs
            print(f"  int{b} {col:<24} {table[b, col]}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    return {"base": base, "table": table}


def print_table(results: dict, bits: list[int]) -> None:
    print("\n| model | bits | " + " | ".join(METHODS) + " |")
    print("|---" * (len(METHODS) + 2) + "|")
    for name, res in results.items():
        for b in bits:
            cells = [res["table"].get((b, c), "") for c in METHODS]
            print(f"| {name} | int{b} | " + " | ".join(cells) + " |")
    for name, res in results.items():
        fp32 = res["base"].accuracy
        for b in bits:
            plain = res["table"].get((b, "plain rounding", "acc"))
            if plain is None or fp32 - plain <= 0:
                print(f"{name} int{b}: plain rounding is not below fp32: no gap to close")
                continue
            parts = [
                f"{c} {(res['table'][b, c, 'acc'] - plain) / (fp32 - plain):+.0%}"
                for c in METHODS
                if c != "plain rounding" and (b, c, "acc") in res["table"]
            ]
            print(f"{name} int{b}: gap fp32 - plain = {100 * (fp32 - plain):.1f} points; closed: "
                  + ", ".join(parts))  # fmt: skip


def smoothquant_int8(out: Path, settings: Settings) -> None:
    source = sample_source("digits_vit")
    _, base_out = evaluate(source, (), out / "sq" / "fp32", settings, None)
    y = source.splits["test"].y
    print("\n## digits_vit, int8 static (weights and activations)")
    plain_out = None
    for plan in [(Int8(),), (SmoothQuant(), Int8()), (SmoothQuant(0.75), Int8())]:
        row, outputs = evaluate(source, plan, out / "sq" / plans.label(plan), settings, base_out)
        print(
            f"  {plans.label(plan):<34} {cell(row, outputs, plain_out, y, 'int8')}  [{row.precision}]"
        )
        plain_out = outputs if plain_out is None else plain_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits_cnn,mobilenet_v3,digits_vit")
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--skip-int8", action="store_true", help="skip the SmoothQuant + int8 table")
    args = ap.parse_args()
    bits = [int(b) for b in args.bits.split(",")]
    settings = Settings(min_seconds=0.05, rounds=2)  # accuracy and size only: no timing here
    with tempfile.TemporaryDirectory(prefix="bench-lowbit-") as d:
        results = {m: lowbit(m, bits, Path(d), settings) for m in args.models.split(",")}
        print_table(results, bits)
        vit = results.get("digits_vit")
        if vit:
            print("digits_vit precision (int3 GPTQ):", vit["table"].get((3, "GPTQ", "precision")))
        if not args.skip_int8:
            smoothquant_int8(Path(d), settings)


if __name__ == "__main__":
    main()
