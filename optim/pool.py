"""The local executor of a run's configs: worker processes that die with their driver.

An executor factory has the shape ``factory(n_workers, initializer, initargs) ->
concurrent.futures.Executor`` (:data:`Factory`); :func:`local` is the default, a
``ProcessPoolExecutor`` on the forkserver context. Its forkserver and every worker ask the
kernel for SIGKILL when their parent dies (``prctl(PR_SET_PDEATHSIG)``), so a driver killed
with SIGKILL leaves no worker behind, re-parented to PID 1, holding a gigabyte each.
:func:`run_all` submits jobs to such an executor and survives a worker that dies: the pool is
replaced and the jobs it was running are submitted again, each at most ``retries`` more times.

Example:
    >>> for job, result in run_all(local, 2, print, ("worker up",), abs, [-1, -2]):  # doctest: +SKIP
    ...     print(job, result)
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)

Factory = Callable[[int, Callable[..., None], tuple], Executor]
PRELOAD = ["optim._forkserver", "optim.sweep", "sample_models"]
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux); exits now if it died already."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's own EOF checks remain
        return
    if os.getppid() != parent or parent == 1:  # the parent died before prctl took hold
        os._exit(1)


def _init(initializer: Callable[..., None], initargs: tuple) -> None:
    die_with_parent()  # the parent of a pool worker is the forkserver, which dies with us
    initializer(*initargs)


def local(n_workers: int, initializer: Callable[..., None], initargs: tuple) -> Executor:
    """The default executor: ``n_workers`` processes forked from a forkserver that imported
    torch and the samples once (a fork of the driver could inherit OpenMP state; spawn would
    re-import torch per worker), each running ``initializer(*initargs)`` first."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(
        max_workers=n_workers, mp_context=ctx, initializer=_init, initargs=(initializer, initargs)
    )


class WorkerDied(RuntimeError):
    """A job whose worker died, every time it was tried (an environment failure)."""


def run_all(
    factory: Factory,
    n_workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    fn: Callable,
    jobs: Sequence[tuple],
    retries: int = 1,
) -> Iterator[tuple[tuple, object]]:
    """Run ``fn(*job)`` for every job on an executor from ``factory``; yield ``(job, result)``
    as each finishes, where ``result`` is ``fn``'s value, or the exception that ended it after
    ``retries`` more tries (a :class:`WorkerDied` when its worker died each time).

    At most ``n_workers`` jobs are in flight, so the jobs a broken pool takes down are exactly
    the ones it was running: each is submitted again to a fresh pool (the others of the broken
    pool were killed through no fault of their own, but which one killed it cannot be told).
    """
    todo, tries = list(range(len(jobs)))[::-1], [0] * len(jobs)
    while todo:
        pool = factory(n_workers, initializer, initargs)
        running: dict[Future, int] = {}
        broken = False
        try:
            while (todo or running) and not broken:
                while todo and len(running) < n_workers:
                    i = todo.pop()
                    running[pool.submit(fn, *jobs[i])] = i
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = running.pop(fut)
                    try:
                        yield jobs[i], fut.result()
                        continue
                    except BrokenExecutor as e:
                        broken, error = True, e
                    except WorkerDied as e:  # the executor retried it already (Ray)
                        yield jobs[i], e
                        continue
                    except Exception as e:  # noqa: BLE001 - an executor's own failure (Ray)
                        error = e
                    tries[i] += 1
                    if tries[i] <= retries:
                        todo.append(i)
                        continue
                    why = "its worker died" if isinstance(error, BrokenExecutor) else "it failed"
                    yield jobs[i], WorkerDied(f"{why} on each of {tries[i]} tries ({error})")
            for fut, i in running.items():  # taken down with the pool, through no fault of theirs
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    yield jobs[i], fut.result()
                else:
                    todo.append(i)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
