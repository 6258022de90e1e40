"""``python -m optim``: models, techniques, profile, sweep, search, tune, runs, frontier,
report, build, export. Argument parsing and printing only: the work is done by
:mod:`optim.runs` (a run's life cycle), :mod:`optim.export` and the other modules.

Every bad input ends in one line on stderr (``optim: error: ...``) and exit code 2, before
anything is written; a run with failed configs prints each and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from optim import frontier as fr
from optim import plan as plans
from optim import runs, scenario_runs, scenarios
from optim import sweep as sw
from optim.artifact import write_atomic
from optim.build import EXECUTORS, Settings
from optim.store import Store, run_state

BITS = [2, 3, 4, 5, 6, 8, 16, 32]  # the sweep's default grid: every width worth a row
SPARSITY = [0.0, 0.5, 0.75, 0.9]
GRID_FLAGS = {  # flags that only change the grid's configs
    "--structured": lambda a: a.structured,
    "--order": lambda a: a.order != "prune-first",
    "--int8": lambda a: a.int8 != "auto",
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
    sub.add_parser(
        "techniques", help="every technique with its fields, their ranges, and a --plan example"
    )
    pr = sub.add_parser("profile", help="params, FLOPs, baseline figures and a per-layer table")
    pr.add_argument("--model", required=True)
    pr.add_argument("--threads", type=int, default=1)
    s = sub.add_parser(
        "sweep", help="measure a grid of configs",
        description="Measure a grid of configs and/or hand-built plans. Every technique (LowRank, "
        "QAT, FineTune, GradualPrune, ...) and its fields: `python -m optim techniques`; "
        "each can be given as --plan JSON.",
    )  # fmt: skip
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
        "--int8", default="auto", choices=sw.INT8_MODES, help="how 8-bit configs execute"
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
        help="a hand-built plan (JSON or @recipe.json) to measure too; repeatable; every "
        "technique and an example plan of each: `python -m optim techniques`",
    )  # fmt: skip
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--jobs", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rounds", type=int, default=20,
                   help="interleaved timing rounds (every config, the baseline in each)")  # fmt: skip
    _scenarios_arg(s)
    s.add_argument("--resume", type=int, metavar="RUN",
                   help="finish an interrupted run of any kind (failed configs of the "
                   "environment are built again)")  # fmt: skip
    _executor_arg(s)
    s.add_argument("--out", type=Path, help="write the rows as CSV")
    se = sub.add_parser("search", help="NSGA-II search over per-layer bits and sparsity")
    se.add_argument("--model", help=MODEL_HELP)
    se.add_argument("--trials", type=int, help="budget of finished trials in all (default 30)")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--threads", type=int, default=1)
    se.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    se.add_argument("--resume", type=int, metavar="RUN", help="continue a search run")
    _executor_arg(se)
    _scenarios_arg(se)
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
    _executor_arg(tu)
    ru = sub.add_parser("runs", help="list the stored runs; rename, cancel or delete one")
    rsub = ru.add_subparsers(dest="action")
    rn = rsub.add_parser("rename", help="name a run (and add notes)")
    rn.add_argument("run", type=int)
    rn.add_argument("--name", required=True)
    rn.add_argument("--notes")
    rc = rsub.add_parser("cancel", help="stop a running run, here or on another machine (its "
                         "driver stops at its next heartbeat); finished rows stay")  # fmt: skip
    rc.add_argument("run", type=int)
    rd = rsub.add_parser("delete", help="delete a run's rows and its artifact folder")
    rd.add_argument("run", type=int)
    f = sub.add_parser("frontier", help="Pareto frontier and recommendation for a run")
    _constraint_args(f)
    rp = sub.add_parser("report", help="one-page decision report of a run (HTML or PDF)")
    _constraint_args(rp)
    rp.add_argument("--on", choices=tuple(fr.FLOOR_ON), default="accuracy",
                    help="what the floor applies to: the mean or the worst class's accuracy")  # fmt: skip
    rp.add_argument("--out", type=Path, required=True, help="report.html or report.pdf")
    for cp in (f, rp):
        cp.add_argument("--scenario", help="answer for this latency scenario of the run: its "
                       "label (\"2 threads, batch 8\") or THREADSxBATCH[:LEVEL] (2x8)")  # fmt: skip
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
    if "batch" in ok and (ok["batch"] > 1).any():  # a batched scenario: throughput too
        out.insert(5, "items/s", [scenario_runs.throughput_text(r) for r in ok.to_dict("records")])
    return out


def ui_accuracy(row: dict) -> str:
    from optim.frontier import accuracy_text

    return accuracy_text(row)


def ui_speed(row: dict) -> str:
    from optim.frontier import speed_text

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


def _cmd_sweep(args, out) -> int:
    store = Store()
    if args.resume is not None:
        run_id = args.resume
        store.run(run_id)  # a missing run: one line
    else:
        if not args.model:
            raise ValueError("`--model` is required unless `--resume RUN` is given")
        measured_at = _scenarios(args)  # refused before anything is built
        grid = [_read_plan(text) for text in args.plan]
        axes = (args.bits, args.sparsity, args.distill or None, args.keep_8bit or None)
        if not grid or any(a is not None for a in axes):
            grid += _grid(args)
        elif shaping := [f for f, on in GRID_FLAGS.items() if on(args)]:
            raise ValueError(
                f"`{shaping[0]}` shapes the grid, but only `--plan` was given: add `--bits` or "
                "`--sparsity` to sweep a grid beside the plans"
            )
        settings = Settings(
            threads=args.threads, seed=args.seed, jobs=args.jobs, rounds=args.rounds,
            executor=args.executor or "local",
            scenarios=measured_at,
        )  # fmt: skip
        if args.out is not None:
            _check_writable(args.out)
        run_id = runs.create(store, args.model, grid, settings)
    result = _execute(store, run_id, "config", **_executor(args))
    df = store.results(run_id)
    _print_rows(df, result, out)
    if args.out is not None:
        csv = df.drop(columns=["plan"]).assign(pareto=_pareto_all(df))
        if "scenarios" in csv:  # per-scenario figures: one JSON object per row
            csv["scenarios"] = csv["scenarios"].map(lambda d: json.dumps(d) if d == d else "")
        write_atomic(args.out, csv.to_csv(index=False).encode())
        print(f"wrote {args.out}", file=sys.stderr)
    return 1 if result.failed else 0


def _scenarios_arg(parser) -> None:
    parser.add_argument(
        "--scenarios", metavar="TxB,...",
        help="latency scenarios timed after the run's own timing, each file built once: "
        "THREADSxBATCH[:LEVEL] entries, e.g. 1x1,2x8,0x32 (threads 0 = all cores; LEVEL: ORT "
        "graph optimizations all, extended, basic, disabled)",
    )  # fmt: skip


def _scenarios(args) -> tuple:
    """``--scenarios`` as :class:`optim.build.Settings` axes (ValueError for a bad entry)."""
    return scenarios.parse(args.scenarios) if args.scenarios else ()


def _executor_arg(parser) -> None:
    parser.add_argument(
        "--executor", choices=EXECUTORS,
        help="where configs are built: local processes (default) or a Ray cluster "
        "(OPTIM_RAY_ADDRESS=host:port of its head, else a Ray started on 127.0.0.1 for the "
        "run); on --resume, the run's own unless given",
    )  # fmt: skip


def _executor(args) -> dict:
    """``executor=`` for :func:`optim.runs.execute` when ``--executor`` overrides the run's."""
    if args.executor is None:
        return {}
    return {"executor": runs.executor_of(Settings(executor=args.executor))}


def _execute(store: Store, run_id: int, unit: str, **options):
    """Execute a run with a progress bar on stderr; returns its :class:`~optim.context.Outcome`."""
    from tqdm import tqdm

    from optim.context import planned

    total = planned(store.run(run_id)["spec"])
    print(f"run {run_id}: {runs.summary(store.run(run_id)['spec'])}", file=sys.stderr)
    with tqdm(total=total, unit=unit, file=sys.stderr) as bar:

        def progress(done: int, total: int, row) -> None:
            bar.total, bar.n = total, done
            bar.set_postfix_str("timed" if row is None else row.label[:40])
            bar.refresh()

        return runs.execute(store, run_id, progress, **options)


def _print_rows(df: pd.DataFrame, result, out) -> None:
    """The measured rows as a table, then every failed config with its error, then the count."""
    print(table(df).to_string(index=False), file=out)
    _print_failures(result, out)


def _print_failures(result, out) -> None:
    for row in result.failed:
        print(f"FAILED ({row.error_kind or 'config'}): {row.label}: {row.error}", file=out)
    print(result.sentence, file=out)


def _grid(args) -> list[tuple]:
    """The sweep's grid from its flags (see :func:`optim.sweep.grid`), with mixed precision."""
    grans = [g.strip() for g in args.granularity.split(",") if g.strip()]
    bits = BITS if args.bits is None else args.bits
    sparsity = SPARSITY if args.sparsity is None else args.sparsity
    grid = sw.grid(
        bits, sparsity, args.structured, grans, args.int8, not args.asymmetric,
        students=args.distill, orders=[o.strip() for o in args.order.split(",") if o.strip()],
    )  # fmt: skip
    return sw.with_mixed(args.model, grid, bits, sparsity, args.structured, grans, args.keep_8bit)


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


def _cmd_search(args, out) -> int:
    from optim.search import check_run

    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"`--timeout > 0` must hold, but got --timeout {args.timeout}")
    store = Store()
    if args.resume is not None:
        run_id = args.resume
        check_run(store.run(run_id), None)
    else:
        if not args.model:
            raise ValueError("`--model` is required unless `--resume RUN` is given")
        opts = {"trials": 30 if args.trials is None else args.trials, "seed": args.seed}
        settings = Settings(threads=args.threads, executor=args.executor or "local",
                            scenarios=_scenarios(args))  # fmt: skip
        run_id = runs.create(store, args.model, settings=settings, search=opts)
    result = _execute(store, run_id, "trial", trials=args.trials, timeout_s=args.timeout,
                      **_executor(args))  # fmt: skip
    _print_rows(store.results(run_id), result, out)
    return 1 if result.failed else 0


def _cmd_sensitivity(args, out) -> None:
    from optim.sensitivity import sensitivity

    df = sensitivity(args.model, bits=args.bits, sparsities=args.sparsity)
    cols = ["layer", "kind", "setting", "accuracy_drop", "params_share", "latency_share"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=out)
    if args.out is not None:
        _check_writable(args.out)
        write_atomic(args.out, df.to_csv(index=False).encode())


def _cmd_tune(args, out) -> int:
    from optim.tune import result as tuned

    plan = _read_plan(args.plan)
    store = Store()
    opts = {"plan": plan, "trials": args.trials, "sampler": args.sampler, "seed": args.seed}
    settings = Settings(seed=args.seed, executor=args.executor or "local")
    run_id = runs.create(store, args.model, settings=settings, tune=opts)
    result = _execute(store, run_id, "trial", timeout_s=args.timeout)
    res = tuned(store, run_id)
    print(res.trials.to_string(index=False), file=out)
    print(f"best (calib accuracy {res.accuracy:.2%}): {plans.label(res.plan)}", file=out)
    print(json.dumps(plans.to_json(res.plan)), file=out)
    _print_failures(result, out)
    return 1 if result.failed else 0


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
    store = Store()
    if args.action == "rename":
        runs.rename(store, args.run, name=args.name, notes=args.notes)
        print(f"run {args.run}: {args.name}", file=out)
        return
    if args.action == "cancel":
        runs.cancel(store, args.run)
        print(f"cancelled run {args.run}; its finished rows are kept", file=out)
        return
    if args.action == "delete":
        runs.delete(store, args.run)
        print(f"deleted run {args.run}", file=out)
        return
    df = store.runs()
    if "name" not in df:
        df["name"] = None
    df["status"] = [run_state(r) for r in df.to_dict("records")]
    df["name"] = df["name"].fillna("")
    df["summary"] = [runs.summary(spec) for spec in df["spec"]]
    cols = ["id", "name", "model", "status", "results", "summary", "created"]
    print(df[cols].to_string(index=False), file=out)


def _cmd_techniques(args, out) -> None:
    import dataclasses

    import optim.techniques  # noqa: F401 - registers every technique
    from optim.technique_form import form_fields

    for name, tech in sorted(plans.REGISTRY.items()):
        doc = (tech.config.__doc__ or "").strip().splitlines()[0]
        print(f"{name} ({tech.stage} stage, {tech.family}): {doc}", file=out)
        shown = {f.name for f in form_fields(tech.config)}
        for f in form_fields(tech.config):
            rule = (f" one of {', '.join(map(str, f.choices))}" if f.choices
                    else f" in [{f.low}, {f.high}]" if f.low is not None else "")  # fmt: skip
            opt = " or null" if f.optional else ""
            print(f"  {f.name}: {f.kind}{opt}, default {f.default!r},{rule} {f.help}".rstrip(" ,"),
                  file=out)  # fmt: skip
        for f in dataclasses.fields(tech.config):
            if f.name not in shown:
                print(f"  {f.name}: JSON list/object, {f.metadata.get('help', '')}".rstrip(" ,"),
                      file=out)  # fmt: skip
        example = json.dumps(plans.to_json((tech.config(),)))
        print(f"  example: --plan '{example}'", file=out)


def _in_scenario(df: pd.DataFrame, args) -> pd.DataFrame:
    """``df`` for ``--scenario`` (the run's own timing without it)."""
    return scenario_runs.for_scenario(df, args.scenario) if args.scenario else df


def _print_flips(df: pd.DataFrame, cons: fr.Constraints, out) -> None:
    """The run's scenarios, the pick in each, and the configs whose verdict flips between them."""
    names = scenario_runs.labels(df)
    if len(names) < 2:
        return
    print(f"scenarios: {'; '.join(names)}", file=out)
    print(scenario_runs.picks_line(scenario_runs.picks(df, cons)), file=out)
    lines = scenario_runs.flip_lines(df)
    print("verdict flips between scenarios:" if lines else "no verdict flips between scenarios",
          file=out)  # fmt: skip
    for line in lines:
        print(f"  {line}", file=out)


def _cmd_frontier(args, out) -> None:
    df = _in_scenario(_ok_rows(Store().results(args.run), args.run), args)
    cons = fr.Constraints(
        floor=args.floor,
        relative=args.relative,
        max_size_bytes=None if args.max_size_mb is None else args.max_size_mb * 1e6,
        max_latency_ms=args.max_latency_ms,
        prefer=args.prefer,
    )  # a budget of 0 is refused by Constraints, not silently ignored
    rec = fr.recommend(df, cons)
    front = df[fr.frontier(df)]
    if "scenario" in df:
        print(f"latency measured at {df['scenario'].iloc[0]}", file=out)
    print(table(front).drop(columns=["pareto"]).to_string(index=False), file=out)
    _print_flips(df, cons, out)
    if rec.key is None:
        rel = " (relative to baseline)" if args.relative else ""
        raise ValueError(f"nothing meets --floor {args.floor}{rel}: {rec.message}")
    print(rec.message, file=out)


def _cmd_report(args, out) -> None:
    from optim import report, tables

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
    ok = tables.split_rows(store.results(args.run))[0]
    rep = report.build_report(run, _in_scenario(ok, args), cons)
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
    from optim.export import export

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


def _cmd_build(args, out) -> None:
    from optim.export import rebuild

    plan = _read_plan(args.plan)
    _check_folder(args.out)
    row = rebuild(args.model, plan, args.out, args.threads, args.seed)
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
            "frontier": _cmd_frontier, "export": _cmd_export, "report": _cmd_report,
            "techniques": _cmd_techniques}  # fmt: skip


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, out=None) -> int:
    import signal

    args = parser().parse_args(argv)
    if args.cmd in ("sweep", "search", "tune") and threading_main():
        signal.signal(
            signal.SIGTERM, _interrupt
        )  # Cancel in the dashboard: mark the run cancelled
    try:
        if getattr(args, "weights", None) or getattr(args, "data", None):
            from optim.project import spec

            args.model = spec(args.model or "", args.weights, args.data)
        rc = COMMANDS[args.cmd](args, out or sys.stdout)
    except ValueError as e:
        print(f"optim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "optim: interrupted; finished rows are kept (resume with --resume RUN)",
            file=sys.stderr,
        )
        return 130
    return rc or 0
