"""Sweeps: build and measure every plan of a grid, streaming each row into the run store.

Each config is built (torch-stage steps, ONNX export, graph-stage steps), written as the file
that ships and measured from that file alone (:mod:`optim.build`), in parallel worker processes;
rows stream into the store with accuracy and size. Then, with every file built and no worker
left, one timing phase times all of the run's files in interleaved rounds with the baseline in
each (:func:`optim.measure.time_interleaved`). A resumed run builds only the configs whose rows
are missing, and re-times them all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from optim import applicable, pool
from optim import build as builder
from optim import plan as plans
from optim.artifact import Graph
from optim.build import Settings, check_torch_steps, evaluate
from optim.rows import Row
from optim.sources import ModelSource, get_source
from optim.store import Store, home, run_state
from optim.techniques import Distill, DynamicInt8, Int8, Int8Auto, Prune, Quantize, StructuredPrune

if TYPE_CHECKING:
    from optim.context import Context, Progress

INT8_MODES = ("auto", "static", "dynamic", "weight")
ORDERS = ("prune-first", "quantize-first")


def grid(
    bits: Sequence[int] = (2, 3, 4, 5, 6, 8, 16, 32),
    sparsity: Sequence[float] = (0.0, 0.5, 0.75, 0.9),
    structured: bool = False,
    granularity: Sequence[str] = ("channel",),
    int8: str = "auto",
    symmetric: bool = True,
    students: Sequence[float] = (),
    orders: Sequence[str] = ("prune-first",),
) -> list[tuple]:
    """The cross product model x sparsity x bits x granularity as plans (prune, then quantize).

    The model axis is the source itself plus, for each width in ``students``, a student of that
    width distilled from it (:class:`~optim.techniques.Distill`): every student is pruned and
    quantized like the original, so distill -> quantize competes on the same frontier.
    ``orders`` holds ``"prune-first"`` and/or ``"quantize-first"``: the latter rounds the weights
    to N bits and then prunes the rounded values (only for unstructured pruning with N-bit
    weight rounding; elsewhere the order is moot and one plan stands for both).

    ``bits`` 32 is fp32 (no quantization), 16 float16 storage, 8 int8 executed by ONNX Runtime
    (``int8="auto"``: static int8 placed where it measured faster on this machine, see
    :class:`~optim.techniques.Int8Auto`; ``"static"``: calibrated QDQ everywhere;
    ``"dynamic"``: dynamic int8 Linear; ``"weight"``:
    8-bit stored, fp32 executed), 2-7 bit weights (INT2/INT4/INT8 storage) executed in fp32.

    Example:
        >>> len(grid(bits=(4, 32), sparsity=(0.0, 0.5)))
        4
    """
    for b in bits:
        if not (2 <= b <= 8 or b in (16, 32)):
            raise ValueError(f"`2 <= bits <= 8 or bits in (16, 32)` must hold, but got bits={b}")
    for s in sparsity:
        if not 0 <= s < 1:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got sparsity={s}")
    for o in orders:
        if o not in ORDERS:
            raise ValueError(f"`order` must be one of {ORDERS}, but got order={o!r}")
    for w in students:
        if not 0 < w < 1:
            raise ValueError(f"`0 < student width < 1` must hold, but got width={w}")
    if int8 not in INT8_MODES:
        raise ValueError(f"`int8` must be one of {INT8_MODES}, but got int8={int8!r}")
    out: dict[str, tuple] = {}
    for start in [(), *((Distill(w),) for w in students)]:
        for s in sparsity:
            prune = () if s == 0 else ((StructuredPrune(s),) if structured else (Prune(s),))
            for b in bits:
                for g in granularity:
                    if b == 32:
                        q: tuple = ()
                    elif b == 8 and int8 == "auto":
                        q = (Int8Auto(),)
                    elif b == 8 and int8 == "static":
                        q = (Int8(granularity=g),)
                    elif b == 8 and int8 == "dynamic":
                        q = (DynamicInt8(),)
                    else:
                        q = (Quantize(bits=b, granularity=g, symmetric=symmetric),)
                    for order in orders:
                        swap = order == "quantize-first" and q and isinstance(q[0], Quantize)
                        p = start + (q + prune if swap and not structured else prune + q)
                        out.setdefault(plans.key(p), p)
    if not out:
        raise ValueError("the grid is empty: give at least one bit-width and one sparsity")
    return list(out.values())


_WORKER: dict = {}


def _init_worker(spec: str, settings: Settings, baseline_pred, base: tuple, cache: str) -> None:
    import torch

    torch.set_num_threads(1)
    # the parent exported the baseline already: reuse it instead of exporting again
    builder.seed_graph(spec, Graph(onnx.load_from_string(base[0]), {}), base[1])
    builder.share_prefixes(Path(cache))
    _WORKER.update(source=get_source(spec), settings=settings, pred=baseline_pred)


def _work(plan_json: list, out_dir: str) -> Row:
    plan = plans.from_json(plan_json)
    try:
        row, _ = evaluate(_WORKER["source"], plan, Path(out_dir), _WORKER["settings"],
                          _WORKER["pred"])  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a failing config becomes a row that says why
        row = Row.failed(plan, e)
    return row


# ------------------------------------------------------------------ a sweep's part of a run


def run_dir(store_url: str, run_id: int) -> Path:
    """Where a run's artifacts live: one folder per (store, run), so two stores sharing one
    ``OPTIM_HOME`` never overwrite each other's run #1."""
    store_tag = hashlib.sha1(store_url.encode()).hexdigest()[:8]
    return home() / "runs" / f"{store_tag}-{run_id}"


def artifact_dir(store_url: str, run_id: int, key: str) -> Path:
    return run_dir(store_url, run_id) / hashlib.sha1(key.encode()).hexdigest()[:12]


def checked_plans(source: ModelSource, plan_list: Sequence[Sequence[object]]) -> list[list]:
    """The plans of a sweep of ``source`` as JSON, the baseline first, duplicates dropped;
    ValueError for a plan that cannot run on it (knowable up front: refused, not an error row)."""
    all_plans = {plans.key(()): ()}
    for p in plan_list:
        check_torch_steps(source, plans.split(p)[0])
        if why := applicable.reason(p, source):
            raise ValueError(why)
    for p in plan_list:
        all_plans.setdefault(plans.key(p), plans.validate(p))
    return [plans.to_json(p) for p in all_plans.values()]


def _interleave(plan_jsons: list[list]) -> list[list]:
    """Plans ordered round-robin over their torch-stage prefixes, so that parallel workers start
    by building different prefixes (two students train at once) rather than wait on one."""
    groups: dict[str, list] = {}
    for p in plan_jsons:
        groups.setdefault(plans.key(plans.split(plans.from_json(p))[0]), []).append(p)
    rounds = itertools.zip_longest(*groups.values())
    return [p for batch in rounds for p in batch if p is not None]


def run(ctx: Context) -> None:
    """Build and measure every config of the run that still needs it (see
    :meth:`~optim.context.Context.todo`) on ``ctx.executor``'s workers, storing each row as it
    finishes; a worker that dies takes its config to a fresh pool once more
    (:func:`optim.pool.run_all`), then it is a failure row of the environment."""
    todo = _interleave([p for p in ctx.spec["plans"] if p and ctx.todo(_key(p))])
    if not todo:
        return
    capacity = getattr(ctx.executor, "capacity", lambda: None)() or os.cpu_count() or 1
    jobs = ctx.settings.jobs or min(capacity, len(todo))  # a cluster: its CPUs in flight
    base_graph, base_flops = builder.torch_graph(ctx.spec["model"], plans.key(()))
    base = (base_graph.model.SerializeToString(), base_flops)
    cache = str(run_dir(ctx.store.url, ctx.run_id) / "torch-cache")
    initargs = (ctx.spec["model"], ctx.settings, ctx.base_pred, base, cache)
    work = [(p, str(ctx.out_dir(_key(p)))) for p in todo]
    total = len(ctx.spec["plans"])
    for (plan_json, _), row in pool.run_all(ctx.executor, jobs, _init_worker, initargs, _work,
                                            work):  # fmt: skip
        if not isinstance(row, Row):  # the executor's failure, not the config's
            row = Row.failed(plans.from_json(plan_json), row)
        ctx.record(plan_json, row)
        ctx.report(len(ctx.rows), total, row)


def _key(plan_json: list) -> str:
    return plans.key(plans.from_json(plan_json))


def sweep(
    model: str,
    plan_list: Sequence[Sequence[object]],
    settings: Settings | None = None,
    store: Store | None = None,
    progress: Progress | None = None,
    executor: pool.Factory = pool.local,
) -> int:
    """Create and execute a sweep run (:mod:`optim.runs`); returns its id.

    Example:
        >>> run_id = sweep("digits_cnn", grid(bits=(4, 8), sparsity=(0.0, 0.5)))  # doctest: +SKIP
    """
    from optim import runs

    store = store or Store()
    run_id = runs.create(store, model, plan_list, settings)
    runs.execute(store, run_id, progress, executor)
    return run_id


state = run_state  # the run's state, e.g. "interrupted" (see optim.store.run_state)


TRAINING_GUESS_S = 60.0  # a training prefix this model has never run: a round guess


def trains(steps: Sequence[object]) -> bool:
    """Whether the torch-stage ``steps`` train (a config with epochs), not just reshape."""
    return any(f.name.startswith("epochs") for c in steps for f in dataclasses.fields(c))


TIMING_BLOCKS = 4  # fresh sessions per config in a default 20-round timing phase


def estimate_seconds(
    store: Store,
    model: str,
    plan_list: Sequence[Sequence[object]],
    jobs: int = 0,
    timing_s: float = 0.0,
) -> float:
    """A rough wall time for a run of ``plan_list`` (the baseline added), from this model's
    earlier runs: each config costs the mean time of earlier rows without training (else 2 s);
    each distinct torch-stage prefix that trains (a distilled student, a fine-tune) is built
    once and costs what the slowest earlier row with that prefix took (else 60 s). Spread over
    the workers, but never less than the longest single training (the configs built on it wait
    for it), plus ~15 s of start-up and baseline, plus ``timing_s`` per config for the timing
    phase, which runs alone after every build."""
    prefixes = {plans.key(t) for t in (plans.split(p)[0] for p in plan_list) if trains(t)}
    n = len({plans.key(()), *(plans.key(p) for p in plan_list)})
    plain, trained = [], {}
    runs = store.runs()
    for run_id in runs.loc[runs["model"] == model, "id"].head(5):
        df = store.results(int(run_id))
        for plan_json, sec in zip(df.get("plan", ()), df.get("seconds", ()), strict=True):
            try:
                steps = plans.split(plans.from_json(plan_json))[0]
            except (ValueError, TypeError):  # a plan an older version allowed: no history
                continue
            if sec != sec or sec is None:
                continue
            if trains(steps):
                key = plans.key(steps)
                trained[key] = max(trained.get(key, 0.0), sec)
            else:
                plain.append(sec)
    per = float(np.mean(plain)) if plain else 2.0
    costs = [trained.get(k, TRAINING_GUESS_S) for k in prefixes]
    workers = jobs or min(os.cpu_count() or 1, n)
    build = max((per * n + sum(costs)) / workers, max(costs, default=0.0) + per)
    return 15.0 + build + n * timing_s  # the timing phase runs one config at a time


def with_mixed(
    model: str,
    grid_plans: list[tuple],
    bits: Sequence[int],
    sparsity: Sequence[float],
    structured: bool,
    granularity: Sequence[str],
    keep_8bit: Sequence[int],
) -> list[tuple]:
    """``grid_plans`` plus, for each K of ``keep_8bit``, each sub-8-bit config of the grid with
    its K layers most sensitive to 3-bit rounding (measured on the calib split) kept at 8 bits
    (:class:`~optim.techniques.MixedQuantize`)."""
    from optim.sensitivity import rank, sensitivity
    from optim.techniques import MixedQuantize

    sub8 = [b for b in bits if 2 <= b < 8]
    if not (keep_8bit and sub8):
        return list(grid_plans)
    ranking = tuple(rank(sensitivity(model, bits=(3,), sparsities=())))
    out = list(grid_plans)
    for k, s, b, g in itertools.product(keep_8bit, sparsity, sub8, granularity):
        prune = () if s == 0 else ((StructuredPrune if structured else Prune)(s),)
        out.append(prune + (MixedQuantize(default_bits=b, keep_8bit=k, sensitivity=ranking,
                                          granularity=g),))  # fmt: skip
    return out


_GRID_STEPS = {
    "Distill",
    "Prune",
    "StructuredPrune",
    "Quantize",
    "Int8",
    "Int8Auto",
    "DynamicInt8",
}


def summary(spec: dict) -> str:
    """One line for a sweep's plans: its grid's axes (``"bits 4,8,32 x sparsity 0,0.5,
    structured"``) when its plans are one, then any other plans by label.

    Example:
        >>> from optim.plan import to_json
        >>> summary({"plans": [to_json(p) for p in grid(bits=(4, 32), sparsity=(0.0, 0.5))]})
        'bits 4,32 x sparsity 0,0.5'
    """
    from optim.rows import plan_fields

    cells, others = {}, []
    for p in spec["plans"]:
        plan = plans.from_json(p)
        names = {type(c).__name__ for c in plan}
        if names <= _GRID_STEPS:
            student = next((c.width for c in plan if isinstance(c, Distill)), None)
            f = plan_fields(plan)
            cells[(student, f["sparsity"] or 0.0, f["bits"])] = names
        else:
            others.append(plans.label(plan))
    axes = [sorted({c[i] for c in cells}, key=lambda v: (v is None, v)) for i in range(3)]
    parts = []
    if len(cells) > 1 and len(cells) == np.prod([len(a) for a in axes]):
        parts.append(f"bits {','.join(map(str, axes[2]))} x sparsity "
                     f"{','.join(f'{s:g}' for s in axes[1])}")  # fmt: skip
        if students := [w for w in axes[0] if w is not None]:
            parts[0] += f" x students {','.join(f'{w:g}' for w in students)}"
        if any("StructuredPrune" in n for n in cells.values()):
            parts[0] += ", structured"
    else:
        others = [plans.label(plans.from_json(p)) for p in spec["plans"] if p]
    if others:
        shown = "; ".join(others[:3]) + ("; ..." if len(others) > 3 else "")
        parts.append(f"{len(others)} plan{'s' * (len(others) != 1)}: {shown}")
    return " + ".join(parts) or "the baseline only"
