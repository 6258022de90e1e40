"""One run life cycle, for every kind of run: create, launch, execute, resume, cancel, rename,
delete.

A run is a grid or hand-built plans (:mod:`optim.sweep`), an NSGA-II search
(:mod:`optim.search`) or a tuning of recovery training (:mod:`optim.tune`). Each kind plans its
own configs; this module does the rest, once: it refuses bad input before anything is stored,
holds the run's lease (one driver at a time, with a heartbeat; a dead driver's lease expires),
keeps the status, measures the baseline first and keeps its predictions (``pred.npy``, written
atomically and verified on resume), stores every config's row (a failure too, with its kind),
times every file together at the end (then again in each latency scenario of its settings:
:mod:`optim.scenario_runs`), and says what failed. Resuming is executing again: only
missing configs and those that failed for the environment (a full disk, a dead worker) are
built. The CLI and the dashboard both call these functions; ``python -m optim.runs RUN`` is the
driver process the dashboard launches.

Example:
    >>> store = Store()  # doctest: +SKIP
    >>> run_id = create(store, "digits_cnn", grid(bits=(4, 32), sparsity=(0.0,)))  # doctest: +SKIP
    >>> execute(store, run_id).sentence  # doctest: +SKIP
    '2 of 2 configs measured'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from optim import lease, sweep
from optim.build import Settings
from optim.context import Context, Outcome, Progress, delete_study, outcome, planned, retryable
from optim.pool import Factory, local
from optim.sources import check, data_record, get_source, source_spec
from optim.store import Store, elsewhere, pid_alive, run_state

KINDS = ("sweep", "search", "tune")
LIVE = ("pending", "running")


def kind(spec: dict) -> str:
    """``"search"``, ``"tune"`` or ``"sweep"`` (a grid or hand-built plans)."""
    return next((k for k in ("search", "tune") if k in spec), "sweep")


def _module(spec: dict):
    from optim import search, tune

    return {"sweep": sweep, "search": search, "tune": tune}[kind(spec)]


def create(
    store: Store,
    model: str,
    plan_list: Sequence[Sequence[object]] = (),
    settings: Settings | None = None,
    *,
    search: dict | None = None,
    tune: dict | None = None,
) -> int:
    """Check everything, then register a run (nothing measured yet); returns its id.

    Args:
        store: The run store.
        model: A sample name, a project model or ``model.onnx:data.npz``.
        plan_list: The configs of a sweep (the baseline is added first).
        settings: How rows are measured; stored with the run.
        search: Make it a search: :func:`optim.search.spec`'s arguments (trials, seed, ...).
        tune: Make it a tuning of ``tune["plan"]``: :func:`optim.tune.spec`'s arguments.

    Raises ValueError (one line, naming the value and the rule) before anything is stored.
    """
    settings = settings or Settings()
    source = get_source(model)
    if search is not None and tune is not None:
        raise ValueError("a run is a search or a tuning, not both")
    if search is not None:
        from optim import search as kind_module

        part = kind_module.spec(source, **search)
    elif tune is not None:
        from optim import tune as kind_module

        part = kind_module.spec(source, **tune)
    else:
        part = {"plans": sweep.checked_plans(source, plan_list)}
    check(source)
    spec = {"model": source_spec(source), "data": data_record(source),
            "settings": settings.__dict__, **part}  # fmt: skip
    spec["summary"] = summary(spec)  # stored: the dashboard shows it without importing torch
    return store.create_run(source.name, spec, environment())


def environment() -> dict:
    """What a run's rows were measured with: the CPU and its flags, the library versions."""
    import onnxruntime
    import optuna
    import torch

    from optim import measure

    return {"cpu": measure.cpu_info(), "backend": measure.BACKEND,
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "optuna": optuna.__version__}  # fmt: skip


def execute(
    store: Store,
    run_id: int,
    progress: Progress | None = None,
    executor: Factory | None = None,
    **options: object,
) -> Outcome:
    """Execute (or resume) run ``run_id`` in this process, and say how it went.

    Builds and measures the baseline, then every config that has no row yet or failed for the
    environment (its row is replaced), then times every file of the run together.

    Args:
        store: The run store.
        run_id: The run.
        progress: ``progress(done, total, row)`` after each config; ``row`` None once timed.
        executor: ``executor(n_workers, initializer, initargs) -> concurrent.futures.Executor``
            for the configs of a sweep (default: the run's ``settings.executor``: local
            processes, :func:`optim.pool.local`, or Ray, :func:`executor_of`).
        **options: The kind's own (a search: ``trials``, ``timeout_s``).

    Raises ValueError when another driver holds the run (its lease is live).
    """
    run = store.run(run_id)
    spec = run["spec"]
    module = _module(spec)
    with lease.hold(store, run_id):
        store.set_status(run_id, "running", pid=os.getpid())
        try:
            executor = executor or executor_of(Settings.from_json(spec["settings"]))
            ctx = Context.start(store, run_id, spec, progress, executor, options)
            module.run(ctx)
            ctx.time_all()
            ctx.time_scenarios()
            result = outcome(store, run_id)
            store.set_status(run_id, "failed" if result.failed else "done",
                             error=result.sentence if result.failed else None)  # fmt: skip
            return result
        except BaseException as e:
            store.set_status(run_id, "failed" if isinstance(e, Exception) else "cancelled",
                             error=_one_line(e))  # fmt: skip
            raise


def executor_of(settings: Settings) -> Factory:
    """The executor factory a run's settings name: local processes, or Ray
    (:class:`optim.ray_executor.RayFactory`: ``OPTIM_RAY_ADDRESS``, else a Ray started here)."""
    if settings.executor == "ray":
        from optim.ray_executor import RayFactory

        return RayFactory()
    return local


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return text.splitlines()[0]


def launch(store: Store, run_id: int) -> int:
    """Execute run ``run_id`` in a detached driver process (``python -m optim.runs RUN``);
    returns its pid. The driver outlives the caller (a closed tab, a restarted dashboard) and
    writes its output to the run's ``sweep.log``."""
    refuse_live(store.run(run_id))
    log = sweep.run_dir(store.url, run_id) / "sweep.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPTIM_DB_URL": store.url}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "optim.runs", str(run_id)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1], env=env, start_new_session=True,
        )  # fmt: skip
    store.launched(run_id, proc.pid)
    return proc.pid


def refuse_live(run: dict) -> None:
    """Raise ValueError if a driver is measuring ``run`` now, or its lease is still held (a
    driver on another machine, or one that died less than a lease ago)."""
    if run_state(run) in LIVE and run.get("pid") and not elsewhere(run):
        raise ValueError(
            f"run {run['id']} is running in process {run['pid']}: wait for it or cancel it"
        )
    if lease.held(run):
        raise ValueError(
            f"run {run['id']} is held by driver {run['lease_owner']} until "
            f"{run['lease_until']:%H:%M:%S} UTC: wait for it or cancel it"
        )


def cancel(store: Store, run_id: int) -> None:
    """Stop a running run: its status becomes "cancelled" in the store, and a driver on this
    machine gets SIGTERM (its process group, when it leads one); a driver on another machine
    sees the status at its next heartbeat (:mod:`optim.lease`) and stops itself. Either way the
    driver marks the run cancelled; its finished rows stay, and it can be resumed. A run that
    has ended is refused (an interrupted one may be cancelled: given up)."""
    import signal

    run = store.run(run_id)
    if (state := run_state(run)) not in (*LIVE, "interrupted"):
        raise ValueError(f"run {run_id} is {state}: only a pending, running or interrupted run "
                         "can be cancelled")  # fmt: skip
    store.set_status(run_id, "cancelled")
    pid = run["pid"]
    if not pid or elsewhere(run) or not pid_alive(pid):
        return  # never a signal to a local process that merely has a remote driver's number
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)  # launch(): the driver leads its own session
        else:
            os.kill(pid, signal.SIGTERM)  # a CLI driver in someone's terminal


def rename(store: Store, run_id: int, name: str | None = None, notes: str | None = None) -> None:
    """Give run ``run_id`` a name and/or notes (None keeps the current one).

    Example:
        >>> rename(Store(), 3, name="int4 vs int8, 4 threads")  # doctest: +SKIP
    """
    if name is not None and "\n" in name.strip():
        raise ValueError(f"a run's name must be one line, but got {name[:40]!r}")
    store.rename(run_id, name=name, notes=notes)  # its length rules are the store's


def delete(store: Store, run_id: int) -> None:
    """Delete run ``run_id``: its rows, its Optuna study and its artifact folder; a run that a
    driver is measuring now is refused (cancel it first)."""
    run = store.run(run_id)
    refuse_live(run)
    if kind(run["spec"]) != "sweep":
        delete_study(store, _module(run["spec"]).study_name(run_id))
    store.delete_run(run_id)
    shutil.rmtree(sweep.run_dir(store.url, run_id), ignore_errors=True)


def resumable(store: Store, run_id: int) -> bool:
    """Whether executing run ``run_id`` again would build anything: a config without a row, a
    failure of the environment, or a search or tuning short of its trials (the dashboard's
    Resume button)."""
    run, rows = store.run(run_id), store.rows(run_id)
    return len(rows) < planned(run["spec"]) or any(retryable(r) for r in rows)


def summary(spec: dict) -> str:
    """One line saying what a run measures, e.g. ``"bits 4,8,32 x sparsity 0,0.5, structured"``,
    ``"3 plans: prune 50% + int4 w/channel; ..."`` or ``"search, 20 trials"``.

    Example:
        >>> summary({"search": {"trials": 20}})
        'search, 20 trials'
    """
    text = _module(spec).summary(spec)
    settings = spec.get("settings") or {}
    if not settings.get("scenarios"):
        return text
    own = (settings.get("threads", 1), 1)  # the timing phase is a scenario too
    n = len(dict.fromkeys([own, *(tuple(a) for a in settings["scenarios"])]))
    return f"{text}; latency in {n} scenarios"


def main(argv: list[str] | None = None) -> int:
    """``python -m optim.runs RUN``: the driver of one run (exit 0 done, 1 with failed configs,
    2 refused, 130 cancelled)."""
    import signal

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m optim.runs RUN", file=sys.stderr)
        return 2

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # Cancel: the run is marked cancelled
    try:
        result = execute(Store(), int(argv[0]))
    except ValueError as e:
        print(f"optim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optim: cancelled; finished rows are kept", file=sys.stderr)
        return 130
    for row in result.failed:
        print(f"failed ({row.error_kind}): {row.label}: {row.error}", file=sys.stderr)
    print(result.sentence, file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    from optim.runs import main as _main  # the module's own copy, not __main__'s

    sys.exit(_main())
