"""``python -m optim``: models, profile, sweep, runs, frontier, export.

Every bad input ends in one line on stderr (``optim: error: ...``) and exit code 2, before
anything is written.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from optim import frontier as fr
from optim import plan as plans
from optim import sweep as sw
from optim.artifact import write_atomic
from optim.store import Store

BITS = [2, 3, 4, 5, 6, 8, 16, 32]  # the sweep's default grid: every width worth a row
SPARSITY = [0.0, 0.5, 0.75, 0.9]
GRID_FLAGS = {  # flags that only change the grid's configs
    "--structured": lambda a: a.structured,
    "--order": lambda a: a.order != "prune-first",
    "--int8": lambda a: a.int8 != "static",
    "--asymmetric": lambda a: a.asymmetric,
    "--granularity": lambda a: a.granularity != "channel",
}
MODEL_HELP = (
    "sample name, a model of optim.toml, module:callable (with --weights, --data), or "
    "path/model.onnx:path/data.npz"
)
TABLE_COLUMNS = [
    "label",
    "accuracy",
    "acc_low",
    "acc_high",
    "size_bytes",
    "latency_p50_ms",
    "precision",
]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        print(f"optim: error: {message} (see `python -m optim {self.prog.split()[-1]} --help`)",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optim", description="Measure what each optimization buys and costs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("models", help="list the models: samples, the project file's, uploaded")
    pr = sub.add_parser("profile", help="params, FLOPs, baseline figures and a per-layer table")
    pr.add_argument("--model", required=True)
    pr.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("sweep", help="measure a grid of configs")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--bits", type=_ints,
                   help="2-8 packed weights (8 = int8 executed), 16 fp16, 32 fp32 "
                        f"(default {','.join(map(str, BITS))}; none with only --plan)")  # fmt: skip
    s.add_argument("--sparsity", type=_floats,
                   help=f"default {','.join(map(str, SPARSITY))} (none with only --plan)")  # fmt: skip
    s.add_argument(
        "--structured", action="store_true", help="remove channels instead of zeroing weights"
    )
    s.add_argument("--granularity", default="channel", help="channel, tensor or channel,tensor")
    s.add_argument(
        "--int8", default="static", choices=sw.INT8_MODES, help="how 8-bit configs execute"
    )
    s.add_argument("--asymmetric", action="store_true")
    s.add_argument(
        "--order", default="prune-first", metavar="ORDERS",
        help="prune-first, quantize-first or both (comma-separated): a sweep axis",
    )  # fmt: skip
    s.add_argument(
        "--distill", type=_floats, default=[], metavar="WIDTHS",
        help="also distill students of these widths (e.g. 0.5,0.25) and sweep each like the model",
    )  # fmt: skip
    s.add_argument(
        "--keep-8bit", type=_ints, default=[], metavar="K",
        help="mixed precision: also each sub-8-bit config with its K layers most sensitive to "
             "3-bit rounding (measured on the calib split) kept at 8 bits, e.g. 1,2",
    )  # fmt: skip
    s.add_argument(
        "--plan", action="append", default=[],
        help="a hand-built plan (JSON or @recipe.json) to measure too; repeatable",
    )  # fmt: skip
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--jobs", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rounds", type=int, default=20,
                   help="interleaved timing rounds (every config, the baseline in each)")  # fmt: skip
    s.add_argument("--resume", type=int, metavar="RUN", help="finish an interrupted run")
    s.add_argument("--out", type=Path, help="write the rows as CSV")
    se = sub.add_parser("search", help="NSGA-II search over per-layer bits and sparsity")
    se.add_argument("--model", help=MODEL_HELP)
    se.add_argument("--trials", type=int, default=30, help="budget of finished trials in all")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--threads", type=int, default=1)
    se.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    se.add_argument("--resume", type=int, metavar="RUN", help="continue a search run")
    sn = sub.add_parser("sensitivity", help="accuracy drop when one layer at a time is changed")
    sn.add_argument("--model", required=True)
    sn.add_argument("--bits", type=_ints, default=[2, 3, 4, 8])
    sn.add_argument("--sparsity", type=_floats, default=[0.5, 0.75, 0.9])
    sn.add_argument("--out", type=Path, help="write the table as CSV")
    tu = sub.add_parser("tune", help="Optuna over a plan's recovery training (lr, epochs, T)")
    tu.add_argument("--model", required=True)
    tu.add_argument("--plan", required=True, help="plan JSON with a FineTune/QAT/Distill step")
    tu.add_argument("--trials", type=int, default=10)
    tu.add_argument("--sampler", choices=("grid", "random", "tpe"), default="tpe")
    tu.add_argument("--seed", type=int, default=0)
    tu.add_argument("--timeout", type=float)
    sub.add_parser("runs", help="list the stored runs")
    f = sub.add_parser("frontier", help="Pareto frontier and recommendation for a run")
    _constraint_args(f)
    rp = sub.add_parser("report", help="one-page decision report of a run (HTML or PDF)")
    _constraint_args(rp)
    rp.add_argument("--on", choices=tuple(fr.FLOOR_ON), default="accuracy",
                    help="what the floor applies to: the mean or the worst class's accuracy")  # fmt: skip
    rp.add_argument("--out", type=Path, required=True, help="report.html or report.pdf")
    b = sub.add_parser("build", help="build and measure one plan (the plan of a JSON recipe)")
    b.add_argument("--model", required=True)
    b.add_argument("--plan", required=True, help="plan JSON, or @recipe.json")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", type=Path, required=True)
    e = sub.add_parser(
        "export", help="write a config's ONNX file, its .zst download and JSON recipe"
    )
    e.add_argument("run", type=int)
    e.add_argument("config", help="row number from the sweep table, or the config label")
    e.add_argument("--out", type=Path, required=True)
    for sp in (pr, s, se, sn, tu, b):  # a `module:callable` --model's files (optim.project)
        sp.add_argument("--weights", type=Path, help="its .safetensors weights")
        sp.add_argument(
            "--data", type=Path, help="its .npz: x_train/y_train, x_calib, x_test/y_test"
        )
    return p


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The rows as a human-readable table (numbers formatted, pareto flag included)."""
    ok = df[df["accuracy"].notna()] if len(df) else df
    out = pd.DataFrame({
        "config": ok["label"],
        "accuracy": [f"{a:.2%} [{lo:.1%}, {hi:.1%}]" for a, lo, hi in zip(ok["accuracy"], ok["acc_low"], ok["acc_high"], strict=False)],
        "vs baseline": [ui_accuracy(r) for r in ok.to_dict("records")],
        "size": [fr_fmt_bytes(v) for v in ok["size_bytes"]],
        "p50 ms": ok["latency_p50_ms"].map(lambda v: f"{v:.3f}"),
        "speed": [ui_speed(r) for r in ok.to_dict("records")],
        "executed": ok["precision"],
        "pareto": pareto_flags(ok),
    })  # fmt: skip
    return out


def ui_accuracy(row: dict) -> str:
    from optim.ui import accuracy_text

    return accuracy_text(row)


def ui_speed(row: dict) -> str:
    from optim.ui import speed_text

    return speed_text(row)


def fr_fmt_bytes(n: float) -> str:
    from optim.charts import fmt_bytes

    return fmt_bytes(n)


def pareto_flags(df: pd.DataFrame) -> list[bool]:
    ok = df[df["accuracy"].notna()]
    if not len(ok):
        return []
    return [
        bool(v)
        for v in fr.frontier(
            ok.astype({"accuracy": float, "size_bytes": float, "latency_p50_ms": float})
        )
    ]


def _constraint_args(p: argparse.ArgumentParser) -> None:
    """A run and the floor and budgets its recommendation is made under (frontier, report)."""
    p.add_argument("run", type=int)
    p.add_argument("--floor", type=float, required=True)
    p.add_argument(
        "--relative", action="store_true", help="floor is a fraction of baseline accuracy"
    )
    p.add_argument("--max-size-mb", type=float)
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--prefer", choices=("size", "latency"), default="size")


def _cmd_models(args, out) -> None:
    from optim.sources import describe, model_names, sample_names, sample_source

    samples = set(sample_names())
    rows = [
        {
            "model": n,
            "kind": "sample" if n in samples else "yours",
            "description": describe(n),
            "input": str(sample_source(n).input_shape) if n in samples else "",
        }
        for n in model_names()
    ]
    print(pd.DataFrame(rows).to_string(index=False), file=out)


def _cmd_profile(args, out) -> None:
    from optim.profile import profile

    prof = profile(args.model, threads=args.threads)
    for k, v in prof.summary.items():
        print(f"{k:>16}: {v}", file=out)
    print(prof.layers.to_string(index=False), file=out)


def _cmd_sweep(args, out) -> None:
    from tqdm import tqdm

    store = Store()
    if args.resume is not None:
        run_id = args.resume
        if "search" in store.run(run_id)["spec"]:  # the dashboard resumes every run this way
            args.model, args.trials, args.seed, args.timeout = None, None, 0, None
            return _cmd_search(args, out)
    else:
        if not args.model:
            raise ValueError("`--model` is required unless `--resume RUN` is given")
        grid = [_read_plan(text) for text in args.plan]
        axes = (args.bits, args.sparsity, args.distill or None, args.keep_8bit or None)
        if not grid or any(a is not None for a in axes):
            grid += _grid(args)
        elif shaping := [f for f, on in GRID_FLAGS.items() if on(args)]:
            raise ValueError(
                f"`{shaping[0]}` shapes the grid, but only `--plan` was given: add `--bits` or "
                "`--sparsity` to sweep a grid beside the plans"
            )
        settings = sw.Settings(
            threads=args.threads, seed=args.seed, jobs=args.jobs, rounds=args.rounds
        )
        if args.out is not None:
            _check_writable(args.out)
        run_id = sw.create(store, args.model, grid, settings)
    total = len(store.run(run_id)["spec"]["plans"])
    print(f"run {run_id}: {total} configs", file=sys.stderr)
    with tqdm(total=total, initial=len(store.keys(run_id)), unit="config", file=sys.stderr) as bar:

        def progress(done: int, total: int, row) -> None:
            bar.n = done
            bar.set_postfix_str("timed" if row is None else row.label[:40])
            bar.refresh()

        sw.execute(store, run_id, progress)
    df = store.results(run_id)
    print(table(df).to_string(index=False), file=out)
    if args.out is not None:
        csv = df.drop(columns=["plan"]).assign(pareto=_pareto_all(df))
        write_atomic(args.out, csv.to_csv(index=False).encode())
        print(f"wrote {args.out}", file=sys.stderr)


def _grid(args) -> list[tuple]:
    """The sweep's grid from its flags (see :func:`optim.sweep.grid`), with mixed precision."""
    grans = [g.strip() for g in args.granularity.split(",") if g.strip()]
    bits = BITS if args.bits is None else args.bits
    sparsity = SPARSITY if args.sparsity is None else args.sparsity
    grid = sw.grid(
        bits, sparsity, args.structured, grans, args.int8, not args.asymmetric,
        students=args.distill, orders=[o.strip() for o in args.order.split(",") if o.strip()],
    )  # fmt: skip
    sub8 = [b for b in bits if 2 <= b < 8]
    if args.keep_8bit and sub8:
        from optim.sensitivity import rank, sensitivity
        from optim.techniques import MixedQuantize, Prune, StructuredPrune

        ranking = tuple(rank(sensitivity(args.model, bits=(3,), sparsities=())))
        for k, s, b, g in itertools.product(args.keep_8bit, sparsity, sub8, grans):
            prune = () if s == 0 else ((StructuredPrune if args.structured else Prune)(s),)
            mixed = MixedQuantize(default_bits=b, keep_8bit=k, sensitivity=ranking, granularity=g)
            grid.append(prune + (mixed,))
    return grid


def _read_plan(text: str) -> tuple:
    """A plan from JSON (a list of steps, or a recipe with a ``plan``) or ``@file``."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise ValueError(f"`--plan` file {text[1:]!r} cannot be read ({e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"`--plan` must be JSON, but got {text[:60]!r} ({e.msg})") from None
    except RecursionError:
        raise ValueError("`--plan` must be a flat list of steps, but it nests too deep") from None
    if isinstance(data, dict) and "plan" not in data:
        raise ValueError(f"a `--plan` recipe must hold a 'plan', but has keys {sorted(data)}")
    return plans.from_json(data["plan"] if isinstance(data, dict) else data)


def _cmd_search(args, out) -> None:
    from tqdm import tqdm

    from optim.search import search

    store = Store()
    kwargs: dict = {}
    if args.resume is not None:
        spec = store.run(args.resume)["spec"]
        if "search" not in spec:
            raise ValueError(f"run {args.resume} must be a search run, but it is a grid sweep")
        model, trials = spec["model"], args.trials or spec["search"].get("trials", 30)
        kwargs["run_id"] = args.resume
    else:
        if not args.model:
            raise ValueError("`--model` is required unless `--resume RUN` is given")
        model, trials = args.model, args.trials
        kwargs["settings"] = sw.Settings(threads=getattr(args, "threads", 1))
    with tqdm(total=trials, unit="trial", file=sys.stderr) as bar:

        def progress(done: int, total: int, row: dict) -> None:
            bar.total, bar.n = total, done
            bar.set_postfix_str(str(row.get("label", ""))[:40])
            bar.refresh()

        run_id = search(model, trials=trials, seed=args.seed, store=store,
                        timeout_s=args.timeout, progress=progress, **kwargs)  # fmt: skip
    print(f"run {run_id}", file=sys.stderr)
    print(table(store.results(run_id)).to_string(index=False), file=out)


def _cmd_sensitivity(args, out) -> None:
    from optim.sensitivity import sensitivity

    df = sensitivity(args.model, bits=args.bits, sparsities=args.sparsity)
    cols = ["layer", "kind", "setting", "accuracy_drop", "params_share", "latency_share"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=out)
    if args.out is not None:
        _check_writable(args.out)
        write_atomic(args.out, df.to_csv(index=False).encode())


def _cmd_tune(args, out) -> None:
    from optim.tune import tune

    plan = _read_plan(args.plan)
    res = tune(args.model, plan, args.trials, args.sampler, args.seed, args.timeout)
    print(res.trials.to_string(index=False), file=out)
    print(f"best (calib accuracy {res.accuracy:.2%}): {plans.label(res.plan)}", file=out)
    print(json.dumps(plans.to_json(res.plan)), file=out)


def _pareto_all(df: pd.DataFrame) -> list[bool]:
    flags = iter(pareto_flags(df))
    return [next(flags) if pd.notna(a) else False for a in df["accuracy"]]


def _check_writable(path: Path) -> None:
    if path.is_dir() or not path.parent.exists():
        raise ValueError(f"`--out` must be a file in an existing folder, but got {str(path)!r}")


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"`--out` must be a folder, but {str(path)!r} is a file")


def _cmd_runs(args, out) -> None:
    runs = Store().runs()
    print(runs[["id", "model", "status", "results", "created"]].to_string(index=False), file=out)


def _cmd_frontier(args, out) -> None:
    df = _ok_rows(Store().results(args.run), args.run)
    cons = fr.Constraints(
        floor=args.floor,
        relative=args.relative,
        max_size_bytes=None if args.max_size_mb is None else args.max_size_mb * 1e6,
        max_latency_ms=args.max_latency_ms,
        prefer=args.prefer,
    )  # a budget of 0 is refused by Constraints, not silently ignored
    rec = fr.recommend(df, cons)
    front = df[fr.frontier(df)]
    print(table(front).drop(columns=["pareto"]).to_string(index=False), file=out)
    if rec.key is None:
        rel = " (relative to baseline)" if args.relative else ""
        raise ValueError(f"nothing meets --floor {args.floor}{rel}: {rec.message}")
    print(rec.message, file=out)


def _cmd_report(args, out) -> None:
    from optim import report, ui

    path = report.check_out(args.out)  # every refusal before the run is read or anything written
    cons = fr.Constraints(
        floor=args.floor,
        relative=args.relative,
        max_size_bytes=None if args.max_size_mb is None else args.max_size_mb * 1e6,
        max_latency_ms=args.max_latency_ms,
        prefer=args.prefer,
        on=args.on,
    )
    store = Store()
    run = store.run(args.run)
    rep = report.build_report(run, ui.split_rows(store.results(args.run))[0], cons)
    try:
        n = report.write_report(path, rep)
    except RuntimeError as e:  # chromium failed: one line, like every other refusal
        raise ValueError(str(e)) from None
    print(f"wrote {path} ({n:,} bytes): {report.plain(rep.sentence)}", file=out)


def _ok_rows(df: pd.DataFrame, run_id: int) -> pd.DataFrame:
    if not len(df):
        raise ValueError(f"run {run_id} has no results")
    ok = df[df["accuracy"].notna()].reset_index(drop=True)
    return ok.astype({"accuracy": float, "size_bytes": float, "latency_p50_ms": float})


def _cmd_export(args, out) -> None:
    store = Store()
    run = store.run(args.run)
    df = _ok_rows(store.results(args.run), args.run)
    row = _find(df, args.config)
    _check_folder(args.out)
    files = export(run, row, args.out)
    for f in files:
        print(f, file=out)


def _find(df: pd.DataFrame, config: str) -> pd.Series:
    if config.isdigit():
        i = int(config)
        if not 0 <= i < len(df):
            raise ValueError(f"`0 <= CONFIG < {len(df)}` must hold for a row number, but got {i}")
        return df.iloc[i]
    hits = df[(df["label"] == config) | (df["key"] == config)]
    if not len(hits):
        raise ValueError(f"no config labelled {config!r}; labels: {', '.join(df['label'])}")
    return hits.iloc[0]


SHIPPED = ("model.onnx", "model.onnx.zst")  # the file that runs, and its download when smaller


def export(run: dict, row: pd.Series, out_dir: Path) -> list[Path]:
    """Copy a config's ``model.onnx`` (and ``model.onnx.zst``) to ``out_dir`` and write
    ``recipe.json``."""
    src = Path(row["artifact"])
    if not (src / "model.onnx").is_file():
        raise ValueError(
            f"the model.onnx of {row['label']!r} is gone from {str(src)!r}; re-run the sweep"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in SHIPPED:
        (out_dir / name).unlink(missing_ok=True)  # no stale download beside a new model
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / f".{name}.tmp")
            (out_dir / f".{name}.tmp").replace(out_dir / name)
            files.append(out_dir / name)
    files.append(out_dir / "recipe.json")
    write_atomic(files[-1], json.dumps(recipe(run, row), indent=2).encode())
    return files


def recipe(run: dict, row: pd.Series) -> dict:
    """The JSON recipe: plan, model, settings, measured figures and the command that rebuilds it."""
    plan = row["plan"]
    figures = {k: row[k] for k in ("accuracy", "acc_low", "acc_high", "acc_delta", "acc_p",
                                   "agreement", "size_bytes", "download_bytes", "peak_rss_bytes",
                                   "latency_p50_ms", "latency_p90_ms", "speedup", "speed_verdict",
                                   "precision", "stored", "backend") if k in row}  # fmt: skip
    return {
        "model": run["spec"]["model"],
        "plan": plan,
        "label": row["label"],
        "settings": run["spec"]["settings"],
        "measured": {k: (v.item() if hasattr(v, "item") else v) for k, v in figures.items()},
        "env": run["env"],
        "reproduce": reproduce_command(run["spec"]["model"], plan, run["spec"]["settings"]),
    }


def reproduce_command(model: str, plan: list, settings: dict) -> str:
    """The shell command that rebuilds a config; every argument is quoted (users paste it)."""
    import shlex

    args = ["python", "-m", "optim", "build", "--model", model, "--plan",
            json.dumps(plan, separators=(",", ":")), "--threads", str(settings["threads"]),
            "--seed", str(settings.get("seed", 0))]  # fmt: skip
    return " ".join(shlex.quote(a) for a in args) + " --out DIR"


def _cmd_build(args, out) -> None:
    import tempfile

    from optim.build import time_rows
    from optim.sources import get_source

    plan = _read_plan(args.plan)
    _check_folder(args.out)
    source = get_source(args.model)
    settings = sw.Settings(threads=args.threads, seed=args.seed)
    with tempfile.TemporaryDirectory() as d:
        base, base_pred = sw.evaluate(source, (), Path(d), settings, None)
        row, _ = sw.evaluate(source, plan, args.out, settings, base_pred)
        if plan:
            row = time_rows([base, row], settings, source.example)[1]
        else:
            row = time_rows([row], settings, source.example)[0]
    values = row.to_dict()
    values["vs baseline"], values["speed"] = ui_accuracy(values), ui_speed(values)
    for k in ("label", "accuracy", "acc_low", "acc_high", "vs baseline", "agreement",
              "size_bytes", "download_bytes", "peak_rss_bytes", "latency_p50_ms", "speed",
              "precision", "stored"):  # fmt: skip
        print(f"{k:>15}: {values[k]}", file=out)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


COMMANDS = {"build": _cmd_build, "tune": _cmd_tune, "search": _cmd_search, "sensitivity": _cmd_sensitivity, "models": _cmd_models, "profile": _cmd_profile, "sweep": _cmd_sweep, "runs": _cmd_runs,
            "frontier": _cmd_frontier, "export": _cmd_export, "report": _cmd_report}  # fmt: skip


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, out=None) -> int:
    import signal

    args = parser().parse_args(argv)
    if args.cmd in ("sweep", "search") and threading_main():
        signal.signal(
            signal.SIGTERM, _interrupt
        )  # Cancel in the dashboard: mark the run cancelled
    try:
        if getattr(args, "weights", None) or getattr(args, "data", None):
            from optim.project import spec

            args.model = spec(args.model or "", args.weights, args.data)
        COMMANDS[args.cmd](args, out or sys.stdout)
    except ValueError as e:
        print(f"optim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "optim: interrupted; finished rows are kept (resume with --resume RUN)",
            file=sys.stderr,
        )
        return 130
    return 0
