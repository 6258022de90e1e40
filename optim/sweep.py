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
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import onnx

from optim import applicable, measure
from optim import build as builder
from optim import plan as plans
from optim.artifact import Graph
from optim.build import Settings, check_torch_steps, evaluate
from optim.rows import Row
from optim.sources import check, data_record, get_source, source_spec
from optim.store import Store, home, pid_alive, run_state
from optim.techniques import Distill, DynamicInt8, Int8, Prune, Quantize, StructuredPrune

INT8_MODES = ("static", "dynamic", "weight")
ORDERS = ("prune-first", "quantize-first")


def grid(
    bits: Sequence[int] = (2, 3, 4, 5, 6, 8, 16, 32),
    sparsity: Sequence[float] = (0.0, 0.5, 0.75, 0.9),
    structured: bool = False,
    granularity: Sequence[str] = ("channel",),
    int8: str = "static",
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
    (``int8="static"``: calibrated QDQ; ``"dynamic"``: dynamic int8 Linear; ``"weight"``:
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


def _work(plan_json: list, out_dir: str) -> tuple[list, Row]:
    plan = plans.from_json(plan_json)
    try:
        row, _ = evaluate(_WORKER["source"], plan, Path(out_dir), _WORKER["settings"],
                          _WORKER["pred"])  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a failing config becomes a row that says why
        row = Row.failed(plan, e)
    return plan_json, row


# ------------------------------------------------------------------ runs


def run_dir(store_url: str, run_id: int) -> Path:
    """Where a run's artifacts live: one folder per (store, run), so two stores sharing one
    ``OPTIM_HOME`` never overwrite each other's run #1."""
    store_tag = hashlib.sha1(store_url.encode()).hexdigest()[:8]
    return home() / "runs" / f"{store_tag}-{run_id}"


def artifact_dir(store_url: str, run_id: int, key: str) -> Path:
    return run_dir(store_url, run_id) / hashlib.sha1(key.encode()).hexdigest()[:12]


def create(
    store: Store, model: str, plan_list: Sequence[Sequence[object]], settings: Settings
) -> int:
    """Register a run (nothing measured yet); the baseline is always its first config."""
    source = get_source(model)
    all_plans = {plans.key(()): ()}
    for p in plan_list:
        check_torch_steps(source, plans.split(p)[0])
        if why := applicable.reason(p, source):  # knowable up front: refused, not an error row
            raise ValueError(why)
    check(source)
    for p in plan_list:
        all_plans.setdefault(plans.key(p), plans.validate(p))
    spec = {
        "model": source_spec(source),
        "plans": [plans.to_json(p) for p in all_plans.values()],
        "data": data_record(source),
        "settings": settings.__dict__,
    }
    import onnxruntime
    import torch

    env = {
        "cpu": measure.cpu_info(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }
    return store.create_run(source.name, spec, env)


def _interleave(plan_jsons: list[list]) -> list[list]:
    """Plans ordered round-robin over their torch-stage prefixes, so that parallel workers start
    by building different prefixes (two students train at once) rather than wait on one."""
    groups: dict[str, list] = {}
    for p in plan_jsons:
        groups.setdefault(plans.key(plans.split(plans.from_json(p))[0]), []).append(p)
    rounds = itertools.zip_longest(*groups.values())
    return [p for batch in rounds for p in batch if p is not None]


def execute(
    store: Store, run_id: int, progress: Callable[[int, int, Row | None], None] | None = None
) -> None:
    """Build and measure every config of run ``run_id`` that has no row yet (so it also
    resumes), then time all of the run's files together, the baseline in every round (a resumed
    run re-times everything, so its latencies stay comparable)."""
    run = store.run(run_id)
    spec = run["spec"]
    settings = Settings.from_json(spec["settings"])
    source = get_source(spec["model"])
    store.set_status(run_id, "running", pid=os.getpid())
    try:
        done = store.keys(run_id)
        todo = [p for p in spec["plans"] if plans.key(plans.from_json(p)) not in done]
        total, finished = len(spec["plans"]), len(done)
        base_dir = artifact_dir(store.url, run_id, plans.key(()))
        # the baseline runs here first: every other row is compared with its predictions
        pred_file = base_dir / "pred.npy"
        if plans.key(()) in done and pred_file.is_file():  # a resume: reuse the stored baseline
            base_pred = np.load(pred_file, allow_pickle=False)
        else:
            base_row, base_pred = evaluate(source, (), base_dir, settings, None)
            np.save(pred_file, base_pred)
            if store.add_result(run_id, [], base_row):
                finished += 1
                if progress:
                    progress(finished, total, base_row)
        todo = _interleave([p for p in todo if p])
        if todo:
            for plan_json, row in _build_all(store, run_id, spec, settings, base_pred, todo):
                if store.add_result(run_id, plan_json, row):
                    finished += 1
                if progress:
                    progress(finished, total, row)
        timed = builder.time_rows(store.rows(run_id), settings, source.example)
        store.update_rows(run_id, timed)
        if progress:
            progress(finished, total, None)  # None: the timing phase is done
        store.set_status(run_id, "done")
    except BaseException as e:
        store.set_status(run_id, "failed" if isinstance(e, Exception) else "cancelled",
                         error=f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__)  # fmt: skip
        raise


def _build_all(store: Store, run_id: int, spec: dict, settings: Settings, base_pred, todo):
    """Build and measure ``todo`` (plan JSONs) in worker processes; yields (plan JSON, row) as
    each finishes."""
    jobs = settings.jobs or min(os.cpu_count() or 1, len(todo))
    # forkserver: workers fork from a clean process that imported torch once (fork from this
    # process could inherit OpenMP state; spawn re-imports torch per worker)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["optim.sweep", "sample_models"])
    base_graph, base_flops = builder.torch_graph(spec["model"], plans.key(()))
    base = (base_graph.model.SerializeToString(), base_flops)
    cache = str(run_dir(store.url, run_id) / "torch-cache")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_init_worker,
        initargs=(spec["model"], settings, base_pred, base, cache),
    ) as pool:  # fmt: skip
        futures = [
            pool.submit(_work, p, str(artifact_dir(store.url, run_id, plans.key(plans.from_json(p)))))
            for p in todo
        ]  # fmt: skip
        for fut in as_completed(futures):
            yield fut.result()


def sweep(
    model: str,
    plan_list: Sequence[Sequence[object]],
    settings: Settings | None = None,
    store: Store | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> int:
    """Create and execute a run; returns its id.

    Example:
        >>> run_id = sweep("digits_cnn", grid(bits=(4, 8), sparsity=(0.0, 0.5)))  # doctest: +SKIP
    """
    store = store or Store()
    run_id = create(store, model, plan_list, settings or Settings())
    execute(store, run_id, progress)
    return run_id


# ------------------------------------------------------------------ background runs (dashboard)


def launch(store: Store, run_id: int) -> int:
    """Execute run ``run_id`` in a detached ``python -m optim sweep --resume`` process.

    The process outlives the caller (a closed browser tab or a restarted dashboard does not stop
    it) and streams rows into the store; returns its pid.
    """
    import subprocess
    import sys

    log = run_dir(store.url, run_id) / "sweep.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPTIM_DB_URL": store.url}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "optim", "sweep", "--resume", str(run_id)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1], env=env, start_new_session=True,
        )  # fmt: skip
    store.set_status(run_id, "running", pid=proc.pid)
    return proc.pid


def cancel(store: Store, run_id: int) -> None:
    """Stop a running sweep (its finished rows stay in the store; it can be resumed)."""
    import signal

    run = store.run(run_id)
    if run["pid"] and pid_alive(run["pid"]):
        try:
            os.killpg(run["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    store.set_status(run_id, "cancelled")


state = run_state  # the run's state, e.g. "interrupted" (see optim.store.run_state)


TRAINING_GUESS_S = 60.0  # a training prefix this model has never run: a round guess


def _trains(steps: Sequence[object]) -> bool:
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
    prefixes = {plans.key(t) for t in (plans.split(p)[0] for p in plan_list) if _trains(t)}
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
            if _trains(steps):
                key = plans.key(steps)
                trained[key] = max(trained.get(key, 0.0), sec)
            else:
                plain.append(sec)
    per = float(np.mean(plain)) if plain else 2.0
    costs = [trained.get(k, TRAINING_GUESS_S) for k in prefixes]
    workers = jobs or min(os.cpu_count() or 1, n)
    build = max((per * n + sum(costs)) / workers, max(costs, default=0.0) + per)
    return 15.0 + build + n * timing_s  # the timing phase runs one config at a time
